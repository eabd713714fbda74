"""
Loader workers and the signals that stop a run.

A scheduler stops a job by signalling every one of its processes (SLURM's preemption, ``scancel``
and requeue send SIGTERM to the whole job step; ``kill -- -PGID`` and Ctrl-C reach the whole process
group), loader workers included. PyTorch's workers die on SIGTERM, and the training process then
fails on "DataLoader worker ... is killed by signal" wherever it is, instead of finishing its
iteration and writing the stop checkpoint (:mod:`contrastive_det.engine.stop_request`).

:func:`shield_workers` makes a loader's workers ignore SIGTERM and SIGINT: only the training process
decides, and its workers stop the usual way when it is done with them. A worker that ignores SIGTERM
would hang the process's exit (``multiprocessing`` terminates its daemonic children with SIGTERM
and joins them), so the first shielded loader of a process also registers a finalizer that kills
the loader workers still alive at exit, after the run has written everything it writes.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import signal
from typing import Any, Callable

__all__ = ["shield_workers"]

_reaper = {"registered": False}


class _IgnoreStopSignals:
    """A ``worker_init_fn``: SIGTERM and SIGINT ignored, then the loader's own init (if any)."""

    def __init__(self, then: Callable[[int], Any] | None = None):
        self.then = then

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.then is not None:
            self.then(worker_id)


def _reap_loader_workers() -> None:
    """At exit: kill the daemonic children (loader workers) still alive, so that exiting never
    waits on a worker that ignores SIGTERM. PyTorch's SIGCHLD check is switched off first: these
    deaths are expected."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
            child.join(timeout=10)


def shield_workers(loader: Any) -> Any:
    """
    Make ``loader``'s worker processes (a ``torch.utils.data.DataLoader``, before its first
    iteration) ignore SIGTERM and SIGINT, keeping its ``worker_init_fn``; returns ``loader``.
    A loader without workers is returned as it is.
    """
    if getattr(loader, "num_workers", 0) <= 0:
        return loader
    if not isinstance(loader.worker_init_fn, _IgnoreStopSignals):
        loader.worker_init_fn = _IgnoreStopSignals(loader.worker_init_fn)
    if not _reaper["registered"]:
        # a multiprocessing finalizer, not an atexit hook: multiprocessing's exit function runs it
        # before it terminates and joins the daemonic children, in the main process (at exit) and
        # in a process multiprocessing started (a training process of `--num-gpus N`, which never
        # runs atexit hooks)
        multiprocessing.util.Finalize(None, _reap_loader_workers, exitpriority=100)
        _reaper["registered"] = True
    return loader

"""
Stopping a run on request (SIGTERM) without losing its progress: what a cluster's preemption, a
requeue (``scontrol requeue``), ``scancel`` or a study's Ctrl-C sends.

* A training process that receives SIGTERM finishes the iteration it is in; every process agrees on
  stopping at the same iteration (the flag rides on the non-finite-loss all-reduce, no extra
  collective); the main process writes a checkpoint of that iteration (``last_checkpoint`` names it)
  and every process exits with :data:`STOPPED_EXIT_CODE`. ``--resume`` continues from there exactly.
* A process that is not training (an evaluation, a probe) exits with :data:`STOPPED_EXIT_CODE` at
  once.
* The launching process of several local processes passes SIGTERM on to them, waits for them and
  exits with the same code.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading

from ..utils.exit_codes import STOPPED_EXIT_CODE

__all__ = ["STOPPED_EXIT_CODE", "TrainingStopped", "install", "requested", "listen"]


logger = logging.getLogger(__name__)
_state = {"requested": False, "listening": False, "forward": False}


class TrainingStopped(SystemExit):
    """Raised on every process when a stop was requested (exit status :data:`STOPPED_EXIT_CODE`)."""

    def __init__(self, message: str = ""):
        super().__init__(STOPPED_EXIT_CODE)
        self.message = message


def _handler(signum, frame):
    first = not _state["requested"]
    _state["requested"] = True
    if _state["forward"]:
        for child in multiprocessing.active_children():
            child.terminate()  # SIGTERM: each child stops at an agreed iteration
        return
    if first:
        logger.warning(
            f"Received {signal.Signals(signum).name}: stopping"
            + (" after this iteration, with a checkpoint" if _state["listening"] else "")
        )
    if not _state["listening"]:
        raise TrainingStopped(f"stopped by {signal.Signals(signum).name}")


def install(forward: bool = False) -> None:
    """Handle SIGTERM and SIGUSR2 in this process (main thread only; a no-op elsewhere).
    ``forward``: this process launched the workers and passes the signal on to them."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.update(requested=False, forward=forward)
    for sig in (signal.SIGTERM, signal.SIGUSR2):  # SIGUSR2: submitit's time-limit signal on SLURM
        signal.signal(sig, _handler)


def listen(on: bool = True) -> None:
    """A trainer honours the request at its next iteration (instead of the process exiting at
    once)."""
    _state["listening"] = on


def requested() -> bool:
    """Whether SIGTERM was received by this process."""
    return _state["requested"]

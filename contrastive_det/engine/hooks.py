"""Hooks the Trainer adds to detectron2's defaults (none of them knows which task runs)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from detectron2.engine import HookBase
from detectron2.engine.hooks import PreciseBN
from detectron2.utils import comm

from ..utils.seeding import derive_seed, seed_global_rngs
from .stop_request import TrainingStopped
from .results import build_results, normalize_metrics, write_results

if TYPE_CHECKING:
    from .checkpoint import AtomicDetectionCheckpointer

logger = logging.getLogger(__name__)


class StepSeed(HookBase):
    """
    Before every step, seed python/numpy/torch from ``(seed, iteration, rank)``: randomness used
    inside the step (shuffled BN permutations, mixup, dropout) is then a function of the
    iteration, so a resumed run draws what the uninterrupted run drew without saving RNG states.
    """

    def __init__(self, seed: int):
        self._seed = seed

    def before_step(self) -> None:
        seed_global_rngs(derive_seed(self._seed, self.trainer.iter, comm.get_rank()))


class StopOnRequest(HookBase):
    """
    After a step in which the processes agreed to stop (SIGTERM, see :mod:`.stop_request`): the main
    process saves ``model_<iteration>.pth`` (``last_checkpoint`` then names it), every process waits
    for it and raises :class:`TrainingStopped`. The last iteration finishes normally instead.
    """

    def __init__(self, checkpointer: AtomicDetectionCheckpointer):
        self._checkpointer = checkpointer

    def after_step(self) -> None:
        trainer = self.trainer
        if (
            not getattr(trainer._trainer, "stop_agreed", False)
            or trainer.iter + 1 >= trainer.max_iter
        ):
            return
        path = None
        if comm.is_main_process():
            name = f"model_{trainer.iter:07d}"
            self._checkpointer.save(name, iteration=trainer.iter)
            path = self._checkpointer.get_checkpoint_file()
        comm.synchronize()
        message = f"Stopped on request after iteration {trainer.iter}" + (
            f"; checkpoint {path}: continue with --resume" if path else ""
        )
        logger.warning(message)
        if path:
            print(message, flush=True)
        raise TrainingStopped(message)


class IterationPreciseBN(PreciseBN):
    """
    detectron2's :class:`PreciseBN` whose statistics at iteration ``i`` come from the training
    batches of iterations ``i, i+1, ...`` (a fresh iterator of a resumable loader each time),
    instead of from wherever a long-lived iterator happened to be: the same after ``--resume``.
    """

    def update_stat(self) -> None:
        sampler = getattr(self._data_loader, "batch_sampler", None)
        if hasattr(sampler, "set_start_iter"):
            sampler.set_start_iter(self.trainer.iter)
            self._data_iter = None
        super().update_stat()


class WriteResults(HookBase):
    """After the final evaluation, write ``OUTPUT_DIR/results.json`` from it (atomically)."""

    def __init__(
        self, task: str, method: str, config_file: str = "", extra: dict[str, Any] | None = None
    ):
        """
        Args:
            task (str): the task's name recorded in the file.
            method (str): the pretraining method recorded in the file.
            config_file (str): the config file given on the command line.
            extra (dict or None): task-specific fields of the record (``Task.results_extra``).
        """
        self._task = task
        self._method = method
        self._config_file = config_file
        self._extra = extra

    def after_train(self) -> None:
        trainer = self.trainer
        results = getattr(trainer, "_last_eval_results", None)
        # detectron2 sets iter = max_iter after the last iteration; a failed run stops below it
        if results is None or trainer.iter < trainer.max_iter:
            return  # no final evaluation (e.g. training stopped early): write nothing
        cfg = trainer.cfg
        record = build_results(
            cfg,
            normalize_metrics(results, list(cfg.DATASETS.TEST)),
            task=self._task,
            method=self._method,
            # a resumed finished run runs no iteration and detectron2 leaves iter at max_iter + 1
            iteration=min(trainer.iter, trainer.max_iter),
            config_file=self._config_file,
            extra=self._extra,
        )
        path = write_results(cfg.OUTPUT_DIR, record)
        logger.info(f"Results written to {path}")


class ImagesPerSecond(HookBase):
    """Record ``images_per_s`` (global batch / wall time of the step) for metrics.json, TensorBoard
    and the console."""

    def __init__(self, images_per_batch: int):
        self._images = images_per_batch
        self._start = None

    def before_step(self) -> None:
        self._start = time.perf_counter()

    def after_step(self) -> None:
        elapsed = time.perf_counter() - self._start
        if elapsed > 0:
            self.trainer.storage.put_scalar(
                "images_per_s", self._images / elapsed, smoothing_hint=True
            )

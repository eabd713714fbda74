"""The one trainer every task runs on: detectron2's DefaultTrainer, fed by the task registry."""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Iterable

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.config import CfgNode
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    HookBase,
    SimpleTrainer,
    create_ddp_model,
    hooks,
)
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..solver import build_lr_scheduler, build_optimizer
from ..utils import collectives
from . import stop_request
from .checkpoint import AtomicDetectionCheckpointer, resumable_config
from .hooks import IterationPreciseBN, StepSeed, StopOnRequest, WriteResults
from .results import build_results, normalize_metrics, write_results
from .task import get_task

logger = logging.getLogger(__name__)

FINAL_MODEL = "model_final.pth"  # detectron2's name for the checkpoint at the end of training


def wrap_ddp(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """detectron2's ``create_ddp_model``, except CPU models get no ``device_ids`` (DDP over
    gloo)."""
    if comm.get_world_size() > 1 and device == "cpu":
        return DistributedDataParallel(model, broadcast_buffers=False)
    return create_ddp_model(model, broadcast_buffers=False)


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; raised on every process at the same iteration."""


class _FiniteLossCheck:
    """
    Mixin for detectron2's step trainers: before the optimizer step, all processes agree whether
    every local loss term is finite; if one is not, every process raises
    :class:`NonFiniteLossError` at the same iteration (detectron2 raises on the main process
    only, leaving the others waiting in the next collective), naming the iteration, the loss
    terms and the last good checkpoint. The step that produced the NaN is never applied.
    """

    last_checkpoint = staticmethod(lambda: None)  # set by the Trainer: () -> path or None
    # every process saw that one of them was asked to stop (SIGTERM) by this step
    stop_agreed = False

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        finite = all(bool(torch.isfinite(v.detach()).all()) for v in loss_dict.values())
        go_on = not stop_request.requested()
        if comm.get_world_size() > 1:  # on the backend's device: NCCL refuses CPU tensors
            # flags: 2 = (finite, go on)
            flags = torch.tensor([1.0 if finite else 0.0, 1.0 if go_on else 0.0])
            flags = collectives.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
            finite, go_on = bool(flags[0].item()), bool(flags[1].item())
        self.stop_agreed = not go_on
        if not finite:
            terms = ", ".join(
                f"{k}={v.detach().float().mean().item():.4g}" for k, v in loss_dict.items()
            )
            last = self.last_checkpoint()
            # every process says it stops here (the launcher shows only the first traceback)
            print(
                f"rank {comm.get_rank()}: non-finite loss at iteration {self.iter}, stopping",
                flush=True,
            )
            raise NonFiniteLossError(
                f"Loss became infinite or NaN at iteration {self.iter} on at least one process "
                f"(this process: {terms}); training stopped on every process before the optimizer "
                "step. "
                + (
                    f"Last good checkpoint: {last} (continue with --resume after fixing the cause, "
                    f"e.g. a lower "
                    "SOLVER.BASE_LR)"
                    if last
                    else "No checkpoint was written yet."
                )
            )
        super()._write_metrics(loss_dict, data_time, prefix, iter)


class CheckedSimpleTrainer(_FiniteLossCheck, SimpleTrainer):
    """:class:`SimpleTrainer` that stops every process on a non-finite loss."""


class CheckedAMPTrainer(_FiniteLossCheck, AMPTrainer):
    """:class:`AMPTrainer` that stops every process on a non-finite loss."""


class Trainer(DefaultTrainer):
    """
    :class:`DefaultTrainer` (SimpleTrainer/AMPTrainer step, detectron2's hooks: LR schedule,
    PreciseBN, periodic checkpointing, evaluation, ETA/JSON/TensorBoard writers) with:

    * data loaders, evaluators and extra hooks from the task selected by ``cfg.TASK``;
    * atomic checkpoints that record the seed (:class:`AtomicDetectionCheckpointer`);
    * exact resume: batches, augmentations and in-step randomness are functions of
      (SEED, iteration), and the loader starts at the resumed iteration;
    * every process stops at the same iteration on a NaN/inf loss;
    * ``OUTPUT_DIR/results.json`` written after the final evaluation.
    """

    def __init__(self, cfg: CfgNode, config_file: str = ""):
        """
        Mirrors ``DefaultTrainer.__init__`` step for step (logger, worker scaling, model, optimizer,
        loader, DDP, step trainer, scheduler, checkpointer, hooks) and differs where noted:

        * ``TrainerBase.__init__`` is called instead of ``DefaultTrainer.__init__``, which would
          build the model, loader and checkpointer its own way (twice the work, and the wrong
          kinds);
        * the config ``--resume`` compares (:func:`resumable_config`) is taken before the worker
          scaling, so that a resume on another number of processes compares the user's settings;
        * the model is wrapped with :func:`wrap_ddp` (no ``device_ids`` on CPU: DDP over gloo);
        * the step trainer is :class:`CheckedSimpleTrainer` / :class:`CheckedAMPTrainer` (every
          process stops at one iteration on a non-finite loss);
        * the checkpointer is atomic and stores the seed and the resumable config, and knows the
          trainer (a stop request saves through it);
        * ``config_file`` is kept for ``results.json``.
        """
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        requested = resumable_config(cfg)  # what --resume compares, before the world-size scaling
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self.task = get_task(cfg)

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_ddp(model, cfg.MODEL.DEVICE)
        step_trainer = CheckedAMPTrainer if cfg.SOLVER.AMP.ENABLED else CheckedSimpleTrainer
        self._trainer = step_trainer(model, data_loader, optimizer)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicDetectionCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            extra_state={"seed": cfg.SEED, "config": requested},
            trainer=weakref.proxy(self),
        )
        self._trainer.last_checkpoint = self._last_checkpoint
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.config_file = config_file
        self.register_hooks(self.build_hooks())

    def _last_checkpoint(self):
        return (
            self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else None
        )

    def resume_or_load(self, resume: bool = True) -> None:
        """detectron2's, then the training loader is positioned at the first iteration to run."""
        super().resume_or_load(resume=resume)
        sampler = getattr(self._trainer.data_loader, "batch_sampler", None)
        if hasattr(sampler, "set_start_iter"):
            sampler.set_start_iter(self.start_iter)

    def build_hooks(self) -> list[HookBase | None]:
        """
        detectron2's default hooks in detectron2's order (timer, LR schedule, PreciseBN,
        checkpointer, evaluation, writers), with the per-iteration seeding first, PreciseBN drawing
        from the iteration it runs at, and the task's hooks plus ``results.json`` after evaluation.
        """
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0  # PreciseBN reads a few batches: no worker start-up
        precise_bn = None
        if cfg.TEST.PRECISE_BN.ENABLED and hooks.get_bn_modules(self.model):
            precise_bn = IterationPreciseBN(
                cfg.TEST.EVAL_PERIOD,
                self.model,
                self.build_train_loader(cfg),
                cfg.TEST.PRECISE_BN.NUM_ITER,
            )
        ret = [StepSeed(cfg.SEED), hooks.IterationTimer(), hooks.LRScheduler(), precise_bn]
        if comm.is_main_process():
            ret.append(hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD))

        def test_and_save_results():
            self._last_eval_results = self.test(self.cfg, self.model)
            return self._last_eval_results

        ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, test_and_save_results))
        if comm.is_main_process():
            ret += self.task.build_hooks(self.cfg)
            ret.append(
                WriteResults(
                    self.task.name,
                    self.task.method(self.cfg),
                    self.config_file,
                    self.task.results_extra(self.cfg),
                )
            )
            ret.append(hooks.PeriodicWriter(self.build_writers(), period=20))
        # last: after the LR step and the periodic checkpoint
        ret.append(StopOnRequest(self.checkpointer))
        return ret

    def train(self) -> dict[str, Any] | None:
        """detectron2's loop; a SIGTERM (preemption, requeue, cancel) stops it at an iteration every
        process agrees on, with a checkpoint (see :mod:`.stop_request`)."""
        stop_request.listen(True)
        try:
            return super().train()
        finally:
            stop_request.listen(False)

    def after_train(self) -> None:
        """The iterations are over (``model_final.pth`` is written): from here on a SIGTERM stops
        the process at once (exit 75) instead of waiting for the final evaluation, which may take
        longer than a scheduler's grace time; ``--resume`` then only evaluates."""
        stop_request.listen(False)
        if stop_request.requested():
            raise stop_request.TrainingStopped("stopped before the final evaluation")
        super().after_train()

    @classmethod
    def build_model(cls, cfg: CfgNode) -> torch.nn.Module:
        """
        detectron2's, then every process takes the main process's parameters and buffers:
        ``default_setup`` seeds each rank differently, so a randomly initialised model would differ
        between processes (DDP broadcasts at wrap time, but evaluation-only runs never wrap).
        """
        model = super().build_model(cfg)
        if comm.get_world_size() > 1:
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    collectives.broadcast(tensor, src=0)
        return model

    @classmethod
    def build_evaluation_model(
        cls, cfg: CfgNode, weights: str | None = None, *, resume: bool = False
    ) -> tuple[torch.nn.Module, dict]:
        """
        The model an evaluation evaluates, in eval mode, and what the checkpointer returned
        (``(model, checkpoint)``): ``cfg``'s model with ``weights`` (default ``MODEL.WEIGHTS``)
        loaded as training loads them, or with ``resume`` the last checkpoint of ``OUTPUT_DIR``.
        The one way to load a model for evaluation: ``--eval-only``, the fitted protocols, a
        study's pictures (:meth:`load_run_model`) and the benchmarks.
        """
        model = cls.build_model(cfg)
        checkpoint = AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS if weights is None else weights, resume=resume
        )
        model.eval()
        return model, checkpoint

    @classmethod
    def load_run_model(cls, cfg: CfgNode, out_dir: str) -> torch.nn.Module:
        """
        The model a finished run in ``out_dir`` (``cfg``: its ``config.yaml``) evaluated, in eval
        mode: its ``model_final.pth`` when the task trains, else ``MODEL.WEIGHTS`` (a fitted
        protocol evaluates the weights). The RNG is seeded as ``default_setup`` seeds the main
        process, so a random init is the run's own.
        """
        seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
        trained = get_task(cfg).trains(cfg)
        cfg = cfg.clone()
        cfg.defrost()
        cfg.OUTPUT_DIR = out_dir
        model, _ = cls.build_evaluation_model(
            cfg, os.path.join(out_dir, FINAL_MODEL) if trained else None
        )
        return model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(
        cls, cfg: CfgNode, optimizer: torch.optim.Optimizer
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """detectron2's schedules plus "WarmupPolyLR"
        (:mod:`contrastive_det.solver.lr_schedule`)."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Iterable:
        return get_task(cfg).build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Iterable:
        return get_task(cfg).build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        return get_task(cfg).build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def write_eval_results(
        cls, cfg: CfgNode, results: dict, *, checkpoint: dict, config_file: str = ""
    ) -> str | None:
        """
        ``results.json`` of an ``--eval-only`` run (main process only). ``checkpoint`` is what
        the checkpointer's ``resume_or_load`` returned: its ``iteration`` (the last finished
        iteration) + 1 is recorded, the same number a training run records for the same model.
        """
        if not comm.is_main_process():
            return None
        task = get_task(cfg)
        iteration = checkpoint.get("iteration")
        record = build_results(
            cfg,
            normalize_metrics(results, list(cfg.DATASETS.TEST)),
            task=task.name,
            method=task.method(cfg),
            iteration=None if iteration is None else int(iteration) + 1,
            config_file=config_file,
            extra=task.results_extra(cfg),
        )
        path = write_results(cfg.OUTPUT_DIR, record)
        logger.info(f"Results written to {path}")
        return path

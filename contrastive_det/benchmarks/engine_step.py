"""
Training-step benchmarks on CPU or GPU: seconds per iteration of a config, and the overhead of our
Trainer (its hooks, writers, results) over detectron2's bare ``SimpleTrainer``, or over a bare
PyTorch loop (next batch, forward, backward, step), on the same model, optimizer and data, measured
in interleaved blocks so that machine drift affects both sides alike.
"""

import statistics
import time

import torch

from detectron2.engine import SimpleTrainer
from detectron2.utils.events import EventStorage

from ..engine.trainer import Trainer


def _sync(cfg):
    if cfg.MODEL.DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_steps(cfg, step, start_iter, num_iters):
    """Per-iteration wall seconds of ``step(i)`` for i in [start_iter, start_iter + num_iters)."""
    times = []
    for i in range(start_iter, start_iter + num_iters):
        _sync(cfg)
        t0 = time.perf_counter()
        step(i)
        _sync(cfg)
        times.append(time.perf_counter() - t0)
    return times


class StepBench:
    """
    Drives one :class:`Trainer` (with all its hooks), a bare :class:`SimpleTrainer` and a bare
    PyTorch loop; the bare ones share the Trainer's model and optimizer and have their own loader
    over the same data.

    A Trainer step is what detectron2's ``TrainerBase.train`` loop does for one iteration: every
    hook's ``before_step``, ``run_step`` (the wait for the batch included), every hook's
    ``after_step`` (LR schedule, checkpointing, images/s, the PeriodicWriter's writes). Each side
    counts its own iterations, so the Trainer's iterations run 0, 1, 2, ... across its blocks and
    its periodic writers fire exactly as often as in a real run (every ``WRITER_PERIOD``).

    Each side has its own :class:`EventStorage`, and it is detectron2's current storage
    (``get_event_storage()``, which the writers and the models' losses use) while that side steps:
    a storage left current across sides would hand the Trainer's writers the baseline's history,
    with no iteration time and a frozen iteration number.
    """

    WRITER_PERIOD = 20  # the Trainer's PeriodicWriter period (Trainer.build_hooks)

    def __init__(self, cfg):
        self.cfg = cfg
        self.trainer = Trainer(cfg)
        self.bare = SimpleTrainer(
            self.trainer.model, Trainer.build_train_loader(cfg), self.trainer.optimizer
        )
        self._torch_batches = iter(Trainer.build_train_loader(cfg))
        self._next_iter = {"trainer": 0, "bare": 0, "torch": 0}
        self._scaler = None

    def _trainer_step(self, i):
        t = self.trainer
        t.iter = i
        t.before_step()
        t.run_step()
        t.after_step()

    def _bare_step(self, i):
        self.bare.iter = i
        self.bare.run_step()

    def _torch_step(self, i):
        model, optimizer = self.trainer.model, self.trainer.optimizer
        batch = next(self._torch_batches)
        # the bare AMP loop: autocast to float16 and a gradient scaler
        if self.cfg.SOLVER.AMP.ENABLED:
            if self._scaler is None:
                self._scaler = torch.cuda.amp.GradScaler()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = sum(model(batch).values())
            optimizer.zero_grad()
            self._scaler.scale(loss).backward()
            self._scaler.step(optimizer)
            self._scaler.update()
            return
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def run(self, which, num_iters):
        """
        Run the next ``num_iters`` steps of ``"trainer"``, ``"bare"`` or ``"torch"``; return
        per-iteration seconds.
        """
        step = {"trainer": self._trainer_step, "bare": self._bare_step, "torch": self._torch_step}[
            which
        ]
        storage = self.trainer.storage if which == "trainer" else self.bare.storage
        with storage:  # the current storage while this side steps (entered outside the timed steps)
            times = _timed_steps(self.cfg, step, self._next_iter[which], num_iters)
        self._next_iter[which] += num_iters
        return times

    def __enter__(self):
        self.trainer.storage, self.bare.storage = EventStorage(0), EventStorage(0)
        self.trainer.iter = self.trainer.start_iter = 0
        with self.trainer.storage:
            self.trainer.before_train()
        return self

    def __exit__(self, *exc):
        return False


def seconds_per_iter(cfg, warmup, iters):
    """Median seconds per training iteration of ``cfg`` with our Trainer (warm-up excluded)."""
    with StepBench(cfg) as bench:
        bench.run("trainer", warmup)
        times = bench.run("trainer", iters)
    return statistics.median(times), times


def trainer_overhead(cfg, warmup, block, trials, baseline="bare"):
    """
    Alternate blocks of ``block`` iterations: our Trainer, then the ``baseline`` ("bare":
    detectron2's SimpleTrainer; "torch": a plain PyTorch loop), ``trials`` times (after ``warmup``
    iterations of each). The Trainer's timed iterations are consecutive, so with ``block * trials``
    a multiple of :attr:`StepBench.WRITER_PERIOD` they hold exactly one periodic write per period,
    as a real run does; ``ratio_total`` (total Trainer time / total baseline time over the same
    number of iterations) counts them at that rate. A single block holds at most one write, so the
    per-pair ratios (``ratios``, median ``ratio_median``) spread more than ``ratio_total``.

    Returns a dict: ``ratio_total``, ``ratio_median``, ``ratios``, the median seconds per iteration
    of each side and every timed iteration's seconds (``trainer_s``, ``baseline_s``).
    """
    with StepBench(cfg) as bench:
        bench.run("trainer", warmup)
        bench.run(baseline, warmup)
        ours, bare, ratios = [], [], []
        for _ in range(trials):
            a = bench.run("trainer", block)
            b = bench.run(baseline, block)
            ours += a
            bare += b
            ratios.append(statistics.fmean(a) / statistics.fmean(b))
    return {
        "trainer_s_per_iter": statistics.median(ours),
        "bare_s_per_iter": statistics.median(bare),
        "ratio_total": sum(ours) / sum(bare),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "trainer_s": ours,
        "baseline_s": bare,
    }

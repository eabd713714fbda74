"""
The learning-rate schedule of ``SOLVER.LR_SCHEDULER_NAME``: detectron2's schedules, plus
"WarmupPolyLR", the polynomial decay of the segmentation protocols with an optional floor.

Poly at iteration ``t`` of ``T`` (``SOLVER.POLY_LR_POWER`` p, ``SOLVER.POLY_LR_MIN`` m):

* m = 0: ``BASE_LR * (1 - t/T)^p`` (detectron2's DeepLab ``WarmupPolyLR``);
* m > 0: ``(BASE_LR - m) * (1 - t/T)^p + m`` (mmseg's ``PolyLR`` with ``min_lr`` / ``eta_min``, the
  schedule of mmseg's FCN-D8 benchmark: 0.01 -> 1e-4).

At t = 10k of T = 20k with BASE_LR 0.01, p 0.9 the two give 0.00535887 and 0.00540528.

"WarmupMultiStepLR" with a step equal to ``SOLVER.MAX_ITER`` (e.g. ``SOLVER.MAX_ITER 160`` over a
config with ``STEPS (80, 160)``): detectron2 drops the steps above MAX_ITER with a warning but hands
one equal to it to fvcore, which refuses it ("Milestone must be smaller than total number of
updates"). Such a step would change the rate after the last iteration, i.e. never: it is dropped
with a warning, like the steps above MAX_ITER.
"""

import logging
from fvcore.common.param_scheduler import ParamScheduler

from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.solver import build_lr_scheduler as build_d2_lr_scheduler

__all__ = ["PolyParamScheduler", "build_lr_scheduler"]


class PolyParamScheduler(ParamScheduler):
    """Multiplier ``floor + (1 - floor) * (1 - where)^power`` of the base value, ``where`` in [0,
    1]."""

    def __init__(self, power, floor=0.0):
        if power <= 0:
            raise ValueError(f"SOLVER.POLY_LR_POWER must be > 0, got {power}")
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"SOLVER.POLY_LR_MIN / SOLVER.BASE_LR must be in [0, 1], got {floor}")
        self._power = float(power)
        self._floor = float(floor)

    def __call__(self, where):
        return self._floor + (1.0 - self._floor) * (1.0 - where) ** self._power


def build_lr_scheduler(cfg, optimizer):
    """detectron2's ``build_lr_scheduler``, which also knows "WarmupPolyLR" (module docstring)."""
    if cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR" and cfg.SOLVER.MAX_ITER in tuple(
        cfg.SOLVER.STEPS
    ):
        logging.getLogger(__name__).warning(
            "SOLVER.STEPS %s has a step at SOLVER.MAX_ITER %d, after the last iteration: it is "
            "ignored",
            tuple(cfg.SOLVER.STEPS),
            cfg.SOLVER.MAX_ITER,
        )
        cfg = cfg.clone()
        cfg.defrost()
        cfg.SOLVER.STEPS = tuple(s for s in cfg.SOLVER.STEPS if s != cfg.SOLVER.MAX_ITER)
    if cfg.SOLVER.LR_SCHEDULER_NAME != "WarmupPolyLR":
        return build_d2_lr_scheduler(cfg, optimizer)
    if cfg.SOLVER.POLY_LR_MIN < 0 or cfg.SOLVER.POLY_LR_MIN > cfg.SOLVER.BASE_LR:
        raise ValueError(
            f"SOLVER.POLY_LR_MIN must be in [0, SOLVER.BASE_LR = {cfg.SOLVER.BASE_LR}], got "
            f"{cfg.SOLVER.POLY_LR_MIN}"
        )
    floor = cfg.SOLVER.POLY_LR_MIN / cfg.SOLVER.BASE_LR if cfg.SOLVER.BASE_LR > 0 else 0.0
    sched = WarmupParamScheduler(
        PolyParamScheduler(cfg.SOLVER.POLY_LR_POWER, floor),
        cfg.SOLVER.WARMUP_FACTOR,
        min(cfg.SOLVER.WARMUP_ITERS / cfg.SOLVER.MAX_ITER, 1.0),
        cfg.SOLVER.WARMUP_METHOD,
        cfg.SOLVER.RESCALE_INTERVAL,
    )
    return LRMultiplier(optimizer, multiplier=sched, max_iter=cfg.SOLVER.MAX_ITER)

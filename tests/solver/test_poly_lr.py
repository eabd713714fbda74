"""Poly learning rate: detectron2's form and mmseg's form with a floor, told apart at one
iteration."""

import pytest
import torch

from contrastive_det.config import get_cfg
from contrastive_det.solver import build_lr_scheduler


def _lr_at(iteration, **solver):
    cfg = get_cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.MAX_ITER = 20000
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt)
    for _ in range(iteration):
        opt.step()
        sched.step()
    return opt.param_groups[0]["lr"]


def test_poly_without_floor_is_detectron2s():
    assert _lr_at(10000, POLY_LR_MIN=0.0) == pytest.approx(0.01 * 0.5**0.9, rel=1e-9)  # 0.00535887
    assert _lr_at(10000, POLY_LR_MIN=0.0) == pytest.approx(0.00535887, abs=1e-8)


def test_poly_with_floor_is_mmsegs():
    lr = _lr_at(10000, POLY_LR_MIN=1e-4)
    assert lr == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4, rel=1e-9)
    assert lr == pytest.approx(0.00540528, abs=1e-8)
    assert _lr_at(0, POLY_LR_MIN=1e-4) == pytest.approx(0.01)


def test_other_schedules_are_detectron2s_and_bad_floor_is_named():
    assert _lr_at(
        5, LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(3,), MAX_ITER=10
    ) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="SOLVER.POLY_LR_MIN"):
        _lr_at(1, POLY_LR_MIN=0.5)


def test_a_step_at_max_iter_is_ignored_like_the_steps_after_it():
    """MAX_ITER 160 over STEPS (80, 160): one decay at 80 (fvcore alone refuses the step at 160)."""
    lrs = [
        _lr_at(i, LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(80, 160), MAX_ITER=160)
        for i in (79, 80, 159)
    ]
    assert lrs == pytest.approx([0.01, 0.001, 0.001])
    assert _lr_at(
        100, LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(80, 240), MAX_ITER=160
    ) == pytest.approx(0.001)

"""The optimizer named by SOLVER.OPTIMIZER: SGD (detectron2's), LARS or AdamW."""

import torch

from detectron2.solver import build_optimizer as build_d2_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from .lars import LARS


def build_optimizer(cfg, model):
    """
    The optimizer of SOLVER.OPTIMIZER: detectron2's SGD for "SGD"; :class:`LARS` or
    ``torch.optim.AdamW`` (betas SOLVER.ADAM_BETAS, decoupled WEIGHT_DECAY) with detectron2's
    parameter groups (WEIGHT_DECAY_NORM, BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS) for "LARS"/"AdamW".
    """
    name = cfg.SOLVER.OPTIMIZER
    if name == "SGD":
        return build_d2_optimizer(cfg, model)
    if name not in ("LARS", "AdamW"):
        raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD', 'LARS' or 'AdamW', got {name!r}")
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    if name == "AdamW":
        betas = tuple(cfg.SOLVER.ADAM_BETAS)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(
                f"SOLVER.ADAM_BETAS must be two numbers in [0, 1), got {cfg.SOLVER.ADAM_BETAS}"
            )
        adamw = maybe_add_gradient_clipping(cfg, torch.optim.AdamW)
        return adamw(
            params, lr=cfg.SOLVER.BASE_LR, betas=betas, weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )
    lars = maybe_add_gradient_clipping(cfg, LARS)
    return lars(
        params,
        lr=cfg.SOLVER.BASE_LR,
        momentum=cfg.SOLVER.MOMENTUM,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        eta=cfg.SOLVER.LARS_ETA,
    )

"""LARS (You et al. 2017) as used by SimCLR/SupCon, and the optimizer choice of SOLVER.OPTIMIZER (SGD, LARS, AdamW)."""
import torch

from detectron2.solver import build_optimizer as build_d2_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping


class LARS(torch.optim.Optimizer):
    """
    SGD with momentum whose per-tensor step is scaled by the trust ratio
    ``eta * ||w|| / ||g + wd * w||``. Tensors with one dimension (biases, norm parameters) get
    neither the trust ratio nor, when ``exclude_1d`` (SimCLR's choice), weight decay adaptation.
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.001, exclude_1d=True):
        if lr <= 0 or eta <= 0:
            raise ValueError(f"LARS needs lr > 0 and eta > 0, got lr={lr}, eta={eta}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, exclude_1d=exclude_1d))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                adapt = not (group["exclude_1d"] and p.ndim == 1)
                if group["weight_decay"] and adapt:
                    g = g.add(p, alpha=group["weight_decay"])
                if adapt:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm))
                    g = g * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


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
            raise ValueError(f"SOLVER.ADAM_BETAS must be two numbers in [0, 1), got {cfg.SOLVER.ADAM_BETAS}")
        adamw = maybe_add_gradient_clipping(cfg, torch.optim.AdamW)
        return adamw(params, lr=cfg.SOLVER.BASE_LR, betas=betas, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    lars = maybe_add_gradient_clipping(cfg, LARS)
    return lars(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM, weight_decay=cfg.SOLVER.WEIGHT_DECAY, eta=cfg.SOLVER.LARS_ETA)

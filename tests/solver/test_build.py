"""SOLVER.OPTIMIZER: SGD, LARS, AdamW with detectron2's parameter groups."""

import pytest
import torch

from contrastive_det.config import get_cfg
from contrastive_det.solver import LARS, build_optimizer


def _tiny_cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY = 0.01, 0.1
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def test_build_optimizer_choices():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    assert isinstance(build_optimizer(_tiny_cfg(OPTIMIZER="SGD"), model), torch.optim.SGD)
    assert isinstance(build_optimizer(_tiny_cfg(OPTIMIZER="LARS"), model), LARS)
    adamw = build_optimizer(_tiny_cfg(OPTIMIZER="AdamW", ADAM_BETAS=(0.8, 0.99)), model)
    assert isinstance(adamw, torch.optim.AdamW)
    # detectron2's groups: norm parameters get WEIGHT_DECAY_NORM (0.0), the linear weight
    # WEIGHT_DECAY
    decays = {tuple(p.shape): g["weight_decay"] for g in adamw.param_groups for p in g["params"]}
    assert decays[(3, 2)] == 0.1 and decays[(3,)] == 0.0
    assert all(g["betas"] == (0.8, 0.99) and g["lr"] == 0.01 for g in adamw.param_groups)


def _hand_adamw(p, grads, lr, betas, eps, weight_decay):
    """Loshchilov & Hutter's AdamW written out: decoupled decay p <- p - lr*wd*p, then the
    bias-corrected Adam step lr * m_hat / (sqrt(v_hat) + eps)."""
    b1, b2 = betas
    p, m, v = p.clone(), torch.zeros_like(p), torch.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p = p - lr * weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (v_hat.sqrt() + eps)
    return p


@pytest.mark.parametrize("wd_norm", [0.0, 0.05])
def test_adamw_matches_a_hand_written_update_per_parameter_group(wd_norm):
    """Three AdamW steps with fixed gradients against the update written out by hand: decoupled
    WEIGHT_DECAY on the linear weight and bias, WEIGHT_DECAY_NORM on the norm's parameters,
    ADAM_BETAS."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).double()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-1, 1)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    grads = {
        n: [torch.randn(p.shape, generator=gen, dtype=p.dtype) * s for s in (1.0, 0.1, 3.0)]
        for n, p in model.named_parameters()
    }
    # lr 0.01, wd 0.1
    cfg = _tiny_cfg(OPTIMIZER="AdamW", ADAM_BETAS=(0.8, 0.95), WEIGHT_DECAY_NORM=wd_norm)
    opt = build_optimizer(cfg, model)
    for step in range(3):
        for n, p in model.named_parameters():
            p.grad = grads[n][step].clone()
        opt.step()
    for n, p in model.named_parameters():
        wd = wd_norm if n.startswith("1.") else 0.1
        expected = _hand_adamw(
            start[n], grads[n], lr=0.01, betas=(0.8, 0.95), eps=1e-8, weight_decay=wd
        )
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-12, msg=n)
        assert not torch.allclose(expected, start[n])


@pytest.mark.parametrize(
    "solver, match",
    [
        ({"OPTIMIZER": "Adam"}, "'SGD', 'LARS' or 'AdamW', got 'Adam'"),
        (
            {"OPTIMIZER": "AdamW", "ADAM_BETAS": (0.9, 1.0)},
            r"SOLVER.ADAM_BETAS must be two numbers in \[0, 1\)",
        ),
    ],
)
def test_build_optimizer_rejects_bad_choices(solver, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(_tiny_cfg(**solver), torch.nn.Linear(2, 2))

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
    # detectron2's groups: norm parameters get WEIGHT_DECAY_NORM (0.0), the linear weight WEIGHT_DECAY
    decays = {tuple(p.shape): g["weight_decay"] for g in adamw.param_groups for p in g["params"]}
    assert decays[(3, 2)] == 0.1 and decays[(3,)] == 0.0
    assert all(g["betas"] == (0.8, 0.99) and g["lr"] == 0.01 for g in adamw.param_groups)


def test_adamw_step_matches_torch_on_one_weight():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1, bias=False)
    ref = torch.nn.Linear(4, 1, bias=False)
    ref.load_state_dict(model.state_dict())
    opt = build_optimizer(_tiny_cfg(OPTIMIZER="AdamW"), model)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.1)
    x = torch.randn(8, 4)
    for m, o in ((model, opt), (ref, ref_opt)):
        for _ in range(3):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    torch.testing.assert_close(model.weight, ref.weight, rtol=0, atol=0)


@pytest.mark.parametrize("solver, match", [
    ({"OPTIMIZER": "Adam"}, "'SGD', 'LARS' or 'AdamW', got 'Adam'"),
    ({"OPTIMIZER": "AdamW", "ADAM_BETAS": (0.9, 1.0)}, r"SOLVER.ADAM_BETAS must be two numbers in \[0, 1\)"),
])
def test_build_optimizer_rejects_bad_choices(solver, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(_tiny_cfg(**solver), torch.nn.Linear(2, 2))

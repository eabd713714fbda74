import math

import pytest
import torch

from contrastive_det.solver import LARS


def test_one_step_by_hand():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, momentum=0.9, weight_decay=0.5, eta=0.01)
    w.grad = torch.tensor([[0.0, 1.5]])
    b.grad = torch.tensor([2.0])
    opt.step()
    # weight: g = grad + wd*w = [1.5, 3.5]; ||g|| = sqrt(1.5^2 + 3.5^2); trust = 0.01 * 5 / ||g||
    g = torch.tensor([[1.5, 3.5]])
    trust = 0.01 * 5 / math.sqrt(1.5**2 + 3.5**2)
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.1 * trust * g)
    # bias (1-D): plain SGD step, no weight decay, no trust ratio
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))
    # second step uses momentum: buffer = 0.9 * previous + new
    w.grad = torch.tensor([[0.0, 0.0]])
    b.grad = torch.tensor([0.0])
    before = b.detach().clone()
    opt.step()
    torch.testing.assert_close(b.detach(), before - 0.1 * 0.9 * 2.0)


def test_zero_weights_fall_back_to_trust_one():
    w = torch.nn.Parameter(torch.zeros(2, 2))
    opt = LARS([w], lr=1.0, momentum=0.0, eta=0.001)
    w.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(w.detach(), -torch.ones(2, 2))


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="lr > 0"):
        LARS([torch.nn.Parameter(torch.zeros(1))], lr=0.0)


def _tiny_cfg(**solver):
    from contrastive_det.config import get_cfg

    cfg = get_cfg()
    cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY = 0.01, 0.1
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def test_build_optimizer_choices():
    from contrastive_det.solver.lars import build_optimizer

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
    from contrastive_det.solver.lars import build_optimizer

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
    from contrastive_det.solver.lars import build_optimizer

    with pytest.raises(ValueError, match=match):
        build_optimizer(_tiny_cfg(**solver), torch.nn.Linear(2, 2))

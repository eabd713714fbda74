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

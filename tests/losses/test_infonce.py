"""InfoNCE (MoCo): hand value, loop reference, invariances, gradcheck, gradient flow into k."""

import math

import pytest
import torch
from torch.nn import functional as F

from contrastive_det.losses import infonce_loss


def _unit(n, d, gen):
    return F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)


def _ref_infonce(q, k, queue, t):
    total = 0.0
    for i in range(q.shape[0]):
        pos = torch.dot(q[i], k[i]) / t
        denom = torch.exp(pos)
        for j in range(queue.shape[0]):
            denom = denom + torch.exp(torch.dot(q[i], queue[j]) / t)
        total = total - (pos - torch.log(denom))
    return total / q.shape[0]


def test_hand_value():
    # q = [(1,0), (0,1)], k = [(1,0), (.6,.8)], queue = [(0,1), (-1,0), (.6,-.8)], T = 0.5
    # row 0: pos 1/.5 = 2; negs 0, -2, 1.2   -> -2 + log(e^2 + e^0 + e^-2 + e^1.2)
    # row 1: pos .8/.5 = 1.6; negs 2, 0, -1.6 -> -1.6 + log(e^1.6 + e^2 + e^0 + e^-1.6)
    e = math.exp
    expected = (
        (-2 + math.log(e(2) + 1 + e(-2) + e(1.2))) + (-1.6 + math.log(e(1.6) + e(2) + 1 + e(-1.6)))
    ) / 2
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.6, -0.8]], dtype=torch.float64)
    loss = infonce_loss(q, k, queue, temperature=0.5)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_matches_loop_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    n, kq = [1, 2, 4, 6, 3][seed], [0, 1, 5, 8, 7][seed]
    t = [0.2, 0.07, 0.5, 1.0, 0.2][seed]
    q, k, queue = _unit(n, 5, gen), _unit(n, 5, gen), _unit(kq, 5, gen)
    assert infonce_loss(q, k, queue, t).item() == pytest.approx(
        _ref_infonce(q, k, queue, t).item(), rel=1e-10, abs=1e-12
    )


def test_default_temperature_and_empty_queue():
    gen = torch.Generator().manual_seed(1)
    q, k, queue = _unit(3, 4, gen), _unit(3, 4, gen), _unit(6, 4, gen)
    assert infonce_loss(q, k, queue).item() == pytest.approx(
        _ref_infonce(q, k, queue, 0.2).item(), rel=1e-10
    )
    # only the positive
    assert infonce_loss(q, k, queue[:0]).item() == pytest.approx(0.0, abs=1e-12)


def test_permutation_invariance():
    gen = torch.Generator().manual_seed(2)
    q, k, queue = _unit(6, 5, gen), _unit(6, 5, gen), _unit(8, 5, gen)
    base = infonce_loss(q, k, queue, 0.2).item()
    pb, pq = torch.randperm(6, generator=gen), torch.randperm(8, generator=gen)
    assert infonce_loss(q[pb], k[pb], queue[pq], 0.2).item() == pytest.approx(base, rel=1e-12)
    assert infonce_loss(q, k[torch.roll(torch.arange(6), 1)], queue, 0.2).item() != pytest.approx(
        base, rel=1e-6
    )


def test_gradient_flows_into_keys_and_matches_reference():
    gen = torch.Generator().manual_seed(4)
    q, k, queue = _unit(4, 3, gen), _unit(4, 3, gen), _unit(5, 3, gen)
    args = [x.clone().requires_grad_(True) for x in (q, k, queue)]
    infonce_loss(*args, 0.2).backward()
    ref_args = [x.clone().requires_grad_(True) for x in (q, k, queue)]
    _ref_infonce(*ref_args, 0.2).backward()
    for a, r in zip(args, ref_args):
        assert a.grad is not None and a.grad.abs().sum() > 0  # k is not detached inside
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-10, atol=1e-12)


def test_gradcheck():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    queue = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: infonce_loss(a, b, c, 0.2), (q, k, queue))

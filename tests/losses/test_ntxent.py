"""NT-Xent (SimCLR): hand value, loop reference, invariances, stability, gradcheck."""

import math

import pytest
import torch
from torch.nn import functional as F

from contrastive_det.losses import nt_xent_loss


def _unit(n, d, gen):
    return F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)


def _ref_nt_xent(z1, z2, t):
    """Loop reference on torch scalars: 2N anchors, positive = other view, denominator = all but
    self."""
    n = z1.shape[0]
    z = [z1[i] for i in range(n)] + [z2[i] for i in range(n)]
    total = 0.0
    for a in range(2 * n):
        p = a + n if a < n else a - n
        denom = 0.0
        for j in range(2 * n):
            if j != a:
                denom = denom + torch.exp(torch.dot(z[a], z[j]) / t)
        total = total - (torch.dot(z[a], z[p]) / t - torch.log(denom))
    return total / (2 * n)


def test_hand_value():
    # a=(1,0), b=(0,1) (view 1); c=(.6,.8), d=(.8,-.6) (view 2); T=0.5.
    # dots: ab=0 ac=.6 ad=.8 bc=.8 bd=-.6 cd=0 -> logits x2: ac=1.2 ad=1.6 bc=1.6 bd=-1.2, ab=cd=0
    # anchor a: pos c -> -1.2 + log(e^1.2 + e^0 + e^1.6)
    # anchor b: pos d -> 1.2 + log(e^0 + e^1.6 + e^-1.2)
    # anchor c: pos a -> -1.2 + log(e^1.2 + e^1.6 + e^0)
    # anchor d: pos b -> 1.2 + log(e^1.6 + e^0 + e^-1.2)
    e = math.exp
    la = -1.2 + math.log(e(1.2) + 1 + e(1.6))
    lb = 1.2 + math.log(1 + e(1.6) + e(-1.2))
    lc = -1.2 + math.log(e(1.2) + e(1.6) + 1)
    ld = 1.2 + math.log(e(1.6) + 1 + e(-1.2))
    expected = (la + lb + lc + ld) / 4
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z2 = torch.tensor([[0.6, 0.8], [0.8, -0.6]], dtype=torch.float64)
    loss = nt_xent_loss(z1, z2, temperature=0.5)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_matches_loop_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 1 + seed  # N = 1..5
    t = [0.1, 0.2, 0.5, 1.0, 0.07][seed]
    z1, z2 = _unit(n, 4, gen), _unit(n, 4, gen)
    assert nt_xent_loss(z1, z2, t).item() == pytest.approx(
        _ref_nt_xent(z1, z2, t).item(), rel=1e-10
    )


def test_default_temperature_is_half():
    gen = torch.Generator().manual_seed(11)
    z1, z2 = _unit(3, 5, gen), _unit(3, 5, gen)
    assert nt_xent_loss(z1, z2).item() == pytest.approx(_ref_nt_xent(z1, z2, 0.5).item(), rel=1e-10)


def test_permutation_and_view_swap_invariance():
    gen = torch.Generator().manual_seed(3)
    z1, z2 = _unit(6, 5, gen), _unit(6, 5, gen)
    base = nt_xent_loss(z1, z2, 0.2)
    perm = torch.randperm(6, generator=gen)
    assert nt_xent_loss(z1[perm], z2[perm], 0.2).item() == pytest.approx(base.item(), rel=1e-12)
    assert nt_xent_loss(z2, z1, 0.2).item() == pytest.approx(base.item(), rel=1e-12)
    # pairing matters: a different (non-consistent) permutation of one view changes the loss
    assert nt_xent_loss(z1, z2[torch.roll(torch.arange(6), 1)], 0.2).item() != pytest.approx(
        base.item(), rel=1e-6
    )


def test_low_temperature_float32_is_finite_and_accurate():
    # logits up to 1/0.01 = 100: exp(100) overflows float32, so a naive softmax would give inf/NaN
    gen = torch.Generator().manual_seed(5)
    z1, z2 = _unit(4, 3, gen), _unit(4, 3, gen)
    z1[1] = z2[1]  # one exact positive pair with logit 100
    loss32 = nt_xent_loss(z1.float(), z2.float(), 0.01)
    assert loss32.dtype == torch.float32 and torch.isfinite(loss32)
    assert loss32.item() == pytest.approx(_ref_nt_xent(z1, z2, 0.01).item(), rel=1e-5)


def test_single_pair_has_zero_loss_and_finite_grad():
    # N=1: the only other entry is the positive -> log_softmax = 0
    z1 = torch.tensor([[0.6, 0.8]], dtype=torch.float64, requires_grad=True)
    z2 = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = nt_xent_loss(z1, z2, 0.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


def test_gradcheck():
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent_loss(a, b, 0.5), (z1, z2))

"""Core-tuning's pure parts (Zhang et al., NeurIPS 2021): focal SupCon, soft-target CE, hard pair
mining, mixup with soft targets and the soft-label ids that replace the authors' ``10**arange(C)``
encoding."""

import math

import pytest
import torch
from torch.nn import functional as F

from contrastive_det.losses import (
    core_tuning_mixup,
    focal_supcon_loss,
    hard_pair_indices,
    mix_rows,
    mixed_soft_targets,
    soft_label_ids,
    soft_target_cross_entropy,
)


def _unit(shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def _ref_focal(z, is_pos, t, normalization="positives"):
    """Loop reference. is_pos(i, j) -> bool. p_ij = exp(z_i.z_j/t) / sum_{k != i} exp(z_i.z_k/t);
    l_i = -sum_{j pos} (1 - p_ij) log p_ij / (|P_i| or N); mean over anchors with a positive."""
    n = z.shape[0]
    per_anchor = []
    for i in range(n):
        denom = 0.0
        for k in range(n):
            if k != i:
                denom = denom + torch.exp(torch.dot(z[i], z[k]) / t)
        terms = []
        for j in range(n):
            if j != i and is_pos(i, j):
                p = torch.exp(torch.dot(z[i], z[j]) / t) / denom
                terms.append((1 - p) * torch.log(p))
        if terms:
            per_anchor.append(-sum(terms) / (len(terms) if normalization == "positives" else n))
    if not per_anchor:
        return z.sum() * 0
    return sum(per_anchor) / len(per_anchor)


def _ref_by_labels(z, labels, t, normalization="positives"):
    labels = [int(x) for x in labels]
    return _ref_focal(z, lambda i, j: labels[i] == labels[j], t, normalization)


# -------------------------------------------------------------------------------------------
# focal_supcon_loss
def test_focal_supcon_hand_value():
    # a=(1,0) L0, c=(.6,.8) L0, b=(0,1) L1, d=(.8,-.6) L0; T = .5, so logits = 2 * dot:
    #   a.c=.6 -> 1.2, a.b=0 -> 0, a.d=.8 -> 1.6, c.b=.8 -> 1.6, c.d=0 -> 0, b.d=-.6 -> -1.2
    # anchor a: Z = e^1.2 + e^0 + e^1.6; positives c (1.2), d (1.6)
    # anchor c: Z = e^1.2 (a) + e^1.6 (b) + e^0 (d); positives a (1.2), d (0)
    # anchor d: Z = e^1.6 (a) + e^0 (c) + e^-1.2 (b); positives a (1.6), c (0)
    # anchor b: no positive -> excluded
    # term(s, Z) = (1 - e^s / Z) * (s - log Z); l = -(sum of terms) / n_i, n_i = 2 (positives) or 4
    # (batch)
    e = math.exp

    def term(s, z):
        return (1 - e(s) / z) * (s - math.log(z))

    za, zc, zd = e(1.2) + 1 + e(1.6), e(1.2) + e(1.6) + 1, e(1.6) + 1 + e(-1.2)
    sums = [term(1.2, za) + term(1.6, za), term(1.2, zc) + term(0, zc), term(1.6, zd) + term(0, zd)]
    expected_pos = sum(-s / 2 for s in sums) / 3
    expected_batch = sum(-s / 4 for s in sums) / 3
    z = torch.tensor(
        [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, -0.6]], dtype=torch.float64, requires_grad=True
    )
    labels = torch.tensor([0, 0, 1, 0])
    loss = focal_supcon_loss(z, labels, temperature=0.5)
    assert loss.item() == pytest.approx(expected_pos, rel=1e-12)
    assert focal_supcon_loss(z, labels, 0.5, normalization="batch").item() == pytest.approx(
        expected_batch, rel=1e-12
    )
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad[:2].abs().sum() > 0
    # the focal weight matters: without it anchor a's loss would be plain SupCon, -(mean of log p)
    plain_a = -((1.2 - math.log(za)) + (1.6 - math.log(za))) / 2
    assert -sums[0] / 2 != pytest.approx(plain_a, rel=1e-3)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("normalization", ["positives", "batch"])
def test_focal_supcon_matches_loop_reference(seed, normalization):
    gen = torch.Generator().manual_seed(seed)
    n, t = [3, 6, 9, 12][seed], [0.07, 0.1, 0.5, 0.2][seed]
    z = _unit((n, 5), gen)
    labels = torch.randint(0, 3, (n,), generator=gen)
    got = focal_supcon_loss(z, labels, t, normalization=normalization)
    ref = _ref_by_labels(z, labels, t, normalization)
    assert got.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)


def test_focal_supcon_gradients_match_loop_reference():
    gen = torch.Generator().manual_seed(7)
    z = _unit((6, 3), gen)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    for normalization in ("positives", "batch"):
        a = z.clone().requires_grad_(True)
        focal_supcon_loss(a, labels, 0.2, normalization=normalization).backward()
        r = z.clone().requires_grad_(True)
        _ref_by_labels(r, labels, 0.2, normalization).backward()
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-10, atol=1e-12)


def test_focal_supcon_normalizations_differ_by_positive_count():
    # every anchor has exactly k = 2 positives (3 samples per class): batch = positives * k / N
    gen = torch.Generator().manual_seed(5)
    z = _unit((9, 4), gen)
    labels = torch.tensor([0, 1, 2] * 3)
    pos = focal_supcon_loss(z, labels, 0.1).item()
    assert focal_supcon_loss(z, labels, 0.1, normalization="batch").item() == pytest.approx(
        pos * 2 / 9, rel=1e-12
    )


def test_focal_supcon_batch_order_invariance():
    gen = torch.Generator().manual_seed(9)
    z = _unit((10, 4), gen)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0, 2, 4])
    perm = torch.randperm(10, generator=gen)
    for normalization in ("positives", "batch"):
        base = focal_supcon_loss(z, labels, 0.1, normalization=normalization).item()
        assert focal_supcon_loss(
            z[perm], labels[perm], 0.1, normalization=normalization
        ).item() == pytest.approx(base, rel=1e-12)
        # labels permuted inconsistently -> another loss
        assert focal_supcon_loss(
            z, labels[perm], 0.1, normalization=normalization
        ).item() != pytest.approx(base, rel=1e-6)


def test_focal_supcon_anchor_without_positive_no_nan():
    gen = torch.Generator().manual_seed(1)
    z = _unit((5, 4), gen)
    # anchor 2 has no positive: excluded, but still a negative of the others
    labels = torch.tensor([0, 0, 1, 2, 2])
    zz = z.clone().requires_grad_(True)
    loss = focal_supcon_loss(zz, labels, 0.07)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zz.grad).all()
    assert loss.item() == pytest.approx(_ref_by_labels(z, labels, 0.07).item(), rel=1e-10)
    # no anchor with a positive at all (unique labels; a single row) -> 0, connected, zero gradients
    for zs in (_unit((4, 4), gen), _unit((1, 4), gen)):
        zz = zs.clone().requires_grad_(True)
        loss = focal_supcon_loss(zz, torch.arange(zs.shape[0]), 0.07)
        assert loss.requires_grad and loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(zz.grad).all() and zz.grad.abs().sum() == 0


def test_focal_supcon_float32_low_temperature_and_autocast():
    gen = torch.Generator().manual_seed(2)
    z = _unit((6, 3), gen)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    f = z.float().requires_grad_(True)
    loss = focal_supcon_loss(f, labels, temperature=0.005)  # logits up to 200
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(f.grad).all()
    assert loss.item() == pytest.approx(_ref_by_labels(z, labels, 0.005).item(), rel=1e-4, abs=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = focal_supcon_loss(z.to(torch.bfloat16), labels, 0.1)
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_focal_supcon_gradcheck():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1, 2])
    for normalization in ("positives", "batch"):
        assert torch.autograd.gradcheck(
            lambda x, n=normalization: focal_supcon_loss(x, labels, 0.5, normalization=n), (z,)
        )


def test_focal_supcon_rejects_bad_arguments():
    with pytest.raises(ValueError):
        focal_supcon_loss(torch.zeros(2, 2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        focal_supcon_loss(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError):
        focal_supcon_loss(torch.zeros(2, 3), torch.tensor([0, 1]), normalization="mean")


# -----------------------------------------------------------------------------------
# soft_target_cross_entropy
def test_soft_target_cross_entropy_hand_value_and_reference():
    # row 1: logits (1, 0, 0), targets (.5, .5, 0): log_softmax = (1 - L, -L, -L), L = log(e + 2)
    #        loss = -(.5 (1 - L) + .5 (-L)) = L - .5
    # row 2: logits (0, 0, 0) -> log_softmax = -log 3 everywhere; targets sum to 1 -> loss = log 3
    expected = ((math.log(math.e + 2) - 0.5) + math.log(3)) / 2
    logits = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True
    )
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]], dtype=torch.float64)
    loss = soft_target_cross_entropy(logits, targets)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=gen)
    y = torch.randint(0, 5, (7,), generator=gen)
    assert soft_target_cross_entropy(x, F.one_hot(y, 5).float()).item() == pytest.approx(
        F.cross_entropy(x, y).item(), rel=1e-6
    )
    soft = torch.softmax(torch.randn(7, 5, generator=gen), dim=1)
    assert soft_target_cross_entropy(x, soft).item() == pytest.approx(
        F.cross_entropy(x, soft).item(), rel=1e-6
    )
    with pytest.raises(ValueError):
        soft_target_cross_entropy(x, soft[:, :4])


# ------------------------------------------------------------------------------------------
# hard_pair_indices
def test_hard_pair_indices_hand_value():
    # f0=(1,0) L0, f1=(.8,.6) L0, f2=(0,1) L0, f3=(.6,.8) L1, f4=(-1,0) L2
    # anchor 0: same {1: .8, 2: 0} -> least similar 2; other {3: .6, 4: -1} -> most similar 3
    # anchor 1: same {0: .8, 2: .6} -> 2;             other {3: .96, 4: -.8} -> 3
    # anchor 2: same {0: 0, 1: .6} -> 0;              other {3: .8, 4: 0} -> 3
    # anchor 3: no same-class partner -> itself;      other {0: .6, 1: .96, 2: .8, 4: -.6} -> 1
    # anchor 4: -> itself;                            other {0: -1, 1: -.8, 2: 0, 3: -.6} -> 2
    f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1, 2])
    pos, neg = hard_pair_indices(f, labels)
    assert pos.tolist() == [2, 2, 0, 3, 4] and neg.tolist() == [3, 3, 3, 1, 2]
    # cosine: scaling rows does not change anything; no gradient is recorded
    scaled = (f * torch.tensor([[3.0], [0.5], [2.0], [7.0], [0.1]])).requires_grad_(True)
    pos2, neg2 = hard_pair_indices(scaled, labels)
    assert (
        pos2.tolist() == pos.tolist() and neg2.tolist() == neg.tolist() and not pos2.requires_grad
    )
    # a single class: no negative anywhere -> every anchor is its own hardest negative
    _, neg = hard_pair_indices(f, torch.zeros(5, dtype=torch.long))
    assert neg.tolist() == list(range(5))


# ------------------------------------------------------------------------------------------- mixup
# and targets
def test_mixed_soft_targets_and_mix_rows():
    a, b = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[5.0, 6.0], [7.0, 8.0]])
    torch.testing.assert_close(
        mix_rows(a, b, torch.tensor([0.25, 1.0])), torch.tensor([[2.0, 3.0], [7.0, 8.0]])
    )
    t = mixed_soft_targets(
        torch.tensor([0, 2, 1]), torch.tensor([1, 2, 0]), torch.tensor([0.8, 0.3, 0.1]), 3
    )
    torch.testing.assert_close(t, torch.tensor([[0.2, 0.8, 0.0], [0.0, 0.0, 1.0], [0.1, 0.9, 0.0]]))
    # the same class on both sides gives exactly the one-hot row, whatever the weight
    w = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    same = mixed_soft_targets(torch.full((1000,), 4), torch.full((1000,), 4), w, 397)
    assert torch.equal(same, F.one_hot(torch.full((1000,), 4), 397).float())


def test_core_tuning_mixup_hand_value():
    # f0=(1,0) L0, f1=(0,1) L1, f2=(.6,.8) L1; perm (2, 0, 1); shuffled weights (.8, .9, .8);
    # positive weights (.5, .25, 1)
    # mixed negatives: .2 f0 + .8 f2 = (.68, .64), y = .2 e0 + .8 e1
    #                  .1 f1 + .9 f0 = (.9, .1),   y = .9 e0 + .1 e1
    #                  .2 f2 + .8 f1 = (.12, .96), y = e1 (both class 1)
    # hard pairs: anchor 0 -> hp itself, hn 2 (cos .6 > 0); anchor 1 -> hp 2, hn 0; anchor 2 -> hp
    # 1, hn 0 mixed positives: .5 f0 + .5 f2 = (.8, .4),     y = .5 e0 + .5 e1
    #                  .25 f2 + .75 f0 = (.9, .2),   y = .75 e0 + .25 e1
    #                  1 f1 + 0 f0 = (0, 1),         y = e1
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 1])
    feats, targets = core_tuning_mixup(
        f,
        labels,
        3,
        torch.tensor([2, 0, 1]),
        torch.tensor([0.8, 0.9, 0.8]),
        torch.tensor([0.5, 0.25, 1.0]),
    )
    expected_f = [
        [1, 0],
        [0, 1],
        [0.6, 0.8],
        [0.68, 0.64],
        [0.9, 0.1],
        [0.12, 0.96],
        [0.8, 0.4],
        [0.9, 0.2],
        [0, 1],
    ]
    torch.testing.assert_close(feats, torch.tensor(expected_f, dtype=torch.float64))
    e0, e1 = [1, 0, 0], [0, 1, 0]
    expected_y = [e0, e1, e1, [0.2, 0.8, 0], [0.9, 0.1, 0], e1, [0.5, 0.5, 0], [0.75, 0.25, 0], e1]
    torch.testing.assert_close(targets, torch.tensor(expected_y, dtype=torch.float64))
    ids = soft_label_ids(targets).tolist()
    assert len(set(ids)) == 6 and ids[1] == ids[2] == ids[5] == ids[8]
    # every block stays attached to the features, the originals included (the authors' code detaches
    # them)
    feats[:3].sum().backward()
    torch.testing.assert_close(f.grad, torch.ones_like(f))


def test_core_tuning_mixup_rejects_bad_sizes():
    f, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    w = torch.full((4,), 0.8)
    with pytest.raises(ValueError):
        core_tuning_mixup(f, y[:3], 2, torch.arange(4), w, w)
    with pytest.raises(ValueError):
        core_tuning_mixup(f, y, 2, torch.arange(3), w, w)
    with pytest.raises(ValueError):
        core_tuning_mixup(f[0], y, 2, torch.arange(4), w, w)


@pytest.mark.parametrize("num_classes", [100, 397])
def test_many_classes_match_a_reference_built_from_one_hot_rows(num_classes):
    # labels among the highest class ids, where 10**arange(C) is far beyond int64 (10**19 > 2**63)
    gen = torch.Generator().manual_seed(num_classes)
    n = 40
    f = torch.randn(n, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(num_classes - 6, num_classes, (n,), generator=gen)
    perm = torch.randperm(n, generator=gen)
    shuffled = torch.rand(n, generator=gen).clamp_min(0.8)  # most exactly 0.8: shared soft rows
    positive = torch.rand(n, generator=gen)
    feats, targets = core_tuning_mixup(f, labels, num_classes, perm, shuffled, positive)
    assert targets.shape == (3 * n, num_classes)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(3 * n, dtype=torch.float64))
    assert torch.equal(targets[:n], F.one_hot(labels, num_classes).double())

    # reference: rows built one by one as (1 - w) onehot(a) + w onehot(b), grouped by their exact
    # values
    rows = []
    for i in range(n):
        j = int(perm[i])
        rows.append(_one_hot_mix(labels[i], labels[j], shuffled[i], num_classes))
    hp, hn = hard_pair_indices(f, labels)
    for i in range(n):
        rows.append(_one_hot_mix(labels[hn[i]], labels[hp[i]], positive[i], num_classes))
    rows = [tuple(F.one_hot(labels[i], num_classes).double().tolist()) for i in range(n)] + rows
    torch.testing.assert_close(targets, torch.tensor(rows, dtype=torch.float64))
    groups = {}
    ref_ids = [groups.setdefault(r, len(groups)) for r in rows]
    ids = soft_label_ids(targets).tolist()
    assert all(
        (ids[i] == ids[j]) == (ref_ids[i] == ref_ids[j]) for i in range(3 * n) for j in range(3 * n)
    )
    # there are shared rows (otherwise the check above is weak)
    assert len(set(ref_ids)) < 3 * n - n // 2

    z = F.normalize(torch.randn(3 * n, 8, generator=gen, dtype=torch.float64), dim=1)
    for normalization in ("positives", "batch"):
        got = focal_supcon_loss(z, soft_label_ids(targets), 0.07, normalization=normalization)
        ref = _ref_focal(z, lambda i, j: rows[i] == rows[j], 0.07, normalization)
        assert got.item() == pytest.approx(ref.item(), rel=1e-10)


def _one_hot_mix(a, b, w, num_classes):
    if int(a) == int(b):
        return tuple(F.one_hot(a, num_classes).double().tolist())
    row = [0.0] * num_classes
    row[int(a)] += 1.0 - float(w)
    row[int(b)] += float(w)
    return tuple(row)


def test_soft_label_ids_groups_identical_rows_only():
    t = torch.tensor(
        [[1.0, 0.0, 0.0], [0.2, 0.8, 0.0], [1.0, 0.0, 0.0], [0.2, 0.0, 0.8], [0.2, 0.8, 0.0]]
    )
    ids = soft_label_ids(t).tolist()
    assert ids[0] == ids[2] and ids[1] == ids[4] and len(set(ids)) == 3
    # one-hot rows induce exactly the partition of the labels
    labels = torch.tensor([396, 3, 396, 250, 3, 0])
    ids = soft_label_ids(F.one_hot(labels, 397).float())
    assert torch.equal(ids[:, None] == ids[None, :], labels[:, None] == labels[None, :])
    # rows that differ only far beyond float32 resolution of 10**arange are still told apart
    a = mixed_soft_targets(
        torch.tensor([0, 1]), torch.tensor([396, 396]), torch.tensor([0.8, 0.8]), 397
    )
    assert soft_label_ids(a).unique().numel() == 2
    with pytest.raises(ValueError):
        soft_label_ids(torch.zeros(3))

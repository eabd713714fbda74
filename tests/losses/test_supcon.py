"""SupCon (Khosla et al., SupContrast semantics) and the queue SupCon term of SupCon+SelfSupCon
(Islam et al.)."""

import math

import pytest
import torch
from torch.nn import functional as F

from contrastive_det.losses import nt_xent_loss, queue_supcon_loss, supcon_loss


def _unit(shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def _ref_supcon(features, labels=None, mask=None, t=0.07, mode="all", base_t=0.07):
    """Loop reference. Contrast entries in view-major order (view v, sample s); an anchor is a
    contrast entry (all of view 0 in mode "one"); self excluded; anchors without positives skipped;
    mean over the rest."""
    bsz, n_views = features.shape[0], features.shape[1]
    entries = [(v, s) for v in range(n_views) for s in range(bsz)]
    anchors = entries if mode == "all" else entries[:bsz]

    def is_pos(sa, sc):
        if labels is not None:
            return int(labels[sa]) == int(labels[sc])
        if mask is not None:
            return bool(mask[sa][sc])
        return sa == sc

    per_anchor = []
    for a_idx, (va, sa) in enumerate(anchors):
        fa = features[sa, va]
        denom = 0.0
        for c_idx, (vc, sc) in enumerate(entries):
            if c_idx != a_idx:
                denom = denom + torch.exp(torch.dot(fa, features[sc, vc]) / t)
        log_probs = []
        for c_idx, (vc, sc) in enumerate(entries):
            if c_idx != a_idx and is_pos(sa, sc):
                log_probs.append(torch.dot(fa, features[sc, vc]) / t - torch.log(denom))
        if log_probs:
            per_anchor.append(-(t / base_t) * sum(log_probs) / len(log_probs))
    if not per_anchor:
        return features.sum() * 0
    return sum(per_anchor) / len(per_anchor)


def _ref_queue_supcon(q, q_labels, keys, key_labels, queue, queue_labels, t):
    memory = [keys[j] for j in range(keys.shape[0])] + [queue[j] for j in range(queue.shape[0])]
    mem_labels = [int(x) for x in key_labels] + [int(x) for x in queue_labels]
    per_anchor = []
    for i in range(q.shape[0]):
        denom = 0.0
        for m in memory:
            denom = denom + torch.exp(torch.dot(q[i], m) / t)
        log_probs = [
            torch.dot(q[i], m) / t - torch.log(denom)
            for m, lab in zip(memory, mem_labels)
            if lab == int(q_labels[i])
        ]
        if log_probs:
            per_anchor.append(-sum(log_probs) / len(log_probs))
    return sum(per_anchor) / len(per_anchor) if per_anchor else q.sum() * 0


# -----------------------------------------------------------------------------------------------
# supcon_loss
def test_supcon_hand_value_with_anchor_without_positive():
    # features (n_views=1): a=(1,0) label 0, c=(.6,.8) label 0, b=(0,1) label 1; T=.5, base_T=.25 ->
    # scale 2 anchor a: pos c (logit 1.2), neg b (0)   -> lp = 1.2 - log(e^1.2 + e^0)
    # anchor c: pos a (1.2), neg b (.8/.5=1.6) -> lp = 1.2 - log(e^1.2 + e^1.6)
    # anchor b: no positive -> excluded from the mean
    e = math.exp
    lp_a = 1.2 - math.log(e(1.2) + 1)
    lp_c = 1.2 - math.log(e(1.2) + e(1.6))
    expected = (-2 * lp_a - 2 * lp_c) / 2
    feats = torch.tensor(
        [[[1.0, 0.0]], [[0.6, 0.8]], [[0.0, 1.0]]], dtype=torch.float64, requires_grad=True
    )
    loss = supcon_loss(
        feats, labels=torch.tensor([0, 0, 1]), temperature=0.5, base_temperature=0.25
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_supcon_hand_value_contrast_mode_one():
    # bsz=2, n_views=2, labels=None: sample 0 views (a, c), sample 1 views (b, d); a=(1,0) b=(0,1)
    # c=(.6,.8) d=(.8,-.6); T = base_T = .5. Anchors: a, b (view 0); contrast: a, b, c, d.
    # anchor a: others b 0, c 1.2 (pos), d 1.6 -> -1.2 + log(1 + e^1.2 + e^1.6)
    # anchor b: others a 0, c 1.6, d -1.2 (pos) -> 1.2 + log(1 + e^1.6 + e^-1.2)
    e = math.exp
    expected = ((-1.2 + math.log(1 + e(1.2) + e(1.6))) + (1.2 + math.log(1 + e(1.6) + e(-1.2)))) / 2
    feats = torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.8, -0.6]]], dtype=torch.float64)
    loss = supcon_loss(feats, temperature=0.5, contrast_mode="one", base_temperature=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["all", "one"])
def test_supcon_matches_loop_reference(seed, mode):
    gen = torch.Generator().manual_seed(seed)
    bsz, n_views = [2, 4, 6, 5][seed], [2, 1, 3, 2][seed]
    t, base_t = [0.07, 0.1, 0.5, 0.2][seed], [0.07, 0.07, 0.3, 0.2][seed]
    feats = _unit((bsz, n_views, 4), gen)
    labels = torch.randint(0, 3, (bsz,), generator=gen)
    got = supcon_loss(
        feats, labels=labels, temperature=t, contrast_mode=mode, base_temperature=base_t
    )
    ref = _ref_supcon(feats, labels=labels, t=t, mode=mode, base_t=base_t)
    assert got.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    # unsupervised (labels=None) too
    got_u = supcon_loss(feats, temperature=t, contrast_mode=mode, base_temperature=base_t)
    ref_u = _ref_supcon(feats, t=t, mode=mode, base_t=base_t)
    assert got_u.item() == pytest.approx(ref_u.item(), rel=1e-10, abs=1e-12)


def test_supcon_gradients_match_loop_reference():
    gen = torch.Generator().manual_seed(7)
    feats = _unit((4, 2, 3), gen)
    labels = torch.tensor([0, 1, 0, 2])
    a = feats.clone().requires_grad_(True)
    supcon_loss(a, labels=labels, temperature=0.2, base_temperature=0.1).backward()
    r = feats.clone().requires_grad_(True)
    _ref_supcon(r, labels=labels, t=0.2, base_t=0.1).backward()
    torch.testing.assert_close(a.grad, r.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_supcon_without_labels_equals_nt_xent(seed):
    gen = torch.Generator().manual_seed(seed)
    n = [2, 4, 6][seed]
    z1, z2 = _unit((n, 5), gen), _unit((n, 5), gen)
    for t in (0.07, 0.5):
        s = supcon_loss(torch.stack([z1, z2], dim=1), temperature=t, base_temperature=t)
        assert s.item() == pytest.approx(nt_xent_loss(z1, z2, t).item(), rel=1e-12)
    # with base_T != T the loss is scaled by T / base_T
    s = supcon_loss(torch.stack([z1, z2], dim=1), temperature=0.5, base_temperature=0.07)
    assert s.item() == pytest.approx(nt_xent_loss(z1, z2, 0.5).item() * 0.5 / 0.07, rel=1e-12)


def test_supcon_distinct_labels_equal_no_labels_and_mask_equals_labels():
    gen = torch.Generator().manual_seed(3)
    feats = _unit((5, 2, 4), gen)
    none = supcon_loss(feats, temperature=0.1)
    distinct = supcon_loss(feats, labels=torch.tensor([4, 0, 3, 1, 2]), temperature=0.1)
    assert distinct.item() == pytest.approx(none.item(), rel=1e-12)

    labels = torch.tensor([0, 1, 0, 1, 2])
    by_labels = supcon_loss(feats, labels=labels, temperature=0.1)
    assert by_labels.item() != pytest.approx(none.item(), rel=1e-6)  # the labels matter
    label_mask = labels[:, None] == labels[None, :]
    for m in (label_mask, label_mask.float()):
        for mode in ("all", "one"):
            got = supcon_loss(feats, mask=m, temperature=0.1, contrast_mode=mode)
            exp = supcon_loss(feats, labels=labels, temperature=0.1, contrast_mode=mode)
            assert got.item() == pytest.approx(exp.item(), rel=1e-12)
    # an asymmetric explicit mask against the loop reference
    m = torch.tensor(
        [[1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 1, 0], [0, 0, 1, 0, 1]]
    )
    got = supcon_loss(feats, mask=m, temperature=0.1)
    assert got.item() == pytest.approx(_ref_supcon(feats, mask=m.tolist(), t=0.1).item(), rel=1e-10)


def test_supcon_permutation_invariance():
    gen = torch.Generator().manual_seed(9)
    feats = _unit((6, 2, 4), gen)
    labels = torch.tensor([0, 1, 0, 2, 1, 1])
    perm = torch.randperm(6, generator=gen)
    for mode in ("all", "one"):
        base = supcon_loss(feats, labels=labels, temperature=0.1, contrast_mode=mode).item()
        got = supcon_loss(
            feats[perm], labels=labels[perm], temperature=0.1, contrast_mode=mode
        ).item()
        assert got == pytest.approx(base, rel=1e-12)
    # in mode "all" the order of the views does not matter either
    base = supcon_loss(feats, labels=labels, temperature=0.1).item()
    assert supcon_loss(feats.flip(1), labels=labels, temperature=0.1).item() == pytest.approx(
        base, rel=1e-12
    )
    # labels permuted inconsistently -> a different loss
    assert supcon_loss(feats, labels=labels[perm], temperature=0.1).item() != pytest.approx(
        base, rel=1e-6
    )


def test_supcon_no_positive_anywhere_is_zero_connected_and_finite():
    gen = torch.Generator().manual_seed(1)
    for feats in (
        _unit((3, 1, 4), gen),
        _unit((1, 1, 4), gen),
    ):  # unique labels, n_views=1 / a single entry
        f = feats.clone().requires_grad_(True)
        loss = supcon_loss(f, labels=torch.arange(f.shape[0]), temperature=0.07)
        assert loss.requires_grad and loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(f.grad).all() and f.grad.abs().sum() == 0


def test_supcon_float32_low_temperature_finite():
    gen = torch.Generator().manual_seed(2)
    feats = _unit((4, 2, 3), gen)
    labels = torch.tensor([0, 0, 1, 1])
    f = feats.float().requires_grad_(True)
    # logits up to 200
    loss = supcon_loss(f, labels=labels, temperature=0.005, base_temperature=0.07)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(f.grad).all()
    ref = _ref_supcon(feats, labels=labels, t=0.005, base_t=0.07)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_supcon_rejects_bad_arguments():
    feats = torch.zeros(2, 2, 3)
    with pytest.raises(ValueError):
        supcon_loss(feats, labels=torch.tensor([0, 1]), mask=torch.eye(2))
    with pytest.raises(ValueError):
        supcon_loss(feats, contrast_mode="both")
    with pytest.raises(ValueError):
        supcon_loss(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        supcon_loss(feats, labels=torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("mode", ["all", "one"])
def test_supcon_gradcheck(mode):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0])
    assert torch.autograd.gradcheck(
        lambda f: supcon_loss(
            f, labels=labels, temperature=0.5, contrast_mode=mode, base_temperature=0.3
        ),
        (feats,),
    )


# -----------------------------------------------------------------------------------------
# queue_supcon_loss
def test_queue_supcon_hand_value():
    # q = [a=(1,0) label 0, b=(0,1) label 1]; keys = [(1,0) L0, (.6,.8) L1]; queue = [(.8,.6) L0,
    # (0,1) L0]; T=.5 anchor a: logits key0 2, key1 1.2, queue0 1.6, queue1 0; positives key0,
    # queue0, queue1
    #   lse0 = log(e^2 + e^1.2 + e^1.6 + e^0); loss0 = -((2 - lse0) + (1.6 - lse0) + (0 - lse0)) / 3
    # anchor b: logits key0 0, key1 1.6, queue0 1.2, queue1 2; positive key1 only
    #   lse1 = log(e^0 + e^1.6 + e^1.2 + e^2); loss1 = -(1.6 - lse1)
    e = math.exp
    lse0 = math.log(e(2) + e(1.2) + e(1.6) + 1)
    lse1 = math.log(1 + e(1.6) + e(1.2) + e(2))
    expected = (-((2 - lse0) + (1.6 - lse0) + (0 - lse0)) / 3 - (1.6 - lse1)) / 2
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    keys = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    queue = torch.tensor([[0.8, 0.6], [0.0, 1.0]], dtype=torch.float64)
    loss = queue_supcon_loss(
        q, torch.tensor([0, 1]), keys, torch.tensor([0, 1]), queue, torch.tensor([0, 0]), 0.5
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_queue_supcon_matches_loop_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    n, k = [1, 3, 6, 4, 6][seed], [0, 2, 8, 5, 8][seed]
    t = [0.07, 0.2, 0.1, 0.5, 0.07][seed]
    q, keys, queue = _unit((n, 4), gen), _unit((n, 4), gen), _unit((k, 4), gen)
    labels = torch.randint(0, 3, (n,), generator=gen)
    # -1 = unlabelled slot, a plain negative
    queue_labels = torch.randint(-1, 3, (k,), generator=gen)
    args = (q, labels, keys, labels, queue, queue_labels)
    got = queue_supcon_loss(*args, temperature=t)
    assert got.item() == pytest.approx(_ref_queue_supcon(*args, t).item(), rel=1e-10, abs=1e-12)


def test_queue_supcon_gradients_match_loop_reference():
    gen = torch.Generator().manual_seed(8)
    q, keys, queue = _unit((3, 3), gen), _unit((3, 3), gen), _unit((4, 3), gen)
    labels, queue_labels = torch.tensor([0, 1, 0]), torch.tensor([1, 0, 2, 0])
    ours = [x.clone().requires_grad_(True) for x in (q, keys, queue)]
    queue_supcon_loss(ours[0], labels, ours[1], labels, ours[2], queue_labels, 0.1).backward()
    ref = [x.clone().requires_grad_(True) for x in (q, keys, queue)]
    _ref_queue_supcon(ref[0], labels, ref[1], labels, ref[2], queue_labels, 0.1).backward()
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-10, atol=1e-12)


def test_queue_supcon_permutation_invariance():
    gen = torch.Generator().manual_seed(4)
    q, keys, queue = _unit((6, 4), gen), _unit((6, 4), gen), _unit((8, 4), gen)
    labels, queue_labels = (
        torch.randint(0, 3, (6,), generator=gen),
        torch.randint(0, 3, (8,), generator=gen),
    )
    base = queue_supcon_loss(q, labels, keys, labels, queue, queue_labels, 0.1).item()
    pb, pq = torch.randperm(6, generator=gen), torch.randperm(8, generator=gen)
    got = queue_supcon_loss(
        q[pb], labels[pb], keys[pb], labels[pb], queue[pq], queue_labels[pq], 0.1
    ).item()
    assert got == pytest.approx(base, rel=1e-12)
    assert queue_supcon_loss(
        q, labels, keys, labels, queue, queue_labels.roll(1), 0.1
    ).item() != pytest.approx(base, rel=1e-6)


def test_queue_supcon_label_only_on_own_key_and_no_positive_guard():
    gen = torch.Generator().manual_seed(6)
    q, keys, queue = _unit((3, 4), gen), _unit((3, 4), gen), _unit((5, 4), gen)
    # label 7 exists only on key 2: anchor 2's only positive is its own key
    labels = torch.tensor([0, 0, 7])
    queue_labels = torch.tensor([0, 1, 1, 0, 2])
    qq = q.clone().requires_grad_(True)
    loss = queue_supcon_loss(qq, labels, keys, labels, queue, queue_labels, 0.07)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(qq.grad).all()
    assert loss.item() == pytest.approx(
        _ref_queue_supcon(q, labels, keys, labels, queue, queue_labels, 0.07).item(), rel=1e-10
    )
    # anchor 2 with no positive at all (its key carries another label): excluded from the mean, no
    # NaN
    key_labels = torch.tensor([0, 0, 1])
    qq = q.clone().requires_grad_(True)
    loss = queue_supcon_loss(qq, labels, keys, key_labels, queue, queue_labels, 0.07)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(qq.grad).all() and qq.grad[2].abs().sum() == 0
    # mean of anchors 0, 1
    ref = _ref_queue_supcon(q[:2], labels[:2], keys, key_labels, queue, queue_labels, 0.07)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-10)
    # no anchor with a positive -> 0, connected to the graph
    qq = q.clone().requires_grad_(True)
    loss = queue_supcon_loss(
        qq, torch.tensor([5, 6, 7]), keys, key_labels, queue, queue_labels, 0.07
    )
    assert loss.requires_grad and loss.item() == 0.0


def test_queue_supcon_gradcheck():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    queue = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    labels, queue_labels = torch.tensor([0, 1, 0]), torch.tensor([1, 0, 2, 0])
    assert torch.autograd.gradcheck(
        lambda a, b, c: queue_supcon_loss(a, labels, b, labels, c, queue_labels, 0.5),
        (q, keys, queue),
    )

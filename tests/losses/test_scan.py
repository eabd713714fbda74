"""SCAN (docs/design.md section 5): hand values, loop reference, reduction to queue SupCon, masking
modes."""

import math

import pytest
import torch
from torch.nn import functional as F

from contrastive_det.losses import queue_supcon_loss, scan_loss


def _unit(shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def _ref_scan(q, q_labels, keys, key_labels, queue, queue_labels, num_neighbors, t, mode="mask"):
    """Loop reference. Neighbours: python sort of keys[i].memory[j] (j != i) on floats (no
    gradient)."""
    n = q.shape[0]
    memory = [keys[j] for j in range(n)] + [queue[j] for j in range(queue.shape[0])]
    mem_labels = [int(x) for x in key_labels] + [int(x) for x in queue_labels]
    total = 0.0
    for i in range(n):
        cands = [j for j in range(len(memory)) if j != i]
        cands.sort(key=lambda j: -torch.dot(keys[i], memory[j]).item())
        neighbours = set(cands[:num_neighbors])
        positives, kept = [i], [i]
        for j in cands:
            same = mem_labels[j] == int(q_labels[i])
            if same and j in neighbours:
                positives.append(j)
                kept.append(j)
            elif same and mode == "mask":
                continue  # same label outside the neighbourhood: out of the denominator
            else:
                kept.append(j)
        denom = 0.0
        for j in kept:
            denom = denom + torch.exp(torch.dot(q[i], memory[j]) / t)
        loss_i = 0.0
        for p in positives:
            loss_i = loss_i - (torch.dot(q[i], memory[p]) / t - torch.log(denom))
        total = total + loss_i / len(positives)
    return total / n


def _hand_inputs():
    # N=1, K=3. q = (0,1) label 0; keys = [(1,0)] label 0; queue = [(.6,.8) L0, (.8,.6) L1, (0,1)
    # L0]
    q = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    keys = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    queue = torch.tensor([[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]], dtype=torch.float64)
    return q, torch.tensor([0]), keys, torch.tensor([0]), queue, torch.tensor([0, 1, 0])


def test_hand_values_mask_vs_negative():
    # Neighbours of the MOMENTUM key (1,0): dots queue0 .6, queue1 .8, queue2 0 -> top-2 = {queue1,
    # queue0}. Positives: key0 + queue0 (same label, neighbour); queue1 other label -> negative;
    # queue2 same label but outside the neighbourhood -> masked ("mask") or negative ("negative").
    # Logits of q=(0,1) / .5: key0 0, queue0 1.6, queue1 1.2, queue2 2.
    # mask:     lse = log(e^0 + e^1.6 + e^1.2);        loss = -((0 - lse) + (1.6 - lse)) / 2 = lse -
    # .8
    # negative: lse = log(e^0 + e^1.6 + e^1.2 + e^2);  loss = lse - .8
    # (neighbours taken from q instead would be {queue2, queue0}: positives key0, queue0, queue2.)
    e = math.exp
    exp_mask = math.log(1 + e(1.6) + e(1.2)) - 0.8
    exp_neg = math.log(1 + e(1.6) + e(1.2) + e(2)) - 0.8
    args = _hand_inputs()
    got_mask = scan_loss(*args, num_neighbors=2, temperature=0.5)  # default = "mask"
    got_neg = scan_loss(*args, num_neighbors=2, temperature=0.5, non_neighbor_same_label="negative")
    assert got_mask.item() == pytest.approx(exp_mask, rel=1e-12)
    assert got_neg.item() == pytest.approx(exp_neg, rel=1e-12)
    assert abs(exp_mask - exp_neg) > 0.1
    # queue SupCon on the same inputs counts queue2 as a positive: lse_neg - (0 + 1.6 + 2) / 3
    qs = queue_supcon_loss(*args, temperature=0.5)
    assert qs.item() == pytest.approx(math.log(1 + e(1.6) + e(1.2) + e(2)) - 3.6 / 3, rel=1e-12)


def test_hand_values_zero_neighbours():
    # num_neighbors=0: only key0 is positive (logit 0). mask: queue0, queue2 masked -> kept key0,
    # queue1:
    #   loss = -(0 - log(e^0 + e^1.2)); negative: loss = -(0 - log(e^0 + e^1.6 + e^1.2 + e^2))
    e = math.exp
    args = _hand_inputs()
    assert scan_loss(*args, 0, 0.5).item() == pytest.approx(math.log(1 + e(1.2)), rel=1e-12)
    assert scan_loss(*args, 0, 0.5, "negative").item() == pytest.approx(
        math.log(1 + e(1.6) + e(1.2) + e(2)), rel=1e-12
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("mode", ["mask", "negative"])
def test_matches_loop_reference(seed, mode):
    gen = torch.Generator().manual_seed(seed)
    n, k = [1, 3, 6, 4, 6][seed], [0, 3, 8, 5, 8][seed]
    t = [0.07, 0.2, 0.1, 0.5, 0.07][seed]
    q, keys, queue = _unit((n, 4), gen), _unit((n, 4), gen), _unit((k, 4), gen)
    labels = torch.randint(0, 2, (n,), generator=gen)
    queue_labels = torch.randint(-1, 3, (k,), generator=gen)
    for num_neighbors in (0, 1, 3, n + k - 2, n + k + 5):
        num_neighbors = max(num_neighbors, 0)
        got = scan_loss(q, labels, keys, labels, queue, queue_labels, num_neighbors, t, mode)
        ref = _ref_scan(q, labels, keys, labels, queue, queue_labels, num_neighbors, t, mode)
        assert got.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12), num_neighbors


@pytest.mark.parametrize("mode", ["mask", "negative"])
def test_gradients_match_reference_no_gradient_through_topk(mode):
    gen = torch.Generator().manual_seed(12)
    q, keys, queue = _unit((4, 3), gen), _unit((4, 3), gen), _unit((6, 3), gen)
    labels, queue_labels = torch.tensor([0, 1, 0, 0]), torch.tensor([0, 1, 0, 2, 0, 1])
    ours = [x.clone().requires_grad_(True) for x in (q, keys, queue)]
    scan_loss(ours[0], labels, ours[1], labels, ours[2], queue_labels, 2, 0.1, mode).backward()
    ref = [x.clone().requires_grad_(True) for x in (q, keys, queue)]
    _ref_scan(ref[0], labels, ref[1], labels, ref[2], queue_labels, 2, 0.1, mode).backward()
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_all_neighbours_equals_queue_supcon(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    n, k = [2, 4, 6, 5][seed], [0, 3, 8, 6][seed]
    q, keys, queue = _unit((n, 5), gen), _unit((n, 5), gen), _unit((k, 5), gen)
    labels = torch.randint(0, 3, (n,), generator=gen)
    queue_labels = torch.randint(0, 3, (k,), generator=gen)
    args = (q, labels, keys, labels, queue, queue_labels)
    expected = queue_supcon_loss(*args, temperature=0.1).item()
    for mode in ("mask", "negative"):
        for num_neighbors in (n + k - 1, n + k + 10, None):
            assert scan_loss(*args, num_neighbors, 0.1, mode).item() == pytest.approx(
                expected, rel=1e-12
            )


def test_zero_neighbours_only_own_key():
    gen = torch.Generator().manual_seed(21)
    q, keys, queue = _unit((5, 4), gen), _unit((5, 4), gen), _unit((7, 4), gen)
    labels, queue_labels = torch.tensor([0, 0, 1, 0, 1]), torch.tensor([0, 1, 1, 0, 2, 0, 1])
    memory = torch.cat([keys, queue])
    logits = q @ memory.t() / 0.2
    # "negative": plain cross-entropy with key i as the single target among all N+K entries
    expected_neg = F.cross_entropy(logits, torch.arange(5)).item()
    assert scan_loss(
        q, labels, keys, labels, queue, queue_labels, 0, 0.2, "negative"
    ).item() == pytest.approx(expected_neg, rel=1e-12)
    # "mask": same, but the other same-label entries are removed from each row
    mem_labels = torch.cat([labels, queue_labels])
    expected_mask = 0.0
    for i in range(5):
        row = [logits[i, j].item() for j in range(12) if j == i or mem_labels[j] != labels[i]]
        expected_mask += -(logits[i, i].item() - math.log(sum(math.exp(x) for x in row)))
    assert scan_loss(q, labels, keys, labels, queue, queue_labels, 0, 0.2).item() == pytest.approx(
        expected_mask / 5, rel=1e-12
    )


def test_permutation_invariance():
    gen = torch.Generator().manual_seed(5)
    q, keys, queue = _unit((6, 4), gen), _unit((6, 4), gen), _unit((8, 4), gen)
    labels, queue_labels = (
        torch.randint(0, 2, (6,), generator=gen),
        torch.randint(0, 2, (8,), generator=gen),
    )
    pb, pq = torch.randperm(6, generator=gen), torch.randperm(8, generator=gen)
    for mode in ("mask", "negative"):
        base = scan_loss(q, labels, keys, labels, queue, queue_labels, 4, 0.1, mode).item()
        got = scan_loss(
            q[pb], labels[pb], keys[pb], labels[pb], queue[pq], queue_labels[pq], 4, 0.1, mode
        ).item()
        assert got == pytest.approx(base, rel=1e-12)


def test_label_only_on_own_key_is_finite():
    gen = torch.Generator().manual_seed(6)
    q, keys, queue = _unit((3, 4), gen), _unit((3, 4), gen), _unit((5, 4), gen)
    labels, queue_labels = torch.tensor([0, 0, 7]), torch.tensor([0, 1, 1, 0, 2])
    for mode in ("mask", "negative"):
        for num_neighbors in (0, 2, 100):
            args = [x.clone().requires_grad_(True) for x in (q, keys, queue)]
            loss = scan_loss(
                args[0], labels, args[1], labels, args[2], queue_labels, num_neighbors, 0.07, mode
            )
            loss.backward()
            assert torch.isfinite(loss) and all(torch.isfinite(a.grad).all() for a in args)
            ref = _ref_scan(q, labels, keys, labels, queue, queue_labels, num_neighbors, 0.07, mode)
            assert loss.item() == pytest.approx(ref.item(), rel=1e-10)


def test_float32_low_temperature_finite():
    gen = torch.Generator().manual_seed(8)
    q, keys, queue = _unit((4, 3), gen), _unit((4, 3), gen), _unit((6, 3), gen)
    labels, queue_labels = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 0, 1, 0, 1])
    got = scan_loss(q.float(), labels, keys.float(), labels, queue.float(), queue_labels, 3, 0.005)
    ref = _ref_scan(q, labels, keys, labels, queue, queue_labels, 3, 0.005)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)


def test_rejects_bad_arguments():
    args = _hand_inputs()
    with pytest.raises(ValueError):
        scan_loss(*args, 2, 0.1, "ignore")
    with pytest.raises(ValueError):
        scan_loss(*args, -1, 0.1)


def test_gradcheck():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    queue = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    labels, queue_labels = torch.tensor([0, 1, 0]), torch.tensor([1, 0, 0, 0])
    # gradcheck perturbs keys by 1e-6: the neighbourhoods are stable for these inputs (no near-ties)
    assert torch.autograd.gradcheck(
        lambda a, b, c: scan_loss(a, labels, b, labels, c, queue_labels, 2, 0.5), (q, keys, queue)
    )

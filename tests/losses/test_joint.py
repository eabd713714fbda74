"""CE+SelfSupCon and SupCon+SelfSupCon (Islam et al.): dict keys, weighting, components."""

import math

import pytest
import torch
from torch.nn import functional as F

from contrastive_det.losses import (
    ce_selfsupcon_loss,
    infonce_loss,
    queue_supcon_loss,
    supcon_selfsupcon_loss,
)


def _unit(shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def test_ce_selfsupcon_hand_value_and_weighting():
    # CE: logits [[2, 0, 0], [0, 1, 3]], labels [0, 2]
    #   row 0: -2 + log(e^2 + 2);  row 1: -3 + log(1 + e^1 + e^3)
    # instance: q = [(1,0), (0,1)], k = q, queue = [(0,1)], T = .5
    #   row 0: pos 2, neg 0 -> -2 + log(e^2 + 1); row 1: pos 2, neg 2 -> log 2
    e = math.exp
    ce = ((-2 + math.log(e(2) + 2)) + (-3 + math.log(1 + e(1) + e(3)))) / 2
    inst = ((-2 + math.log(e(2) + 1)) + math.log(2)) / 2
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    queue = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    # default instance_weight 0.5
    out = ce_selfsupcon_loss(logits, labels, q, q, queue, temperature=0.5)
    assert set(out) == {"loss_ce", "loss_instance"}
    assert out["loss_ce"].item() == pytest.approx(ce, rel=1e-12)
    assert out["loss_instance"].item() == pytest.approx(0.5 * inst, rel=1e-12)
    out = ce_selfsupcon_loss(logits, labels, q, q, queue, temperature=0.5, instance_weight=0.3)
    assert out["loss_instance"].item() == pytest.approx(0.3 * inst, rel=1e-12)
    assert sum(out.values()).item() == pytest.approx(ce + 0.3 * inst, rel=1e-12)


def test_ce_selfsupcon_random_components_and_gradients():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 4, 2, 2])
    q = _unit((4, 6), gen).requires_grad_(True)
    k, queue = _unit((4, 6), gen), _unit((8, 6), gen)
    out = ce_selfsupcon_loss(logits, labels, q, k, queue)  # defaults: T 0.2, weight 0.5
    assert out["loss_ce"].item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-12)
    assert out["loss_instance"].item() == pytest.approx(
        0.5 * infonce_loss(q, k, queue, 0.2).item(), rel=1e-12
    )
    sum(out.values()).backward()
    assert logits.grad.abs().sum() > 0 and q.grad.abs().sum() > 0


def test_supcon_selfsupcon_components_and_weighting():
    gen = torch.Generator().manual_seed(1)
    q_inst, k_inst, queue_inst = _unit((4, 5), gen), _unit((4, 5), gen), _unit((8, 5), gen)
    q_sup, k_sup, queue_sup = _unit((4, 3), gen), _unit((4, 3), gen), _unit((6, 3), gen)
    labels, queue_labels = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 2, 1, 1, -1, 0])
    args = (q_inst, k_inst, queue_inst, q_sup, labels, k_sup, labels, queue_sup, queue_labels)
    inst = infonce_loss(q_inst, k_inst, queue_inst, 0.07).item()
    sup = queue_supcon_loss(q_sup, labels, k_sup, labels, queue_sup, queue_labels, 0.07).item()
    assert inst > 0 and sup > 0
    out = supcon_selfsupcon_loss(*args)  # defaults: T 0.07, instance 0.5, supcon 1.0
    assert set(out) == {"loss_instance", "loss_supcon"}
    assert out["loss_instance"].item() == pytest.approx(0.5 * inst, rel=1e-12)
    assert out["loss_supcon"].item() == pytest.approx(sup, rel=1e-12)
    out = supcon_selfsupcon_loss(*args, temperature=0.2, instance_weight=0.25, supcon_weight=2.0)
    assert out["loss_instance"].item() == pytest.approx(
        0.25 * infonce_loss(q_inst, k_inst, queue_inst, 0.2).item(), rel=1e-12
    )
    sup2 = queue_supcon_loss(q_sup, labels, k_sup, labels, queue_sup, queue_labels, 0.2).item()
    assert out["loss_supcon"].item() == pytest.approx(2.0 * sup2, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# Slow loop references written out here (no library loss called), so that plausible wrong formulas
# (weights swapped, heads swapped, the memory without the batch's keys, T applied twice) fail.
# ----------------------------------------------------------------------------------------------
def _loop_infonce(q, k, queue, t):
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[i]) / t] + [
            float(q[i] @ queue[j]) / t for j in range(queue.shape[0])
        ]
        total += -(logits[0] - math.log(sum(math.exp(x) for x in logits)))
    return total / q.shape[0]


def _loop_queue_supcon(q, q_labels, keys, key_labels, queue, queue_labels, t):
    memory = [keys[j] for j in range(keys.shape[0])] + [queue[j] for j in range(queue.shape[0])]
    mem_labels = [int(x) for x in key_labels] + [int(x) for x in queue_labels]
    total, anchors = 0.0, 0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ m) / t for m in memory]
        log_z = math.log(sum(math.exp(x) for x in logits))
        positives = [
            logits[j] - log_z for j in range(len(memory)) if mem_labels[j] == int(q_labels[i])
        ]
        if positives:
            total += -sum(positives) / len(positives)
            anchors += 1
    return total / anchors


def _loop_cross_entropy(logits, labels):
    total = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        total += -(row[y] - math.log(sum(math.exp(x) for x in row)))
    return total / len(labels)


def test_ce_selfsupcon_against_loop_reference():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float64) * 4
    labels = torch.tensor([3, 0, 0, 2, 1])
    q, k, queue = _unit((5, 6), gen), _unit((5, 6), gen), _unit((7, 6), gen)
    out = ce_selfsupcon_loss(logits, labels, q, k, queue, temperature=0.3, instance_weight=0.35)
    ce, inst = _loop_cross_entropy(logits, labels), _loop_infonce(q, k, queue, 0.3)
    assert abs(ce - inst) > 0.1  # the two terms differ, so a swapped weight shows
    assert out["loss_ce"].item() == pytest.approx(ce, rel=1e-10)
    assert out["loss_instance"].item() == pytest.approx(0.35 * inst, rel=1e-10)


def test_supcon_selfsupcon_against_loop_reference():
    gen = torch.Generator().manual_seed(4)
    q_inst, k_inst, queue_inst = _unit((4, 5), gen), _unit((4, 5), gen), _unit((8, 5), gen)
    q_sup, k_sup, queue_sup = _unit((4, 5), gen), _unit((4, 5), gen), _unit((8, 5), gen)
    labels = torch.tensor([0, 1, 1, 2])
    queue_labels = torch.tensor([0, 2, 1, 1, -1, 0, 3, 2])
    out = supcon_selfsupcon_loss(
        q_inst,
        k_inst,
        queue_inst,
        q_sup,
        labels,
        k_sup,
        labels,
        queue_sup,
        queue_labels,
        temperature=0.15,
        instance_weight=0.3,
        supcon_weight=1.7,
    )
    inst = _loop_infonce(q_inst, k_inst, queue_inst, 0.15)
    sup = _loop_queue_supcon(q_sup, labels, k_sup, labels, queue_sup, queue_labels, 0.15)
    assert abs(inst - sup) > 0.1
    # wrong formulas that must not agree with the reference: heads swapped, memory without the batch
    # keys
    assert abs(_loop_infonce(q_sup, k_sup, queue_sup, 0.15) - inst) > 0.05
    no_keys = _loop_queue_supcon(
        q_sup, labels, k_sup[:0], labels[:0], queue_sup, queue_labels, 0.15
    )
    assert abs(no_keys - sup) > 0.05
    assert out["loss_instance"].item() == pytest.approx(0.3 * inst, rel=1e-10)
    assert out["loss_supcon"].item() == pytest.approx(1.7 * sup, rel=1e-10)
    # defaults of the paper: T 0.07, instance 0.5, supcon 1.0
    out = supcon_selfsupcon_loss(
        q_inst, k_inst, queue_inst, q_sup, labels, k_sup, labels, queue_sup, queue_labels
    )
    assert out["loss_instance"].item() == pytest.approx(
        0.5 * _loop_infonce(q_inst, k_inst, queue_inst, 0.07), rel=1e-10
    )
    assert out["loss_supcon"].item() == pytest.approx(
        _loop_queue_supcon(q_sup, labels, k_sup, labels, queue_sup, queue_labels, 0.07), rel=1e-10
    )

"""CoreTuningHead (Zhang et al., NeurIPS 2021): layout, losses, randomness from torch's global RNG,
many classes, the ablation flags (hard pairs, smooth boundary)."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from contrastive_det.losses import (
    core_tuning_mixup,
    focal_supcon_loss,
    soft_label_ids,
    soft_target_cross_entropy,
)
from contrastive_det.modeling.core_tuning import CoreTuningHead, sample_mix_weights


def _head(in_dim=16, num_classes=5, **kw):
    torch.manual_seed(0)
    return CoreTuningHead(in_dim, num_classes, hidden_dim=32, proj_dim=8, **kw)


def test_layout_bias_free_classifier_and_head_without_bn():
    head = CoreTuningHead(2048, 10)
    assert head.classifier.bias is None and tuple(head.classifier.weight.shape) == (10, 2048)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in head.modules())
    linears = [m for m in head.contrastor.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 2048), (2048, 256)]
    assert all(m.bias is not None for m in linears)
    assert sorted(head.state_dict()) == [
        "classifier.weight",
        "contrastor.mlp.0.bias",
        "contrastor.mlp.0.weight",
        "contrastor.mlp.2.bias",
        "contrastor.mlp.2.weight",
    ]
    small = _head()
    z = small.project(torch.randn(6, 16))
    assert z.shape == (6, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))


def test_shapes_train_and_eval():
    head = _head()
    x, y = torch.randn(12, 16), torch.randint(0, 5, (12,))
    out = head(x, y)
    assert set(out) == {"loss_cls", "loss_con"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    assert head(x).shape == (12, 5)  # training mode without labels: logits
    head.eval()
    logits = head(x, y)  # eval mode: logits even with labels
    torch.testing.assert_close(logits, x @ head.classifier.weight.t())


def test_forward_is_the_pure_pipeline_with_draws_from_the_global_rng():
    head = _head(eta=0.3, alpha=0.5, temperature=0.2, min_shuffled_weight=0.7)
    x, y = torch.randn(10, 16), torch.tensor([0, 1, 1, 2, 3, 3, 3, 4, 0, 2])
    torch.manual_seed(123)
    out = head(x, y)
    # the same draws, in the same order: permutation, clipped shuffled weights, unclipped positive
    # weights
    torch.manual_seed(123)
    perm = torch.randperm(10)
    shuffled = sample_mix_weights(10, 0.5, 0.7)
    positive = sample_mix_weights(10, 0.5, 0.0)
    feats, targets = core_tuning_mixup(x, y, 5, perm, shuffled, positive)
    cls = soft_target_cross_entropy(feats @ head.classifier.weight.t(), targets)
    con = focal_supcon_loss(
        F.normalize(head.contrastor(feats), dim=1),
        soft_label_ids(targets),
        0.2,
        normalization="batch",
    )
    torch.testing.assert_close(out["loss_cls"], cls)
    torch.testing.assert_close(out["loss_con"], 0.3 * con)
    assert shuffled.min() >= 0.7 and (shuffled == 0.7).any() and positive.min() < 0.7


def test_reproducible_with_a_seed_and_eta_scaling():
    head = _head()
    x, y = torch.randn(16, 16), torch.randint(0, 5, (16,))
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(head(x, y))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.equal(runs[0]["loss_cls"], runs[2]["loss_cls"])
    for eta, factor in ((0.0, 0.0), (0.2, 2.0)):
        other = _head(eta=eta)
        torch.manual_seed(5)
        out = other(x, y)
        torch.testing.assert_close(out["loss_con"], factor * runs[0]["loss_con"])
        torch.testing.assert_close(out["loss_cls"], runs[0]["loss_cls"])


def test_normalization_option():
    x, y = torch.randn(16, 16), torch.randint(0, 3, (16,))
    out = {}
    for norm in ("batch", "positives"):
        head = _head(num_classes=3, con_normalization=norm)
        torch.manual_seed(1)
        out[norm] = head(x, y)["loss_con"].item()
    assert out["positives"] > 3 * out["batch"] > 0  # 48 contrast entries vs a handful of positives


def test_sample_mix_weights_clipping_and_distribution():
    torch.manual_seed(0)
    lam = sample_mix_weights(20000, alpha=1.0, min_weight=0.8)
    assert lam.dtype == torch.float32 and lam.shape == (20000,)
    assert lam.min().item() == pytest.approx(0.8) and lam.max() <= 1.0
    # Beta(1,1): P(lambda < .8) = .8
    assert (lam == lam.min()).float().mean().item() == pytest.approx(0.8, abs=0.02)
    free = sample_mix_weights(20000, alpha=1.0)
    assert free.min() < 0.01 and free.mean().item() == pytest.approx(0.5, abs=0.01)
    u_shaped = sample_mix_weights(20000, alpha=0.2)
    assert ((u_shaped < 0.1) | (u_shaped > 0.9)).float().mean() > 0.6
    torch.manual_seed(3)
    a = sample_mix_weights(7, 1.0, 0.8)
    torch.manual_seed(3)
    assert torch.equal(a, sample_mix_weights(7, 1.0, 0.8))
    for bad in (dict(alpha=0.0), dict(alpha=1.0, min_weight=1.5), dict(alpha=1.0, min_weight=-0.1)):
        with pytest.raises(ValueError):
            sample_mix_weights(4, **bad)


def test_loss_decreases_on_a_separable_problem():
    # 4 well-separated Gaussian clusters in 8-D; a trainable linear "trunk" in front of the head
    gen = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(4, 8, generator=gen)
    y = torch.arange(32) % 4
    x = centres[y] + 0.3 * torch.randn(32, 8, generator=gen)
    torch.manual_seed(0)
    trunk = nn.Linear(8, 16)
    head = CoreTuningHead(16, 4, hidden_dim=32, proj_dim=8, eta=1.0)
    opt = torch.optim.SGD(list(trunk.parameters()) + list(head.parameters()), lr=0.05, momentum=0.9)
    totals, cons = [], []
    for step in range(40):
        torch.manual_seed(step)
        losses = head(trunk(x), y)
        total = losses["loss_cls"] + losses["loss_con"]
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters())
        opt.step()
        totals.append(total.item())
        cons.append(losses["loss_con"].item())
    assert sum(totals[-5:]) < 0.6 * sum(totals[:5])
    # the contrastive term too (mixtures keep it well above 0)
    assert sum(cons[-5:]) < 0.95 * sum(cons[:5])
    head.eval()
    assert (head(trunk(x)).argmax(dim=1) == y).all()


@pytest.mark.parametrize("num_classes", [100, 397])
def test_many_classes(num_classes):
    head = _head(in_dim=32, num_classes=num_classes)
    gen = torch.Generator().manual_seed(num_classes)
    x = torch.randn(48, 32, generator=gen, requires_grad=True)
    y = torch.randint(num_classes - 10, num_classes, (48,), generator=gen)  # the highest ids
    torch.manual_seed(0)
    out = head(x, y)
    (out["loss_cls"] + out["loss_con"]).backward()
    assert (
        torch.isfinite(out["loss_cls"]) and torch.isfinite(out["loss_con"]) and out["loss_con"] > 0
    )
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert head.eval()(x).shape == (48, num_classes)


@pytest.mark.parametrize(
    "labels",
    [
        [0, 0, 1, 2, 2, 2],  # class 1 has a single sample
        [0, 1, 2, 3],  # no sample has a same-class partner
        [4],  # a batch of one
        [3, 3],  # a single class: no negative at all
    ],
)
def test_singleton_classes_no_nan(labels):
    head = _head()
    y = torch.tensor(labels)
    x = torch.randn(len(labels), 16, requires_grad=True)
    torch.manual_seed(0)
    out = head(x, y)
    total = out["loss_cls"] + out["loss_con"]
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


def test_rejects_bad_arguments():
    for bad in (
        dict(eta=-1.0),
        dict(alpha=0.0),
        dict(temperature=0.0),
        dict(min_shuffled_weight=1.2),
        dict(con_normalization="mean"),
    ):
        with pytest.raises(ValueError):
            CoreTuningHead(8, 3, **bad)
    head = _head()
    with pytest.raises(ValueError):
        head(torch.randn(4, 16), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError):
        head(torch.randn(2, 4, 16), torch.tensor([0, 1]))


# ------------------------------------------------------------------------------------------------
# The ablation flags (CLASSIFICATION.CORE_TUNING.HARD_PAIRS / SMOOTH_BOUNDARY); both False is the
# paper's "CE + contrastive" row
# ------------------------------------------------------------------------------------------------
def _slow_focal_supcon(z, labels, temperature, normalization):
    """Core-tuning's focal SupCon by loops in float64: l_i = -(1/n_i) sum_{j in P(i)} (1 - p_ij) log
    p_ij, p_ij = exp(z_i.z_j/T) / sum_{k != i} exp(z_i.z_k/T); n_i = |P(i)| or N; mean over anchors
    with a positive."""
    z, labels = z.detach().double().tolist(), labels.tolist()
    n, per_anchor = len(z), []
    for i in range(n):
        sims = {k: sum(a * b for a, b in zip(z[i], z[k])) / temperature for k in range(n) if k != i}
        log_denominator = math.log(sum(math.exp(s) for s in sims.values()))
        positives = [j for j in sims if labels[j] == labels[i]]
        if not positives:
            continue
        total = 0.0
        for j in positives:
            log_p = sims[j] - log_denominator
            total += (1.0 - math.exp(log_p)) * log_p
        per_anchor.append(-total / (len(positives) if normalization == "positives" else n))
    return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0


def _inputs(n=12, classes=4, seed=11):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, generator=gen), torch.arange(n) % classes  # every class has a partner


def _run(head, x, y, seed=3):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = head(x, y)
    (out["loss_cls"] + out["loss_con"]).backward()
    return out, x.grad


def test_flags_default_to_core_tuning_and_both_true_is_the_core_tuning_pipeline_bit_for_bit():
    from contrastive_det.config import get_cfg

    ct = get_cfg().CLASSIFICATION.CORE_TUNING
    assert ct.HARD_PAIRS is True and ct.SMOOTH_BOUNDARY is True
    x, y = _inputs()
    default, explicit = (
        _head(num_classes=4, eta=0.3),
        _head(num_classes=4, eta=0.3, hard_pairs=True, smooth_boundary=True),
    )
    assert default.hard_pairs and default.smooth_boundary
    out, grad = _run(default, x, y)
    out2, grad2 = _run(explicit, x, y)
    assert all(torch.equal(out[k], out2[k]) for k in out) and torch.equal(grad, grad2)
    # the Core-tuning path as it was before the flags: draws, 3N mixup batch, soft-target CE, focal
    # SupCon on soft ids
    xr = x.clone().requires_grad_(True)
    torch.manual_seed(3)
    perm, shuffled, positive = (
        torch.randperm(12),
        sample_mix_weights(12, 1.0, 0.8),
        sample_mix_weights(12, 1.0, 0.0),
    )
    feats, targets = core_tuning_mixup(xr, y, 4, perm, shuffled, positive)
    cls = soft_target_cross_entropy(explicit.classifier(feats), targets)
    con = focal_supcon_loss(
        explicit.project(feats), soft_label_ids(targets), 0.07, normalization="batch"
    )
    (cls + 0.3 * con).backward()
    assert torch.equal(out["loss_cls"], cls) and torch.equal(out["loss_con"], 0.3 * con)
    assert torch.equal(grad, xr.grad)


@pytest.mark.parametrize("normalization", ["batch", "positives"])
def test_ce_plus_contrastive_is_ce_plus_eta_focal_supcon_on_the_real_samples(normalization):
    x, y = _inputs()
    head = _head(
        num_classes=4,
        eta=0.3,
        temperature=0.2,
        con_normalization=normalization,
        hard_pairs=False,
        smooth_boundary=False,
    )
    out, _ = _run(head, x, y)
    with torch.no_grad():
        logits = x @ head.classifier.weight.t()  # 12x4
        ce = -sum(F.log_softmax(logits, dim=1)[i, int(y[i])] for i in range(12)) / 12  # CE by hand
        con = _slow_focal_supcon(F.normalize(head.contrastor(x), dim=1), y, 0.2, normalization)
    torch.testing.assert_close(out["loss_cls"], ce)
    torch.testing.assert_close(out["loss_cls"], F.cross_entropy(logits, y))
    assert out["loss_con"].item() == pytest.approx(0.3 * con, rel=1e-5, abs=1e-7) and con > 0
    torch.manual_seed(3)
    rng = torch.get_rng_state()
    head(x, y)
    assert torch.equal(torch.get_rng_state(), rng)  # no mixup: nothing drawn


def test_each_flag_alone_changes_only_its_part():
    x, y = _inputs()
    runs = {
        (hp, sb): _run(_head(num_classes=4, eta=0.3, hard_pairs=hp, smooth_boundary=sb), x, y)[0]
        for hp in (True, False)
        for sb in (True, False)
    }
    full, ablation = runs[True, True], runs[False, False]
    # the classifier's term follows SMOOTH_BOUNDARY only, the contrastive term HARD_PAIRS only (same
    # draws)
    for hp, sb in runs:
        assert torch.equal(runs[hp, sb]["loss_cls"], (full if sb else ablation)["loss_cls"]), (
            hp,
            sb,
        )
        assert torch.equal(runs[hp, sb]["loss_con"], (full if hp else ablation)["loss_con"]), (
            hp,
            sb,
        )
    assert not torch.equal(full["loss_cls"], ablation["loss_cls"])
    assert not torch.equal(full["loss_con"], ablation["loss_con"])


def test_flags_must_be_bools_and_come_from_the_config():
    from contrastive_det.config import get_cfg
    from contrastive_det.modeling.classifier import Classifier

    for bad in (dict(hard_pairs=0), dict(smooth_boundary="False"), dict(hard_pairs=None)):
        with pytest.raises(ValueError, match="must be True or False"):
            CoreTuningHead(8, 3, **bad)
    cfg = get_cfg()
    for value in ("'no'", "0", "1.0"):
        with pytest.raises(ValueError):  # the config layer checks the type of an override
            cfg.clone().merge_from_list(["CLASSIFICATION.CORE_TUNING.HARD_PAIRS", value])
    cfg.merge_from_list(
        [
            "CLASSIFICATION.CORE_TUNING.HARD_PAIRS",
            "False",
            "CLASSIFICATION.CORE_TUNING.SMOOTH_BOUNDARY",
            "True",
            "MODEL.CLASSIFIER.HEAD",
            "core_tuning",
            "MODEL.TV_RESNET.DEPTH",
            "18",
            "MODEL.CLASSIFIER.NUM_CLASSES",
            "3",
            "CLASSIFICATION.CORE_TUNING.HIDDEN_DIM",
            "8",
            "CLASSIFICATION.CORE_TUNING.PROJ_DIM",
            "4",
        ]
    )
    head = Classifier.from_config(cfg)["head"]
    assert (head.hard_pairs, head.smooth_boundary) == (False, True)
    assert "hard_pairs=False, smooth_boundary=True" in repr(head)

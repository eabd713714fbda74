"""CoreTuningHead (Zhang et al., NeurIPS 2021): layout, losses, randomness from torch's global RNG, many classes."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from contrastive_det.losses import core_tuning_mixup, focal_supcon_loss, soft_label_ids, soft_target_cross_entropy
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
        "classifier.weight", "contrastor.mlp.0.bias", "contrastor.mlp.0.weight", "contrastor.mlp.2.bias",
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
    # the same draws, in the same order: permutation, clipped shuffled weights, unclipped positive weights
    torch.manual_seed(123)
    perm = torch.randperm(10)
    shuffled = sample_mix_weights(10, 0.5, 0.7)
    positive = sample_mix_weights(10, 0.5, 0.0)
    feats, targets = core_tuning_mixup(x, y, 5, perm, shuffled, positive)
    cls = soft_target_cross_entropy(feats @ head.classifier.weight.t(), targets)
    con = focal_supcon_loss(F.normalize(head.contrastor(feats), dim=1), soft_label_ids(targets), 0.2, normalization="batch")
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
    assert (lam == lam.min()).float().mean().item() == pytest.approx(0.8, abs=0.02)  # Beta(1,1): P(lambda < .8) = .8
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
    assert sum(cons[-5:]) < 0.95 * sum(cons[:5])  # the contrastive term too (mixtures keep it well above 0)
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
    assert torch.isfinite(out["loss_cls"]) and torch.isfinite(out["loss_con"]) and out["loss_con"] > 0
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
    for bad in (dict(eta=-1.0), dict(alpha=0.0), dict(temperature=0.0), dict(min_shuffled_weight=1.2),
                dict(con_normalization="mean")):
        with pytest.raises(ValueError):
            CoreTuningHead(8, 3, **bad)
    head = _head()
    with pytest.raises(ValueError):
        head(torch.randn(4, 16), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError):
        head(torch.randn(2, 4, 16), torch.tensor([0, 1]))

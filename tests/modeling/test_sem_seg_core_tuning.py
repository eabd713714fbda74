"""Core-tuning on pixel embeddings (this suite's adaptation): sampling, void pixels, gradients into
the classifier, the ablation flags (hard pairs, smooth boundary)."""

import math

import pytest
import torch
from torch.nn import functional as F

from contrastive_det.losses import (
    core_tuning_mixup,
    focal_supcon_loss,
    soft_label_ids,
    soft_target_cross_entropy,
)
from contrastive_det.modeling.core_tuning import sample_mix_weights
from contrastive_det.modeling.sem_seg_core_tuning import PixelCoreTuning, sample_pixels_per_class


def test_pixels_are_sampled_per_class_never_void():
    torch.manual_seed(0)
    labels = torch.tensor([[0] * 10 + [1] * 3 + [255] * 7])
    index = sample_pixels_per_class(labels, 4, 255)
    picked = labels.reshape(-1)[index]
    assert (picked == 0).sum() == 4 and (picked == 1).sum() == 3 and not (picked == 255).any()
    assert len(set(index.tolist())) == len(index)
    assert sample_pixels_per_class(torch.full((2, 3), 255), 4, 255).numel() == 0


def _inputs():
    torch.manual_seed(1)
    features = torch.randn(2, 8, 4, 4, requires_grad=True)  # NxDxhxw
    labels = torch.randint(0, 3, (2, 8, 8))  # NxHxW (twice the feature size)
    labels[:, :4, :4] = 255
    predictor = torch.nn.Conv2d(8, 3, kernel_size=1)
    return features, labels, predictor


def test_void_pixels_do_not_change_the_losses():
    features, labels, predictor = _inputs()
    head = PixelCoreTuning(8, 3, pixels_per_class=5, hidden_dim=16, proj_dim=4)
    torch.manual_seed(7)
    a = head(features, labels, predictor)
    changed = features.detach().clone()
    changed[:, :, :2, :2] = 100.0  # the feature cells whose (nearest) labels are all void
    torch.manual_seed(7)
    b = head(changed, labels, predictor)
    for key in ("loss_sem_seg_mix", "loss_sem_seg_con"):
        assert torch.isfinite(a[key]) and torch.allclose(a[key], b[key]), key


def test_mixed_pixels_train_the_heads_classifier_and_the_features():
    features, labels, predictor = _inputs()
    head = PixelCoreTuning(8, 3, pixels_per_class=5, hidden_dim=16, proj_dim=4)
    losses = head(features, labels, predictor)
    sum(losses.values()).backward()
    # the smooth boundary is the segmentation classifier's
    assert predictor.weight.grad.abs().sum() > 0
    assert (
        features.grad[:, :, 2:, 2:].abs().sum() > 0 and features.grad[:, :, :2, :2].abs().sum() == 0
    )


# ------------------------------------------------------------------------------------------------
# The ablation flags (CLASSIFICATION.CORE_TUNING.HARD_PAIRS / SMOOTH_BOUNDARY) on pixels
# ------------------------------------------------------------------------------------------------
def _slow_focal_supcon(z, labels, temperature):
    """Focal SupCon by loops in float64, "batch" normalisation (each anchor's sum over its positives
    divided by the M rows), mean over the anchors that have a positive."""
    z, labels = z.detach().double().tolist(), labels.tolist()
    m, per_anchor = len(z), []
    for i in range(m):
        sims = {k: sum(a * b for a, b in zip(z[i], z[k])) / temperature for k in range(m) if k != i}
        log_denominator = math.log(sum(math.exp(s) for s in sims.values()))
        log_ps = [sims[j] - log_denominator for j in sims if labels[j] == labels[i]]
        if log_ps:
            per_anchor.append(-sum((1.0 - math.exp(lp)) * lp for lp in log_ps) / m)
    return sum(per_anchor) / len(per_anchor)


def _pixel_head(**kw):
    torch.manual_seed(0)
    return PixelCoreTuning(8, 3, pixels_per_class=5, hidden_dim=16, proj_dim=4, eta=0.3, **kw)


def _pixel_run(head, seed=7):
    features, labels, predictor = _inputs()
    torch.manual_seed(seed)
    losses = head(features, labels, predictor)
    sum(losses.values()).backward()
    return losses, features.grad, predictor.weight.grad


def test_pixel_flags_both_true_is_the_core_tuning_pipeline_bit_for_bit():
    losses, grad, predictor_grad = _pixel_run(_pixel_head())
    explicit = _pixel_run(_pixel_head(hard_pairs=True, smooth_boundary=True))
    assert all(torch.equal(losses[k], explicit[0][k]) for k in losses) and set(losses) == set(
        explicit[0]
    )
    assert torch.equal(grad, explicit[1]) and torch.equal(predictor_grad, explicit[2])
    # the pipeline as it was before the flags: sample, mix, soft CE of the 1x1 classifier on 2M
    # mixtures, SupCon on 3M
    head = _pixel_head()
    features, labels, predictor = _inputs()
    torch.manual_seed(7)
    small = F.interpolate(labels[:, None].float(), size=(4, 4), mode="nearest")[:, 0].long()
    index = sample_pixels_per_class(small, 5, 255)
    pixels, pixel_labels, m = (
        features.permute(0, 2, 3, 1).reshape(-1, 8)[index],
        small.reshape(-1)[index],
        index.numel(),
    )
    perm, shuffled, positive = (
        torch.randperm(m),
        sample_mix_weights(m, 1.0, 0.8),
        sample_mix_weights(m, 1.0, 0.0),
    )
    feats, targets = core_tuning_mixup(pixels, pixel_labels, 3, perm, shuffled, positive)
    mix = soft_target_cross_entropy(
        F.linear(feats[m:], predictor.weight.reshape(3, 8), predictor.bias), targets[m:]
    )
    con = 0.3 * focal_supcon_loss(
        F.normalize(head.contrastor(feats), dim=1),
        soft_label_ids(targets),
        0.07,
        normalization="batch",
    )
    (mix + con).backward()
    assert torch.equal(losses["loss_sem_seg_mix"], mix) and torch.equal(
        losses["loss_sem_seg_con"], con
    )
    assert torch.equal(grad, features.grad) and torch.equal(predictor_grad, predictor.weight.grad)


def test_pixel_ce_plus_contrastive_is_eta_focal_supcon_on_the_sampled_pixels_only():
    head = _pixel_head(hard_pairs=False, smooth_boundary=False)
    losses, _, predictor_grad = _pixel_run(head)
    # no mixup CE: the dense loss is the CE
    assert set(losses) == {"loss_sem_seg_con"} and predictor_grad is None
    features, labels, predictor = _inputs()
    torch.manual_seed(7)
    small = F.interpolate(labels[:, None].float(), size=(4, 4), mode="nearest")[:, 0].long()
    index = sample_pixels_per_class(small, 5, 255)
    rng = torch.get_rng_state()
    with torch.no_grad():
        z = F.normalize(head.contrastor(features.permute(0, 2, 3, 1).reshape(-1, 8)[index]), dim=1)
        expected = 0.3 * _slow_focal_supcon(z, small.reshape(-1)[index], 0.07)
    assert losses["loss_sem_seg_con"].item() == pytest.approx(expected, rel=1e-5) and expected > 0
    torch.manual_seed(7)
    head(features, labels, predictor)
    # only the pixel sampling draws: no mixing weights
    assert torch.equal(torch.get_rng_state(), rng)
    few = torch.full((2, 8, 8), 255)
    few[0, 0, 0] = 1  # one valid pixel
    assert set(head(features, few, predictor)) == {"loss_sem_seg_con"}


def test_pixel_flags_each_change_only_their_part():
    runs = {
        (hp, sb): _pixel_run(_pixel_head(hard_pairs=hp, smooth_boundary=sb))[0]
        for hp in (True, False)
        for sb in (True, False)
    }
    full, ablation = runs[True, True], runs[False, False]
    for hp, sb in runs:
        assert ("loss_sem_seg_mix" in runs[hp, sb]) == sb, (hp, sb)
        if sb:
            assert torch.equal(runs[hp, sb]["loss_sem_seg_mix"], full["loss_sem_seg_mix"]), (hp, sb)
        assert torch.equal(
            runs[hp, sb]["loss_sem_seg_con"], (full if hp else ablation)["loss_sem_seg_con"]
        ), (hp, sb)
    assert not torch.equal(full["loss_sem_seg_con"], ablation["loss_sem_seg_con"])


def test_pixel_flags_must_be_bools_and_come_from_the_config():
    from detectron2.layers import ShapeSpec

    from contrastive_det.config import get_cfg
    from contrastive_det.modeling.sem_seg_heads import FCNHead

    for bad in (dict(hard_pairs=1), dict(smooth_boundary="True")):
        with pytest.raises(ValueError, match="must be True or False"):
            PixelCoreTuning(8, 3, **bad)
    cfg = get_cfg()
    cfg.merge_from_list(
        [
            "MODEL.SEM_SEG_HEAD.CORE_TUNING.ENABLED",
            "True",
            "CLASSIFICATION.CORE_TUNING.HARD_PAIRS",
            "True",
            "CLASSIFICATION.CORE_TUNING.SMOOTH_BOUNDARY",
            "False",
            "MODEL.SEM_SEG_HEAD.IN_FEATURES",
            "['res5']",
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
            "3",
            "MODEL.SEM_SEG_HEAD.CONVS_DIM",
            "8",
            "MODEL.SEM_SEG_HEAD.NORM",
            "''",
        ]
    )
    head = FCNHead(cfg, {"res5": ShapeSpec(channels=16, stride=16)}).core_tuning
    assert (head.hard_pairs, head.smooth_boundary) == (True, False)

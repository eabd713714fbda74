"""Core-tuning on pixel embeddings (this suite's adaptation): sampling, void pixels, gradients into the classifier."""
import torch

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
    assert predictor.weight.grad.abs().sum() > 0  # the smooth boundary is the segmentation classifier's
    assert features.grad[:, :, 2:, 2:].abs().sum() > 0 and features.grad[:, :, :2, :2].abs().sum() == 0

"""
Core-tuning for semantic segmentation: this suite's adaptation, not the paper's recipe.

Core-tuning (Zhang et al., NeurIPS 2021) reports segmentation results, but its authors' code has no
segmentation part and the paper's segmentation recipe is not specified closely enough to follow.
Here the classification method (:mod:`contrastive_det.modeling.core_tuning`) is applied to pixel
embeddings, the FCN head's features before its classifier:

1. pixels are sampled per class: up to ``pixels_per_class`` valid pixels of every class present
   in the batch (labels taken at the feature resolution by nearest neighbour; void pixels never),
   drawn from torch's global RNG (seeded per step and rank by the trainer);
2. the Core-tuning batch is built from those M embeddings (:func:`core_tuning_mixup`: hard negatives
   by mixup with a shuffled batch, hard positives by mixing each pixel's hardest positive with its
   hardest negative);
3. ``loss_sem_seg_mix``: soft-target cross-entropy of the head's own 1x1 classifier on the 2M mixed
   rows (the smooth decision boundary; the M original pixels are already in the dense loss);
4. ``loss_sem_seg_con``: ``eta`` x focal SupCon of the L2-normalised projections (a 2-layer MLP) of
   the 3M rows, positives = rows with identical soft targets.

``CLASSIFICATION.CORE_TUNING.SMOOTH_BOUNDARY`` False drops step 3 (no ``loss_sem_seg_mix``: the real
pixels' cross-entropy is the dense loss); ``CLASSIFICATION.CORE_TUNING.HARD_PAIRS`` False runs step
4 on the M sampled pixels only, positives = same class; with both False (Core-tuning's "CE +
contrastive" ablation) step 2 is skipped, no mixing weights are drawn.

The dense pixel cross-entropy stays the main loss. Pixels are mixed within each process's batch (the
sampled counts differ between processes); Core-tuning's classification head mixes over the global
batch instead.
"""

import torch
from torch import nn
from torch.nn import functional as F

from ..losses.core_tuning import (
    core_tuning_mixup,
    focal_supcon_loss,
    soft_label_ids,
    soft_target_cross_entropy,
)
from .core_tuning import check_flags, sample_mix_weights
from .heads import ProjectionMLP

__all__ = ["PixelCoreTuning", "sample_pixels_per_class"]


def sample_pixels_per_class(labels, pixels_per_class, ignore_value):
    """
    Flat indices of at most ``pixels_per_class`` random pixels of each class in ``labels`` (any
    shape; ``ignore_value`` never sampled), drawn from torch's global RNG; sorted by class.
    """
    flat = labels.reshape(-1)
    chosen = []
    for c in torch.unique(flat).tolist():
        if c == ignore_value:
            continue
        where = torch.nonzero(flat == c, as_tuple=False).reshape(-1)  # P
        pick = torch.randperm(where.numel())[:pixels_per_class].to(where.device)
        chosen.append(where[pick])
    return torch.cat(chosen) if chosen else flat.new_zeros((0,), dtype=torch.long)


class PixelCoreTuning(nn.Module):
    """
    The Core-tuning terms over sampled pixel embeddings (module docstring). ``forward(features,
    labels, predictor)`` with NxDxhxw features, NxHxW labels and the head's 1x1 ``Conv2d``
    classifier returns ``{"loss_sem_seg_mix", "loss_sem_seg_con"}`` (both 0 when fewer than 2 pixels
    are valid); ``loss_sem_seg_mix`` only with ``smooth_boundary`` True. ``hard_pairs`` False: the
    contrastive term on the sampled pixels only.
    """

    def __init__(
        self,
        in_dim,
        num_classes,
        *,
        pixels_per_class=32,
        hidden_dim=512,
        proj_dim=256,
        eta=0.1,
        alpha=1.0,
        temperature=0.07,
        min_shuffled_weight=0.8,
        con_normalization="batch",
        ignore_value=255,
        hard_pairs=True,
        smooth_boundary=True,
    ):
        super().__init__()
        if pixels_per_class < 1:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.CORE_TUNING.PIXELS_PER_CLASS must be >= 1, got "
                f"{pixels_per_class}"
            )
        check_flags("PixelCoreTuning", hard_pairs=hard_pairs, smooth_boundary=smooth_boundary)
        self.hard_pairs, self.smooth_boundary = hard_pairs, smooth_boundary
        self.num_classes, self.pixels_per_class, self.ignore_value = (
            num_classes,
            pixels_per_class,
            ignore_value,
        )
        self.eta, self.alpha, self.temperature = eta, alpha, temperature
        self.min_shuffled_weight, self.con_normalization = min_shuffled_weight, con_normalization
        self.contrastor = ProjectionMLP(in_dim, hidden_dim, proj_dim, num_layers=2, use_bn=False)

    def forward(self, features, labels, predictor):
        n, d, h, w = features.shape
        small = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[
            :, 0
        ].long()  # Nxhxw
        index = sample_pixels_per_class(small, self.pixels_per_class, self.ignore_value)  # M
        zero = features.sum() * 0.0
        if index.numel() < 2:
            keys = (
                ("loss_sem_seg_mix", "loss_sem_seg_con")
                if self.smooth_boundary
                else ("loss_sem_seg_con",)
            )
            return dict.fromkeys(keys, zero)
        pixels = features.permute(0, 2, 3, 1).reshape(-1, d)[index]  # MxD
        pixel_labels = small.reshape(-1)[index]  # M
        m = pixels.shape[0]
        losses = {}
        if self.hard_pairs or self.smooth_boundary:  # the mixup batch (no draws when both are off)
            perm = torch.randperm(m).to(pixels.device)  # M
            shuffled = sample_mix_weights(
                m, self.alpha, self.min_shuffled_weight, device=pixels.device
            )  # M
            positive = sample_mix_weights(m, self.alpha, 0.0, device=pixels.device)  # M
            feats, targets = core_tuning_mixup(
                pixels, pixel_labels, self.num_classes, perm, shuffled, positive
            )  # 3MxD, 3MxK
        if self.smooth_boundary:
            logits = F.linear(
                feats[m:], predictor.weight.reshape(self.num_classes, d), predictor.bias
            )  # 2MxK
            losses["loss_sem_seg_mix"] = soft_target_cross_entropy(logits, targets[m:])
        if self.hard_pairs:
            z, ids = (
                F.normalize(self.contrastor(feats), dim=1),
                soft_label_ids(targets),
            )  # 3Mxproj_dim, 3M
        else:  # the sampled pixels only, positives = same class
            z, ids = F.normalize(self.contrastor(pixels), dim=1), pixel_labels  # Mxproj_dim, M
        con = focal_supcon_loss(z, ids, self.temperature, normalization=self.con_normalization)
        losses["loss_sem_seg_con"] = self.eta * con
        return losses

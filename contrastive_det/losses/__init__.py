"""
Contrastive objectives (docs/design.md section 5) as pure functions: L2-normalised embeddings (+
labels, temperature, options) in, a scalar loss tensor out. No state and no distributed calls: the
callers normalise and gather across processes first. Logits are always computed in float32 (float64
for float64 inputs), also under autocast.

- ``nt_xent_loss``: NT-Xent of SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of
  Visual Representations", ICML 2020).
- ``infonce_loss``: InfoNCE with a queue of negatives, MoCo / MoCo v2 (He et al., "Momentum Contrast
  for Unsupervised Visual Representation Learning", CVPR 2020; Chen et al., "Improved Baselines with
  Momentum Contrastive Learning", arXiv:2003.04297).
- ``supcon_loss``: SupCon (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020),
  reference semantics of the authors' SupContrast code.
- ``queue_supcon_loss``: the supervised queue term of SupCon+SelfSupCon (Islam et al., "A Broad
  Study on the Transferability of Visual Representations with Contrastive Learning", ICCV 2021).
- ``ce_selfsupcon_loss``: CE+SelfSupCon (Islam et al., ICCV 2021): cross-entropy + weighted InfoNCE.
- ``supcon_selfsupcon_loss``: SupCon+SelfSupCon (Islam et al., ICCV 2021): weighted InfoNCE +
  weighted queue SupCon.
- ``scan_loss``: SCAN, this project's specification (docs/design.md section 5): queue SupCon whose
  positives are the other view plus same-label entries among the k nearest neighbours of the
  momentum embedding.
- ``focal_supcon_loss``, ``soft_target_cross_entropy`` and the pure batch construction of
  Core-tuning (``hard_pair_indices``, ``mix_rows``, ``mixed_soft_targets``, ``soft_label_ids``,
  ``core_tuning_mixup``): Zhang et al., "Unleashing the Power of Contrastive Self-Supervised Visual
  Models via Contrast-Regularized Fine-Tuning", NeurIPS 2021. The random draws are the caller's
  (``contrastive_det.modeling.core_tuning.CoreTuningHead``).

The numerics they share (logit dtype, autocast guard, mask value, masked mean log-probability of
positives) live in ``contrastive_det.losses.numerics``.
"""

from .core_tuning import (
    core_tuning_mixup,
    focal_supcon_loss,
    hard_pair_indices,
    mix_rows,
    mixed_soft_targets,
    soft_label_ids,
    soft_target_cross_entropy,
)
from .infonce import infonce_loss
from .joint import ce_selfsupcon_loss, supcon_selfsupcon_loss
from .ntxent import nt_xent_loss
from .scan import scan_loss
from .supcon import queue_supcon_loss, supcon_loss

__all__ = [
    "nt_xent_loss",
    "infonce_loss",
    "supcon_loss",
    "queue_supcon_loss",
    "ce_selfsupcon_loss",
    "supcon_selfsupcon_loss",
    "scan_loss",
    "focal_supcon_loss",
    "soft_target_cross_entropy",
    "hard_pair_indices",
    "mix_rows",
    "mixed_soft_targets",
    "soft_label_ids",
    "core_tuning_mixup",
]

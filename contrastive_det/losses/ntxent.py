"""SimCLR's NT-Xent loss (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, https://arxiv.org/abs/2002.05709).

Like every loss of this package it is a pure function of L2-normalised embeddings: the callers
normalise (and, in distributed training, gather across processes) before calling; nothing here
re-normalises.
"""

import torch
from torch.nn import functional as F

from .numerics import autocast_off, mask_value, to_logit_dtype

__all__ = ["nt_xent_loss"]


def nt_xent_loss(z1, z2, temperature=0.5):
    """SimCLR NT-Xent (normalised temperature-scaled cross-entropy).

    Row i of ``z1`` and row i of ``z2`` are two views of image i. The 2N rows are all anchors; the
    positive of an anchor is its other view, the other 2N-2 rows are its negatives; self-similarity
    is excluded from every denominator. The loss is the mean cross-entropy over the 2N anchors.

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
    ICML 2020.

    Args:
        z1, z2: L2-normalised projections of the two views (cosine similarity = dot product); not
            re-normalised here.
        temperature: T, the logits are ``z_a . z_b / T``.

    Shape:
        - z1, z2: NxD (the same shape).
        - Output: scalar, float32 (float64 if an input is float64), also under autocast.

    Raises:
        ValueError: z1 and z2 are not two NxD tensors of the same shape.

    Examples:
        >>> z1 = F.normalize(torch.randn(8, 128), dim=1)
        >>> z2 = F.normalize(torch.randn(8, 128), dim=1)
        >>> loss = nt_xent_loss(z1, z2, temperature=0.1)  # scalar
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"nt_xent_loss expects two NxD tensors of the same shape, got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}"
        )
    n = z1.shape[0]
    with autocast_off(z1.device):
        z1, z2 = to_logit_dtype(z1, z2)
        z = torch.cat([z1, z2], dim=0)  # z: 2NxD, rows 0..N-1 view 1, rows N..2N-1 view 2
        logits = (z @ z.t()) / temperature  # logits: 2Nx2N
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)  # 2Nx2N
        # self excluded (out of place)
        logits = logits.masked_fill(self_mask, mask_value(logits.dtype))
        idx = torch.arange(n, device=z.device)
        targets = torch.cat([idx + n, idx])  # 2N: anchor i -> i+N, anchor i+N -> i
        # cross_entropy uses log_softmax (row max subtracted)
        return F.cross_entropy(logits, targets)

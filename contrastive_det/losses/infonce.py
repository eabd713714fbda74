"""MoCo's InfoNCE loss with a queue of negatives (He et al., "Momentum Contrast for Unsupervised
Visual Representation Learning", CVPR 2020; MoCo v2: Chen et al., "Improved Baselines with Momentum
Contrastive Learning", arXiv:2003.04297)."""

import torch
from torch.nn import functional as F

from .numerics import autocast_off, to_logit_dtype

__all__ = ["infonce_loss"]


def infonce_loss(q, k, queue, temperature=0.2):
    """MoCo InfoNCE: each query against its key (the positive) and the queue (the negatives).

    logits = [q.k, q.queue^T] / T, cross-entropy with target 0 (the positive), mean over the N
    queries.

    Reference: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR
    2020; Chen et al., "Improved Baselines with Momentum Contrastive Learning", arXiv:2003.04297.

    Args:
        q: L2-normalised queries (query encoder).
        k: L2-normalised keys of the same images (momentum encoder). Not detached here: the caller
            produces them without gradient; gradients flow into whatever requires them.
        queue: L2-normalised negatives. K may be 0 (then the loss is 0).
        temperature: T (MoCo v2: 0.2).

    Shape:
        - q, k: NxC; queue: KxC.
        - Output: scalar, float32 (float64 if an input is float64), also under autocast.

    Raises:
        ValueError: the shapes are not NxC, NxC, KxC.

    Examples:
        >>> q, k = F.normalize(torch.randn(4, 16), dim=1), F.normalize(torch.randn(4, 16), dim=1)
        >>> queue = F.normalize(torch.randn(64, 16), dim=1)
        >>> loss = infonce_loss(q, k, queue, temperature=0.2)  # scalar
    """
    if q.dim() != 2 or q.shape != k.shape or queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"infonce_loss expects q, k: NxC and queue: KxC, got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(queue.shape)}"
        )
    with autocast_off(q.device):
        q, k, queue = to_logit_dtype(q, k, queue)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # l_pos: Nx1
        l_neg = q @ queue.t()  # l_neg: NxK
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # logits: Nx(1+K)
        # N: positive is column 0
        targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, targets)

"""MoCo's InfoNCE loss (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020; MoCo v2: Chen et al., arXiv:2003.04297)."""
import torch
from torch.nn import functional as F

from .ntxent import _autocast_off, _to_logit_dtype

__all__ = ["infonce_loss"]


def infonce_loss(q, k, queue, temperature=0.2):
    """MoCo InfoNCE. q: NxC queries, k: NxC keys (positives, no gradient expected but do not detach inside),
    queue: KxC negatives. logits: Nx(1+K) = [q.k, q.queue^T] / T; cross-entropy with target 0; mean over N.

    All inputs must already be L2-normalised. ``k`` is not detached here: the caller produces it without
    gradient (momentum encoder); gradients flow into whatever requires them. K may be 0 (then the loss is 0).
    Logits are computed in float32 (float64 if an input is float64), also under autocast. Returns a scalar.
    """
    if q.dim() != 2 or q.shape != k.shape or queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"infonce_loss expects q, k: NxC and queue: KxC, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(queue.shape)}"
        )
    with _autocast_off(q.device):
        q, k, queue = _to_logit_dtype(q, k, queue)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # l_pos: Nx1
        l_neg = q @ queue.t()  # l_neg: NxK
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # logits: Nx(1+K)
        targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # N: positive is column 0
        return F.cross_entropy(logits, targets)

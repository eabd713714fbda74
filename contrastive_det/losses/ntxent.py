"""SimCLR's NT-Xent loss (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020), plus the small numeric helpers the other losses of this package share.

All losses in this package are pure functions of L2-normalised embeddings: the callers normalise (and,
in distributed training, gather across processes) before calling; nothing here re-normalises.
"""
import contextlib

import torch
from torch.nn import functional as F

__all__ = ["nt_xent_loss"]


def _logit_dtype(*tensors):
    """float32, or float64 when an input is float64: logits are never computed in half precision."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _to_logit_dtype(*tensors):
    """The inputs cast (out of place) to the common logit dtype; a tensor already in it is returned as is."""
    dtype = _logit_dtype(*tensors)
    return [t.to(dtype) for t in tensors]


def _autocast_off(device):
    """A context that disables autocast on ``device`` so the matmuls below stay in float32/float64."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type autocast does not know: nothing to disable
        return contextlib.nullcontext()


def _mask_value(dtype):
    """A finite, very negative logit: exp() of it minus any realistic row maximum is exactly 0,
    and (unlike -inf) a row made only of it still has a finite log_softmax, so nothing becomes NaN."""
    return torch.finfo(dtype).min / 4


def nt_xent_loss(z1, z2, temperature=0.5):
    """SimCLR NT-Xent. z1, z2: NxD (two views, row i of z1 and z2 are the same image). 2N anchors; for each
    anchor the positive is its other view, the other 2N-2 are negatives; mean cross-entropy over all 2N anchors.

    ``z1`` and ``z2`` must already be L2-normalised (cosine similarity = dot product); they are not
    re-normalised here. Self-similarity is excluded from every denominator. Logits are computed in
    float32 (float64 if an input is float64), also under autocast. Returns a scalar tensor.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"nt_xent_loss expects two NxD tensors of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    with _autocast_off(z1.device):
        z1, z2 = _to_logit_dtype(z1, z2)
        z = torch.cat([z1, z2], dim=0)  # z: 2NxD, rows 0..N-1 view 1, rows N..2N-1 view 2
        logits = (z @ z.t()) / temperature  # logits: 2Nx2N
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)  # 2Nx2N
        logits = logits.masked_fill(self_mask, _mask_value(logits.dtype))  # self excluded (out of place)
        idx = torch.arange(n, device=z.device)
        targets = torch.cat([idx + n, idx])  # 2N: anchor i -> i+N, anchor i+N -> i
        return F.cross_entropy(logits, targets)  # cross_entropy uses log_softmax (row max subtracted)

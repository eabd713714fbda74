"""
Numerics shared by every contrastive loss of this package: the dtype logits are computed in, a
context that keeps autocast away from them, a finite mask value, and the masked mean-log-probability
of positives used by the supervised losses (SupCon, queue SupCon, SCAN).

These are the only helpers the loss modules share; each loss module imports them from here.
"""

import contextlib

import torch
from torch.nn import functional as F

__all__ = [
    "logit_dtype",
    "to_logit_dtype",
    "autocast_off",
    "mask_value",
    "positive_mean_log_prob",
    "mean_over_valid",
    "labelled_memory",
]


def logit_dtype(*tensors):
    """float32, or float64 when an input is float64: logits are never computed in half precision.

    Examples:
        >>> logit_dtype(torch.zeros(2, dtype=torch.bfloat16))
        torch.float32
    """
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def to_logit_dtype(*tensors):
    """The inputs cast (out of place) to their common :func:`logit_dtype`, as a list; a tensor
    already in it is returned as is."""
    dtype = logit_dtype(*tensors)
    return [t.to(dtype) for t in tensors]


def autocast_off(device):
    """A context that disables autocast on ``device`` so that the matmuls inside stay in
    float32/float64. A device type autocast does not know gives a no-op context."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type autocast does not know: nothing to disable
        return contextlib.nullcontext()


def mask_value(dtype):
    """A finite, very negative logit for ``dtype``: exp() of it minus any realistic row maximum is
    exactly 0, and (unlike -inf) a row made only of it still has a finite log_softmax, so nothing
    becomes NaN."""
    return torch.finfo(dtype).min / 4


def positive_mean_log_prob(logits, pos, keep=None):
    """Per-anchor mean over positives of ``log_softmax(logits)``.

    Args:
        logits: AxM logits (anchors x contrast entries).
        pos: AxM non-negative positive weights (1/0 for a binary mask).
        keep: AxM bool or None; False removes the entry from the anchor's denominator and from its
            positives.

    Returns:
        (mean_log_prob_pos [A], valid [A] bool: the anchor has a positive). An anchor without
        positives gets 0, not NaN.
    """
    if keep is not None:
        logits = logits.masked_fill(~keep, mask_value(logits.dtype))  # removed entries: exp(.) == 0
        pos = pos * keep.to(pos.dtype)
    log_prob = F.log_softmax(logits, dim=1)  # log_prob: AxM (row max subtracted inside)
    pos_count = pos.sum(dim=1)  # A
    valid = pos_count > 0  # A
    denom = torch.where(valid, pos_count, torch.ones_like(pos_count))  # A, never 0
    return (pos * log_prob).sum(dim=1) / denom, valid


def mean_over_valid(per_anchor, valid):
    """Mean of ``per_anchor`` [A] over the anchors with ``valid`` [A]; 0 (still connected to the
    graph) if none is valid. No host synchronisation (no data-dependent Python branch)."""
    w = valid.to(per_anchor.dtype)  # A
    return (per_anchor * w).sum() / w.sum().clamp_min(1.0)


def labelled_memory(keys, key_labels, queue, queue_labels):
    """The labelled MoCo memory: cat[keys NxD, queue KxD] -> (N+K)xD, and its labels (N+K).

    Raises:
        ValueError: keys and queue are not 2-D with the same D, or the label counts do not match.
    """
    if keys.dim() != 2 or queue.dim() != 2 or keys.shape[1] != queue.shape[1]:
        raise ValueError(
            f"keys NxD and queue KxD expected, got {tuple(keys.shape)} and {tuple(queue.shape)}"
        )
    key_labels, queue_labels = key_labels.reshape(-1), queue_labels.reshape(-1)
    if key_labels.numel() != keys.shape[0] or queue_labels.numel() != queue.shape[0]:
        raise ValueError("one label per key and per queue entry expected")
    return torch.cat([keys, queue], dim=0), torch.cat(
        [key_labels, queue_labels.to(key_labels.dtype)], dim=0
    )

"""Supervised contrastive losses.

- ``supcon_loss``: SupCon (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020), with the
  semantics of the authors' reference code (SupContrast): features [bsz, n_views, D], optional labels or
  explicit positive mask, contrast modes "all"/"one", loss scaled by T / base_T.
- ``queue_supcon_loss``: the supervised queue term of SupCon+SelfSupCon (Islam et al., "A Broad Study on
  the Transferability of Visual Representations with Contrastive Learning", ICCV 2021): SupCon of
  query-encoder anchors against a labelled MoCo memory (the batch's momentum keys + the queue).

Inputs are L2-normalised embeddings (the callers normalise; nothing is re-normalised here).
"""
import torch
from torch.nn import functional as F

from .ntxent import _autocast_off, _mask_value, _to_logit_dtype

__all__ = ["supcon_loss", "queue_supcon_loss"]


def _positive_mean_log_prob(logits, pos, keep=None):
    """Per-anchor mean over positives of log_prob.

    logits: AxM; pos: AxM non-negative positive weights (1/0 for a binary mask); keep: AxM bool or None,
    False = entry removed from the anchor's denominator (and from its positives). Returns (mean_log_prob_pos
    [A], valid [A] bool = the anchor has a positive). An anchor without positives gets 0 (not NaN).
    """
    if keep is not None:
        logits = logits.masked_fill(~keep, _mask_value(logits.dtype))  # removed entries: exp(.) == 0
        pos = pos * keep.to(pos.dtype)
    log_prob = F.log_softmax(logits, dim=1)  # log_prob: AxM (row max subtracted inside)
    pos_count = pos.sum(dim=1)  # A
    valid = pos_count > 0  # A
    denom = torch.where(valid, pos_count, torch.ones_like(pos_count))  # A, never 0
    return (pos * log_prob).sum(dim=1) / denom, valid


def _mean_over_valid(per_anchor, valid):
    """Mean of ``per_anchor`` over anchors with ``valid``; 0 (still connected to the graph) if none is valid.
    No host synchronisation (no data-dependent Python branch)."""
    w = valid.to(per_anchor.dtype)  # A
    return (per_anchor * w).sum() / w.sum().clamp_min(1.0)


def supcon_loss(features, labels=None, mask=None, temperature=0.07, contrast_mode="all", base_temperature=0.07):
    """Khosla et al. SupCon with the reference semantics of the SupContrast code. features: [bsz, n_views, D].
    labels: [bsz] or None; mask: [bsz, bsz] explicit positive mask (labels and mask are exclusive; neither ->
    SimCLR: positives = other views of the same sample). contrast_mode "all" (every view of every sample is an
    anchor) or "one" (only view 0 is the anchor, contrasted against all views). Self-contrast excluded from
    both numerator and denominator. Per-anchor loss = -(T/base_T) * mean over its positives of log_prob; final
    loss = mean over anchors.

    Details:

    - ``features`` must be L2-normalised along the last dimension (not re-normalised here); extra trailing
      dimensions are flattened into D as in the reference code.
    - ``mask[i, j]`` (bool or float) marks sample j as a positive of sample i; it is applied to every pair of
      views, so ``mask[i, i]`` decides whether the other views of sample i are positives (labels / None set
      it to 1). Non-binary float values act as positive weights, as in the reference code.
    - An anchor with no positive (e.g. n_views=1 and a label no other sample has) is excluded from the mean
      over anchors (the reference code would count it as 0); if no anchor has a positive the loss is 0,
      still connected to the graph (zero gradients), never NaN.
    - Logits are computed in float32 (float64 if ``features`` is float64), also under autocast.
    """
    if features.dim() < 3:
        raise ValueError(f"supcon_loss expects features [bsz, n_views, D], got shape {tuple(features.shape)}")
    if labels is not None and mask is not None:
        raise ValueError("supcon_loss: pass labels or mask, not both")
    if contrast_mode not in ("all", "one"):
        raise ValueError(f"supcon_loss: unknown contrast_mode {contrast_mode!r} (expected 'all' or 'one')")
    bsz, n_views = features.shape[0], features.shape[1]
    device = features.device
    with _autocast_off(device):
        (features,) = _to_logit_dtype(features)
        features = features.reshape(bsz, n_views, -1)  # features: BxVxD
        if labels is not None:
            labels = labels.reshape(-1)
            if labels.numel() != bsz:
                raise ValueError(f"supcon_loss: {labels.numel()} labels for a batch of {bsz}")
            sample_mask = (labels[:, None] == labels[None, :]).to(features.dtype)  # BxB
        elif mask is not None:
            if tuple(mask.shape) != (bsz, bsz):
                raise ValueError(f"supcon_loss: mask must be [{bsz}, {bsz}], got {tuple(mask.shape)}")
            sample_mask = mask.to(device=device, dtype=features.dtype)  # BxB
        else:
            sample_mask = torch.eye(bsz, dtype=features.dtype, device=device)  # BxB: SimCLR

        contrast = torch.cat(torch.unbind(features, dim=1), dim=0)  # contrast: (V*B)xD, view-major
        if contrast_mode == "one":
            anchor, anchor_count = features[:, 0], 1  # anchor: BxD
        else:
            anchor, anchor_count = contrast, n_views  # anchor: (V*B)xD
        logits = (anchor @ contrast.t()) / temperature  # logits: (A*B)x(V*B), A = anchor_count
        pos = sample_mask.repeat(anchor_count, n_views)  # pos: (A*B)x(V*B)
        # anchor r is contrast entry r (both view-major): exclude that self-contrast everywhere
        keep = ~torch.eye(anchor_count * bsz, n_views * bsz, dtype=torch.bool, device=device)  # (A*B)x(V*B)
        mean_log_prob_pos, valid = _positive_mean_log_prob(logits, pos, keep)  # A*B
        per_anchor = -(temperature / base_temperature) * mean_log_prob_pos  # A*B
        return _mean_over_valid(per_anchor, valid)


def _memory(keys, key_labels, queue, queue_labels):
    """memory: (N+K)xD = cat[keys, queue] and its labels (N+K)."""
    if keys.dim() != 2 or queue.dim() != 2 or keys.shape[1] != queue.shape[1]:
        raise ValueError(f"keys NxD and queue KxD expected, got {tuple(keys.shape)} and {tuple(queue.shape)}")
    key_labels, queue_labels = key_labels.reshape(-1), queue_labels.reshape(-1)
    if key_labels.numel() != keys.shape[0] or queue_labels.numel() != queue.shape[0]:
        raise ValueError("one label per key and per queue entry expected")
    return torch.cat([keys, queue], dim=0), torch.cat([key_labels, queue_labels.to(key_labels.dtype)], dim=0)


def queue_supcon_loss(q, q_labels, keys, key_labels, queue, queue_labels, temperature=0.07):
    """The supervised queue term of SupCon+SelfSupCon (Islam et al.). q: NxD anchors (query-encoder projections
    of the SupCon head), keys: NxD momentum-encoder projections of the same images (key i is anchor i's other
    view), queue: KxD with queue_labels [K]. Contrast set: memory = cat[keys, queue] (N+K)xD with labels
    cat[key_labels, queue_labels]. logits: Nx(N+K) = q @ memory^T / T. Positives of anchor i = every memory
    entry with label == q_labels[i] (this includes key i itself). loss_i = -sum_p mask_ip * log_softmax_i(p) /
    #positives_i ; mean over anchors.

    All embeddings must be L2-normalised (not re-normalised here); ``keys`` are not detached here. There is no
    self-contrast to exclude (q_i is not in the memory). Queue slots with a label no anchor has (e.g. -1 for
    "no label yet") are plain negatives. An anchor without positives (only possible when key_labels[i] !=
    q_labels[i]) is excluded from the mean, as in ``supcon_loss``; if none has one, the loss is 0 (connected
    to the graph). Logits are computed in float32 (float64 if an input is float64), also under autocast.
    """
    if q.dim() != 2 or q.shape != keys.shape:
        raise ValueError(f"q and keys must both be NxD, got {tuple(q.shape)} and {tuple(keys.shape)}")
    with _autocast_off(q.device):
        q, keys, queue = _to_logit_dtype(q, keys, queue)
        memory, mem_labels = _memory(keys, key_labels, queue, queue_labels)  # (N+K)xD, (N+K)
        q_labels = q_labels.reshape(-1).to(mem_labels.dtype)  # N
        logits = (q @ memory.t()) / temperature  # logits: Nx(N+K)
        pos = (q_labels[:, None] == mem_labels[None, :]).to(logits.dtype)  # pos: Nx(N+K)
        mean_log_prob_pos, valid = _positive_mean_log_prob(logits, pos)  # N
        return _mean_over_valid(-mean_log_prob_pos, valid)

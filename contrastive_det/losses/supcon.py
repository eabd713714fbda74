"""Supervised contrastive losses.

- ``supcon_loss``: SupCon (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020), with the
  semantics of the authors' reference code (SupContrast): features [bsz, n_views, D], optional
  labels or explicit positive mask, contrast modes "all"/"one", loss scaled by T / base_T.
- ``queue_supcon_loss``: the supervised queue term of SupCon+SelfSupCon (Islam et al., "A Broad
  Study on the Transferability of Visual Representations with Contrastive Learning", ICCV 2021):
  SupCon of query-encoder anchors against a labelled MoCo memory (the batch's momentum keys + the
  queue).

Inputs are L2-normalised embeddings (the callers normalise; nothing is re-normalised here).
"""

import torch

from .numerics import (
    autocast_off,
    labelled_memory,
    mean_over_valid,
    positive_mean_log_prob,
    to_logit_dtype,
)

__all__ = ["supcon_loss", "queue_supcon_loss"]


def supcon_loss(
    features, labels=None, mask=None, temperature=0.07, contrast_mode="all", base_temperature=0.07
):
    """SupCon with the reference semantics of the SupContrast code.

    Positives of an anchor are the other views of its sample and every view of the samples with the
    same label (``labels``), or the samples marked in ``mask``; with neither, only the other views
    (SimCLR). Self-contrast is excluded from numerator and denominator. Per-anchor loss =
    -(T/base_T) * mean over its positives of log_prob; the loss is the mean over anchors.

    Reference: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (and the authors'
    SupContrast code, whose ``SupConLoss`` keeps ``base_temperature`` 0.07 whatever the
    temperature).

    Args:
        features: L2-normalised along the last dimension (not re-normalised here); extra trailing
            dimensions are flattened into D as in the reference code.
        labels: class of each sample, or None.
        mask: explicit positive mask; ``mask[i, j]`` (bool or float) marks sample j as a positive of
            sample i for every pair of views, so ``mask[i, i]`` decides whether the other views of
            sample i are positives (labels / None set it to 1). Non-binary values act as positive
            weights.
        temperature: T.
        contrast_mode: "all" (every view of every sample is an anchor) or "one" (only view 0 is the
            anchor, contrasted against all views).
        base_temperature: base_T; the loss is scaled by T / base_T.

    Shape:
        - features: [bsz, n_views, D, ...]; labels: [bsz]; mask: [bsz, bsz].
        - Output: scalar, float32 (float64 if ``features`` is float64), also under autocast.

    An anchor with no positive (e.g. n_views=1 and a label no other sample has) is excluded from the
    mean over anchors (the reference code would count it as 0); if no anchor has a positive the loss
    is 0, still connected to the graph (zero gradients), never NaN.

    Raises:
        ValueError: features has fewer than 3 dimensions, both labels and mask are given, the
        contrast
            mode is unknown, or labels / mask do not match the batch size.

    Examples:
        >>> feats = F.normalize(torch.randn(8, 2, 128), dim=-1)  # 8 images, 2 views
        >>> loss = supcon_loss(
        ...     feats, labels=torch.tensor([0, 1, 0, 2, 1, 1, 3, 2]), temperature=0.1
        ... )
        >>> simclr = supcon_loss(
        ...     feats, temperature=0.1, base_temperature=0.1
        ... )  # == nt_xent_loss(views, 0.1)
    """
    if features.dim() < 3:
        raise ValueError(
            f"supcon_loss expects features [bsz, n_views, D], got shape {tuple(features.shape)}"
        )
    if labels is not None and mask is not None:
        raise ValueError("supcon_loss: pass labels or mask, not both")
    if contrast_mode not in ("all", "one"):
        raise ValueError(
            f"supcon_loss: unknown contrast_mode {contrast_mode!r} (expected 'all' or 'one')"
        )
    bsz, n_views = features.shape[0], features.shape[1]
    device = features.device
    with autocast_off(device):
        (features,) = to_logit_dtype(features)
        features = features.reshape(bsz, n_views, -1)  # features: BxVxD
        if labels is not None:
            labels = labels.reshape(-1)
            if labels.numel() != bsz:
                raise ValueError(f"supcon_loss: {labels.numel()} labels for a batch of {bsz}")
            sample_mask = (labels[:, None] == labels[None, :]).to(features.dtype)  # BxB
        elif mask is not None:
            if tuple(mask.shape) != (bsz, bsz):
                raise ValueError(
                    f"supcon_loss: mask must be [{bsz}, {bsz}], got {tuple(mask.shape)}"
                )
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
        # keep: (A*B)x(V*B)
        keep = ~torch.eye(anchor_count * bsz, n_views * bsz, dtype=torch.bool, device=device)
        mean_log_prob_pos, valid = positive_mean_log_prob(logits, pos, keep)  # A*B
        per_anchor = -(temperature / base_temperature) * mean_log_prob_pos  # A*B
        return mean_over_valid(per_anchor, valid)


def queue_supcon_loss(q, q_labels, keys, key_labels, queue, queue_labels, temperature=0.07):
    """The supervised queue term of SupCon+SelfSupCon: SupCon of query anchors against a labelled
    memory.

    Contrast set: memory = cat[keys, queue] with labels cat[key_labels, queue_labels]; logits = q @
    memory^T / T. Positives of anchor i = every memory entry with label q_labels[i] (this includes
    key i itself). loss_i = -sum_p mask_ip * log_softmax_i(p) / #positives_i; mean over anchors.
    There is no self-contrast to exclude (q_i is not in the memory).

    Reference: Islam et al., "A Broad Study on the Transferability of Visual Representations with
    Contrastive Learning", ICCV 2021.

    Args:
        q: L2-normalised query-encoder projections of the SupCon head (the anchors).
        q_labels: their labels.
        keys: L2-normalised momentum-encoder projections of the same images (key i is anchor i's
            other view); not detached here.
        key_labels: their labels (normally ``q_labels``).
        queue: L2-normalised queued keys; queue_labels: their labels. Slots with a label no anchor
            has (e.g. -1, "no label yet") are plain negatives.
        temperature: T.

    Shape:
        - q, keys: NxD; q_labels, key_labels: N; queue: KxD; queue_labels: K.
        - Output: scalar, float32 (float64 if an input is float64), also under autocast.

    An anchor without positives (only possible when key_labels[i] != q_labels[i]) is excluded from
    the mean, as in :func:`supcon_loss`; if none has one, the loss is 0 (connected to the graph).

    Raises:
        ValueError: q and keys are not both NxD, the queue's D differs, or a label count does not
        match.

    Examples:
        >>> q, k = F.normalize(torch.randn(4, 16), dim=1), F.normalize(torch.randn(4, 16), dim=1)
        >>> queue, queue_labels = F.normalize(torch.randn(8, 16), dim=1), torch.randint(0, 3, (8,))
        >>> labels = torch.tensor([0, 1, 2, 1])
        >>> loss = queue_supcon_loss(q, labels, k, labels, queue, queue_labels, temperature=0.07)
    """
    if q.dim() != 2 or q.shape != keys.shape:
        raise ValueError(
            f"q and keys must both be NxD, got {tuple(q.shape)} and {tuple(keys.shape)}"
        )
    with autocast_off(q.device):
        q, keys, queue = to_logit_dtype(q, keys, queue)
        # memory: (N+K)xD, mem_labels: N+K
        memory, mem_labels = labelled_memory(keys, key_labels, queue, queue_labels)
        q_labels = q_labels.reshape(-1).to(mem_labels.dtype)  # N
        logits = (q @ memory.t()) / temperature  # logits: Nx(N+K)
        pos = (q_labels[:, None] == mem_labels[None, :]).to(logits.dtype)  # pos: Nx(N+K)
        mean_log_prob_pos, valid = positive_mean_log_prob(logits, pos)  # N
        return mean_over_valid(-mean_log_prob_pos, valid)

"""SCAN: supervised contrast restricted to label-sharing nearest neighbours (this project's
specification, docs/design.md section 5): a MoCo-style labelled memory; for each anchor the
positives are its other view plus the memory entries that share its label AND are among the k
nearest neighbours of its momentum embedding."""

import torch

from .numerics import (
    autocast_off,
    labelled_memory,
    mean_over_valid,
    positive_mean_log_prob,
    to_logit_dtype,
)

__all__ = ["scan_loss"]

_NON_NEIGHBOR_MODES = ("mask", "negative")


def scan_loss(
    q,
    q_labels,
    keys,
    key_labels,
    queue,
    queue_labels,
    num_neighbors,
    temperature=0.07,
    non_neighbor_same_label="mask",
):
    """SCAN (our specification, docs/design.md section 5): queue SupCon whose positives are
    restricted to label-sharing nearest neighbours of the anchor's momentum embedding.

    Same memory as :func:`queue_supcon_loss`: memory = cat[keys, queue] with labels. For anchor i
    the positives are its other view (key i, always) plus the memory entries that share its label
    AND are among the ``num_neighbors`` nearest neighbours of anchor i's MOMENTUM embedding keys[i]
    (cosine = dot product) in the memory excluding entry i itself. Same-label entries outside that
    neighbourhood: ``non_neighbor_same_label="mask"`` (default) removes them from the denominator
    (neither positive nor negative); ``"negative"`` keeps them in the denominator as negatives.
    Entries with another label are always negatives. loss_i = -mean over positives of log_prob over
    the kept entries; mean over anchors.

    Reference: Wei et al., "Supervised Contrastive Adjustment in Neighborhood" (SCAN), 2020; the
    exact rule is this project's specification.

    Args:
        q: L2-normalised query-encoder projections (the anchors); q_labels: their labels.
        keys: L2-normalised momentum projections of the same images; key_labels: their labels.
        queue, queue_labels: the labelled queue (L2-normalised keys).
        num_neighbors: k. The neighbourhood is label-agnostic: the k memory entries (any label,
            entry i excluded) most similar to keys[i], computed under ``torch.no_grad`` (ties broken
            by ``torch.topk``). k >= N+K-1 (the number of candidates) or None means all: the loss
            then equals ``queue_supcon_loss`` on the same inputs (when key_labels == q_labels); 0
            means the only positive is key i.
        temperature: T.
        non_neighbor_same_label: "mask" or "negative" (see above).

    Shape:
        - q, keys: NxD; q_labels, key_labels: N; queue: KxD; queue_labels: K.
        - Output: scalar, float32 (float64 if an input is float64), also under autocast.

    Raises:
        ValueError: unknown ``non_neighbor_same_label``, negative ``num_neighbors``, q and keys not
        both
            NxD, or memory shapes / label counts that do not match.

    Examples:
        >>> q, k = F.normalize(torch.randn(4, 16), dim=1), F.normalize(torch.randn(4, 16), dim=1)
        >>> queue, queue_labels = F.normalize(torch.randn(8, 16), dim=1), torch.randint(0, 3, (8,))
        >>> labels = torch.tensor([0, 1, 2, 1])
        >>> loss = scan_loss(
        ...     q, labels, k, labels, queue, queue_labels, num_neighbors=5, temperature=0.07
        ... )
    """
    if non_neighbor_same_label not in _NON_NEIGHBOR_MODES:
        raise ValueError(
            f"scan_loss: non_neighbor_same_label must be one of {_NON_NEIGHBOR_MODES}, got "
            f"{non_neighbor_same_label!r}"
        )
    if num_neighbors is not None and num_neighbors < 0:
        raise ValueError(f"scan_loss: num_neighbors must be >= 0, got {num_neighbors}")
    if q.dim() != 2 or q.shape != keys.shape:
        raise ValueError(
            f"q and keys must both be NxD, got {tuple(q.shape)} and {tuple(keys.shape)}"
        )
    n = q.shape[0]
    device = q.device
    with autocast_off(device):
        q, keys, queue = to_logit_dtype(q, keys, queue)
        # memory: MxD, M = N+K
        memory, mem_labels = labelled_memory(keys, key_labels, queue, queue_labels)
        m = memory.shape[0]
        q_labels = q_labels.reshape(-1).to(mem_labels.dtype)  # N
        # NxM: entry i of the memory is key i
        own = torch.eye(n, m, dtype=torch.bool, device=device)

        num_candidates = m - 1
        k_eff = num_candidates if num_neighbors is None else min(int(num_neighbors), num_candidates)
        with torch.no_grad():
            if k_eff >= num_candidates:
                neighbor = ~own  # NxM: every candidate is a neighbour
            else:
                sim = keys.detach() @ memory.detach().t()  # sim: NxM, momentum-embedding cosine
                sim = sim.masked_fill(own, float("-inf"))  # entry i is not a candidate
                neighbor = torch.zeros(n, m, dtype=torch.bool, device=device)  # NxM
                if k_eff > 0:
                    idx = sim.topk(k_eff, dim=1).indices  # idx: Nxk
                    neighbor.scatter_(1, idx, True)
                neighbor &= ~own
            same = q_labels[:, None] == mem_labels[None, :]  # same: NxM
            positive = own | (same & neighbor)  # NxM
            if non_neighbor_same_label == "mask":
                # NxM: same-label non-neighbours leave the denominator
                keep = ~(same & ~neighbor) | own
            else:
                keep = torch.ones_like(positive)  # NxM: they stay, as negatives

        logits = (q @ memory.t()) / temperature  # logits: NxM
        # mean_log_prob_pos, valid: N
        mean_log_prob_pos, valid = positive_mean_log_prob(logits, positive.to(logits.dtype), keep)
        return mean_over_valid(-mean_log_prob_pos, valid)

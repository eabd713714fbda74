"""SCAN: supervised contrast restricted to label-sharing nearest neighbours (this project's specification,
DESIGN.md section 5): a MoCo-style labelled memory; for each anchor the positives are its other view plus the
memory entries that share its label AND are among the k nearest neighbours of its momentum embedding."""
import torch

from .ntxent import _autocast_off, _to_logit_dtype
from .supcon import _mean_over_valid, _memory, _positive_mean_log_prob

__all__ = ["scan_loss"]

_NON_NEIGHBOR_MODES = ("mask", "negative")


def scan_loss(q, q_labels, keys, key_labels, queue, queue_labels, num_neighbors, temperature=0.07,
              non_neighbor_same_label="mask"):
    """SCAN (our specification, DESIGN.md section 5). Same memory as queue_supcon_loss: memory = cat[keys, queue]
    with labels. For anchor i the positives are its other view (key i, always) plus memory entries that share
    its label AND are among the num_neighbors nearest neighbours of anchor i's MOMENTUM embedding keys[i]
    (cosine = dot product of normalised vectors) in the memory excluding entry i itself. Same-label entries
    outside that neighbourhood: non_neighbor_same_label="mask" (default) removes them from the denominator
    (neither positive nor negative); "negative" keeps them in the denominator as negatives. loss_i =
    -mean over positives of log_prob over the kept entries; mean over anchors.

    Details:

    - q: NxD query-encoder projections (anchors), keys: NxD momentum projections of the same images,
      queue: KxD; q_labels, key_labels: [N], queue_labels: [K]. All L2-normalised (not re-normalised here).
    - The neighbourhood is label-agnostic: the ``num_neighbors`` memory entries (any label, entry i excluded)
      most similar to keys[i]; positives are the same-label entries inside it. It is computed under
      ``torch.no_grad`` (no gradient through the top-k); ties are broken by ``torch.topk``.
    - ``num_neighbors`` >= N+K-1 (the number of candidates) or None means all: the loss then equals
      ``queue_supcon_loss`` on the same inputs (when key_labels == q_labels). 0 means the only positive is key i.
    - Entries with another label are always negatives; key i is always a positive (so every anchor has one).
    - Logits are computed in float32 (float64 if an input is float64), also under autocast.
    """
    if non_neighbor_same_label not in _NON_NEIGHBOR_MODES:
        raise ValueError(f"scan_loss: non_neighbor_same_label must be one of {_NON_NEIGHBOR_MODES}, got {non_neighbor_same_label!r}")
    if num_neighbors is not None and num_neighbors < 0:
        raise ValueError(f"scan_loss: num_neighbors must be >= 0, got {num_neighbors}")
    if q.dim() != 2 or q.shape != keys.shape:
        raise ValueError(f"q and keys must both be NxD, got {tuple(q.shape)} and {tuple(keys.shape)}")
    n = q.shape[0]
    device = q.device
    with _autocast_off(device):
        q, keys, queue = _to_logit_dtype(q, keys, queue)
        memory, mem_labels = _memory(keys, key_labels, queue, queue_labels)  # memory: MxD, M = N+K
        m = memory.shape[0]
        q_labels = q_labels.reshape(-1).to(mem_labels.dtype)  # N
        own = torch.eye(n, m, dtype=torch.bool, device=device)  # NxM: entry i of the memory is key i

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
                keep = ~(same & ~neighbor) | own  # NxM: same-label non-neighbours leave the denominator
            else:
                keep = torch.ones_like(positive)  # NxM: they stay, as negatives

        logits = (q @ memory.t()) / temperature  # logits: NxM
        mean_log_prob_pos, valid = _positive_mean_log_prob(logits, positive.to(logits.dtype), keep)  # N
        return _mean_over_valid(-mean_log_prob_pos, valid)

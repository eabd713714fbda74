"""Core-tuning (Zhang et al., "Unleashing the Power of Contrastive Self-Supervised Visual Models via
Contrast-Regularized Fine-Tuning", NeurIPS 2021, https://arxiv.org/abs/2102.06605): the pure parts.

- ``focal_supcon_loss``: SupCon over one batch with each positive's log-probability weighted by
  (1 - p), p being that same probability (the "focal" contrastive term).
- ``soft_target_cross_entropy``: cross-entropy against soft (mixed) targets.
- ``hard_pair_indices``: for each anchor, its least similar same-class sample and its most similar
  other-class sample (the hard pair mining).
- ``mix_rows`` / ``mixed_soft_targets``: feature mixup and the matching soft targets, built from
  one-hot rows.
- ``soft_label_ids``: class ids of soft-target rows for the contrastive term (identical rows, same
  id), without the ``10**arange(C)`` encoding of the authors' code, which overflows int64 for
  C >= 19 and loses float32 precision well before that.
- ``core_tuning_mixup``: the training batch of Core-tuning, [original; mixed negatives; mixed
  positives] with their soft targets, given the random draws.

Nothing here draws random numbers: the permutation and the mixing weights are arguments (the head,
:class:`contrastive_det.modeling.core_tuning.CoreTuningHead`, draws them from torch's global RNG).
Losses are computed in float32 (float64 for float64 inputs), also under autocast.
"""

import torch
from torch.nn import functional as F

from .numerics import autocast_off, logit_dtype, mask_value, mean_over_valid, to_logit_dtype

__all__ = [
    "focal_supcon_loss",
    "soft_target_cross_entropy",
    "hard_pair_indices",
    "mix_rows",
    "mixed_soft_targets",
    "soft_label_ids",
    "core_tuning_mixup",
]

NORMALIZATIONS = ("positives", "batch")


def focal_supcon_loss(z, labels, temperature=0.07, *, normalization="positives"):
    """Focal supervised contrastive loss of Core-tuning over one batch.

    Every row of ``z`` is an anchor; its positives are the other rows with the same label; its
    denominator runs over every other row (self excluded). With
    ``p_ij = exp(z_i.z_j / T) / sum_{k != i} exp(z_i.z_k / T)`` (the softmax probability of entry j
    for anchor i, exactly the quantity whose log is taken), the per-anchor loss is

        l_i = -(1 / n_i) * sum_{j in P(i)} (1 - p_ij) * log p_ij

    with ``n_i = |P(i)|`` (``normalization="positives"``, SupCon's mean over positives) or
    ``n_i = N`` (``normalization="batch"``, the authors' code: ``(weight * mask *
    log_prob).mean(1)`` averages over all N columns, the anchor's own included). The loss is the
    mean of ``l_i`` over the anchors that have a positive; the others contribute nothing (no NaN).
    The weight (1 - p) is not detached: gradients flow through it, as in the authors' code and in
    focal loss.

    The authors' code hard-codes T = base_T = 0.07, so SupCon's T / base_T factor is 1; no such
    factor is applied here, for any T.

    Reference: Zhang et al., "Unleashing the Power of Contrastive Self-Supervised Visual Models via
    Contrast-Regularized Fine-Tuning", NeurIPS 2021 (``focal_SupConLoss`` in their Core-tuning code,
    itself derived from SupContrast).

    Args:
        z: L2-normalised embeddings (not re-normalised here).
        labels: integer class (or soft-label id, see :func:`soft_label_ids`) of each row.
        temperature: T.
        normalization: "positives" or "batch" (see above).

    Shape:
        - z: NxD; labels: N.
        - Output: scalar, float32 (float64 if ``z`` is float64), also under autocast.

    If no anchor has a positive the loss is 0, still connected to the graph (zero gradients).

    Raises:
        ValueError: z is not 2-D, the label count differs from N, or the normalization is unknown.

    Examples:
        >>> z = F.normalize(torch.randn(8, 128), dim=1)
        >>> loss = focal_supcon_loss(z, torch.tensor([0, 1, 0, 2, 1, 1, 3, 2]), temperature=0.07)
    """
    if z.dim() != 2:
        raise ValueError(f"focal_supcon_loss expects z NxD, got shape {tuple(z.shape)}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"focal_supcon_loss: unknown normalization {normalization!r} (expected one of "
            f"{NORMALIZATIONS})"
        )
    n = z.shape[0]
    labels = labels.reshape(-1)
    if labels.numel() != n:
        raise ValueError(f"focal_supcon_loss: {labels.numel()} labels for {n} embeddings")
    with autocast_off(z.device):
        (z,) = to_logit_dtype(z)
        labels = labels.to(z.device)
        logits = (z @ z.t()) / temperature  # logits: NxN
        keep = ~torch.eye(n, dtype=torch.bool, device=z.device)  # NxN, self excluded
        logits = logits.masked_fill(~keep, mask_value(logits.dtype))  # exp(self) == 0
        log_prob = F.log_softmax(logits, dim=1)  # log_prob: NxN, log p_ij
        pos = ((labels[:, None] == labels[None, :]) & keep).to(log_prob.dtype)  # pos: NxN
        # NxN, (1 - p) log p on positives, 0 elsewhere
        weighted = pos * (1.0 - log_prob.exp()) * log_prob
        pos_count = pos.sum(dim=1)  # N
        valid = pos_count > 0  # N
        if normalization == "positives":
            denom = torch.where(valid, pos_count, torch.ones_like(pos_count))  # N, never 0
        else:
            # N: every column, as the authors' .mean(1)
            denom = torch.full_like(pos_count, float(n))
        return mean_over_valid(-weighted.sum(dim=1) / denom, valid)


def soft_target_cross_entropy(logits, targets):
    """Cross-entropy against soft targets: mean over rows of ``-sum_c targets[c] *
    log_softmax(logits)[c]``.

    With one-hot targets it equals ``F.cross_entropy(logits, labels)``. Core-tuning trains its
    classifier with it on [original; mixed] features (the "smooth decision boundary").

    Reference: Zhang et al., NeurIPS 2021 (the classification loss of their Core-tuning code).

    Args:
        logits: unnormalised class scores.
        targets: non-negative rows summing to 1 (not checked).

    Shape:
        - logits, targets: NxC.
        - Output: scalar, float32 (float64 if an input is float64), also under autocast.

    Raises:
        ValueError: logits and targets are not two NxC tensors of the same shape.

    Examples:
        >>> logits = torch.randn(4, 3)
        >>> targets = torch.tensor([[1.0, 0, 0], [0, 0.2, 0.8], [0, 1, 0], [0.5, 0.5, 0]])
        >>> loss = soft_target_cross_entropy(logits, targets)
    """
    if logits.dim() != 2 or logits.shape != targets.shape:
        raise ValueError(
            f"soft_target_cross_entropy expects logits and targets NxC of the same shape, "
            f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    with autocast_off(logits.device):
        logits, targets = to_logit_dtype(logits, targets)
        return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def hard_pair_indices(features, labels):
    """Hard pair mining of Core-tuning: for each anchor, the index of its least similar same-class
    sample (hardest positive) and of its most similar other-class sample (hardest negative).

    Similarity is the cosine of ``features`` (normalised here, no gradient). An anchor with no
    same-class partner gets itself as hardest positive; an anchor with no other-class sample in the
    batch gets itself as hardest negative. Ties go to the lowest index.

    The authors' code takes ``argmin`` / ``argmax`` of similarity matrices whose masked-out entries
    are 0, not excluded: with non-negative (post-ReLU) features every cosine is >= 0, so the "least
    similar positive" is in practice the first non-positive index (then mapped to the anchor when
    it is 0). Here the masked entries are really excluded, which is what their code intends.

    Reference: Zhang et al., NeurIPS 2021 (``feature_mixup`` in their Core-tuning code).

    Args:
        features: features the pairs are mined in (Core-tuning: the trunk's pooled features).
        labels: integer classes.

    Shape:
        - features: NxD; labels: N.
        - Output: (hard_pos N, hard_neg N), int64 on ``features.device``.

    Raises:
        ValueError: features is not 2-D or the label count differs from N.

    Examples:
        >>> pos, neg = hard_pair_indices(torch.randn(6, 16), torch.tensor([0, 0, 1, 1, 2, 2]))
    """
    if features.dim() != 2:
        raise ValueError(
            f"hard_pair_indices expects features NxD, got shape {tuple(features.shape)}"
        )
    n = features.shape[0]
    labels = labels.reshape(-1).to(features.device)
    if labels.numel() != n:
        raise ValueError(f"hard_pair_indices: {labels.numel()} labels for {n} features")
    with torch.no_grad(), autocast_off(features.device):
        (f,) = to_logit_dtype(features.detach())
        f = F.normalize(f, dim=1)  # f: NxD
        sim = f @ f.t()  # sim: NxN cosine
        same = labels[:, None] == labels[None, :]  # NxN
        self_mask = torch.eye(n, dtype=torch.bool, device=f.device)  # NxN
        pos_mask, neg_mask = same & ~self_mask, ~same  # NxN
        idx = torch.arange(n, device=f.device)  # N
        hard_pos = sim.masked_fill(~pos_mask, float("inf")).argmin(dim=1)  # N
        hard_neg = sim.masked_fill(~neg_mask, float("-inf")).argmax(dim=1)  # N
        hard_pos = torch.where(pos_mask.any(dim=1), hard_pos, idx)
        hard_neg = torch.where(neg_mask.any(dim=1), hard_neg, idx)
    return hard_pos, hard_neg


def mix_rows(a, b, weight_b):
    """Row-wise mixup ``(1 - w_i) * a_i + w_i * b_i``.

    Shape:
        - a, b: NxD; weight_b: N (the weight of ``b``).
        - Output: NxD.

    Raises:
        ValueError: a and b differ in shape or weight_b does not have N entries.
    """
    if a.shape != b.shape or a.dim() != 2 or weight_b.numel() != a.shape[0]:
        raise ValueError(
            f"mix_rows expects a, b NxD and weight_b N, got {tuple(a.shape)}, {tuple(b.shape)}, "
            f"{tuple(weight_b.shape)}"
        )
    w = weight_b.reshape(-1, 1).to(device=a.device, dtype=a.dtype)  # Nx1
    return (1 - w) * a + w * b


def mixed_soft_targets(labels_a, labels_b, weight_b, num_classes, dtype=torch.float32):
    """Soft targets of the mixtures of ``mix_rows``: ``(1 - w_i) * onehot(a_i) + w_i *
    onehot(b_i)``.

    Built from one-hot rows (``F.one_hot``), so any number of classes works. A mixture of two
    samples of the same class gets exactly that class's one-hot row (for w in [0, 1], (1 - w) + w
    rounds to exactly 1 in IEEE arithmetic), so :func:`soft_label_ids` puts it in that class.

    Shape:
        - labels_a, labels_b, weight_b: N.
        - Output: NxC, ``dtype``.

    Raises:
        ValueError: the three inputs do not have the same number of entries.

    Examples:
        >>> mixed_soft_targets(
        ...     torch.tensor([0, 2]), torch.tensor([1, 2]), torch.tensor([0.8, 0.3]), 3
        ... )
        tensor([[0.2000, 0.8000, 0.0000],
                [0.0000, 0.0000, 1.0000]])
    """
    labels_a, labels_b = labels_a.reshape(-1), labels_b.reshape(-1).to(labels_a.device)
    if not (labels_a.numel() == labels_b.numel() == weight_b.numel()):
        raise ValueError(
            f"mixed_soft_targets: {labels_a.numel()}, {labels_b.numel()} labels and "
            f"{weight_b.numel()} weights"
        )
    one_a = F.one_hot(labels_a, num_classes).to(dtype)  # NxC
    one_b = F.one_hot(labels_b, num_classes).to(dtype)  # NxC
    return mix_rows(one_a, one_b, weight_b.to(labels_a.device))  # NxC


def soft_label_ids(targets):
    """Integer ids of soft-target rows: two rows get the same id iff they are exactly equal.

    This is how Core-tuning's contrastive term decides positives among mixed samples: their code
    encodes each row as ``row @ 10**arange(C)`` and label-encodes the result. That encoding
    overflows int64 for C >= 19, and in float32 it already merges distinct rows for much smaller C
    (``0.2 * 10**a + 0.8 * 10**b`` cannot resolve small ``a`` once ``10**b`` passes 2**24); this
    function compares the rows themselves (``torch.unique(dim=0)``). Ids are dense, 0..K-1, in the
    lexicographic order of the rows.

    Shape:
        - targets: NxC.
        - Output: N, int64.

    Raises:
        ValueError: targets is not 2-D.

    Examples:
        >>> soft_label_ids(torch.tensor([[1.0, 0.0], [0.2, 0.8], [1.0, 0.0]]))
        tensor([1, 0, 1])
    """
    if targets.dim() != 2:
        raise ValueError(f"soft_label_ids expects targets NxC, got shape {tuple(targets.shape)}")
    _, ids = torch.unique(targets.detach(), dim=0, return_inverse=True)  # ids: N
    return ids.reshape(-1)


def core_tuning_mixup(features, labels, num_classes, perm, shuffled_weight, positive_weight):
    """The training batch of Core-tuning, given its random draws.

    Returns the 3N features [original; mixed negatives; mixed positives] and their soft targets:

    - original: ``features`` with one-hot targets;
    - mixed negatives ("hard negatives"): ``(1 - l_i) * f_i + l_i * f_perm[i]`` with
      ``l_i = shuffled_weight[i]`` (the head clips it to >= 0.8, so the shuffled side dominates),
      targets mixed the same way;
    - mixed positives ("hard positives"): ``l_i * f_hp[i] + (1 - l_i) * f_hn[i]`` with
      ``l_i = positive_weight[i]`` (unclipped), hp / hn from :func:`hard_pair_indices`, targets
      mixed the same way.

    As in the authors' code, the mixtures keep their mixed soft targets in both losses: in the
    contrastive term (via :func:`soft_label_ids`) a mixture is a positive only of rows with an
    identical target, e.g. another mixture of the same ordered class pair with the same clipped
    weight, or, for a mixture of two same-class samples, that class. A mixed positive whose hp and
    hn classes differ therefore almost never has a positive (its weight is continuous) and acts as
    an extra hard entry in every anchor's denominator.

    Reference: Zhang et al., NeurIPS 2021 (``feature_mixup`` in their Core-tuning code).

    Args:
        features: pooled features (gradients flow through every block; the authors' code detaches
            the originals, see :class:`~contrastive_det.modeling.core_tuning.CoreTuningHead`).
        labels: integer classes in [0, num_classes).
        num_classes: C.
        perm: a permutation of 0..N-1 (the shuffled batch).
        shuffled_weight, positive_weight: mixing weights in [0, 1].

    Shape:
        - features: NxD; labels, perm, shuffled_weight, positive_weight: N.
        - Output: (mixed features 3NxD, soft targets 3NxC in float32, float64 for float64 features).

    Raises:
        ValueError: features is not 2-D or an argument does not have N entries.

    Examples:
        >>> f, y = torch.randn(4, 8), torch.tensor([0, 1, 1, 2])
        >>> feats, targets = core_tuning_mixup(
        ...     f, y, 3, torch.randperm(4), torch.full((4,), 0.8), torch.rand(4)
        ... )
    """
    if features.dim() != 2:
        raise ValueError(
            f"core_tuning_mixup expects features NxD, got shape {tuple(features.shape)}"
        )
    n, device = features.shape[0], features.device
    labels, perm = labels.reshape(-1).to(device), perm.reshape(-1).to(device)
    shuffled_weight, positive_weight = (
        shuffled_weight.reshape(-1).to(device),
        positive_weight.reshape(-1).to(device),
    )
    if not (
        labels.numel() == perm.numel() == shuffled_weight.numel() == positive_weight.numel() == n
    ):
        raise ValueError(
            f"core_tuning_mixup: {n} features but {labels.numel()} labels, {perm.numel()} perm "
            f"entries, {shuffled_weight.numel()} and {positive_weight.numel()} weights"
        )
    dtype = logit_dtype(features)
    one_hot = F.one_hot(labels, num_classes).to(dtype)  # NxC

    neg_f = mix_rows(features, features[perm], shuffled_weight)  # NxD
    neg_y = mixed_soft_targets(labels, labels[perm], shuffled_weight, num_classes, dtype)  # NxC

    hard_pos, hard_neg = hard_pair_indices(features, labels)  # N, N
    pos_f = mix_rows(features[hard_neg], features[hard_pos], positive_weight)  # NxD, weight l on hp
    pos_y = mixed_soft_targets(
        labels[hard_neg], labels[hard_pos], positive_weight, num_classes, dtype
    )  # NxC

    # features: 3NxD, targets: 3NxC
    return torch.cat([features, neg_f, pos_f], dim=0), torch.cat([one_hot, neg_y, pos_y], dim=0)

"""The joint objectives of Islam et al. ("A Broad Study on the Transferability of Visual
Representations with Contrastive Learning", ICCV 2021): CE+SelfSupCon and SupCon+SelfSupCon. Each
returns a dict of already weighted terms (so trainers can log them); the total loss is the sum of
the values."""

import torch
from torch.nn import functional as F

from .infonce import infonce_loss
from .numerics import autocast_off
from .supcon import queue_supcon_loss

__all__ = ["ce_selfsupcon_loss", "supcon_selfsupcon_loss"]


def ce_selfsupcon_loss(class_logits, labels, q, k, queue, temperature=0.2, instance_weight=0.5):
    """CE+SelfSupCon: cross-entropy of a classifier head + ``instance_weight`` x MoCo InfoNCE.

    Reference: Islam et al., "A Broad Study on the Transferability of Visual Representations with
    Contrastive Learning", ICCV 2021 (instance weight 0.5).

    Args:
        class_logits: classifier logits of the query encoder's pooled features; labels: class ids.
        q, k, queue: L2-normalised queries, keys and queued negatives (see :func:`infonce_loss`).
        temperature: T of the InfoNCE term.
        instance_weight: weight of the InfoNCE term.

    Returns:
        ``{"loss_ce": cross_entropy(class_logits, labels), "loss_instance": instance_weight *
        infonce_loss(q, k, queue, temperature)}``; the CE is computed in float32 (float64 if the
        logits are float64), also under autocast.

    Shape:
        - class_logits: NxC_cls; labels: N; q, k: NxD; queue: KxD.
        - Output: a dict of two scalars.

    Raises:
        ValueError: from :func:`infonce_loss` for mismatched embedding shapes.

    Examples:
        >>> out = ce_selfsupcon_loss(torch.randn(4, 10), torch.tensor([0, 3, 9, 3]), q, k, queue)
        >>> total = sum(out.values())  # loss_ce + 0.5 * InfoNCE
    """
    with autocast_off(class_logits.device):
        # logits: NxC_cls
        logits = class_logits if class_logits.dtype == torch.float64 else class_logits.float()
        loss_ce = F.cross_entropy(logits, labels)
    return {
        "loss_ce": loss_ce,
        "loss_instance": instance_weight * infonce_loss(q, k, queue, temperature),
    }


def supcon_selfsupcon_loss(
    q_inst,
    k_inst,
    queue_inst,
    q_sup,
    q_labels,
    k_sup,
    k_labels,
    queue_sup,
    queue_labels,
    temperature=0.07,
    instance_weight=0.5,
    supcon_weight=1.0,
):
    """SupCon+SelfSupCon: ``instance_weight`` x InfoNCE (instance head) + ``supcon_weight`` x queue
    SupCon (supervised head).

    The instance and supervised terms use the two projection heads' (L2-normalised) outputs and
    their own queues; both use the same temperature T.

    Reference: Islam et al., "A Broad Study on the Transferability of Visual Representations with
    Contrastive Learning", ICCV 2021 (K 64000, T 0.07, weights 0.5 and 1.0).

    Args:
        q_inst, k_inst, queue_inst: instance head: queries, keys, queue (see :func:`infonce_loss`).
        q_sup, q_labels, k_sup, k_labels, queue_sup, queue_labels: supervised head: anchors, keys
        and the
            labelled queue (see :func:`queue_supcon_loss`).
        temperature: T of both terms.
        instance_weight, supcon_weight: the weights of the two terms.

    Returns:
        ``{"loss_instance": instance_weight * infonce_loss(...), "loss_supcon": supcon_weight *
        queue_supcon_loss(...)}``.

    Shape:
        - q_inst, k_inst: NxD1; queue_inst: K1xD1; q_sup, k_sup: NxD2; q_labels, k_labels: N;
          queue_sup: K2xD2; queue_labels: K2.
        - Output: a dict of two scalars.

    Raises:
        ValueError: from the two terms for mismatched shapes.

    Examples:
        >>> out = supcon_selfsupcon_loss(
        ...     q_i, k_i, queue_i, q_s, labels, k_s, labels, queue_s, queue_labels
        ... )
        >>> total = sum(out.values())  # 0.5 * InfoNCE + 1.0 * queue SupCon
    """
    return {
        "loss_instance": instance_weight * infonce_loss(q_inst, k_inst, queue_inst, temperature),
        "loss_supcon": supcon_weight
        * queue_supcon_loss(q_sup, q_labels, k_sup, k_labels, queue_sup, queue_labels, temperature),
    }

"""The joint objectives of Islam et al. ("A Broad Study on the Transferability of Visual Representations
with Contrastive Learning", ICCV 2021): CE+SelfSupCon and SupCon+SelfSupCon. Each returns a dict of already
weighted terms (so trainers can log them); the total loss is the sum of the values."""
import torch
from torch.nn import functional as F

from .infonce import infonce_loss
from .ntxent import _autocast_off
from .supcon import queue_supcon_loss

__all__ = ["ce_selfsupcon_loss", "supcon_selfsupcon_loss"]


def ce_selfsupcon_loss(class_logits, labels, q, k, queue, temperature=0.2, instance_weight=0.5):
    """CE+SelfSupCon (Islam et al.): cross_entropy(class_logits NxC_cls, labels) + instance_weight * infonce_loss.

    Returns {"loss_ce": CE, "loss_instance": instance_weight * infonce_loss(q, k, queue, temperature)}.
    q, k, queue are L2-normalised (see ``infonce_loss``); the CE is computed in float32 (float64 if the
    logits are float64), also under autocast.
    """
    with _autocast_off(class_logits.device):
        logits = class_logits if class_logits.dtype == torch.float64 else class_logits.float()
        loss_ce = F.cross_entropy(logits, labels)
    return {
        "loss_ce": loss_ce,
        "loss_instance": instance_weight * infonce_loss(q, k, queue, temperature),
    }


def supcon_selfsupcon_loss(q_inst, k_inst, queue_inst, q_sup, q_labels, k_sup, k_labels, queue_sup, queue_labels,
                           temperature=0.07, instance_weight=0.5, supcon_weight=1.0):
    """SupCon+SelfSupCon: instance_weight * infonce_loss(q_inst, k_inst, queue_inst, T) + supcon_weight *
    queue_supcon_loss(q_sup, q_labels, k_sup, k_labels, queue_sup, queue_labels, T). Returns a dict
    {"loss_instance": ..., "loss_supcon": ...} (weighted).

    The instance and supervised terms use the two projection heads' (L2-normalised) outputs and their own
    queues; both use the same temperature ``T``.
    """
    return {
        "loss_instance": instance_weight * infonce_loss(q_inst, k_inst, queue_inst, temperature),
        "loss_supcon": supcon_weight * queue_supcon_loss(q_sup, q_labels, k_sup, k_labels, queue_sup, queue_labels,
                                                         temperature),
    }

"""
Momentum-encoder methods: keys from a momentum copy of the query encoder, negatives from a queue.
:class:`MomentumPretrainer` is the base of MoCo v2 and of the queue methods (joint objectives,
SCAN).
"""

import copy

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ...losses import infonce_loss
from ..distributed import batch_shuffle, batch_unshuffle, gather_no_grad
from ..heads import build_projection
from ..queue import KeyQueue
from .base import ContrastivePretrainer

__all__ = ["MomentumPretrainer", "MoCoV2"]


class MomentumPretrainer(ContrastivePretrainer):
    """
    Query encoder + ``heads`` (projection MLPs by name, ``HEADS``); a momentum copy of both produces
    keys; one :class:`KeyQueue` per head. Subclasses define ``losses`` with :meth:`_queries` /
    :meth:`_keys` and finish with :meth:`_enqueue`, which stores the GLOBAL batch of keys and labels
    (gathered over processes without gradient), so every process holds the same queue.
    """

    HEADS = ("projection",)

    @configurable
    def __init__(self, *, heads, momentum, queue_size, shuffle_bn, **kwargs):
        super().__init__(**kwargs)
        self.heads = nn.ModuleDict(heads)
        self.encoder_k = copy.deepcopy(self.encoder)
        self.heads_k = copy.deepcopy(self.heads)
        for p in list(self.encoder_k.parameters()) + list(self.heads_k.parameters()):
            p.requires_grad = False
        dim = next(iter(heads.values())).out_dim
        self.queues = nn.ModuleDict({name: KeyQueue(queue_size, dim) for name in heads})
        self.momentum = momentum
        self.shuffle_bn = shuffle_bn

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        c = cfg.MODEL.CONTRASTIVE
        ret["heads"] = {name: build_projection(cfg, ret["encoder"].out_dim) for name in cls.HEADS}
        ret.update(momentum=c.MOMENTUM, queue_size=c.QUEUE_SIZE, shuffle_bn=c.SHUFFLE_BN)
        return ret

    @torch.no_grad()
    def _momentum_update(self):
        m = self.momentum
        for q_mod, k_mod in ((self.encoder, self.encoder_k), (self.heads, self.heads_k)):
            for p_q, p_k in zip(q_mod.parameters(), k_mod.parameters()):
                p_k.mul_(m).add_(p_q.detach(), alpha=1.0 - m)

    def _queries(self, view):
        """view: Nx3xHxW -> (trunk features NxD_trunk, {head name: L2-normalised NxD})."""
        feats = self.encoder(view)  # NxD_trunk
        return feats, {
            name: F.normalize(head(feats), dim=1) for name, head in self.heads.items()
        }  # NxD each

    @torch.no_grad()
    def _keys(self, view):
        """Momentum update, then the keys of view (Nx3xHxW): {head name: L2-normalised NxD}, local
        batch. With ``shuffle_bn`` the key encoder sees a batch shuffled across processes (MoCo's
        shuffled BN)."""
        self._momentum_update()
        x, unshuffle = batch_shuffle(view) if self.shuffle_bn else (view, None)
        feats = self.encoder_k(x)
        return {
            name: batch_unshuffle(F.normalize(head(feats), dim=1), unshuffle)
            for name, head in self.heads_k.items()
        }

    def _enqueue(self, keys, labels):
        """Enqueue the global batch: keys {head: NxD} and labels N of every process, in rank
        order."""
        global_labels = gather_no_grad(labels)  # W*N
        for name, k in keys.items():
            self.queues[name].enqueue(gather_no_grad(k), global_labels)  # (W*N)xD

    def export_backbone(self):
        return self.encoder.export_state_dict()


@META_ARCH_REGISTRY.register()
class MoCoV2(MomentumPretrainer):
    """MoCo v2 (Chen et al., arXiv:2003.04297): InfoNCE of queries against their momentum keys and
    the queue."""

    def losses(self, views, labels):
        _, q = self._queries(views[0])
        k = self._keys(views[1])
        loss = infonce_loss(
            q["projection"],
            k["projection"],
            self.queues["projection"].keys.clone(),
            self.temperature,
        )
        self._enqueue(k, labels)
        return {"loss_infonce": loss}

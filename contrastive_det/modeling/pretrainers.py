"""
Contrastive pretraining meta-architectures, registered in detectron2's ``META_ARCH_REGISTRY``.

Contract shared by every pretrainer (what :class:`ContrastivePretrainer` implements):

* training input: a list of N dicts ``{"views": [3xHxW uint8 RGB tensor, 3xHxW ...], "label": int}``
  (two augmented views of one image; ``label`` is -1 when the dataset has none);
* training output: a dict of scalar losses (summed by the trainer);
* inference input: dicts with ``"image"`` (3xHxW uint8 RGB); output: one dict per image with
  ``"embedding"``: the L2-normalised pooled trunk feature (D), used by the kNN evaluator;
* ``export_backbone()``: the trunk as a torchvision-layout ``state_dict``.

The losses are the pure functions of ``contrastive_det.losses``; collectives (gathers, shuffled BN)
come from ``contrastive_det.modeling.distributed`` and are identities in one process.
"""
import copy

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ..losses import (
    ce_selfsupcon_loss,
    infonce_loss,
    nt_xent_loss,
    scan_loss,
    supcon_loss,
    supcon_selfsupcon_loss,
)
from .backbone import build_projection, build_tv_resnet
from .distributed import batch_shuffle, batch_unshuffle, gather_no_grad, gather_with_grad
from .queue import KeyQueue


class ContrastivePretrainer(nn.Module):
    """The shared base: input normalisation, the torchvision trunk, kNN embeddings, export."""

    @configurable
    def __init__(self, *, encoder, pixel_mean, pixel_std, temperature):
        super().__init__()
        self.encoder = encoder
        self.temperature = temperature
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        return {
            "encoder": build_tv_resnet(cfg),
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "temperature": cfg.MODEL.CONTRASTIVE.TEMPERATURE,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def _images(self, tensors):
        x = torch.stack([t.to(self.device, non_blocking=True) for t in tensors]).float()  # Nx3xHxW, 0-255
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        views = [self._images([d["views"][i] for d in batched_inputs]) for i in range(2)]  # 2 x Nx3xHxW
        labels = torch.tensor([int(d.get("label", -1)) for d in batched_inputs], device=self.device)  # N
        return self.losses(views, labels)

    def losses(self, views, labels):
        raise NotImplementedError

    @torch.no_grad()
    def inference(self, batched_inputs):
        feats = F.normalize(self.encoder(self._images([d["image"] for d in batched_inputs])), dim=1)  # NxD
        return [{"embedding": f} for f in feats]

    def export_backbone(self):
        return self.encoder.export_state_dict()


def _require_labels(labels, method):
    if (labels < 0).any():
        raise ValueError(f"{method} needs labelled images; the training set has images without a label")


# ----------------------------------------------------------------------------------------------
# In-batch methods: negatives are the other images of the (global) batch
# ----------------------------------------------------------------------------------------------
class _InBatchPretrainer(ContrastivePretrainer):
    @configurable
    def __init__(self, *, projection, **kwargs):
        super().__init__(**kwargs)
        self.projection = projection

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["projection"] = build_projection(cfg, ret["encoder"].out_dim)
        return ret

    def _projections(self, views):
        n = views[0].shape[0]
        z = F.normalize(self.projection(self.encoder(torch.cat(views))), dim=1)  # 2NxD, BN over both views
        return gather_with_grad(z[:n]), gather_with_grad(z[n:])  # global (W*N)xD each


@META_ARCH_REGISTRY.register()
class SimCLR(_InBatchPretrainer):
    """SimCLR: NT-Xent over the global batch of 2 views (negatives gathered with gradients)."""

    def losses(self, views, labels):
        z1, z2 = self._projections(views)
        return {"loss_ntxent": nt_xent_loss(z1, z2, self.temperature)}


@META_ARCH_REGISTRY.register()
class SupCon(_InBatchPretrainer):
    """Supervised contrastive (Khosla et al.): positives are all views of same-label images."""

    @configurable
    def __init__(self, *, base_temperature, contrast_mode, **kwargs):
        super().__init__(**kwargs)
        self.base_temperature = base_temperature
        self.contrast_mode = contrast_mode

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["base_temperature"] = cfg.MODEL.CONTRASTIVE.BASE_TEMPERATURE
        ret["contrast_mode"] = cfg.MODEL.CONTRASTIVE.CONTRAST_MODE
        return ret

    def losses(self, views, labels):
        _require_labels(labels, "SupCon")
        z1, z2 = self._projections(views)
        features = torch.stack([z1, z2], dim=1)  # (W*N)x2xD
        loss = supcon_loss(
            features,
            labels=gather_no_grad(labels),
            temperature=self.temperature,
            contrast_mode=self.contrast_mode,
            base_temperature=self.base_temperature,
        )
        return {"loss_supcon": loss}


# ----------------------------------------------------------------------------------------------
# Momentum-encoder methods: keys from a momentum copy, negatives from a queue
# ----------------------------------------------------------------------------------------------
class _MomentumPretrainer(ContrastivePretrainer):
    """
    Query encoder + ``heads`` (projection MLPs by name); a momentum copy of both produces keys;
    one :class:`KeyQueue` per head. Subclasses define ``losses`` with :meth:`_queries`/:meth:`_keys`.
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
        dim = next(iter(heads.values())).mlp[-1].out_features
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
        feats = self.encoder(view)  # NxD_trunk
        return feats, {name: F.normalize(head(feats), dim=1) for name, head in self.heads.items()}  # NxD each

    @torch.no_grad()
    def _keys(self, view):
        self._momentum_update()
        x, unshuffle = batch_shuffle(view) if self.shuffle_bn else (view, None)
        feats = self.encoder_k(x)
        return {
            name: batch_unshuffle(F.normalize(head(feats), dim=1), unshuffle) for name, head in self.heads_k.items()
        }

    def _enqueue(self, keys, labels):
        global_labels = gather_no_grad(labels)
        for name, k in keys.items():
            self.queues[name].enqueue(gather_no_grad(k), global_labels)

    def export_backbone(self):
        return self.encoder.export_state_dict()


@META_ARCH_REGISTRY.register()
class MoCoV2(_MomentumPretrainer):
    """MoCo v2: InfoNCE of queries against their momentum keys and the queue."""

    def losses(self, views, labels):
        _, q = self._queries(views[0])
        k = self._keys(views[1])
        loss = infonce_loss(q["projection"], k["projection"], self.queues["projection"].keys.clone(), self.temperature)
        self._enqueue(k, labels)
        return {"loss_infonce": loss}


@META_ARCH_REGISTRY.register()
class CESelfSupCon(_MomentumPretrainer):
    """CE+SelfSupCon (Islam et al.): cross-entropy head on the query trunk + weighted MoCo instance loss."""

    @configurable
    def __init__(self, *, classifier, instance_weight, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.instance_weight = instance_weight

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["classifier"] = nn.Linear(ret["encoder"].out_dim, cfg.MODEL.CONTRASTIVE.NUM_CLASSES)
        ret["instance_weight"] = cfg.MODEL.CONTRASTIVE.INSTANCE_WEIGHT
        return ret

    def losses(self, views, labels):
        _require_labels(labels, "CE+SelfSupCon")
        feats, q = self._queries(views[0])
        k = self._keys(views[1])
        losses = ce_selfsupcon_loss(
            self.classifier(feats), labels, q["projection"], k["projection"],
            self.queues["projection"].keys.clone(), self.temperature, self.instance_weight,
        )
        self._enqueue(k, labels)
        return losses


@META_ARCH_REGISTRY.register()
class SupConSelfSupCon(_MomentumPretrainer):
    """SupCon+SelfSupCon (Islam et al.): one MoCo encoder, an instance head and a supervised head with a label queue."""

    HEADS = ("instance", "supervised")

    @configurable
    def __init__(self, *, instance_weight, supcon_weight, **kwargs):
        super().__init__(**kwargs)
        self.instance_weight = instance_weight
        self.supcon_weight = supcon_weight

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["instance_weight"] = cfg.MODEL.CONTRASTIVE.INSTANCE_WEIGHT
        ret["supcon_weight"] = cfg.MODEL.CONTRASTIVE.SUPCON_WEIGHT
        return ret

    def losses(self, views, labels):
        _require_labels(labels, "SupCon+SelfSupCon")
        _, q = self._queries(views[0])
        k = self._keys(views[1])
        sup = self.queues["supervised"]
        losses = supcon_selfsupcon_loss(
            q["instance"], k["instance"], self.queues["instance"].keys.clone(),
            q["supervised"], labels, k["supervised"], labels, sup.keys.clone(), sup.labels.clone(),
            temperature=self.temperature, instance_weight=self.instance_weight, supcon_weight=self.supcon_weight,
        )
        self._enqueue(k, labels)
        return losses


@META_ARCH_REGISTRY.register()
class SCAN(_MomentumPretrainer):
    """SCAN: labels used only inside each anchor's momentum-embedding neighbourhood (DESIGN.md section 5)."""

    @configurable
    def __init__(self, *, num_neighbors, non_neighbor, **kwargs):
        super().__init__(**kwargs)
        if non_neighbor not in ("mask", "negative"):
            raise ValueError(f"MODEL.CONTRASTIVE.SCAN_NON_NEIGHBOR must be 'mask' or 'negative', got {non_neighbor!r}")
        self.num_neighbors = num_neighbors
        self.non_neighbor = non_neighbor

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["num_neighbors"] = cfg.MODEL.CONTRASTIVE.SCAN_NUM_NEIGHBORS
        ret["non_neighbor"] = cfg.MODEL.CONTRASTIVE.SCAN_NON_NEIGHBOR
        return ret

    def losses(self, views, labels):
        _require_labels(labels, "SCAN")
        _, q = self._queries(views[0])
        k = self._keys(views[1])
        queue = self.queues["projection"]
        loss = scan_loss(
            q["projection"], labels, k["projection"], labels, queue.keys.clone(), queue.labels.clone(),
            self.num_neighbors, self.temperature, self.non_neighbor,
        )
        self._enqueue(k, labels)
        return {"loss_scan": loss}

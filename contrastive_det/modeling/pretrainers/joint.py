"""The joint objectives of Islam et al. ("A Broad Study on the Transferability of Visual
Representations with Contrastive Learning", ICCV 2021) on a MoCo encoder: CE+SelfSupCon and
SupCon+SelfSupCon."""

from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ...losses import ce_selfsupcon_loss, supcon_selfsupcon_loss
from .base import require_labels
from .moco import MomentumPretrainer

__all__ = ["CESelfSupCon", "SupConSelfSupCon"]


@META_ARCH_REGISTRY.register()
class CESelfSupCon(MomentumPretrainer):
    """CE+SelfSupCon (Islam et al.): cross-entropy head on the query trunk + weighted MoCo instance
    loss."""

    @configurable
    def __init__(self, *, classifier, instance_weight, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.instance_weight = instance_weight

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["classifier"] = nn.Linear(ret["encoder"].out_dim, cfg.MODEL.CONTRASTIVE.NUM_CLASSES)
        ret["instance_weight"] = cfg.MODEL.JOINT.INSTANCE_WEIGHT
        return ret

    def losses(self, views, labels):
        require_labels(labels, "CE+SelfSupCon")
        feats, q = self._queries(views[0])
        k = self._keys(views[1])
        losses = ce_selfsupcon_loss(
            self.classifier(feats),
            labels,
            q["projection"],
            k["projection"],  # class logits: NxC_cls
            self.queues["projection"].keys.clone(),
            self.temperature,
            self.instance_weight,
        )
        self._enqueue(k, labels)
        return losses


@META_ARCH_REGISTRY.register()
class SupConSelfSupCon(MomentumPretrainer):
    """SupCon+SelfSupCon (Islam et al.): one MoCo encoder, an instance head and a supervised head
    with a label queue; both queues receive the global batch (keys and labels of every process)."""

    HEADS = ("instance", "supervised")

    @configurable
    def __init__(self, *, instance_weight, supcon_weight, **kwargs):
        super().__init__(**kwargs)
        self.instance_weight = instance_weight
        self.supcon_weight = supcon_weight

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["instance_weight"] = cfg.MODEL.JOINT.INSTANCE_WEIGHT
        ret["supcon_weight"] = cfg.MODEL.JOINT.SUPCON_WEIGHT
        return ret

    def losses(self, views, labels):
        require_labels(labels, "SupCon+SelfSupCon")
        _, q = self._queries(views[0])
        k = self._keys(views[1])
        sup = self.queues["supervised"]
        losses = supcon_selfsupcon_loss(
            q["instance"],
            k["instance"],
            self.queues["instance"].keys.clone(),
            q["supervised"],
            labels,
            k["supervised"],
            labels,
            sup.keys.clone(),
            sup.labels.clone(),
            temperature=self.temperature,
            instance_weight=self.instance_weight,
            supcon_weight=self.supcon_weight,
        )
        self._enqueue(k, labels)
        return losses

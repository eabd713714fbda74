"""The supervised baseline every study compares against: cross-entropy classification pretraining
(the torchvision ImageNet recipe; He et al., "Deep Residual Learning for Image Recognition", CVPR
2016)."""

from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from .base import ContrastivePretrainer, require_labels

__all__ = ["Supervised"]


@META_ARCH_REGISTRY.register()
class Supervised(ContrastivePretrainer):
    """
    Cross-entropy pretraining: the trunk's pooled feature -> one linear classifier of
    ``MODEL.CONTRASTIVE.NUM_CLASSES`` classes; loss ``cross_entropy(logits, labels)`` with
    ``MODEL.CONTRASTIVE.LABEL_SMOOTHING``. One augmented view per image (``INPUT.TWO_VIEW.NUM_VIEWS
    1``). The classifier is not exported: ``backbone.pth`` holds the trunk, like every other
    method's.
    """

    num_views = 1

    @configurable
    def __init__(self, *, classifier, label_smoothing, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["classifier"] = nn.Linear(ret["encoder"].out_dim, cfg.MODEL.CONTRASTIVE.NUM_CLASSES)
        ret["label_smoothing"] = cfg.MODEL.CONTRASTIVE.LABEL_SMOOTHING
        return ret

    def losses(self, views, labels):
        require_labels(labels, "Supervised")
        num_classes = self.classifier.out_features
        if (labels >= num_classes).any():
            raise ValueError(
                f"label {int(labels.max())} is outside [0, {num_classes}): "
                f"set MODEL.CONTRASTIVE.NUM_CLASSES to the number of training classes"
            )
        logits = self.classifier(self.encoder(views[0]))  # NxC
        return {"loss_ce": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}

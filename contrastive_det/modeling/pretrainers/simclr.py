"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020)."""

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ...losses import nt_xent_loss
from .base import InBatchPretrainer

__all__ = ["SimCLR"]


@META_ARCH_REGISTRY.register()
class SimCLR(InBatchPretrainer):
    """SimCLR: NT-Xent over the global batch of 2 views (negatives gathered with gradients), times
    ``MODEL.SIMCLR.LOSS_SCALE`` (2.0 = Google's TF SimCLR, which sums the two views' means)."""

    @configurable
    def __init__(self, *, loss_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if not loss_scale > 0:
            raise ValueError(f"MODEL.SIMCLR.LOSS_SCALE must be > 0, got {loss_scale}")
        self.loss_scale = loss_scale

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["loss_scale"] = cfg.MODEL.SIMCLR.LOSS_SCALE
        return ret

    def losses(self, views, labels):
        z1, z2 = self._projections(views)  # (W*N)xD each
        return {"loss_ntxent": self.loss_scale * nt_xent_loss(z1, z2, self.temperature)}

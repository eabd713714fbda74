"""SupCon (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020), in-batch like SimCLR."""

import torch

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ...losses import supcon_loss
from ..distributed import gather_no_grad
from .base import InBatchPretrainer, require_labels

__all__ = ["SupCon"]


@META_ARCH_REGISTRY.register()
class SupCon(InBatchPretrainer):
    """Supervised contrastive (Khosla et al.): positives are all views of same-label images of the
    global batch; loss scaled by TEMPERATURE / BASE_TEMPERATURE as in the SupContrast code."""

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
        require_labels(labels, "SupCon")
        z1, z2 = self._projections(views)
        features = torch.stack([z1, z2], dim=1)  # (W*N)x2xD
        loss = supcon_loss(
            features,
            labels=gather_no_grad(labels),  # W*N
            temperature=self.temperature,
            contrast_mode=self.contrast_mode,
            base_temperature=self.base_temperature,
        )
        return {"loss_supcon": loss}

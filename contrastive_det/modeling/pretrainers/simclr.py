"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020)."""

from detectron2.modeling import META_ARCH_REGISTRY

from ...losses import nt_xent_loss
from .base import InBatchPretrainer

__all__ = ["SimCLR"]


@META_ARCH_REGISTRY.register()
class SimCLR(InBatchPretrainer):
    """SimCLR: NT-Xent over the global batch of 2 views (negatives gathered with gradients)."""

    def losses(self, views, labels):
        z1, z2 = self._projections(views)  # (W*N)xD each
        return {"loss_ntxent": nt_xent_loss(z1, z2, self.temperature)}

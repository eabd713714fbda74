"""SCAN (Wei et al. 2020; this project's specification, docs/design.md section 5) on a MoCo
encoder."""

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY

from ...losses import scan_loss
from .base import require_labels
from .moco import MomentumPretrainer

__all__ = ["SCAN"]


@META_ARCH_REGISTRY.register()
class SCAN(MomentumPretrainer):
    """SCAN: labels used only inside each anchor's momentum-embedding neighbourhood; the label queue
    receives the global batch (keys and labels of every process)."""

    @configurable
    def __init__(self, *, num_neighbors, non_neighbor, **kwargs):
        super().__init__(**kwargs)
        if non_neighbor not in ("mask", "negative"):
            raise ValueError(
                f"MODEL.SCAN.NON_NEIGHBOR must be 'mask' or 'negative', got {non_neighbor!r}"
            )
        self.num_neighbors = num_neighbors
        self.non_neighbor = non_neighbor

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["num_neighbors"] = cfg.MODEL.SCAN.NUM_NEIGHBORS
        ret["non_neighbor"] = cfg.MODEL.SCAN.NON_NEIGHBOR
        return ret

    def losses(self, views, labels):
        require_labels(labels, "SCAN")
        _, q = self._queries(views[0])
        k = self._keys(views[1])
        queue = self.queues["projection"]
        loss = scan_loss(
            q["projection"],
            labels,
            k["projection"],
            labels,
            queue.keys.clone(),
            queue.labels.clone(),
            self.num_neighbors,
            self.temperature,
            self.non_neighbor,
        )
        self._enqueue(k, labels)
        return {"loss_scan": loss}

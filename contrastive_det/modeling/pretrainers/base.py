"""
The contract and shared base of every pretraining meta-architecture.

Contract shared by every pretrainer (what :class:`ContrastivePretrainer` implements):

* training input: a list of N dicts ``{"views": [3xHxW uint8 RGB tensor, 3xHxW ...], "label": int}``
  (``num_views`` augmented views of one image: two for the contrastive methods, one for the
  supervised baseline, as ``INPUT.TWO_VIEW.NUM_VIEWS`` sets; ``label`` is -1 when the dataset has
  none);
* training output: a dict of scalar losses (summed by the trainer);
* inference input: dicts with ``"image"`` (3xHxW uint8 RGB); output: one dict per image with
  ``"embedding"``: the L2-normalised pooled trunk feature (D), used by the kNN evaluator;
* ``export_backbone()``: the trunk as a torchvision-layout ``state_dict``.

The losses are the pure functions of ``contrastive_det.losses``; collectives (gathers, shuffled BN)
come from ``contrastive_det.modeling.distributed`` and are identities in one process.
"""

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable

from ..backbone import build_tv_resnet
from ..distributed import gather_with_grad
from ..heads import build_projection

__all__ = ["ContrastivePretrainer", "InBatchPretrainer", "require_labels"]


def require_labels(labels, method):
    """Raise ValueError if a supervised ``method`` gets an unlabelled image (label -1)."""
    if (labels < 0).any():
        raise ValueError(
            f"{method} needs labelled images; the training set has images without a label"
        )


class ContrastivePretrainer(nn.Module):
    """The shared base: input normalisation, the torchvision trunk, kNN embeddings, export."""

    #: augmented views per training image the method takes (``INPUT.TWO_VIEW.NUM_VIEWS`` must equal
    # it)
    num_views = 2

    @configurable
    def __init__(self, *, encoder, pixel_mean, pixel_std, temperature):
        super().__init__()
        self.encoder = encoder
        self.temperature = temperature
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        if cfg.INPUT.TWO_VIEW.NUM_VIEWS != cls.num_views:
            raise ValueError(
                f"{cls.__name__} takes {cls.num_views} view(s) per training image; "
                f"set INPUT.TWO_VIEW.NUM_VIEWS {cls.num_views} (got {cfg.INPUT.TWO_VIEW.NUM_VIEWS})"
            )
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
        x = torch.stack(
            [t.to(self.device, non_blocking=True) for t in tensors]
        ).float()  # Nx3xHxW, 0-255
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        views = [
            self._images([d["views"][i] for d in batched_inputs]) for i in range(self.num_views)
        ]  # V x Nx3xHxW
        # labels: N
        labels = torch.tensor([int(d.get("label", -1)) for d in batched_inputs], device=self.device)
        return self.losses(views, labels)

    def losses(self, views, labels):
        """views: ``num_views`` Nx3xHxW normalised image batches; labels: N (-1 = none). Returns a
        dict of losses."""
        raise NotImplementedError

    @torch.no_grad()
    def inference(self, batched_inputs):
        # feats: NxD
        feats = F.normalize(self.encoder(self._images([d["image"] for d in batched_inputs])), dim=1)
        return [{"embedding": f} for f in feats]

    def export_backbone(self):
        return self.encoder.export_state_dict()


class InBatchPretrainer(ContrastivePretrainer):
    """
    Base of the in-batch methods (SimCLR, SupCon): negatives are the other images of the global
    batch. One projection head; by default (``MODEL.CONTRASTIVE.VIEW_BATCHING`` "concat") both
    views go through trunk and head together, so BN statistics cover both views (and, with a
    synchronised MODEL.TV_RESNET.NORM, every process's images: SimCLR's global BN); "separate"
    forwards each view alone (BN statistics per view).
    """

    VIEW_BATCHINGS = ("concat", "separate")

    @configurable
    def __init__(self, *, projection, view_batching="concat", **kwargs):
        super().__init__(**kwargs)
        if view_batching not in self.VIEW_BATCHINGS:
            raise ValueError(
                f"MODEL.CONTRASTIVE.VIEW_BATCHING {view_batching!r}: expected one of "
                f"{', '.join(self.VIEW_BATCHINGS)}"
            )
        self.projection = projection
        self.view_batching = view_batching

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["projection"] = build_projection(cfg, ret["encoder"].out_dim)
        ret["view_batching"] = cfg.MODEL.CONTRASTIVE.VIEW_BATCHING
        return ret

    def _project(self, x):
        return F.normalize(self.projection(self.encoder(x)), dim=1)  # NxD

    def _projections(self, views):
        if self.view_batching == "separate":
            z1, z2 = (self._project(v) for v in views)  # NxD each, BN per view
        else:
            n = views[0].shape[0]
            z = self._project(torch.cat(views))  # 2NxD, BN over both views
            z1, z2 = z[:n], z[n:]
        return gather_with_grad(z1), gather_with_grad(z2)  # global (W*N)xD each

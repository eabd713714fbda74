"""The torchvision ResNet trunk that every pretrainer trains and exports (torchvision layout)."""

import torch
import torchvision
from torch import nn

from .norms import batch_norm_2d

__all__ = ["TorchvisionResNetTrunk", "build_tv_resnet"]

DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101"}


class TorchvisionResNetTrunk(nn.Module):
    """
    torchvision ResNet without its classifier: images NxCxHxW -> pooled features NxD
    (D = 512 for ResNet-18/34, 2048 for 50/101). ``self.resnet.state_dict()`` minus ``fc.*`` is the
    canonical torchvision-layout backbone that contrastive-det exports.

    ``norm`` is a detectron2 batch-norm name (:data:`contrastive_det.modeling.norms.BATCH_NORMS`):
    "BN", or a synchronised flavour for BN statistics over the global batch.

    ``channels_last``: conv weights and the input in NHWC memory order (the values and the
    ``state_dict`` names are the same; :meth:`export_state_dict` returns the usual NCHW order).
    oneDNN on CPU and cuDNN's tensor-core kernels under AMP run ResNets faster in that order.
    """

    def __init__(
        self, depth=50, width_per_group=64, norm="BN", zero_init_residual=False, channels_last=False
    ):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"MODEL.TV_RESNET.DEPTH must be one of {sorted(DEPTHS)}, got {depth}")
        if width_per_group != 64 and depth < 50:
            raise ValueError(
                "MODEL.TV_RESNET.WIDTH_PER_GROUP != 64 needs a bottleneck ResNet (DEPTH >= 50)"
            )
        kwargs = dict(
            weights=None, norm_layer=batch_norm_2d(norm), zero_init_residual=zero_init_residual
        )
        if depth >= 50:
            kwargs["width_per_group"] = width_per_group
        self.depth = depth
        self.resnet = getattr(torchvision.models, DEPTHS[depth])(**kwargs)
        self.out_dim = self.resnet.fc.in_features
        self.resnet.fc = nn.Identity()
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.resnet.to(memory_format=torch.channels_last)  # 4-d conv weights only

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # NxCxHxW, stored NHWC
        return self.resnet(x)  # NxD

    def export_state_dict(self):
        """torchvision-layout ``state_dict`` of the trunk (no ``fc``), tensors detached on CPU."""
        return {
            k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
            for k, v in self.resnet.state_dict().items()
            if not k.startswith("fc.")
        }


def build_tv_resnet(cfg):
    c = cfg.MODEL.TV_RESNET
    return TorchvisionResNetTrunk(
        c.DEPTH, c.WIDTH_PER_GROUP, c.NORM, c.ZERO_INIT_RESIDUAL, channels_last=c.CHANNELS_LAST
    )

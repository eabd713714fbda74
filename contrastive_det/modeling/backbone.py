"""The torchvision ResNet trunk that every pretrainer trains and exports (torchvision layout)."""
import torchvision
from torch import nn

DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101"}


class TorchvisionResNetTrunk(nn.Module):
    """
    torchvision ResNet without its classifier: images NxCxHxW -> pooled features NxD
    (D = 512 for ResNet-18/34, 2048 for 50/101). ``self.resnet.state_dict()`` minus ``fc.*`` is the
    canonical torchvision-layout backbone that contrastive-det exports.
    """

    def __init__(self, depth=50, width_per_group=64, norm="BN", zero_init_residual=False):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"MODEL.TV_RESNET.DEPTH must be one of {sorted(DEPTHS)}, got {depth}")
        if width_per_group != 64 and depth < 50:
            raise ValueError("MODEL.TV_RESNET.WIDTH_PER_GROUP != 64 needs a bottleneck ResNet (DEPTH >= 50)")
        norm_layer = {"BN": nn.BatchNorm2d, "SyncBN": nn.SyncBatchNorm}.get(norm)
        if norm_layer is None:
            raise ValueError(f"MODEL.TV_RESNET.NORM must be 'BN' or 'SyncBN', got {norm!r}")
        kwargs = dict(weights=None, norm_layer=norm_layer, zero_init_residual=zero_init_residual)
        if depth >= 50:
            kwargs["width_per_group"] = width_per_group
        self.depth = depth
        self.resnet = getattr(torchvision.models, DEPTHS[depth])(**kwargs)
        self.out_dim = self.resnet.fc.in_features
        self.resnet.fc = nn.Identity()

    def forward(self, x):
        return self.resnet(x)  # NxD

    def export_state_dict(self):
        """torchvision-layout ``state_dict`` of the trunk (no ``fc``), tensors detached on CPU."""
        return {k: v.detach().cpu().clone() for k, v in self.resnet.state_dict().items() if not k.startswith("fc.")}


def build_tv_resnet(cfg):
    c = cfg.MODEL.TV_RESNET
    return TorchvisionResNetTrunk(c.DEPTH, c.WIDTH_PER_GROUP, c.NORM, c.ZERO_INIT_RESIDUAL)


class ProjectionMLP(nn.Module):
    """``num_layers`` linear layers in_dim -> hidden_dim ... -> out_dim, ReLU (and optional BN) between."""

    def __init__(self, in_dim, hidden_dim, out_dim, num_layers=2, use_bn=False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MODEL.CONTRASTIVE.PROJ_LAYERS must be >= 1, got {num_layers}")
        layers, dim = [], in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not use_bn))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        return self.mlp(x)  # NxD_in -> NxD_out


def build_projection(cfg, in_dim):
    c = cfg.MODEL.CONTRASTIVE
    return ProjectionMLP(in_dim, c.PROJ_HIDDEN_DIM, c.PROJ_DIM, c.PROJ_LAYERS, c.PROJ_BN)

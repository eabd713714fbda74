"""Heads on the pooled trunk feature: the projection MLP of the contrastive objectives."""

from torch import nn

from .norms import batch_norm_1d

__all__ = ["ProjectionMLP", "build_projection"]


class ProjectionMLP(nn.Module):
    """
    ``num_layers`` linear layers in_dim -> hidden_dim ... -> out_dim, ReLU between them and, with
    ``use_bn``, a batch norm of kind ``norm`` (see :mod:`contrastive_det.modeling.norms`) after each
    hidden linear layer (SimCLR: global BN, i.e. a synchronised norm).

    Layout (``state_dict`` keys, stable across norm kinds): ``mlp.0`` Linear, [``mlp.1`` norm],
    ReLU, ..., last Linear.
    """

    def __init__(self, in_dim, hidden_dim, out_dim, num_layers=2, use_bn=False, norm="BN"):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MODEL.CONTRASTIVE.PROJ_LAYERS must be >= 1, got {num_layers}")
        layers, dim = [], in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not use_bn))
            if use_bn:
                layers.append(batch_norm_1d(norm, hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.mlp = nn.Sequential(*layers)

    @property
    def out_dim(self):
        return self.mlp[-1].out_features

    def forward(self, x):
        return self.mlp(x)  # NxD_in -> NxD_out


def build_projection(cfg, in_dim):
    """The projection MLP of MODEL.CONTRASTIVE; its norm (with PROJ_BN) is the trunk's
    MODEL.TV_RESNET.NORM, so a synchronised trunk (SimCLR's global BN) has a synchronised head
    too."""
    c = cfg.MODEL.CONTRASTIVE
    return ProjectionMLP(
        in_dim, c.PROJ_HIDDEN_DIM, c.PROJ_DIM, c.PROJ_LAYERS, c.PROJ_BN, cfg.MODEL.TV_RESNET.NORM
    )

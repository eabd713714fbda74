"""Importing this package registers every model part of contrastive-det in detectron2's
registries."""

from .backbone import TorchvisionResNetTrunk, build_tv_resnet
from .heads import ProjectionMLP, build_projection
from .pretrainers import (
    SCAN,
    CESelfSupCon,
    ContrastivePretrainer,
    MoCoV2,
    SimCLR,
    SupCon,
    SupConSelfSupCon,
    Supervised,
)
from .classifier import Classifier
from .roi_heads import Res5ROIHeadsExtraNorm
from .dilated_resnet import build_dilated_resnet_backbone
from .sem_seg_heads import FCNHead, FCNSemanticSegmentor

__all__ = [
    "Classifier",
    "ProjectionMLP",
    "TorchvisionResNetTrunk",
    "build_projection",
    "build_tv_resnet",
    "ContrastivePretrainer",
    "SimCLR",
    "SupCon",
    "MoCoV2",
    "CESelfSupCon",
    "SupConSelfSupCon",
    "SCAN",
    "Supervised",
    "Res5ROIHeadsExtraNorm",
    "build_dilated_resnet_backbone",
    "FCNHead",
    "FCNSemanticSegmentor",
]

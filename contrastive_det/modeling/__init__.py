"""Importing this package registers every model part of contrastive-det in detectron2's registries."""
from .roi_heads import Res5ROIHeadsExtraNorm

__all__ = ["Res5ROIHeadsExtraNorm"]

"""
A ResNet backbone with dilated res4 / res5 for every depth, registered in detectron2's
``BACKBONE_REGISTRY`` as ``build_dilated_resnet_backbone`` (docs/segmentation.md).

detectron2 dilates bottleneck ResNets only (``build_resnet_backbone``: res5 by 2;
``detectron2.projects.deeplab``: res4 by 2 and res5 by 4) and refuses ResNet-18/34
("Must set MODEL.RESNETS.RES5_DILATION = 1 for R18/R34"), so a segmentation protocol run on a
ResNet-18 checkpoint stayed at output stride 32. This builder builds detectron2's own undilated
ResNet (same modules, same parameter names: a converted checkpoint loads as into
``build_resnet_backbone``) and then turns the stride of each dilated stage into dilation, in place:

* every conv of the stage gets stride 1;
* every 3x3 conv of the stage gets ``dilation = padding = d`` (``RES5_MULTI_GRID`` multiplies the
  res5 blocks' ``d``, as deeplab's), except with ``MODEL.RESNETS.CONTRACT_DILATION`` (mmseg's
  ``contract_dilation``): the first block's 3x3 conv that carried the stride (``conv1`` of a basic
  block, ``conv2`` of a bottleneck) gets ``d // 2``.

Without CONTRACT_DILATION the result is detectron2's dilated ResNet-50/101 exactly (tested against
``build_resnet_backbone`` and ``build_resnet_deeplab_backbone``). With it, for basic blocks and
bottlenecks with the stride in the 3x3 conv (``STRIDE_IN_1X1 False``, torchvision's layout), the
dilated network computes the undilated one's features at every ``s``-th position (``s`` = the
stride removed): the "a trous" identity, tested.
"""

from typing import Sequence

from torch import nn

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, build_resnet_backbone
from detectron2.projects.deeplab import build_resnet_deeplab_backbone

__all__ = ["build_dilated_resnet_backbone", "dilate_stage"]


def _set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    """A 3x3 conv keeps its output size at stride 1 with padding = dilation."""
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation, dilation)


def dilate_stage(
    stage: nn.Sequential, dilation_per_block: Sequence[int], first_dilation: int
) -> None:
    """
    Turn a ResNet stage's stride into dilation, in place: stride 1 in every conv, the 3x3 convs
    dilated by their block's entry of ``dilation_per_block``, except the first block's strided
    3x3 conv, dilated by ``first_dilation``.

    Args:
        stage: detectron2 ``BasicBlock`` or ``BottleneckBlock`` modules (undilated)
        dilation_per_block: one dilation per block
        first_dilation: dilation of the 3x3 conv of block 0 that carried the stage's stride
    """
    if len(dilation_per_block) != len(stage):
        raise ValueError(
            f"{len(dilation_per_block)} dilations given for a stage of {len(stage)} blocks"
        )
    for index, (block, dilation) in enumerate(zip(stage, dilation_per_block)):
        if isinstance(block, BasicBlock):
            strided_3x3, other_3x3 = [block.conv1], [block.conv2]
        elif type(block) is BottleneckBlock:
            strided_3x3, other_3x3 = [block.conv2], []
        else:
            raise ValueError(
                f"cannot dilate a {type(block).__name__} (basic and bottleneck blocks only; "
                "set MODEL.RESNETS.DEFORM_ON_PER_STAGE False for dilated stages)"
            )
        for conv in block.children():
            if isinstance(conv, nn.Conv2d):
                conv.stride = (1, 1)
        for conv in strided_3x3:
            _set_dilation(conv, first_dilation if index == 0 else dilation)
        for conv in other_3x3:
            _set_dilation(conv, dilation)
        block.stride = 1


@BACKBONE_REGISTRY.register()
def build_dilated_resnet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """
    detectron2's ResNet of any depth with res4 dilated by ``MODEL.RESNETS.RES4_DILATION`` and res5
    by ``RES5_DILATION`` (x ``RES5_MULTI_GRID`` per block): output stride 32 with (1, 1), 16 with
    (1, 2), 8 with (2, 4). ``STEM_TYPE`` "basic" builds on ``build_resnet_backbone`` (every
    depth), "deeplab" on deeplab's (ResNet-50 and deeper).
    """
    r = cfg.MODEL.RESNETS
    res4, res5 = r.RES4_DILATION, r.RES5_DILATION
    if res4 not in (1, 2) or res5 not in (1, 2, 4) or (res4 == 2 and res5 != 4):
        raise ValueError(
            f"MODEL.RESNETS.RES4_DILATION {res4} / RES5_DILATION {res5}: expected (1, 1), (1, 2) "
            "(output stride 16) or (2, 4) (output stride 8)"
        )
    if res4 == 1 and res5 == 4:
        raise ValueError("MODEL.RESNETS.RES5_DILATION 4 needs RES4_DILATION 2 (output stride 8)")
    if r.STEM_TYPE not in ("basic", "deeplab"):
        raise ValueError(f"MODEL.RESNETS.STEM_TYPE {r.STEM_TYPE!r}: expected basic or deeplab")
    if r.STEM_TYPE == "deeplab" and r.DEPTH < 50:
        raise ValueError(
            "MODEL.RESNETS.STEM_TYPE deeplab needs a bottleneck ResNet (DEPTH >= 50), got "
            f"{r.DEPTH}"
        )

    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.RESNETS.RES4_DILATION = 1
    plain.MODEL.RESNETS.RES5_DILATION = 1
    plain.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1, 1]
    build = build_resnet_deeplab_backbone if r.STEM_TYPE == "deeplab" else build_resnet_backbone
    backbone = build(plain, input_shape)

    for name, dilation in (("res4", res4), ("res5", res5)):
        if dilation > 1 and hasattr(backbone, name):
            stage = getattr(backbone, name)
            per_block = [dilation] * len(stage)
            grid = list(r.RES5_MULTI_GRID)
            if name == "res5" and any(m != 1 for m in grid):
                if len(grid) != len(stage):
                    raise ValueError(
                        f"MODEL.RESNETS.RES5_MULTI_GRID {grid}: expected one multiplier per res5 "
                        f"block ({len(stage)} at DEPTH {r.DEPTH})"
                    )
                per_block = [dilation * m for m in grid]
            first = dilation // 2 if r.CONTRACT_DILATION else per_block[0]
            dilate_stage(stage, per_block, first)
    _recompute_strides(backbone)
    return backbone


def _recompute_strides(backbone: Backbone) -> None:
    """Refresh the backbone's per-feature strides (``output_shape``) after dilation, in place."""
    stride = backbone.stem.stride
    for name, stage in zip(backbone.stage_names, backbone.stages):
        for block in stage:
            stride *= block.stride
        backbone._out_feature_strides[name] = stride

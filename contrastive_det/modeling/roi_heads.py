"""ROI heads used by the detection-transfer protocols."""

from torch import nn

from detectron2.layers import get_norm
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads

# res5 blocks of the basic-block ResNets (detectron2's Res5ROIHeads builds bottlenecks only)
BASIC_RES5_BLOCKS = {18: 2, 34: 3}


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """
    The C4 res5 ROI head followed by one extra normalization layer of type
    ``cfg.MODEL.RESNETS.NORM`` on its output (MoCo's detection protocol): 2048 channels for the
    bottleneck ResNets; ResNet-18/34 (``MODEL.RESNETS.DEPTH`` 18 or 34) get their own res5 of basic
    blocks (512 channels), so that a basic-block backbone transfers under the C4 protocol too.

    With BN backbones, the res5 features of a pretrained network are not normalized the same way
    as the features the box predictor was tuned on; the extra norm gives the fine-tuned head
    its own normalized input. The norm is part of ``self.res5``, so with ``MODEL.MASK_ON`` the
    mask head gets the same normalized features (the foreground rows of the box pass in training,
    a second res5 pass on the final boxes in inference). Everything else is :class:`Res5ROIHeads`.
    """

    @classmethod
    def _build_res5_block(cls, cfg):
        depth = cfg.MODEL.RESNETS.DEPTH
        if depth in BASIC_RES5_BLOCKS:
            res5, out_channels = cls._build_basic_res5(cfg, BASIC_RES5_BLOCKS[depth])
        else:
            res5, out_channels = super()._build_res5_block(cfg)
        # res5 output: R x C x 7 x 7 -> same shape, normalized (C = 2048 bottleneck, 512 basic)
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return res5, out_channels

    @staticmethod
    def _build_basic_res5(cfg, num_blocks):
        """res5 of ResNet-18/34 as detectron2's backbone names it: ``num_blocks`` BasicBlocks, the
        first with stride 2; pooled RoIs R x C/2 x 14 x 14 -> R x C x 7 x 7 with C = 8 x
        RES2_OUT_CHANNELS."""
        if cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE[-1]:
            raise ValueError(
                "MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable res5 needs bottleneck blocks"
            )
        out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8
        blocks = ResNet.make_stage(
            BasicBlock,
            num_blocks,
            stride_per_block=[2] + [1] * (num_blocks - 1),
            in_channels=out_channels // 2,
            out_channels=out_channels,
            norm=cfg.MODEL.RESNETS.NORM,
        )
        return nn.Sequential(*blocks), out_channels

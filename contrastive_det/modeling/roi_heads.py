"""ROI heads used by the detection-transfer protocols."""
from detectron2.layers import get_norm
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """
    The C4 res5 ROI head followed by one extra normalization layer of type
    ``cfg.MODEL.RESNETS.NORM`` on its 2048-channel output (MoCo's detection protocol).

    With BN backbones, the res5 features of a pretrained network are not normalized the same way
    as the features the box predictor was tuned on; the extra norm gives the fine-tuned head
    its own normalized input. The norm is part of ``self.res5``, so with ``MODEL.MASK_ON`` the
    mask head gets the same normalized features (the foreground rows of the box pass in training,
    a second res5 pass on the final boxes in inference). Everything else is :class:`Res5ROIHeads`.
    """

    @classmethod
    def _build_res5_block(cls, cfg):
        res5, out_channels = super()._build_res5_block(cfg)
        # res5 output: R x 2048 x 7 x 7 -> same shape, normalized
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return res5, out_channels

"""
Fully convolutional segmentation heads on a dilated ResNet, registered in detectron2's
``SEM_SEG_HEADS_REGISTRY`` for its ``SemanticSegmentor`` (docs/segmentation.md):

* MoCo's "FCN-16s" (He et al. 2020, appendix A.5): res5 (dilation 2, output stride 16) ->
  2 x [3x3 conv, 256, dilation 6, BN, ReLU] -> 1x1 classifier;
* mmseg's ``FCNHead`` of the FCN-D8 benchmark: res5 (output stride 8) -> 2 x [3x3 conv, 512, BN,
  ReLU] -> concat with the input -> 3x3 conv 512 -> dropout 0.1 -> 1x1, plus an auxiliary
  ``FCNHead`` on res4 (1 conv of 256, weight 0.4) during training.

Both are :class:`FCNHead` with different keys (``MODEL.SEM_SEG_HEAD.*``). Logits are resized
(bilinear, as mmseg) to the padded input, scored by :func:`sem_seg_cross_entropy` in training and
cropped to each image by detectron2's ``sem_seg_postprocess`` in inference; the meta-architecture
:class:`FCNSemanticSegmentor` passes the padded input size to the head for that.
"""

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

import detectron2.projects.deeplab  # noqa: F401  (registers build_resnet_deeplab_backbone, FCN-D8's ResNet)
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY, SemanticSegmentor
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList

from .sem_seg_core_tuning import PixelCoreTuning

__all__ = ["FCNHead", "FCNSemanticSegmentor", "sem_seg_cross_entropy"]


def sem_seg_cross_entropy(logits, targets, ignore_value):
    """
    Pixel-wise cross-entropy averaged over the pixels whose label is not ``ignore_value``
    (an ignored pixel neither adds to the sum nor to the count; 0 when every pixel is ignored).

    Args:
        logits: NxKxHxW class scores
        targets: NxHxW int64 labels in [0, K) or ``ignore_value``
    """
    valid = targets != ignore_value  # NxHxW
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, targets, ignore_index=ignore_value, reduction="mean")


def _conv_stack(in_channels, channels, num_convs, dilation, norm):
    layers = []
    for i in range(num_convs):
        layers.append(
            Conv2d(
                in_channels if i == 0 else channels,
                channels,
                kernel_size=3,
                padding=dilation,
                dilation=dilation,
                bias=not norm,
                norm=get_norm(norm, channels),
                activation=F.relu,
            )
        )
    return nn.Sequential(*layers)


class _FCNBranch(nn.Module):
    """[3x3 conv, norm, ReLU] x num_convs (+ concat with the input and a 3x3 fuse conv) -> dropout
    -> 1x1."""

    def __init__(
        self, in_channels, channels, num_convs, dilation, concat_input, dropout, num_classes, norm
    ):
        super().__init__()
        self.convs = _conv_stack(in_channels, channels, num_convs, dilation, norm)
        self.fuse = None
        if concat_input:
            self.fuse = Conv2d(
                in_channels + channels,
                channels,
                kernel_size=3,
                padding=1,
                bias=not norm,
                norm=get_norm(norm, channels),
                activation=F.relu,
            )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.predictor = Conv2d(
            channels if num_convs or concat_input else in_channels, num_classes, kernel_size=1
        )
        nn.init.normal_(self.predictor.weight, 0, 0.01)
        nn.init.constant_(self.predictor.bias, 0)

    def embed(self, x):
        """The features the classifier reads (pixel embeddings): NxCinxhxw -> NxCxhxw."""
        y = self.convs(x)  # NxCxhxw
        if self.fuse is not None:
            y = self.fuse(torch.cat([x, y], dim=1))  # N x (Cin + C) x h x w -> NxCxhxw
        return y

    def forward(self, x):
        return self.predictor(self.dropout(self.embed(x)))  # NxKxhxw


@SEM_SEG_HEADS_REGISTRY.register()
class FCNHead(nn.Module):
    """
    An FCN head on one backbone feature (``IN_FEATURES[0]``), with an optional auxiliary FCN head
    on another (``AUX_IN_FEATURE``) whose loss is added during training with weight
    ``AUX_LOSS_WEIGHT``. Returns ``(logits at the input size, {})`` in inference and
    ``(None, {"loss_sem_seg": ..., "loss_sem_seg_aux": ...})`` in training.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_feature: str,
        num_classes: int,
        conv_dims: int,
        num_convs: int,
        dilation: int,
        concat_input: bool,
        dropout: float,
        norm: str,
        ignore_value: int = 255,
        loss_weight: float = 1.0,
        aux_in_feature: str = "",
        aux_conv_dims: int = 256,
        aux_num_convs: int = 1,
        aux_loss_weight: float = 0.4,
        core_tuning: dict = None,
    ):
        super().__init__()
        if in_feature not in input_shape:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES: {in_feature!r} is not a backbone output "
                f"(outputs: {sorted(input_shape)}; see MODEL.RESNETS.OUT_FEATURES)"
            )
        if aux_in_feature and aux_in_feature not in input_shape:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE: {aux_in_feature!r} is not a backbone output "
                f"(outputs: {sorted(input_shape)}; add it to MODEL.RESNETS.OUT_FEATURES)"
            )
        self.in_feature = in_feature
        self.aux_in_feature = aux_in_feature
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.aux_loss_weight = aux_loss_weight
        self.head = _FCNBranch(
            input_shape[in_feature].channels,
            conv_dims,
            num_convs,
            dilation,
            concat_input,
            dropout,
            num_classes,
            norm,
        )
        self.aux_head = None
        if aux_in_feature:
            self.aux_head = _FCNBranch(
                input_shape[aux_in_feature].channels,
                aux_conv_dims,
                aux_num_convs,
                1,
                False,
                dropout,
                num_classes,
                norm,
            )
        # this suite's pixel adaptation of Core-tuning (sem_seg_core_tuning.py)
        self.core_tuning = None
        if core_tuning:
            in_dim = conv_dims if num_convs or concat_input else input_shape[in_feature].channels
            self.core_tuning = PixelCoreTuning(
                in_dim, num_classes, ignore_value=ignore_value, **core_tuning
            )

    @classmethod
    def from_config(cls, cfg, input_shape):
        head = cfg.MODEL.SEM_SEG_HEAD
        if len(head.IN_FEATURES) != 1:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES: FCNHead reads one feature, got "
                f"{list(head.IN_FEATURES)}"
            )
        return {
            "input_shape": input_shape,
            "in_feature": head.IN_FEATURES[0],
            "num_classes": head.NUM_CLASSES,
            "conv_dims": head.CONVS_DIM,
            "num_convs": head.NUM_CONVS,
            "dilation": head.DILATION,
            "concat_input": head.CONCAT_INPUT,
            "dropout": head.DROPOUT,
            "norm": head.NORM,
            "ignore_value": head.IGNORE_VALUE,
            "loss_weight": head.LOSS_WEIGHT,
            "aux_in_feature": head.AUX_IN_FEATURE,
            "aux_conv_dims": head.AUX_CONVS_DIM,
            "aux_num_convs": head.AUX_NUM_CONVS,
            "aux_loss_weight": head.AUX_LOSS_WEIGHT,
            "core_tuning": _core_tuning_args(cfg),
        }

    def forward(self, features, targets=None, input_size=None):
        """
        Args:
            features: backbone outputs by name (NxCxhxw each)
            targets: NxHxW labels of the padded input (training), or None
            input_size: (H, W) of the padded input (inference; default: the targets' size)
        Returns:
            (NxKxHxW logits at ``input_size`` or None in training, dict of losses or {})
        """
        embeddings = self.head.embed(features[self.in_feature])  # NxCxhxw
        logits = self.head.predictor(self.head.dropout(embeddings))  # NxKxhxw
        size = tuple(targets.shape[-2:]) if targets is not None else tuple(input_size)
        if not self.training:
            return _resize(logits, size), {}
        losses = {
            "loss_sem_seg": self.loss_weight
            * sem_seg_cross_entropy(_resize(logits, size), targets, self.ignore_value)
        }
        if self.aux_head is not None:
            aux = self.aux_head(features[self.aux_in_feature])  # NxKxh'xw'
            losses["loss_sem_seg_aux"] = self.aux_loss_weight * sem_seg_cross_entropy(
                _resize(aux, size), targets, self.ignore_value
            )
        if self.core_tuning is not None:
            losses.update(self.core_tuning(embeddings, targets, self.head.predictor))
        return None, losses


def _core_tuning_args(cfg):
    """The pixel Core-tuning arguments (None when MODEL.SEM_SEG_HEAD.CORE_TUNING.ENABLED is off)."""
    if not cfg.MODEL.SEM_SEG_HEAD.CORE_TUNING.ENABLED:
        return None
    ct = cfg.CLASSIFICATION.CORE_TUNING
    return {
        "pixels_per_class": cfg.MODEL.SEM_SEG_HEAD.CORE_TUNING.PIXELS_PER_CLASS,
        "hidden_dim": cfg.MODEL.SEM_SEG_HEAD.CORE_TUNING.HIDDEN_DIM,
        "proj_dim": ct.PROJ_DIM,
        "eta": ct.ETA,
        "alpha": ct.ALPHA,
        "temperature": ct.TEMPERATURE,
        "min_shuffled_weight": ct.MIN_SHUFFLED_WEIGHT,
        "con_normalization": ct.CON_NORMALIZATION,
        "hard_pairs": ct.HARD_PAIRS,
        "smooth_boundary": ct.SMOOTH_BOUNDARY,
    }


def _resize(logits, size):
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)  # NxKxHxW


@META_ARCH_REGISTRY.register()
class FCNSemanticSegmentor(SemanticSegmentor):
    """
    detectron2's :class:`SemanticSegmentor` (backbone + ``MODEL.SEM_SEG_HEAD``, pixel normalisation,
    padding with the ignore value, ``sem_seg_postprocess``) whose head also receives the padded
    input size, so that inference logits are resized to the input itself rather than to the
    feature size times the stride (which overshoots an input that is not a multiple of the stride).

    With ``INPUT.SEM_SEG.TEST_CROP_SIZE`` set, inference slides windows of that size with
    ``INPUT.SEM_SEG.TEST_STRIDE`` over each image and averages the overlapping logits (mmseg's
    "slide" test mode).
    """

    @configurable
    def __init__(self, *, test_crop_size=(), test_stride=(), **kwargs):
        super().__init__(**kwargs)
        if bool(test_crop_size) != bool(test_stride):
            raise ValueError(
                "INPUT.SEM_SEG.TEST_CROP_SIZE and INPUT.SEM_SEG.TEST_STRIDE are set together, "
                f"got {test_crop_size!r} and {test_stride!r}"
            )
        self.test_crop_size = tuple(int(v) for v in test_crop_size)
        self.test_stride = tuple(int(v) for v in test_stride)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["test_crop_size"] = tuple(cfg.INPUT.SEM_SEG.TEST_CROP_SIZE)
        ret["test_stride"] = tuple(cfg.INPUT.SEM_SEG.TEST_STRIDE)
        return ret

    def forward(self, batched_inputs):
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        images = ImageList.from_tensors(
            images,
            self.backbone.size_divisibility,
            padding_constraints=self.backbone.padding_constraints,
        )
        if self.training:
            features = self.backbone(images.tensor)  # name -> NxCxhxw
            targets = ImageList.from_tensors(
                [x["sem_seg"].to(self.device) for x in batched_inputs],
                self.backbone.size_divisibility,
                self.sem_seg_head.ignore_value,
                self.backbone.padding_constraints,
            ).tensor  # NxHxW, padding = ignore value
            return self.sem_seg_head(features, targets)[1]
        if self.test_crop_size:
            results = torch.cat([self._slide(images.tensor[i : i + 1]) for i in range(len(images))])
        else:
            results = self._whole(images.tensor)  # NxKxHxW
        processed = []
        for result, inp, image_size in zip(results, batched_inputs, images.image_sizes):
            height, width = inp.get("height", image_size[0]), inp.get("width", image_size[1])
            # sem_seg: KxHxW
            processed.append({"sem_seg": sem_seg_postprocess(result, image_size, height, width)})
        return processed

    def _whole(self, x):
        return self.sem_seg_head(self.backbone(x), input_size=x.shape[-2:])[0]  # NxKxHxW

    def _slide(self, x):
        """Logits of a 1xCxHxW input, averaged over sliding windows (mmseg's slide_inference)."""
        (crop_h, crop_w), (stride_h, stride_w) = self.test_crop_size, self.test_stride
        _, _, h, w = x.shape
        rows = max(h - crop_h + stride_h - 1, 0) // stride_h + 1
        cols = max(w - crop_w + stride_w - 1, 0) // stride_w + 1
        total, count = None, x.new_zeros((1, 1, h, w))
        for r in range(rows):
            for c in range(cols):
                y1, x1 = r * stride_h, c * stride_w
                y2, x2 = min(y1 + crop_h, h), min(x1 + crop_w, w)
                y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
                logits = self._whole(x[:, :, y1:y2, x1:x2])  # 1xKxhxw
                if total is None:
                    total = x.new_zeros((1, logits.shape[1], h, w))
                total[:, :, y1:y2, x1:x2] += logits
                count[:, :, y1:y2, x1:x2] += 1
        return total / count  # 1xKxHxW

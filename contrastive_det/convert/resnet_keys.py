"""
Names of ResNet weights in torchvision and in detectron2, the mapping between them, and the
depth of a ResNet read from its key names.

torchvision (``torchvision.models.resnet*``)      detectron2 (``build_resnet_backbone``)
``conv1.weight``                                  ``stem.conv1.weight``
``bn1.{weight,bias,running_mean,running_var}``    ``stem.conv1.norm.*``
``layer{S}.{B}.conv{K}.weight``                   ``res{S+1}.{B}.conv{K}.weight``
``layer{S}.{B}.bn{K}.*``                          ``res{S+1}.{B}.conv{K}.norm.*``
``layer{S}.{B}.downsample.0.weight``              ``res{S+1}.{B}.shortcut.weight``
``layer{S}.{B}.downsample.1.*``                   ``res{S+1}.{B}.shortcut.norm.*``
``fc.*`` (classifier)                             ``linear.*`` (only with NUM_CLASSES)

Both put the stride of a bottleneck in its 3x3 conv when detectron2 runs with
``MODEL.RESNETS.STRIDE_IN_1X1 False``; basic blocks (ResNet-18/34) have it in conv1 in both.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch

from .errors import ConversionError

if TYPE_CHECKING:
    import torchvision

    from detectron2.config import CfgNode
    from detectron2.modeling.backbone.resnet import ResNet

# Blocks per stage (layer1..layer4 = res2..res5) and block type for every standard depth.
STAGE_BLOCKS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
BOTTLENECK_DEPTHS = frozenset({50, 101, 152})
DEPTHS = tuple(sorted(STAGE_BLOCKS))

# num_batches_tracked is a BatchNorm counter that no forward pass in eval mode (nor detectron2's
# BN) reads, so converters drop it.
BN_COUNTER = "num_batches_tracked"
_BN_ANY = "weight|bias|running_mean|running_var|num_batches_tracked"

_TV_PATTERNS = [
    (re.compile(r"^conv1\.weight$"), lambda m: "stem.conv1.weight"),
    (re.compile(rf"^bn1\.({_BN_ANY})$"), lambda m: f"stem.conv1.norm.{m[1]}"),
    (
        re.compile(r"^layer([1-4])\.(\d+)\.conv([1-3])\.weight$"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight",
    ),
    (
        re.compile(rf"^layer([1-4])\.(\d+)\.bn([1-3])\.({_BN_ANY})$"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}",
    ),
    (
        re.compile(r"^layer([1-4])\.(\d+)\.downsample\.0\.weight$"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight",
    ),
    (
        re.compile(rf"^layer([1-4])\.(\d+)\.downsample\.1\.({_BN_ANY})$"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}",
    ),
]

_D2_PATTERNS = [
    (re.compile(r"^stem\.conv1\.weight$"), lambda m: "conv1.weight"),
    (re.compile(rf"^stem\.conv1\.norm\.({_BN_ANY})$"), lambda m: f"bn1.{m[1]}"),
    (
        re.compile(r"^res([2-5])\.(\d+)\.conv([1-3])\.weight$"),
        lambda m: f"layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}.weight",
    ),
    (
        re.compile(rf"^res([2-5])\.(\d+)\.conv([1-3])\.norm\.({_BN_ANY})$"),
        lambda m: f"layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}.{m[4]}",
    ),
    (
        re.compile(r"^res([2-5])\.(\d+)\.shortcut\.weight$"),
        lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.0.weight",
    ),
    (
        re.compile(rf"^res([2-5])\.(\d+)\.shortcut\.norm\.({_BN_ANY})$"),
        lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.1.{m[3]}",
    ),
    (re.compile(r"^linear\.(weight|bias)$"), lambda m: f"fc.{m[1]}"),
    # detectron2's tools/convert-torchvision-to-d2.py keeps the classifier as stem.fc.*
    (re.compile(r"^stem\.fc\.(weight|bias)$"), lambda m: f"fc.{m[1]}"),
]

_TV_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


def _apply(patterns, key):
    for pattern, build in patterns:
        m = pattern.match(key)
        if m:
            return build(m)
    return None


def tv_to_d2_key(key: str) -> str | None:
    """detectron2 name of a torchvision ResNet backbone key, or None (fc, unknown names)."""
    return _apply(_TV_PATTERNS, key)


def d2_to_tv_key(key: str) -> str | None:
    """torchvision name of a detectron2 ResNet key (``linear.*`` -> ``fc.*``), or None."""
    return _apply(_D2_PATTERNS, key)


def is_classifier_key(tv_key: str) -> bool:
    """True for torchvision's ``fc.*`` (classifier, or a projection MLP stored as ``fc.0`` ...)."""
    return tv_key == "fc" or tv_key.startswith("fc.")


def is_bn_counter(key: str) -> bool:
    return key.endswith("." + BN_COUNTER)


# Index of each child of torchvision's ResNet in ``nn.Sequential(*resnet.children())`` (relu 2,
# maxpool 3 and avgpool 8 hold no weights).
_SEQUENTIAL_CHILDREN = {
    "0": "conv1",
    "1": "bn1",
    "4": "layer1",
    "5": "layer2",
    "6": "layer3",
    "7": "layer4",
    "9": "fc",
}


def sequential_to_tv_key(key: str) -> str:
    """
    torchvision name of a key of ``nn.Sequential(*list(resnet.children())[:-1])``:
    ``0.weight`` -> ``conv1.weight``, ``4.0.conv1.weight`` -> ``layer1.0.conv1.weight``. Keys of
    other indices are returned unchanged (the coverage check reports them as unexpected).
    """
    index, _, rest = key.partition(".")
    child = _SEQUENTIAL_CHILDREN.get(index)
    return f"{child}.{rest}" if child is not None and rest else key


def torchvision_to_detectron2(state_dict: Mapping[str, Any]) -> OrderedDict:
    """
    Rename a torchvision ResNet backbone ``state_dict`` to detectron2 names (same tensors, same
    order). Raises :class:`ConversionError` listing every key that has no detectron2 name.
    ``fc.*`` and ``num_batches_tracked`` must have been removed first.
    """
    out, bad = OrderedDict(), []
    for key, value in state_dict.items():
        new = tv_to_d2_key(key)
        if new is None or is_bn_counter(key):
            bad.append(key)
        else:
            out[new] = value
    if bad:
        raise ConversionError(f"keys without a detectron2 ResNet name: {bad}")
    return out


def detectron2_to_torchvision(state_dict: Mapping[str, Any]) -> OrderedDict:
    """Inverse of :func:`torchvision_to_detectron2` (raises on ``linear.*``, counters, unknowns)."""
    out, bad = OrderedDict(), []
    for key, value in state_dict.items():
        new = d2_to_tv_key(key)
        if new is None or is_bn_counter(key) or is_classifier_key(new):
            bad.append(key)
        else:
            out[new] = value
    if bad:
        raise ConversionError(f"keys without a torchvision ResNet backbone name: {bad}")
    return out


def describe_depth(depth: int) -> str:
    kind = "bottleneck" if depth in BOTTLENECK_DEPTHS else "basic"
    return f"ResNet-{depth} ({kind} blocks {'-'.join(map(str, STAGE_BLOCKS[depth]))})"


def infer_depth(
    tv_keys: Iterable[str], expected: int | None = None, expected_name: str = "--depth "
) -> int:
    """
    Depth of a torchvision-named ResNet from its keys: block counts of layer1..4 and whether
    blocks have a ``conv3`` (bottleneck). ``expected`` (e.g. ``--depth``) is checked against it.
    """
    if expected is not None and int(expected) not in STAGE_BLOCKS:
        raise ConversionError(
            f"{expected_name}{expected} is not a ResNet depth (one of {list(DEPTHS)})"
        )
    blocks = {s: set() for s in range(1, 5)}
    bottleneck = False
    for key in tv_keys:
        m = _TV_BLOCK.match(key)
        if m:
            blocks[int(m[1])].add(int(m[2]))
            if key.startswith(f"layer{m[1]}.{m[2]}.conv3."):
                bottleneck = True
    counts = tuple(len(blocks[s]) for s in range(1, 5))
    kind = "bottleneck" if bottleneck else "basic"
    for s in range(1, 5):
        if blocks[s] and blocks[s] != set(range(len(blocks[s]))):
            raise ConversionError(f"layer{s} block indices are not 0..N-1: {sorted(blocks[s])}")
    found = [
        d for d, c in STAGE_BLOCKS.items() if c == counts and (d in BOTTLENECK_DEPTHS) == bottleneck
    ]
    if not found:
        raise ConversionError(
            f"cannot infer the ResNet depth: layer1..layer4 have {list(counts)} {kind} blocks; "
            "known: "
            + ", ".join(
                f"{d}: {list(c)} {'bottleneck' if d in BOTTLENECK_DEPTHS else 'basic'}"
                for d, c in STAGE_BLOCKS.items()
            )
        )
    depth = found[0]
    if expected is not None and int(expected) != depth:
        raise ConversionError(
            f"{expected_name}{expected} does not match the checkpoint: it is a "
            f"{describe_depth(depth)}, while ResNet-{expected} has "
            f"{list(STAGE_BLOCKS[int(expected)])} "
            f"{'bottleneck' if int(expected) in BOTTLENECK_DEPTHS else 'basic'} blocks"
        )
    return depth


def detectron2_resnet_cfg(depth: int, norm: str = "BN") -> CfgNode:
    """
    A detectron2 config for a plain ResNet backbone of ``depth`` in torchvision layout:
    RES2_OUT_CHANNELS 64 (R18/34) or 256, STRIDE_IN_1X1 False, res2..res5 out, nothing frozen.
    """
    from detectron2.config import get_cfg

    if depth not in STAGE_BLOCKS:
        raise ConversionError(f"unsupported ResNet depth {depth} (one of {list(DEPTHS)})")
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = res2_out_channels(depth)
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.NORM = norm
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return cfg


def res2_out_channels(depth: int) -> int:
    return 256 if depth in BOTTLENECK_DEPTHS else 64


def build_detectron2_resnet(depth: int, device: str | torch.device | None = None) -> ResNet:
    """detectron2's ResNet backbone (real BN) for ``depth``; ``device="meta"`` allocates nothing."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    cfg = detectron2_resnet_cfg(depth)
    if device is None:
        return build_resnet_backbone(cfg, ShapeSpec(channels=3))
    with torch.device(device):
        return build_resnet_backbone(cfg, ShapeSpec(channels=3))


def build_torchvision_resnet(
    depth: int, device: str | torch.device | None = None
) -> torchvision.models.ResNet:
    import torchvision

    if depth not in STAGE_BLOCKS:
        raise ConversionError(f"unsupported ResNet depth {depth} (one of {list(DEPTHS)})")
    ctor = getattr(torchvision.models, f"resnet{depth}")
    if device is None:
        return ctor(weights=None)
    with torch.device(device):
        return ctor(weights=None)


@functools.lru_cache(maxsize=None)
def _shapes(kind, depth):
    model = (build_detectron2_resnet if kind == "d2" else build_torchvision_resnet)(depth, "meta")
    return tuple(
        (k, tuple(v.shape))
        for k, v in model.state_dict().items()
        if not is_bn_counter(k) and not (kind == "tv" and is_classifier_key(k))
    )


def detectron2_backbone_shapes(depth: int) -> OrderedDict[str, tuple[int, ...]]:
    """OrderedDict detectron2 key -> shape of every parameter and BN statistic of the backbone."""
    return OrderedDict(_shapes("d2", depth))


def torchvision_backbone_shapes(depth: int) -> OrderedDict[str, tuple[int, ...]]:
    """OrderedDict torchvision key -> shape for the backbone (no ``fc.*``, no BN counters)."""
    return OrderedDict(_shapes("tv", depth))

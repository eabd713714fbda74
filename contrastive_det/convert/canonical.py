"""
The canonical exported backbone: the hub every checkpoint format converts through.

A canonical file is ``torch.save`` of a dict holding only tensors, lists, str, int, float, bool
and None (so ``torch.load(path, weights_only=True)`` reads it)::

    {"format": "contrastive_det.backbone/v1",
     "state_dict": {torchvision ResNet backbone keys: conv1, bn1, layer1..layer4; no fc.*,
                    no num_batches_tracked},
     "meta": {"arch": "resnet50", "depth": 50, "method": "mocov2",
              "pixel_mean": [123.675, 116.28, 103.53], "pixel_std": [58.395, 57.12, 57.375],
              "input_format": "RGB", ...extra}}

Pixel statistics follow detectron2's convention: per channel, 0-255 scale, in the order of
``input_format``. Load the weights into torchvision with
``torchvision.models.resnet50().load_state_dict(state_dict, strict=False)`` (only ``fc.*`` and
the BN counters are missing).
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch

from ..utils.atomic import atomic_open
from .checkpoint_io import load_checkpoint_file
from .errors import ConversionError
from .resnet_keys import (
    STAGE_BLOCKS,
    infer_depth,
    is_bn_counter,
    is_classifier_key,
    torchvision_backbone_shapes,
)

CANONICAL_FORMAT = "contrastive_det.backbone/v1"
TORCHVISION_PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 scale (detectron2 convention)
TORCHVISION_PIXEL_STD = (58.395, 57.12, 57.375)

_META_KEYS = ("arch", "depth", "method", "pixel_mean", "pixel_std", "input_format")


# meta["method"] of a checkpoint that does not name its pretraining method
UNSPECIFIED_METHOD = "unspecified"


def named_method(method: object) -> str | None:
    """``method`` when a checkpoint names its pretraining method; None when it is empty, not a
    string or ``"unspecified"``."""
    return method if isinstance(method, str) and method and method != UNSPECIFIED_METHOD else None


def _check_plain(value, where):
    """Raise unless ``value`` is made of types that ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (str, bool, int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConversionError(f"{where}: non-finite number {value}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict) and type(value) is dict:
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConversionError(f"{where}: key {k!r} is not a string")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise ConversionError(
        f"{where}: {type(value).__name__} is not allowed in canonical metadata "
        "(only str, int, float, bool, None, lists and plain dicts of them)"
    )


def _arch_depth(arch):
    m = re.fullmatch(r"resnet(\d+)", str(arch))
    if not m or int(m[1]) not in STAGE_BLOCKS:
        raise ConversionError(
            f"arch {arch!r} is not supported: one of "
            f"{', '.join(f'resnet{d}' for d in STAGE_BLOCKS)}"
        )
    return int(m[1])


def _triple(values, name):
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConversionError(f"{name} must be 3 numbers, got {values!r}") from None
    if len(out) != 3:
        raise ConversionError(f"{name} must be 3 numbers, got {values!r}")
    return out


def canonical_backbone(
    state_dict: Mapping[str, torch.Tensor],
    depth: int | None = None,
    *,
    where: str = "state_dict",
    depth_name: str = "arch resnet",
) -> tuple[OrderedDict[str, torch.Tensor], int]:
    """
    Validate a torchvision ResNet state dict and return its backbone part as canonical tensors
    (``fc.*`` and BN counters removed; detached, contiguous CPU copies; same key order).
    Raises :class:`ConversionError` listing missing, mis-shaped and unknown keys.
    Returns ``(OrderedDict, depth)``.
    """
    if not isinstance(state_dict, dict):
        raise ConversionError(f"{where} must be a dict of tensors, got {type(state_dict).__name__}")
    kept = OrderedDict()
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ConversionError(f"{where}: key {key!r} is not a string")
        if is_classifier_key(key) or is_bn_counter(key):
            continue
        if not torch.is_tensor(value):
            raise ConversionError(f"{where}[{key!r}] is a {type(value).__name__}, not a tensor")
        kept[key] = value
    depth = infer_depth(kept.keys(), expected=depth, expected_name=depth_name)
    expected = torchvision_backbone_shapes(depth)
    missing = [k for k in expected if k not in kept]
    unknown = [k for k in kept if k not in expected]
    shapes = [
        f"{k}: {tuple(kept[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in kept and tuple(kept[k].shape) != expected[k]
    ]
    if missing or unknown or shapes:
        parts = [f"{where} is not a torchvision ResNet-{depth} backbone:"]
        if missing:
            parts.append(f"missing {len(missing)}: {missing}")
        if shapes:
            parts.append(f"mis-shaped {len(shapes)}: {shapes}")
        if unknown:
            parts.append(f"unknown {len(unknown)}: {unknown}")
        raise ConversionError("\n  ".join(parts))
    out = OrderedDict((k, kept[k].detach().to("cpu").contiguous().clone()) for k in expected)
    return out, depth


def canonical_payload(
    state_dict: Mapping[str, torch.Tensor],
    *,
    arch: str,
    method: str = "unspecified",
    pixel_mean: Sequence[float] = TORCHVISION_PIXEL_MEAN,
    pixel_std: Sequence[float] = TORCHVISION_PIXEL_STD,
    input_format: str = "RGB",
    extra: dict | None = None,
) -> dict:
    """The validated dict that :func:`save_canonical` writes (see the module docstring)."""
    arch_depth = _arch_depth(arch)
    backbone, depth = canonical_backbone(state_dict, arch_depth)
    if input_format not in ("RGB", "BGR"):
        raise ConversionError(f"input_format must be 'RGB' or 'BGR', got {input_format!r}")
    meta = {
        "arch": f"resnet{depth}",
        "depth": depth,
        "method": str(method),
        "pixel_mean": _triple(pixel_mean, "pixel_mean"),
        "pixel_std": _triple(pixel_std, "pixel_std"),
        "input_format": input_format,
    }
    extra = dict(extra or {})
    clash = [k for k in extra if k in meta]
    if clash:
        raise ConversionError(f"extra metadata may not redefine {clash}")
    _check_plain(extra, "extra")
    meta.update(extra)
    return {"format": CANONICAL_FORMAT, "state_dict": dict(backbone), "meta": meta}


def save_canonical(
    path: str,
    state_dict: Mapping[str, torch.Tensor],
    *,
    arch: str,
    method: str = "unspecified",
    pixel_mean: Sequence[float] = TORCHVISION_PIXEL_MEAN,
    pixel_std: Sequence[float] = TORCHVISION_PIXEL_STD,
    input_format: str = "RGB",
    extra: dict | None = None,
) -> dict:
    """
    Write a torchvision ResNet backbone as a canonical checkpoint at ``path``, atomically.

    Args:
        state_dict: a torchvision ResNet ``state_dict`` (``fc.*`` and ``num_batches_tracked`` are
            dropped; any other missing, unknown or mis-shaped key raises ConversionError).
        arch: ``"resnet18" | "resnet34" | "resnet50" | "resnet101" | "resnet152"``; must agree
            with the keys.
        method: the pretraining method (e.g. ``"mocov2"``, ``"supcon"``).
        pixel_mean, pixel_std: per-channel, 0-255 scale, in ``input_format`` order.
        input_format: ``"RGB"`` or ``"BGR"``.
        extra: more metadata (str/int/float/bool/None, lists and plain dicts of them).
    Returns:
        the metadata dict written.
    """
    payload = canonical_payload(
        state_dict,
        arch=arch,
        method=method,
        pixel_mean=pixel_mean,
        pixel_std=pixel_std,
        input_format=input_format,
        extra=extra,
    )
    with atomic_open(os.fspath(path), "wb") as f:
        torch.save(payload, f)
    return payload["meta"]


def parse_canonical(
    obj: Any, where: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Validate a loaded canonical dict; return ``(state_dict, meta)``."""
    if not isinstance(obj, dict) or "format" not in obj:
        keys = list(obj)[:20] if isinstance(obj, dict) else type(obj).__name__
        raise ConversionError(f"{where} is not a canonical backbone checkpoint (top-level: {keys})")
    if obj["format"] != CANONICAL_FORMAT:
        raise ConversionError(
            f"{where} has format {obj['format']!r}; this version reads {CANONICAL_FORMAT!r}"
        )
    meta = obj.get("meta")
    if not isinstance(meta, dict):
        raise ConversionError(f"{where}: 'meta' is missing or not a dict")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise ConversionError(f"{where}: meta lacks {missing}")
    state_dict, depth = canonical_backbone(
        obj.get("state_dict"), _arch_depth(meta["arch"]), where=f"{where}['state_dict']"
    )
    if int(meta["depth"]) != depth:
        raise ConversionError(
            f"{where}: meta depth {meta['depth']} but the weights are ResNet-{depth}"
        )
    return state_dict, dict(meta)


def load_canonical(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """
    Read a canonical checkpoint with ``torch.load(weights_only=True)``.
    Returns ``(state_dict, meta)``; raises :class:`ConversionError` naming the file when it is
    missing, corrupt, not canonical or not a valid ResNet backbone.
    """
    path = os.fspath(path)
    return parse_canonical(load_checkpoint_file(path, trust=False), where=path)

"""
``MODEL.WEIGHTS`` of a classification run, decided once before training: any ResNet checkpoint a
reader recognises (our export, torchvision, MoCo, SupContrast, VISSL, solo-learn, mmselfsup,
timm, detectron2, ...) goes through the converter's readers and coverage check, is loaded
strictly into a torchvision ResNet of the config's depth and width, and is written as
``OUTPUT_DIR/classifier_weights.pth`` under the classifier's names (``trunk.resnet.*``). A
checkpoint of the classifier itself (``model_final.pth`` of a fine-tuning run) is used as it is;
anything else stops the run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
import torchvision

from detectron2.config import CfgNode

from ..utils.atomic import atomic_open
from ..utils.config_keys import get_key
from .checkpoint_io import load_checkpoint_file
from .errors import ConversionError
from .canonical import TORCHVISION_PIXEL_MEAN, TORCHVISION_PIXEL_STD
from .pipeline import canonicalise, method_override, read

if TYPE_CHECKING:
    from .writers import ConvertedBackbone

CLASSIFIER_WEIGHTS_FILE = "classifier_weights.pth"
TORCHVISION_CONVENTIONS = {
    "input_format": "RGB",
    "pixel_mean": list(TORCHVISION_PIXEL_MEAN),
    "pixel_std": list(TORCHVISION_PIXEL_STD),
    "stride_in_1x1": False,
}
# detectron2's defaults (its config.yaml omits nothing, but an older one may): MSRA/Caffe2
# conventions
_D2_DEFAULTS = {
    "INPUT.FORMAT": "BGR",
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
}
TRUNK_PREFIX = "trunk.resnet."  # names of the trunk's tensors in contrastive_det's Classifier


def is_classifier_checkpoint(ckpt: Any) -> bool:
    """A state dict of contrastive_det's Classifier (bare or under "model")."""
    sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    return isinstance(sd, dict) and any(
        isinstance(k, str) and k.startswith(TRUNK_PREFIX) for k in sd
    )


def _complete_and_check(state_dict, depth, width, source):
    """
    Strictly load ``state_dict`` (torchvision names, no fc) into the config's torchvision ResNet;
    BN batch counters that the source did not store (e.g. detectron2's layout) are added as 0.
    Returns the state dict to write.
    """
    kwargs = {"weights": None}
    if depth >= 50:
        kwargs["width_per_group"] = width
    resnet = getattr(torchvision.models, f"resnet{depth}")(**kwargs)
    resnet.fc = torch.nn.Identity()
    state_dict = dict(state_dict)
    for key, value in resnet.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = torch.zeros_like(value)
    try:
        resnet.load_state_dict(state_dict, strict=True)
        return state_dict
    except RuntimeError as e:
        raise ConversionError(
            f"MODEL.WEIGHTS {source} does not fit the config's ResNet-{depth} "
            f"(MODEL.TV_RESNET.DEPTH {depth}, WIDTH_PER_GROUP {width}): {str(e).splitlines()[0]}"
        ) from None


def _d2_run_config(path):
    """The input keys of a detectron2 run's ``config.yaml`` (its defaults where a key is absent)."""
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    return {k: get_key(data, k, default=v) for k, v in _D2_DEFAULTS.items()}


def input_conventions(
    cfg: CfgNode, source: str, ckpt: Any, ext_format: str, meta: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """
    ``(conventions, where)``: how the weights expect their input (``input_format``, ``pixel_mean``,
    ``pixel_std`` in that channel order, ``stride_in_1x1``) and where that was read.

    Layouts of torchvision-style trunks (our export, torchvision, MoCo, VISSL, ...) carry it in
    their metadata or follow torchvision. A detectron2-named model is told by the ``config.yaml``
    of the run that wrote it (next to the file, as detectron2 leaves it in OUTPUT_DIR) or, for
    tools/convert_to_detectron2.py's output, is torchvision's;
    ``MODEL.CLASSIFIER.WEIGHTS_CONVENTIONS torchvision`` declares it. Otherwise it cannot be told
    (an MSRA-initialised model is BGR, Caffe2-normalised, with the stride in the 1x1 conv) and
    ConversionError says what to do.
    """
    if ext_format != "detectron2":
        conv = {
            k: meta.get(k, v) for k, v in TORCHVISION_CONVENTIONS.items() if k != "stride_in_1x1"
        }
        return dict(
            conv, stride_in_1x1=False
        ), "the checkpoint's metadata (torchvision's where it records none)"
    if isinstance(ckpt, dict) and ckpt.get("__author__") == "contrastive_det":
        return dict(
            TORCHVISION_CONVENTIONS
        ), "tools/convert_to_detectron2.py's output (torchvision's)"
    run_config = os.path.join(os.path.dirname(os.path.abspath(source)), "config.yaml")
    if os.path.isfile(run_config):
        d2 = _d2_run_config(run_config)
        return {
            "input_format": str(d2["INPUT.FORMAT"]),
            "pixel_mean": [float(v) for v in d2["MODEL.PIXEL_MEAN"]],
            "pixel_std": [float(v) for v in d2["MODEL.PIXEL_STD"]],
            "stride_in_1x1": bool(d2["MODEL.RESNETS.STRIDE_IN_1X1"]),
        }, run_config
    if get_key(cfg, "MODEL.CLASSIFIER.WEIGHTS_CONVENTIONS", default="") == "torchvision":
        return dict(TORCHVISION_CONVENTIONS), "MODEL.CLASSIFIER.WEIGHTS_CONVENTIONS"
    raise ConversionError(
        f"MODEL.WEIGHTS {source} is a detectron2 model whose input conventions cannot be told (BGR "
        "or RGB, pixel mean/std, stride in the 1x1 or the 3x3 conv: an MSRA-initialised model "
        "differs from a torchvision-initialised one in all three, with the same tensor shapes). "
        "Put the config.yaml of the run that wrote it next to it, or set "
        "MODEL.CLASSIFIER.WEIGHTS_CONVENTIONS torchvision if it was trained with torchvision's "
        "(RGB, mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375], "
        "MODEL.RESNETS.STRIDE_IN_1X1 False)."
    )


def honour_conventions(
    cfg: CfgNode,
    state_dict: dict[str, torch.Tensor],
    conventions: Mapping[str, Any],
    where: str,
    source: str,
    log: Callable[[str], Any] = print,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """
    Make the torchvision trunk compute what the weights were trained to compute, or refuse.

    The stride in the 1x1 conv (MSRA bottlenecks) cannot be honoured by a torchvision trunk:
    ConversionError. BGR weights take RGB input once ``conv1``'s input channels are reversed (and
    their mean/std with them). Pixel statistics other than the config's become overrides of
    ``MODEL.PIXEL_MEAN`` / ``MODEL.PIXEL_STD``, logged. Returns ``(state_dict, overrides)``.
    """
    depth = int(cfg.MODEL.TV_RESNET.DEPTH)
    if conventions["stride_in_1x1"] and depth >= 50:
        raise ConversionError(
            f"MODEL.WEIGHTS {source} was trained with the stride in the first 1x1 conv of each "
            f"bottleneck (MODEL.RESNETS.STRIDE_IN_1X1 True, from {where}: MSRA/Caffe2 style); the "
            f"torchvision trunk of "
            "classification transfer has it in the 3x3 conv, so every strided block would compute "
            "other features from the same tensors. Use weights trained with STRIDE_IN_1X1 False "
            "(e.g. from a torchvision or contrastive checkpoint), or transfer these to detection, "
            "which keeps their layout."
        )
    mean, std = list(conventions["pixel_mean"]), list(conventions["pixel_std"])
    if conventions["input_format"] == "BGR":
        # BGR filters -> RGB input
        state_dict = dict(state_dict, **{"conv1.weight": state_dict["conv1.weight"].flip(1)})
        mean, std = mean[::-1], std[::-1]
        log(
            f"  input: BGR weights (from {where}): conv1's input channels reversed to take RGB "
            "images"
        )
    elif conventions["input_format"] != "RGB":
        raise ConversionError(
            f"MODEL.WEIGHTS {source}: input format {conventions['input_format']!r} from {where} "
            "is neither RGB nor BGR"
        )
    overrides = []
    for key, want in (("MODEL.PIXEL_MEAN", mean), ("MODEL.PIXEL_STD", std)):
        have = [float(v) for v in get_key(cfg, key)]
        if len(have) != 3 or any(abs(a - b) > 1e-3 for a, b in zip(have, want)):
            overrides += [key, str([float(v) for v in want])]
            log(
                f"  input: {key} {have} -> {[round(v, 4) for v in want]} (the weights' own, from "
                f"{where})"
            )
    return state_dict, overrides


def read_trunk(
    cfg: CfgNode, purpose: str, log: Callable[[str], Any] = print
) -> tuple[dict[str, torch.Tensor], ConvertedBackbone]:
    """
    The torchvision ResNet trunk of ``cfg.MODEL.WEIGHTS`` (any layout a reader recognises; the
    backbone prefix from ``MODEL.WEIGHTS_PREFIX`` when the config has it), checked against the
    config's ``MODEL.TV_RESNET`` depth and width.

    Returns:
        (dict, ConvertedBackbone): the state dict (torchvision names, no fc) and the converted
        backbone (its ``meta``: method, pixel statistics, input format; ``source_format``).
    Raises:
        ConversionError: see :func:`prepare_classifier_weights`.
    """
    source = cfg.MODEL.WEIGHTS
    prefix = get_key(cfg, "MODEL.WEIGHTS_PREFIX", default="") or None
    depth, width = int(cfg.MODEL.TV_RESNET.DEPTH), int(cfg.MODEL.TV_RESNET.WIDTH_PER_GROUP)
    log(f"MODEL.WEIGHTS {source}: reading the ResNet trunk for {purpose}")
    ext = read(source, prefix=prefix)
    log(f"  source: format {ext.format}, backbone at {ext.source}")
    # DEPTH 0: whatever depth the checkpoint's keys show (a study's own checkpoints of any depth)
    backbone, _ = canonicalise(
        ext, depth=depth or None, where=source, say=lambda line: log(f"  {line}")
    )
    return _complete_and_check(backbone.state_dict, backbone.depth, width, source), backbone


def prepare_classifier_weights(
    cfg: CfgNode, output_dir: str, log: Callable[[str], Any] = print
) -> list[str]:
    """
    Prepare ``cfg.MODEL.WEIGHTS`` for the classifier (before any process starts).

    Returns:
        list[str]: overrides ``[KEY, VALUE, ...]``: ``MODEL.WEIGHTS`` (the converted file),
        ``RESULTS.WEIGHTS_SOURCE`` and, when the checkpoint names its method and the config does
        not, ``RESULTS.METHOD``; ``[]`` for random initialisation or a classifier checkpoint. With
        ``MODEL.TV_RESNET.DEPTH 0`` also ``MODEL.TV_RESNET.DEPTH`` (the checkpoint's depth).

    Raises:
        ConversionError: missing or unreadable file, not a ResNet, a partial match (the converter's
            coverage check), ambiguous (several ResNets; set MODEL.WEIGHTS_PREFIX), or a depth/width
            other than the config's. Nothing is written then.
    """
    source = cfg.MODEL.WEIGHTS
    if int(cfg.MODEL.TV_RESNET.DEPTH) == 0 and not source:
        raise ConversionError(
            "MODEL.TV_RESNET.DEPTH 0 takes the depth of MODEL.WEIGHTS, but MODEL.WEIGHTS is empty "
            "(random initialisation): set a depth (18, 34, 50, 101 or 152)"
        )
    if not source:
        return []
    ckpt = load_checkpoint_file(source)
    if is_classifier_checkpoint(ckpt):
        if int(cfg.MODEL.TV_RESNET.DEPTH) == 0:
            raise ConversionError(
                f"MODEL.WEIGHTS {source} is a classifier checkpoint of this suite: set "
                "MODEL.TV_RESNET.DEPTH to the depth it was trained with (0 reads it from a "
                "backbone checkpoint only)"
            )
        return []
    state_dict, backbone = read_trunk(cfg, "the classifier", log)
    depth_overrides = []
    if int(cfg.MODEL.TV_RESNET.DEPTH) == 0:
        depth_overrides = ["MODEL.TV_RESNET.DEPTH", str(backbone.depth)]
        log(f"  MODEL.TV_RESNET.DEPTH 0 -> {backbone.depth} (the depth of MODEL.WEIGHTS)")
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.TV_RESNET.DEPTH = backbone.depth
    conventions, where = input_conventions(cfg, source, ckpt, backbone.source_format, backbone.meta)
    state_dict, input_overrides = honour_conventions(
        cfg, state_dict, conventions, where, source, log
    )
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, CLASSIFIER_WEIGHTS_FILE)
    payload = {
        "model": {TRUNK_PREFIX + k: v for k, v in state_dict.items()},
        "__author__": "contrastive_det",
        "meta": dict(
            backbone.meta, source=os.path.abspath(source), source_format=backbone.source_format
        ),
    }
    with atomic_open(target, "wb") as f:
        torch.save(payload, f)
    log(f"  wrote {target} ({len(payload['model'])} trunk tensors)")
    overrides = [
        "MODEL.WEIGHTS",
        target,
        "RESULTS.WEIGHTS_SOURCE",
        os.path.abspath(source),
        *depth_overrides,
        *input_overrides,
    ]
    return overrides + method_override(cfg, backbone.meta.get("method"))

"""
``MODEL.WEIGHTS`` of a classification run, decided once before training: any ResNet checkpoint a
reader recognises (our export, torchvision, MoCo, SupContrast, VISSL, solo-learn, mmselfsup,
timm, detectron2, ...) goes through the converter's readers and coverage check, is loaded
strictly into a torchvision ResNet of the config's depth and width, and is written as
``OUTPUT_DIR/classifier_weights.pth`` under the classifier's names (``trunk.resnet.*``). A
checkpoint of the classifier itself (``model_final.pth`` of a fine-tuning run) is used as it is;
anything else stops the run.
"""
import os

import torch
import torchvision

from ..utils.atomic import atomic_open
from ..utils.config_keys import get_key
from .checkpoint_io import load_checkpoint_file
from .errors import ConversionError
from .pipeline import canonicalise, read

CLASSIFIER_WEIGHTS_FILE = "classifier_weights.pth"
TRUNK_PREFIX = "trunk.resnet."  # names of the trunk's tensors in contrastive_det's Classifier


def is_classifier_checkpoint(ckpt):
    """A state dict of contrastive_det's Classifier (bare or under "model")."""
    sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    return isinstance(sd, dict) and any(isinstance(k, str) and k.startswith(TRUNK_PREFIX) for k in sd)


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
            f"MODEL.WEIGHTS {source} does not fit the config's ResNet-{depth} (MODEL.TV_RESNET.DEPTH {depth}, "
            f"WIDTH_PER_GROUP {width}): {str(e).splitlines()[0]}"
        ) from None


def prepare_classifier_weights(cfg, output_dir, log=print):
    """
    Prepare ``cfg.MODEL.WEIGHTS`` for the classifier (before any process starts).

    Returns:
        list[str]: overrides ``[KEY, VALUE, ...]``: ``MODEL.WEIGHTS`` (the converted file),
        ``RESULTS.WEIGHTS_SOURCE`` and, when the checkpoint names its method and the config does
        not, ``RESULTS.METHOD``; ``[]`` for random initialisation or a classifier checkpoint.

    Raises:
        ConversionError: missing or unreadable file, not a ResNet, a partial match (the converter's
            coverage check), ambiguous (several ResNets; set MODEL.WEIGHTS_PREFIX), or a depth/width
            other than the config's. Nothing is written then.
    """
    source = cfg.MODEL.WEIGHTS
    if not source:
        return []
    if is_classifier_checkpoint(load_checkpoint_file(source)):
        return []
    prefix = get_key(cfg, "MODEL.WEIGHTS_PREFIX", default="") or None
    depth, width = int(cfg.MODEL.TV_RESNET.DEPTH), int(cfg.MODEL.TV_RESNET.WIDTH_PER_GROUP)
    log(f"MODEL.WEIGHTS {source}: reading the ResNet trunk for the classifier")
    ext = read(source, prefix=prefix)
    log(f"  source: format {ext.format}, backbone at {ext.source}")
    backbone, _ = canonicalise(ext, depth=depth, where=source, say=lambda line: log(f"  {line}"))
    state_dict = _complete_and_check(backbone.state_dict, depth, width, source)
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, CLASSIFIER_WEIGHTS_FILE)
    payload = {
        "model": {TRUNK_PREFIX + k: v for k, v in state_dict.items()},
        "__author__": "contrastive_det",
        "meta": dict(backbone.meta, source=os.path.abspath(source), source_format=backbone.source_format),
    }
    with atomic_open(target, "wb") as f:
        torch.save(payload, f)
    log(f"  wrote {target} ({len(payload['model'])} trunk tensors)")
    overrides = ["MODEL.WEIGHTS", target, "RESULTS.WEIGHTS_SOURCE", os.path.abspath(source)]
    method = backbone.meta.get("method")
    if not cfg.RESULTS.METHOD and method and method != "unspecified":
        overrides += ["RESULTS.METHOD", method]
    return overrides

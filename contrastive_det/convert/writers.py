"""
Output files: detectron2's ``.pkl`` and the canonical torchvision form. Every write is atomic
(a temporary file renamed into place), so a failure never leaves a partial output.
"""
import os
import pickle
from collections import OrderedDict

import torch

from ..utils.atomic import atomic_open
from .canonical import canonical_payload
from .errors import ConversionError

DETECTRON2_AUTHOR = "contrastive_det"


def _to_numpy(tensor):
    t = tensor.detach().to("cpu")
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        t = t.float()
    return t.contiguous().numpy().copy()


def detectron2_payload(d2_state_dict):
    """
    ``{"model": {detectron2 name: numpy array}, "__author__": "contrastive_det",
    "matching_heuristics": True}``: what detectron2's ``DetectionCheckpointer`` reads from a
    ``.pkl`` (names are matched by suffix, so ``res2.0.conv1.weight`` finds
    ``backbone.res2.0.conv1.weight``, ``backbone.bottom_up.res2...`` or ``roi_heads.res5...``).
    """
    model = OrderedDict((k, _to_numpy(v)) for k, v in d2_state_dict.items())
    return {"model": dict(model), "__author__": DETECTRON2_AUTHOR, "matching_heuristics": True}


def dumps_detectron2(d2_state_dict):
    return pickle.dumps(detectron2_payload(d2_state_dict), protocol=4)


def write_bytes_atomic(path, data):
    with atomic_open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)


def check_output_path(path, to):
    """detectron2 reads weights as a pickle only when the name ends with .pkl: enforce it."""
    path = os.fspath(path)
    if to == "detectron2" and not path.endswith(".pkl"):
        raise ConversionError(
            f"{path}: detectron2 output must end with .pkl (detectron2 unpickles only .pkl files; "
            "anything else is read with torch.load and fails)"
        )
    if to == "torchvision" and path.endswith(".pkl"):
        raise ConversionError(
            f"{path}: the torchvision (canonical) output is a torch.save file; use .pth, not .pkl "
            "(detectron2 would try to unpickle a .pkl)"
        )
    if to not in ("detectron2", "torchvision"):
        raise ConversionError(f"unknown output kind {to!r}: detectron2 or torchvision")
    if os.path.isdir(path):
        raise ConversionError(f"{path} is a directory")


def write_detectron2(path, d2_state_dict):
    """Write the detectron2 ``.pkl`` atomically; returns the number of bytes written."""
    check_output_path(path, "detectron2")
    return write_bytes_atomic(path, dumps_detectron2(d2_state_dict))


def dumps_torchvision(tv_state_dict, *, arch, **meta):
    """Bytes of a canonical checkpoint (see :func:`~contrastive_det.convert.canonical.save_canonical`)."""
    import io

    buf = io.BytesIO()
    torch.save(canonical_payload(tv_state_dict, arch=arch, **meta), buf)
    return buf.getvalue()


def write_torchvision(path, tv_state_dict, *, arch, **meta):
    """Write the canonical torchvision form atomically; returns the number of bytes written."""
    check_output_path(path, "torchvision")
    return write_bytes_atomic(path, dumps_torchvision(tv_state_dict, arch=arch, **meta))

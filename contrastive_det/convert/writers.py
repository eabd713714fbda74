"""
The writer table: one entry per output layout (``--to NAME``).

Writer contract
---------------
A :class:`Writer` turns a :class:`ConvertedBackbone` (checked torchvision-named tensors + metadata)
into the bytes of one output file, and proves that the file is right:

* ``check_path(path)`` raises :class:`ConversionError` when ``path`` cannot hold this layout
  (e.g. detectron2 reads a pickle only from a ``.pkl``). Called before anything is read.
* ``dumps(backbone) -> bytes``: the whole file. The pipeline writes it atomically, after
  verification, so a failure never leaves a partial or unverified output.
* ``verify(backbone, path, tolerance) -> VerificationResult``: load ``path`` (those bytes, in a
  temporary file named ``"converted" + suffix``) the way its consumer does and compare the network
  outputs with the source's (:func:`~contrastive_det.convert.verify.verify_conversion`); raises
  :class:`~contrastive_det.convert.errors.VerificationError`.
* ``describe(backbone) -> str``: appended to the ``wrote PATH: N tensors, X MiB`` line.
* ``for_detectron2``: the file is meant for ``MODEL.WEIGHTS``: the pipeline prints the config
  keys the weights need and accepts ``--write-config``.

``WRITERS`` maps ``--to`` names to writers; add one with :func:`register_writer`. Every write is
atomic (a temporary file renamed into place).
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from ..utils.atomic import atomic_open
from .canonical import CANONICAL_FORMAT, canonical_payload, load_canonical, named_method
from .d2config import detectron2_config
from .errors import ConversionError
from .resnet_keys import torchvision_to_detectron2
from .verify import verify_conversion

DETECTRON2_AUTHOR = "contrastive_det"
WEIGHTS_KEYS = "config"  # the payload entry with the config keys the weights need
WEIGHTS_METHOD = "method"  # the payload entry naming the pretraining method (absent when unknown)
# meta keys that canonical_payload sets itself; the others travel as "extra"
_CANONICAL_META = ("arch", "depth", "method", "pixel_mean", "pixel_std", "input_format")


@dataclass
class ConvertedBackbone:
    """A backbone that passed the coverage check, ready to write."""

    depth: int
    state_dict: "OrderedDict[str, torch.Tensor]"  # torchvision names, canonical order, CPU tensors
    meta: dict  # method, pixel_mean, pixel_std, input_format (+ what the source recorded)
    source_format: str  # the reader that found it

    @property
    def detectron2_state(self) -> OrderedDict[str, torch.Tensor]:
        """The same tensors under detectron2 names."""
        return torchvision_to_detectron2(self.state_dict)


@dataclass(frozen=True)
class Writer:
    """One output layout (see the module docstring for the contract)."""

    name: str
    help: str  # one line for --help
    suffix: str  # of the temporary file verification reads
    check_path: Callable[[str], None]
    dumps: Callable[[ConvertedBackbone], bytes]
    verify: Callable[[ConvertedBackbone, str, float], object]
    describe: Callable[[ConvertedBackbone], str] = lambda backbone: ""
    for_detectron2: bool = False


WRITERS: "OrderedDict[str, Writer]" = OrderedDict()


def register_writer(writer: Writer) -> Writer:
    """
    Add (or replace) an output layout.

    Args:
        writer (Writer): its ``name`` becomes a ``--to`` choice.

    Returns:
        the writer (so that it can be used as a module-level assignment).
    """
    WRITERS[writer.name] = writer
    return writer


def get_writer(name: str) -> Writer:
    """
    Args:
        name (str): a ``--to`` name.

    Returns:
        Writer

    Raises:
        ConversionError: unknown name (the message lists the known ones).
    """
    if name not in WRITERS:
        raise ConversionError(f"unknown output kind {name!r}: {' or '.join(WRITERS)}")
    return WRITERS[name]


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> int:
    """Write ``data`` to ``path`` atomically; returns the number of bytes written."""
    with atomic_open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)


def check_writable_file(path: str | os.PathLike[str], what: str = "output") -> None:
    """Raise :class:`ConversionError` unless a file can be written at ``path``: not a directory,
    and its nearest existing parent a folder this process may write in (missing folders are
    created)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ConversionError(f"{path}: the {what} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConversionError(
            f"{path}: the {what} cannot be written: {parent} is a file, not a folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConversionError(
            f"{path}: the {what} cannot be written: no write permission in {parent}"
        )


def check_output_path(path: str | os.PathLike[str], to: str) -> None:
    """Raise :class:`ConversionError` unless ``path`` can receive output layout ``to``."""
    path = os.fspath(path)
    get_writer(to).check_path(path)
    check_writable_file(path, "output")


# ----------------------------------------------------------------------------------------------
# detectron2 .pkl


def _to_numpy(tensor):
    t = tensor.detach().to("cpu")
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        t = t.float()
    return t.contiguous().numpy().copy()


def detectron2_payload(
    d2_state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any] | None = None,
    method: str | None = None,
) -> dict:
    """
    ``{"model": {detectron2 name: numpy array}, "__author__": "contrastive_det",
    "matching_heuristics": True}``: what detectron2's ``DetectionCheckpointer`` reads from a
    ``.pkl`` (names are matched by suffix, so ``res2.0.conv1.weight`` finds
    ``backbone.res2.0.conv1.weight``, ``backbone.bottom_up.res2...`` or ``roi_heads.res5...``).
    With ``config``, also ``WEIGHTS_KEYS: {dotted config key: value}``: the depth and input keys
    these weights need (:func:`~.d2config.detectron2_config`), which ``tools/train_net.py`` adopts
    (detectron2's loader ignores keys it does not know). With a known ``method`` (not
    "unspecified"), also ``WEIGHTS_METHOD: method``, which a run from the file records in
    results.json.
    """
    model = OrderedDict((k, _to_numpy(v)) for k, v in d2_state_dict.items())
    payload = {"model": dict(model), "__author__": DETECTRON2_AUTHOR, "matching_heuristics": True}
    if config:
        payload[WEIGHTS_KEYS] = dict(config)
    if named_method(method):
        payload[WEIGHTS_METHOD] = method
    return payload


def dumps_detectron2(
    d2_state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any] | None = None,
    method: str | None = None,
) -> bytes:
    """Bytes of the detectron2 ``.pkl`` for a detectron2-named state dict (and the keys and method
    it records)."""
    return pickle.dumps(detectron2_payload(d2_state_dict, config, method), protocol=4)


def write_detectron2(
    path: str, d2_state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None
) -> int:
    """Write the detectron2 ``.pkl`` atomically; returns the number of bytes written."""
    check_output_path(path, "detectron2")
    return write_bytes_atomic(path, dumps_detectron2(d2_state_dict, config))


def _check_pkl(path):
    if not path.endswith(".pkl"):
        raise ConversionError(
            f"{path}: detectron2 output must end with .pkl (detectron2 unpickles only .pkl files; "
            "anything else is read with torch.load and fails)"
        )


def _verify_detectron2(backbone, path, tolerance):
    return verify_conversion(
        backbone.depth, backbone.state_dict, detectron2_file=path, tolerance=tolerance
    )


DETECTRON2_WRITER = register_writer(
    Writer(
        name="detectron2",
        help="detectron2 .pkl for MODEL.WEIGHTS (read by DetectionCheckpointer, "
        "names matched by suffix)",
        suffix=".pkl",
        check_path=_check_pkl,
        dumps=lambda backbone: dumps_detectron2(
            backbone.detectron2_state,
            detectron2_config(backbone.depth, backbone.meta),
            backbone.meta.get("method"),
        ),
        verify=_verify_detectron2,
        for_detectron2=True,
    )
)


# ----------------------------------------------------------------------------------------------
# canonical torchvision backbone


def _check_not_pkl(path):
    if path.endswith(".pkl"):
        raise ConversionError(
            f"{path}: the torchvision (canonical) output is a torch.save file; use .pth, not .pkl "
            "(detectron2 would try to unpickle a .pkl)"
        )


def _dumps_canonical(backbone):
    meta = backbone.meta
    extra = {k: v for k, v in meta.items() if k not in _CANONICAL_META}
    extra.setdefault("source_format", backbone.source_format)
    buf = io.BytesIO()
    torch.save(
        canonical_payload(
            backbone.state_dict,
            arch=f"resnet{backbone.depth}",
            method=meta["method"],
            pixel_mean=meta["pixel_mean"],
            pixel_std=meta["pixel_std"],
            input_format=meta["input_format"],
            extra=extra,
        ),
        buf,
    )
    return buf.getvalue()


def _verify_canonical(backbone, path, tolerance):
    loaded, _ = load_canonical(path)
    return verify_conversion(
        backbone.depth,
        loaded,
        detectron2_state=backbone.detectron2_state,
        tolerance=tolerance,
        torchvision_label="the output (load_canonical)",
    )


TORCHVISION_WRITER = register_writer(
    Writer(
        name="torchvision",
        help=f"canonical torchvision backbone ({CANONICAL_FORMAT}, torch.load(weights_only=True))",
        suffix=".pth",
        check_path=_check_not_pkl,
        dumps=_dumps_canonical,
        verify=_verify_canonical,
        describe=lambda backbone: f" ({CANONICAL_FORMAT}, method {backbone.meta['method']})",
    )
)

"""
Reading checkpoint files without running code from them.

* torch files (zip, or the legacy format): ``torch.load(weights_only=True)``, which unpickles only
  tensors, containers and primitive types.
* plain pickles (detectron2 ``.pkl``): a restricted unpickler that accepts dicts, lists and numpy
  arrays of numbers only. Numpy arrays are turned into tensors.
* safetensors files (timm's and Hugging Face's weights): read here from the format's JSON header
  and raw little-endian data (no pickle at all, and no dependency on the safetensors package).

Anything else (``argparse.Namespace``, custom classes, ...) is refused with
:class:`UnsafeCheckpointError`, naming ``--trust``; with ``trust=True`` the file is unpickled
normally (``weights_only=False``), which can run arbitrary code: only for files you trust.
A missing, empty, truncated or corrupt file raises :class:`ConversionError` naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import zipfile
from typing import Any

import numpy as np
import torch

from .errors import ConversionError, UnsafeCheckpointError

# torch's legacy (non-zip) serialization starts with this pickled integer.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"),
}

TRUST_HINT = (
    "re-run with --trust (trust=True in Python) only if you trust where the file comes from: "
    "unpickling arbitrary objects can run arbitrary code"
)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafeCheckpointError(f"__unsafe__:{module}.{name}")


def _corrupt(path, err):
    return ConversionError(
        f"{path}: cannot read the checkpoint (truncated or corrupt file?): {type(err).__name__}: "
        f"{err}"
    )


def _unsafe(path, names):
    return UnsafeCheckpointError(
        f"{path} needs arbitrary Python objects to load ({', '.join(names) or 'unknown globals'}), "
        f"so it was not loaded with torch.load(weights_only=True); {TRUST_HINT}"
    )


def _arrays_to_tensors(obj):
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise ConversionError("object arrays are not weights")
        return torch.from_numpy(np.array(obj, copy=True))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, _arrays_to_tensors(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_arrays_to_tensors(v) for v in obj)
    return obj


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _is_safetensors(head):
    """A safetensors file: an 8-byte little-endian header length, then the JSON header."""
    return len(head) >= 10 and head[8:10] == b'{"'


def _load_safetensors(path):
    """{name: tensor} of a safetensors file (its ``__metadata__`` left out)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        out = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            begin, end = (8 + n + int(o) for o in entry["data_offsets"])
            if end > len(data):
                raise ValueError(f"{name} runs past the end of the file")
            raw = bytearray(data[begin:end])
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            out[name] = t.reshape(entry["shape"])
        return out
    except (ValueError, KeyError, TypeError, RuntimeError, struct.error) as e:
        raise _corrupt(path, e) from None


def _bad_zip_member(path):
    """The first member of a zip checkpoint whose CRC does not match its data, or None."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"({type(e).__name__}: {e})"


def _unsafe_globals_from_error(err):
    """The globals named by torch's weights-only error text ('Unsupported global: GLOBAL x.y')."""
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err))))


def _torch_load(path, trust):
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if not trust and "weights only load failed" in str(e).lower():
            try:
                names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
            except Exception:  # noqa: BLE001 (the names are only for the message)
                names = []
            # legacy (non-zip) files: get_unsafe_globals_in_checkpoint reads zip files only
            names = names or _unsafe_globals_from_error(e)
            raise _unsafe(path, names) from None
        raise _corrupt(path, e) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
        raise _corrupt(path, e) from None


def load_checkpoint_file(path: str | os.PathLike[str], *, trust: bool = False) -> Any:
    """
    Load ``path`` (a torch checkpoint or a plain pickle) on CPU without executing code from it
    (unless ``trust``). Numpy arrays come back as tensors.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConversionError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: not a file")
    size = os.path.getsize(path)
    if size == 0:
        raise ConversionError(f"{path}: empty file")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK"):
        # torch.save's zip format (the default since torch 1.6)
        if not zipfile.is_zipfile(path):
            raise ConversionError(
                f"{path}: truncated or corrupt torch checkpoint (its zip directory is unreadable, "
                f"{size} bytes)"
            )
        bad = _bad_zip_member(path)  # torch reads the data without checking the CRCs
        if bad is not None:
            raise ConversionError(
                f"{path}: corrupt torch checkpoint: member {bad} does not match its checksum "
                f"(damaged copy or download? fetch the file again)"
            )
        return _torch_load(path, trust)
    if _is_safetensors(head):
        return _load_safetensors(path)

    # A plain pickle (detectron2 .pkl) or torch's legacy format: read the first object safely.
    try:
        with open(path, "rb") as f:
            first = _RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafeCheckpointError as e:
        if not trust:
            name = str(e).split("__unsafe__:", 1)[-1]
            raise _unsafe(path, [name]) from None
        first = None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        AttributeError,
        ImportError,
        MemoryError,
    ) as e:
        raise _corrupt(path, e) from None
    if first == _TORCH_LEGACY_MAGIC:
        return _torch_load(path, trust)
    if trust:
        try:
            with open(path, "rb") as f:
                first = pickle.load(f, encoding="latin1")
        except Exception as e:  # noqa: BLE001
            raise _corrupt(path, e) from None
    try:
        return _arrays_to_tensors(first)
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None

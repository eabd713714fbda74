"""
``MODEL.WEIGHTS`` of a detection run, decided once before training: loaded by detectron2 as it
is, converted (and verified) to detectron2's layout, or refused. Nothing silent: a file that is
neither detectron2's nor a ResNet a reader recognises stops the run, instead of reaching
detectron2 and training from random weights.

detectron2 loads as it is:

* ``""`` (random initialisation, asked for);
* remote names: ``detectron2://``, ``catalog://``, ``http(s)://`` (detectron2 downloads them);
* a ``.pkl`` in detectron2's layout (``{"model": ..., "__author__": ...}``: the model zoo,
  this converter, MoCo's converter) or Caffe2's (``{"blobs": ...}`` or Caffe2 names such as
  ``res2_0_branch2a_w``: detectron2's ImageNet models);
* a detectron2 model checkpoint (``{"model": {"backbone.*", "roi_heads.*" | "proposal_generator.*"
  | "head.*"}, ...}``, e.g. ``model_final.pth``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

from detectron2.config import CfgNode

from ..utils.config_keys import cli_value, get_key
from .checkpoint_io import load_checkpoint_file
from .d2config import detectron2_config
from .errors import AmbiguousCheckpointError, ConversionError
from .extraction import container_at
from .pipeline import convert_checkpoint, method_override
from .readers import read_checkpoint
from .writers import WEIGHTS_KEYS, WEIGHTS_METHOD

CONVERTED_FILE = "converted_weights.pkl"
REMOTE_PREFIXES = ("detectron2://", "catalog://", "http://", "https://")
# Optional config key (str, "" = auto): the key prefix of the backbone to convert, like --prefix.
PREFIX_KEY = "MODEL.WEIGHTS_PREFIX"
ADOPT_KEY = "MODEL.ADOPT_WEIGHTS_KEYS"  # bool: adopt the keys the weights record (default True)
KEYS_FROM_KEY = (
    "MODEL.KEYS_FROM_WEIGHTS"  # str: a converted .pkl whose keys a random-init run adopts
)

_CAFFE2_NAME = re.compile(r"^(conv1_w|res_conv1_bn_[sb]|res\d+_\d+_branch\w+)$")
_DETECTOR_HEADS = ("proposal_generator.", "roi_heads.", "head.", "sem_seg_head.")

WHAT_TO_DO = (
    "MODEL.WEIGHTS must be one of:\n"
    "  - a detectron2 model: a .pkl (model zoo, tools/convert_to_detectron2.py) or a detectron2 "
    "training checkpoint such as model_final.pth;\n"
    "  - a ResNet checkpoint in a layout tools/convert_to_detectron2.py reads (its --help lists "
    "them): it is converted here;\n"
    '  - "" to train from random initialisation on purpose.'
)


def _is_detectron2_pkl(ckpt):
    """detectron2's own .pkl layout, or Caffe2's (read by detectron2 with name heuristics)."""
    if not isinstance(ckpt, dict):
        return False
    if "model" in ckpt and "__author__" in ckpt:
        return True
    blobs = ckpt.get("blobs", ckpt)
    return isinstance(blobs, dict) and any(
        isinstance(k, str) and _CAFFE2_NAME.match(k) for k in blobs
    )


def _is_detectron2_model(ckpt):
    """A detectron2 meta-architecture's state dict (``backbone.*`` + a detector head), bare or under
    "model"."""
    for path in (("model",), ()):
        sd = container_at(ckpt, path)
        if sd is None:
            continue
        keys = [k for k in sd if isinstance(k, str)]
        if any(k.startswith("backbone.") for k in keys) and any(
            k.startswith(_DETECTOR_HEADS) for k in keys
        ):
            return True
    return False


def weights_plan(path: str, prefix: str | None = None, prefix_key: str | None = None) -> str:
    """
    What a detection run does with ``MODEL.WEIGHTS = path``.

    Args:
        path (str): the value of ``MODEL.WEIGHTS``.
        prefix (str or None): the backbone's key prefix (``--prefix`` syntax); forces conversion.
        prefix_key (str or None): the config key that sets ``prefix``, suggested in errors when
            given.

    Returns:
        str: ``"none"`` (empty), ``"detectron2"`` (detectron2 loads it as it is) or ``"convert"``
        (a reader recognises it; :func:`convert_checkpoint` will convert it).

    Raises:
        ConversionError: the file is missing, unreadable, unsafe to unpickle, ambiguous (several
            ResNets: the message names them) or holds no ResNet that a reader recognises. The
            message says what was found and what to do.
    """
    return _plan(path, prefix, prefix_key)[0]


def _plan(path, prefix, prefix_key):
    """:func:`weights_plan`, and the checkpoint it loaded (None when it loaded none)."""
    if not path:
        if prefix:
            raise ConversionError(f"{PREFIX_KEY} {prefix!r} is set but MODEL.WEIGHTS is empty")
        return "none", None
    if path.startswith(REMOTE_PREFIXES):
        if prefix:
            raise ConversionError(
                f"{PREFIX_KEY} {prefix!r} applies to local checkpoints, not {path}; download it "
                "first"
            )
        return "detectron2", None
    if not os.path.isfile(path):
        raise ConversionError(
            f"MODEL.WEIGHTS {path}: no such file"
            + (" (a directory)" if os.path.isdir(path) else "")
            + f" (working directory {os.getcwd()})"
        )
    try:
        ckpt = load_checkpoint_file(path)
    except ConversionError as e:
        raise ConversionError(
            f"MODEL.WEIGHTS {path} cannot be read safely: {e}\n{WHAT_TO_DO}"
        ) from None
    if not prefix and (
        _is_detectron2_pkl(ckpt) if path.endswith(".pkl") else _is_detectron2_model(ckpt)
    ):
        return "detectron2", ckpt
    try:
        read_checkpoint(ckpt, prefix=prefix or None, where=path)
    except AmbiguousCheckpointError as e:
        first = e.candidates[0]
        raise ConversionError(
            f"MODEL.WEIGHTS {path} holds several ResNets, so it is not clear which one to train "
            f"from:\n  {e}\nPick one: "
            + (f"set {prefix_key} {first}, or " if prefix_key else "")
            + f"convert it first with tools/convert_to_detectron2.py {path} converted.pkl "
            f"--prefix {first} and set MODEL.WEIGHTS converted.pkl."
        ) from None
    except ConversionError as e:
        raise ConversionError(
            f"MODEL.WEIGHTS {path} is neither a detectron2 model nor a ResNet checkpoint that can "
            f"be converted; detectron2 would train from random weights, so the run stops here.\n  "
            f"{e}\n{WHAT_TO_DO}"
        ) from None
    return "convert", ckpt


def _recorded(ckpt) -> dict | None:
    """The config keys a loaded converted ``.pkl`` records, or None."""
    keys = ckpt.get(WEIGHTS_KEYS) if isinstance(ckpt, dict) else None
    return dict(keys) if isinstance(keys, dict) else None


def _recorded_method(ckpt) -> str | None:
    """The pretraining method a loaded converted ``.pkl`` records, or None."""
    return ckpt.get(WEIGHTS_METHOD) if isinstance(ckpt, dict) else None


def recorded_keys(path: str) -> dict | None:
    """
    The config keys a converted ``.pkl`` records (``tools/convert_to_detectron2.py`` writes them:
    depth, res2 width, stride_in_1x1, pixel mean/std, input format), or None for any other file.
    """
    if (
        not path
        or path.startswith(REMOTE_PREFIXES)
        or not path.endswith(".pkl")
        or not os.path.isfile(path)
    ):
        return None
    try:
        return _recorded(load_checkpoint_file(path))
    except ConversionError:
        return None


def adopt_keys(
    cfg: CfgNode, keys: dict | None, source: str, log: Callable[[str], Any] = print
) -> list[str]:
    """
    ``KEY VALUE`` overrides that give ``cfg`` the ``keys`` its weights need (only the keys whose
    value differs), each logged with the config's value; with ``MODEL.ADOPT_WEIGHTS_KEYS`` False,
    a warning lists them instead and nothing changes.
    """
    if not keys:
        return []
    differ = {}
    for key, value in keys.items():
        have = get_key(cfg, key, default=None)
        have = list(have) if isinstance(have, (list, tuple)) else have
        if have != (list(value) if isinstance(value, (list, tuple)) else value):
            differ[key] = (have, value)
    if not differ:
        return []
    listed = "; ".join(f"{k} {have!r} -> {value!r}" for k, (have, value) in differ.items())
    if not get_key(cfg, ADOPT_KEY, default=True):
        log(
            f"WARNING: {source} records other keys than the config ({listed}); kept the config's "
            f"because {ADOPT_KEY} is False"
        )
        return []
    log(f"Keys adopted from {source} (config -> weights): {listed}")
    return [item for k, (_, value) in differ.items() for item in (k, cli_value(value))]


def convert_weights_for_detection(
    cfg: CfgNode, output_dir: str, log: Callable[[str], Any] = print
) -> list[str]:
    """
    Prepare ``cfg.MODEL.WEIGHTS`` for a detection run, before training starts.

    Weights that detectron2 reads (see the module docstring) are left to it. A checkpoint that a
    reader recognises is converted into ``output_dir/converted_weights.pkl``, with the converter's
    coverage report and numeric verification in the log. Anything else raises. The depth and input
    keys the weights need (recorded in a converted ``.pkl``, or those of the checkpoint converted
    here) are adopted (:func:`adopt_keys`); ``MODEL.KEYS_FROM_WEIGHTS`` adopts them from another
    converted file without loading it (random initialisation of the same network).

    Args:
        cfg (CfgNode): the run's config (``MODEL.WEIGHTS``, ``RESULTS.METHOD``, the input keys
            and, when the config has them, ``MODEL.WEIGHTS_PREFIX``, ``MODEL.ADOPT_WEIGHTS_KEYS``,
            ``MODEL.KEYS_FROM_WEIGHTS``).
        output_dir (str): where the converted file goes (created if needed).
        log (callable): takes one line of text.

    Returns:
        list[str]: config overrides ``[KEY, VALUE, ...]`` to apply: the adopted keys, after a
        conversion ``MODEL.WEIGHTS`` and ``RESULTS.WEIGHTS_SOURCE``, and, when the checkpoint (or
        the converted ``.pkl``) names it and the config does not, ``RESULTS.METHOD``; ``[]`` when
        nothing changes.

    Raises:
        ConversionError: missing, unreadable, unrecognised or ambiguous weights, or a conversion
            that fails its coverage or numeric check, or a ``MODEL.KEYS_FROM_WEIGHTS`` that records
            no keys. Nothing is written then.
    """
    source = cfg.MODEL.WEIGHTS
    prefix = get_key(cfg, PREFIX_KEY, default=None)
    prefix_key = PREFIX_KEY if prefix is not None else None
    prefix = prefix or None
    keys_from = get_key(cfg, KEYS_FROM_KEY, default="")
    plan, ckpt = _plan(source, prefix, prefix_key)  # the loaded file serves the recorded keys too
    if keys_from:
        if plan != "none":
            raise ConversionError(
                f"{KEYS_FROM_KEY} {keys_from} is for random initialisation: it needs "
                f'MODEL.WEIGHTS "", got {source!r}'
            )
        keys = recorded_keys(keys_from)
        if keys is None:
            raise ConversionError(
                f"{KEYS_FROM_KEY} {keys_from}: not a .pkl written by "
                "tools/convert_to_detectron2.py (it records no config keys)"
            )
        return adopt_keys(cfg, keys, keys_from, log)
    if plan != "convert":
        ours = plan == "detectron2" and source.endswith(".pkl")
        overrides = adopt_keys(cfg, _recorded(ckpt) if ours else None, source, log)
        return overrides + method_override(cfg, _recorded_method(ckpt) if ours else None)
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, CONVERTED_FILE)
    log(f"MODEL.WEIGHTS {source} is not in detectron2's layout: converting it to {target}")
    result = convert_checkpoint(source, target, prefix=prefix, log=lambda line: log(f"  {line}"))
    overrides = []
    # a detectron2-named source keeps its own layout and conventions
    if result.format != "detectron2":
        overrides += adopt_keys(cfg, detectron2_config(result.depth, result.meta), source, log)
    overrides += ["MODEL.WEIGHTS", target, "RESULTS.WEIGHTS_SOURCE", os.path.abspath(source)]
    return overrides + method_override(cfg, result.meta.get("method"))

"""
The detectron2 config a converted checkpoint needs, printed as ``KEY VALUE`` overrides and
written as a YAML that inherits a detection (or semantic segmentation) protocol.

Usage chosen: ``--write-config my.yaml --base configs/detection/voc0712_R_50_C4_24k.yaml`` writes
a complete config ``my.yaml`` whose ``_BASE_`` is the protocol (absolute path) and
which sets ``MODEL.WEIGHTS`` and the keys below; train with
``tools/train_net.py --config-file my.yaml``. (A ``_BASE_`` file cannot pull settings from the file
that inherits it, so a keys-only fragment would need a second config anyway.)
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections import OrderedDict
from typing import Any, Iterable, Mapping

from detectron2.config import CfgNode
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads

from ..config import get_cfg
from ..modeling.roi_heads import Res5ROIHeadsExtraNorm
from ..utils.config_keys import cli_value, get_key, nest_keys
from .canonical import TORCHVISION_PIXEL_MEAN, TORCHVISION_PIXEL_STD
from .errors import ConversionError
from .resnet_keys import BOTTLENECK_DEPTHS, res2_out_channels


def detectron2_config(
    depth: int, meta: dict | None = None, weights: str | None = None
) -> OrderedDict:
    """OrderedDict of dotted config keys -> values for a torchvision-layout ResNet of ``depth``."""
    meta = meta or {}
    cfg = OrderedDict()
    if weights is not None:
        cfg["MODEL.WEIGHTS"] = os.fspath(weights)
    cfg["MODEL.PIXEL_MEAN"] = [float(v) for v in meta.get("pixel_mean", TORCHVISION_PIXEL_MEAN)]
    cfg["MODEL.PIXEL_STD"] = [float(v) for v in meta.get("pixel_std", TORCHVISION_PIXEL_STD)]
    cfg["INPUT.FORMAT"] = str(meta.get("input_format", "RGB"))
    cfg["MODEL.RESNETS.DEPTH"] = int(depth)
    cfg["MODEL.RESNETS.RES2_OUT_CHANNELS"] = res2_out_channels(depth)
    cfg["MODEL.RESNETS.STRIDE_IN_1X1"] = False
    return cfg


def config_overrides(cfg: Mapping[str, Any]) -> str:
    """``KEY VALUE ...`` for ``tools/train_net.py`` (shell-quoted)."""
    return " ".join(f"{k} {shlex.quote(cli_value(v))}" for k, v in cfg.items())


def _value_yaml(v):
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, list):
        return "[" + ", ".join(f"{x!r}" for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


def config_yaml_lines(cfg: Mapping[str, Any], indent: int = 0) -> list[str]:
    lines = []
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append(" " * indent + f"{k}:")
            lines.extend(config_yaml_lines(v, indent + 2))
        else:
            lines.append(" " * indent + f"{k}: {_value_yaml(v)}")
    return lines


def render_config_yaml(cfg: Mapping[str, Any], base: str, header: Iterable[str] = ()) -> str:
    """
    YAML text: comments, ``_BASE_`` and the keys of ``cfg``. ``_BASE_`` is absolute, like the
    ``MODEL.WEIGHTS`` it sits beside: the file is not meant to move, and a relative path would
    depend on where the two files happen to share a parent folder.
    """
    lines = [f"# {h}" for h in header]
    lines.append(f"_BASE_: {json.dumps(os.path.abspath(base))}")
    lines.extend(config_yaml_lines(nest_keys(cfg)))
    return "\n".join(lines) + "\n"


def _load_cfg(path):
    cfg = get_cfg()
    cfg.set_new_allowed(False)
    cfg.merge_from_file(path)
    return cfg


def check_base(base: str, depth: int) -> CfgNode:
    """The base protocol exists, loads, and can hold a ResNet-``depth`` (C4 heads need
    bottlenecks)."""
    if not os.path.isfile(base):
        raise ConversionError(f"--base {base}: no such config file")
    try:
        cfg = _load_cfg(base)
    except Exception as e:  # noqa: BLE001
        raise ConversionError(
            f"--base {base}: cannot load it as a detectron2 config: {e}"
        ) from None
    if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
        return cfg  # no ROI heads to check (semantic segmentation)
    try:
        heads = ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)
    except KeyError:
        heads = None
    # builds a basic-block res5
    basic_ok = heads is not None and issubclass(heads, Res5ROIHeadsExtraNorm)
    if (
        depth not in BOTTLENECK_DEPTHS
        and heads is not None
        and issubclass(heads, Res5ROIHeads)
        and not basic_ok
    ):
        raise ConversionError(
            f"--base {base} is a C4 protocol ({cfg.MODEL.ROI_HEADS.NAME} builds a bottleneck "
            f"res5), which ResNet-{depth} (basic blocks) cannot fill; use Res5ROIHeadsExtraNorm "
            f"(the protocols' C4 "
            "head, which builds basic-block res5 for ResNet-18/34) or an FPN protocol, e.g. "
            "configs/detection/voc0712_R_50_FPN_24k.yaml"
        )
    return cfg


def _check_loaded(cfg, expected, path):
    wrong = []
    for key, value in expected.items():
        node = get_key(cfg, key)
        got = list(node) if isinstance(node, (list, tuple)) else node
        if got != value:
            wrong.append(f"{key}: {got!r} (wanted {value!r})")
    if wrong:
        raise ConversionError(f"{path} does not set what it should: {wrong}")


def validate_config_text(text: str, yaml_path: str, expected: Mapping[str, Any]) -> None:
    """Merge ``text`` as if it were at ``yaml_path`` into the suite's config; check ``expected``."""
    folder = os.path.dirname(os.path.abspath(yaml_path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".check.", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            cfg = _load_cfg(tmp)
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"{yaml_path}: the written config does not load: {e}") from None
        _check_loaded(cfg, expected, yaml_path)
    finally:
        os.remove(tmp)

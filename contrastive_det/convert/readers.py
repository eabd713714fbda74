"""
The reader table: one small function per checkpoint layout, tried in order by auto-detection.

Reader contract
---------------
A reader is a function ``reader(ckpt) -> Extraction | None``:

* ``ckpt`` is the object loaded from the file (usually a dict; numpy arrays already turned into
  tensors). Readers never modify it.
* It returns ``None`` when ``ckpt`` does not have the reader's layout (cheap structural checks
  only), so that auto-detection can try the next reader.
* Otherwise it returns an :class:`~contrastive_det.convert.extraction.Extraction`: the backbone's
  tensors renamed to torchvision ResNet names (``conv1.weight``, ``bn1.*``,
  ``layer1.0.conv1.weight``...). Keys inside the backbone's scope are all passed on, including
  ``fc.*``, BN counters and names that are not standard ResNet names (the coverage check decides:
  ``fc.*`` and counters are dropped, anything else non-standard is an error). Tensors outside the
  backbone (momentum encoders, projection heads, queues, classifiers) go to
  ``Extraction.dropped`` with a group label.
* It raises :class:`ConversionError` when the layout is recognised but broken, and
  :class:`AmbiguousCheckpointError` when it holds several candidate backbones.
* The first line of its docstring describes the layout (shown in error messages).

``READERS`` maps format names to readers in detection order (most specific first);
``FORMAT_ALIASES`` maps other accepted ``--format`` names. Add a format with
:func:`register_reader`. The shared machinery (prefix search, containers, ``take_prefix``) is in
:mod:`contrastive_det.convert.extraction`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Callable

import torch

from ..utils.config_keys import get_key
from .canonical import CANONICAL_FORMAT
from .errors import AmbiguousCheckpointError, ConversionError
from .extraction import (
    D2_PROBE,
    TV_PROBE,
    WRAPPERS,
    Extraction,
    container_at,
    describe_checkpoint,
    find_candidates,
    first_prefix,
    has_keys,
    iter_containers,
    path_str,
    select_candidates,
    take_candidate,
    take_prefix,
)
from .resnet_keys import d2_to_tv_key, sequential_to_tv_key

# ``nn.Sequential(*list(resnet.children())[:-1])``: 0 conv1, 1 bn1, 4..7 layer1..layer4.
SEQUENTIAL_PROBE = ("0.weight", "1.running_var", "4.0.conv1.weight", "7.0.conv1.weight")
_TRUNK_NAMES = ("backbone", "encoder")


def read_canonical(ckpt: Any) -> Extraction | None:
    """
    contrastive_det canonical export: {"format": "contrastive_det.backbone/v1", "state_dict":
    torchvision keys, "meta": {...}}.
    """
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if not (isinstance(fmt, str) and fmt.startswith("contrastive_det.backbone/")):
        return None
    if fmt != CANONICAL_FORMAT:
        raise ConversionError(
            f"canonical format {fmt!r} is not readable by this version ({CANONICAL_FORMAT!r})"
        )
    if not isinstance(ckpt.get("state_dict"), dict) or not isinstance(ckpt.get("meta"), dict):
        raise ConversionError("canonical checkpoint without a 'state_dict' dict and a 'meta' dict")
    ext = take_prefix("canonical", ckpt, ("state_dict",), "", meta=ckpt["meta"])
    ext.ignored = [k for k in ext.ignored if k not in ("format", "meta")]
    return ext


def _d2_rename(name):
    tv = d2_to_tv_key(name)
    return tv if tv is not None else name


def _c4_res5_rename(name):
    # Faster R-CNN C4: res5 lives in the ROI head; its extra norm (res5.norm) is not backbone.
    return _d2_rename("res5." + name) if re.match(r"^\d+\.", name) else None


def read_detectron2(ckpt: Any) -> Extraction | None:
    """
    detectron2 ResNet names (stem.conv1.*, res2-res5.*): a converted .pkl {"model": ...,
    "__author__": ...} or a detectron2 model checkpoint (backbone.[bottom_up.]*; a C4 model's res5
    is read from roi_heads.res5).
    """
    candidates = find_candidates(ckpt, D2_PROBE)
    if not candidates:
        return None
    if len(candidates) > 1:
        specs = [f"{path_str(c.path) if c.path else ''}:{c.prefix}" for c in candidates]
        raise AmbiguousCheckpointError(
            f"several detectron2 ResNets in the checkpoint: {', '.join(specs)}; choose one with "
            "--prefix "
            "CONTAINER:PREFIX",
            specs,
        )
    c = candidates[0]
    sd = get_key(ckpt, c.path)
    extra = []
    c4_res5 = "roi_heads.res5."
    if not has_keys(sd, c.prefix, ("res5.0.conv1.weight",)) and has_keys(
        sd, c4_res5, ("0.conv1.weight",)
    ):
        extra.append((c.path, c4_res5, _c4_res5_rename))
    return take_prefix(
        "detectron2",
        ckpt,
        c.path,
        c.prefix,
        rename=_d2_rename,
        extra_sources=extra,
        meta={"method": "unspecified"},
    )


_VISSL_TRUNKS = [
    ("classy_state_dict", "base_model", "model"),
    ("base_model", "model"),
    ("model",),
]


def read_vissl(ckpt: Any) -> Extraction | None:
    """
    VISSL: {"classy_state_dict": {"base_model": {"model": {"trunk": {"_feature_blocks.conv1.weight",
    "_feature_blocks.layer1.0...", ...}, "heads": {...}}}}} (heads dropped).
    """
    for model_path in _VISSL_TRUNKS:
        trunk = container_at(ckpt, model_path + ("trunk",))
        if trunk is None or not has_keys(trunk, "_feature_blocks.", TV_PROBE):
            continue
        ext = take_prefix(
            "vissl", ckpt, model_path + ("trunk",), "_feature_blocks.", meta={"method": "vissl"}
        )
        heads = container_at(ckpt, model_path + ("heads",))
        for key, value in (heads or {}).items():
            if torch.is_tensor(value):
                ext.dropped[f"heads.{key}"] = "heads.*"
        return ext
    return None


def _state_dict_or_root(ckpt):
    for path in (("state_dict",), ()):
        sd = container_at(ckpt, path)
        if sd is not None:
            return path, sd
    return None, None


def read_moco(ckpt: Any) -> Extraction | None:
    """
    MoCo v1/v2: {"state_dict": {"module.encoder_q.*" (fc: linear v1 / MLP fc.0, fc.2 v2),
    "module.encoder_k.*", "module.queue", "module.queue_ptr"}, "arch", "epoch", "optimizer"}.
    """
    path, sd = _state_dict_or_root(ckpt)
    prefix = first_prefix(sd, ("module.encoder_q.", "encoder_q.")) if sd is not None else None
    if prefix is None:
        return None
    method = "mocov2" if prefix + "fc.0.weight" in sd else "mocov1"
    return take_prefix("moco", ckpt, path, prefix, meta={"method": method})


def read_mocov3(ckpt: Any) -> Extraction | None:
    """
    MoCo v3: {"state_dict": {"module.base_encoder.*" (fc = projection MLP),
    "module.momentum_encoder.*", "module.predictor.*"}, "arch", "epoch", "optimizer", "scaler"}.
    """
    path, sd = _state_dict_or_root(ckpt)
    prefix = first_prefix(sd, ("module.base_encoder.", "base_encoder.")) if sd is not None else None
    if prefix is None:
        return None
    return take_prefix("mocov3", ckpt, path, prefix, meta={"method": "mocov3"})


def _supcon_rename(name):
    # SupContrast's resnet_big names the projection shortcut "shortcut.0/1" (torchvision:
    # downsample)
    return re.sub(r"\.shortcut\.([01])\.", r".downsample.\1.", name)


def read_supcon(ckpt: Any) -> Extraction | None:
    """
    SupContrast: {"model": {"encoder.*" | "module.encoder.*" | "encoder.module.*", "head.*"}, "opt",
    "optimizer", "epoch"} (shortcut.0/1 read as downsample.0/1).
    """
    sd = container_at(ckpt, ("model",))
    prefix = (
        first_prefix(sd, ("encoder.module.", "module.encoder.", "encoder."))
        if sd is not None
        else None
    )
    if prefix is None:
        return None
    return take_prefix(
        "supcon", ckpt, ("model",), prefix, rename=_supcon_rename, meta={"method": "supcon"}
    )


def read_lightning(ckpt: Any) -> Extraction | None:
    """
    PyTorch Lightning SSL checkpoints, e.g. solo-learn: {"state_dict": {"backbone.*",
    "momentum_backbone.*", "projector.*", "classifier.*", ...}, "pytorch-lightning_version",
    "epoch", "global_step", "hyper_parameters"}.
    """
    if not isinstance(ckpt, dict) or "pytorch-lightning_version" not in ckpt:
        return None
    sd = container_at(ckpt, ("state_dict",))
    prefixes = ("backbone.", "model.backbone.", "encoder.", "model.encoder.")
    prefix = first_prefix(sd, prefixes) if sd is not None else None
    if prefix is None:
        return None
    method = get_key(ckpt, ("hyper_parameters", "method"), default=None)
    return take_prefix(
        "lightning",
        ckpt,
        ("state_dict",),
        prefix,
        meta={"method": method if isinstance(method, str) else "unspecified"},
    )


def read_mmselfsup(ckpt: Any) -> Extraction | None:
    """
    mmselfsup / OpenMMLab: {"meta": {...}, "state_dict": {"backbone.*", "neck.*", "head.*", momentum
    encoder, queue...}, "optimizer"}.
    """
    if not isinstance(ckpt, dict) or not ("meta" in ckpt or "message_hub" in ckpt):
        return None
    sd = container_at(ckpt, ("state_dict",))
    if sd is None or not has_keys(sd, "backbone.", TV_PROBE):
        return None
    return take_prefix(
        "mmselfsup", ckpt, ("state_dict",), "backbone.", meta={"method": "unspecified"}
    )


# Top-level modules that SSL methods keep beside a torchvision ResNet's own children in one state
# dict (SwAV: projection_head, prototypes): heads, dropped like fc. Any other unknown key stays in
# and fails the coverage check (a modified trunk must not pass for a standard one).
_HEAD_MODULES = frozenset(
    ("projection_head", "prototypes", "projector", "projection", "predictor", "head", "heads")
)


def _without_heads(name):
    return None if name.split(".", 1)[0] in _HEAD_MODULES else name


def read_timm(ckpt: Any) -> Extraction | None:
    """
    timm training checkpoint: {"state_dict": torchvision-named ResNet (conv1, bn1, layer1-4, fc),
    "arch", "epoch", "args", "state_dict_ema"?} (timm's pretrained files are plain state dicts:
    "torchvision").
    """
    sd = container_at(ckpt, ("state_dict",))
    prefix = first_prefix(sd, ("", "module.")) if sd is not None else None
    if prefix is None:
        return None
    ext = take_prefix(
        "timm",
        ckpt,
        ("state_dict",),
        prefix,
        rename=_without_heads,
        meta={"method": "unspecified"},
    )
    for key, value in (container_at(ckpt, ("state_dict_ema",)) or {}).items():
        if torch.is_tensor(value):
            ext.dropped[f"state_dict_ema: {key}"] = "state_dict_ema.*"
    return ext


def read_torchvision(ckpt: Any) -> Extraction | None:
    """
    torchvision ResNet state_dict (conv1, bn1, layer1-4, fc), bare or as {"model": ...}
    (torchvision's reference scripts), optionally under "module."; timm ResNet weights use the same
    names; SwAV's files add projection_head.* and prototypes.* beside them (dropped as heads).
    """
    for path in ((), ("model",)):
        sd = container_at(ckpt, path)
        prefix = first_prefix(sd, ("", "module.")) if sd is not None else None
        if prefix is not None:
            return take_prefix(
                "torchvision",
                ckpt,
                path,
                prefix,
                rename=_without_heads,
                meta={"method": "unspecified"},
            )
    return None


_PLAIN_PREFIXES = tuple(
    w + p for p in ("backbone.", "encoder.") for w in ("", "module.", "model.", "module.model.")
)


def read_prefixed(ckpt: Any) -> Extraction | None:
    """
    A torchvision-named ResNet under "backbone." or "encoder." (optionally inside
    "module."/"model."), in the file itself or in its "state_dict" / "model" entry.
    """
    for path in ((), ("state_dict",), ("model",)):
        sd = container_at(ckpt, path)
        prefix = first_prefix(sd, _PLAIN_PREFIXES) if sd is not None else None
        if prefix is not None:
            return take_prefix("prefixed", ckpt, path, prefix, meta={"method": "unspecified"})
    return None


def _is_trunk(candidate):
    """True for ``backbone.`` / ``model.encoder.`` ...: the trunk of a model, not a momentum copy or
    a teacher."""
    parts = [
        p
        for p in candidate.dotted.rstrip(".").split(".")
        if p and p not in WRAPPERS + ("state_dict",)
    ]
    return bool(parts) and parts[-1] in _TRUNK_NAMES


def read_sequential(ckpt: Any) -> Extraction | None:
    """
    torchvision ResNet's children in an nn.Sequential (lightly, tutorials: backbone =
    nn.Sequential(*list(resnet.children())[:-1])): 0.* conv1, 1.* bn1, 4.*-7.* layer1-4, bare or
    under a prefix ("backbone.", "model.backbone." ...) beside heads; with several, the one named
    backbone/encoder.
    """
    candidates = find_candidates(ckpt, SEQUENTIAL_PROBE, rename=sequential_to_tv_key)
    if len(candidates) > 1:
        trunks = [c for c in candidates if _is_trunk(c)]
        if len(trunks) != 1:
            raise _ambiguous(candidates)
        candidates = trunks
    if not candidates:
        return None
    return take_candidate("sequential", ckpt, candidates[0], meta={"method": "unspecified"})


def _ambiguous(candidates):
    names = [str(c) for c in candidates]
    # DINO keeps a teacher and a student: the teacher is the one its authors evaluate
    example = next((n for n in names if "teacher" in n), names[0])
    return AmbiguousCheckpointError(
        f"several ResNets in the checkpoint: {', '.join(names)}; choose one with --prefix, "
        f"e.g. --prefix {example} (or --prefix CONTAINER:PREFIX)",
        names,
    )


def _unsupported_hint(ckpt):
    """A sentence for layouts that are recognisably a ResNet this converter does not read."""
    keys = [k for _, sd in iter_containers(ckpt) for k in sd if isinstance(k, str)]
    if any(re.search(r"(^|\.)stem\.[036]\.weight$", k) for k in keys) and any(
        re.search(r"(^|\.)layer1\.0\.conv1\.weight$", k) for k in keys
    ):
        return (
            "\nIt looks like a deep-stem ResNet (stem.0/3/6: ResNet-C/D, mmseg's ResNetV1c), which "
            "detectron2's standard-stem R50 protocols cannot hold; convert a 7x7-stem ResNet."
        )
    if any(re.search(r"_branch2a_w$|^conv1_w$", k) for k in keys):
        return (
            "\nIt looks like a Caffe2/MSRA detectron2 file (res2_0_branch2a_w, ...): detectron2 "
            "loads those itself; give it as MODEL.WEIGHTS without converting."
        )
    return ""


def read_raw(ckpt: Any, prefix: str | None = None) -> Extraction | None:
    """
    Any dict of tensors holding exactly one ResNet (torchvision names, or nn.Sequential indices)
    under some prefix, at any nesting level (--prefix picks one).
    """
    candidates = find_candidates(ckpt, TV_PROBE) + find_candidates(
        ckpt, SEQUENTIAL_PROBE, rename=sequential_to_tv_key
    )
    if prefix is not None:
        found = candidates
        candidates = select_candidates(found, prefix)
        if not candidates:
            there = ", ".join(str(c) for c in found) or "none"
            raise ConversionError(
                f"no ResNet (torchvision names conv1.weight, layer1.0.conv1.weight, ... or "
                f"nn.Sequential indices 0.weight, 4.0.conv1.weight, ...) under --prefix "
                f"{prefix!r}; ResNets in the file: {there}"
            )
    if not candidates:
        return None
    if len(candidates) > 1:
        raise _ambiguous(candidates)
    return take_candidate("raw", ckpt, candidates[0], meta={"method": "unspecified"})


READERS: "OrderedDict[str, Callable]" = OrderedDict(
    [
        ("canonical", read_canonical),
        ("detectron2", read_detectron2),
        ("vissl", read_vissl),
        ("moco", read_moco),
        ("mocov3", read_mocov3),
        ("supcon", read_supcon),
        ("lightning", read_lightning),
        ("mmselfsup", read_mmselfsup),
        ("timm", read_timm),
        ("torchvision", read_torchvision),
        ("prefixed", read_prefixed),
        ("sequential", read_sequential),
        ("raw", read_raw),
    ]
)

FORMAT_ALIASES = {
    "mocov1": "moco",
    "mocov2": "moco",
    "solo-learn": "lightning",
    "sololearn": "lightning",
    "solo_learn": "lightning",
    "supcontrast": "supcon",
    "d2": "detectron2",
    "lightly": "sequential",
}


def register_reader(
    name: str, reader: Callable[[Any], Extraction | None], before: str | None = None
) -> None:
    """
    Add (or replace) a reader.

    Args:
        name (str): the format name (``--format NAME``).
        reader (callable): ``ckpt -> Extraction | None`` (see the contract above).
        before (str or None): the reader it is tried before in auto-detection (default: last).
    """
    items = [(k, v) for k, v in READERS.items() if k != name]
    idx = next((i for i, (k, _) in enumerate(items) if k == before), len(items))
    items.insert(idx, (name, reader))
    READERS.clear()
    READERS.update(items)


def format_names() -> list[str]:
    """Every accepted ``--format`` name: the readers, then the aliases."""
    return list(READERS) + sorted(a for a in FORMAT_ALIASES if a not in READERS)


def resolve_format(name: str) -> str:
    """The reader name for a format name or alias; raises :class:`ConversionError` if unknown."""
    key = FORMAT_ALIASES.get(name, name)
    if key not in READERS:
        raise ConversionError(f"unknown format {name!r}; known: {', '.join(format_names())}")
    return key


def layout_of(name: str) -> str:
    """The layout description of reader ``name`` on one line (its docstring's first paragraph)."""
    paragraph = (READERS[name].__doc__ or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines()) or name


def read_checkpoint(
    ckpt: Any, fmt: str | None = None, prefix: str | None = None, where: str = "checkpoint"
) -> Extraction:
    """
    Find the ResNet backbone in a loaded checkpoint.

    Args:
        ckpt: what :func:`~contrastive_det.convert.checkpoint_io.load_checkpoint_file` returned.
        fmt (str or None): a format name; auto-detected (first reader that answers) when None.
        prefix (str or None): ``"CONTAINER:PREFIX"`` or ``"PREFIX"`` (see
            :func:`~contrastive_det.convert.extraction.select_candidates`); overrides detection.
        where (str): how to name the checkpoint in messages (its path).

    Returns:
        Extraction

    Raises:
        ConversionError: nothing matches (with the top-level keys and prefixes found), or the
            layout is broken; AmbiguousCheckpointError (a ConversionError) when it holds several
            candidate backbones.
    """
    if isinstance(ckpt, torch.nn.Module):  # a whole pickled model (needs --trust)
        ckpt = ckpt.state_dict()
    if not isinstance(ckpt, dict):
        raise ConversionError(f"{where}: {describe_checkpoint(ckpt)}")
    try:
        return _read(ckpt, fmt, prefix, where)
    except AmbiguousCheckpointError as e:
        raise AmbiguousCheckpointError(f"{where}: {e}", e.candidates) from None


def _read(ckpt, fmt, prefix, where):
    if prefix is not None:
        return read_raw(ckpt, prefix=prefix)
    if fmt is not None:
        name = resolve_format(fmt)
        ext = READERS[name](ckpt)
        if ext is None:
            raise ConversionError(
                f"{where} is not a {fmt} checkpoint; expected "
                f"{layout_of(name)}\n{describe_checkpoint(ckpt)}"
            )
        return ext
    for reader in READERS.values():
        ext = reader(ckpt)
        if ext is not None:
            return ext
    raise ConversionError(
        f"no ResNet backbone found in {where} (tried formats: {', '.join(READERS)}).\n"
        f"{describe_checkpoint(ckpt)}\n"
        "A ResNet is recognised by torchvision names (conv1.weight, bn1.*, layer1.0.conv1.weight, "
        "...), detectron2 names (stem.conv1.weight, res2.0.conv1.weight, ...) or nn.Sequential "
        "indices of torchvision's ResNet (0.weight, 4.0.conv1.weight, ...) under some prefix; "
        "name the format with --format or the prefix with --prefix CONTAINER:PREFIX."
        + _unsupported_hint(ckpt)
    )

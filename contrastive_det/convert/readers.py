"""
Checkpoint formats: detection and extraction of the ResNet backbone under torchvision names.

Reader contract
---------------
A reader is a function ``reader(ckpt) -> Extraction | None``:

* ``ckpt`` is the object loaded from the file (usually a dict; numpy arrays already turned into
  tensors). Readers never modify it.
* It returns ``None`` when ``ckpt`` does not have the reader's layout (cheap structural checks
  only), so that auto-detection can try the next reader.
* Otherwise it returns an :class:`Extraction`: the backbone's tensors renamed to torchvision
  ResNet names (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``...). Keys inside the
  backbone's scope are all passed on, including ``fc.*``, BN counters and names that are not
  standard ResNet names (the coverage check decides: ``fc.*`` and counters are dropped, anything
  else non-standard is an error). Tensors outside the backbone (momentum encoders, projection
  heads, queues, classifiers) go to ``Extraction.dropped`` with a group label.
* It raises :class:`ConversionError` when the layout is recognised but ambiguous or broken.
* The first line of its docstring describes the layout (shown in error messages).

``READERS`` maps format names to readers in detection order (most specific first);
``FORMAT_ALIASES`` maps other accepted ``--format`` names. Add a format with
:func:`register_reader`.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch

from .canonical import CANONICAL_FORMAT
from .errors import ConversionError
from .resnet_keys import d2_to_tv_key

# Components that only wrap a model (DataParallel, torch.compile, Lightning's self.model).
_WRAPPERS = ("module", "model", "_orig_mod")
_TV_PROBE = ("conv1.weight", "layer1.0.conv1.weight")
_D2_PROBE = ("stem.conv1.weight", "res2.0.conv1.weight")


@dataclass
class Extraction:
    """What a reader found in a checkpoint."""

    format: str  # reader name
    source: str  # where the backbone is, e.g. "state_dict: module.encoder_q.*"
    state_dict: "OrderedDict[str, torch.Tensor]"  # torchvision names, whole backbone scope
    original_names: Dict[str, str]  # torchvision name -> key in the file
    dropped: Dict[str, str] = field(default_factory=dict)  # key in the file -> group label
    meta: dict = field(default_factory=dict)  # method / pixel stats / input format, when known
    ignored: List[str] = field(default_factory=list)  # top-level non-weight entries


def group_label(key):
    """``module.encoder_k.layer1.0.conv1.weight`` -> ``module.encoder_k.*``; ``queue`` -> ``queue``."""
    parts = key.split(".")
    i = 0
    while i < len(parts) - 1 and parts[i] in _WRAPPERS:
        i += 1
    label = ".".join(parts[: i + 1])
    return label + ".*" if i + 1 < len(parts) else label


def _tensor_dict(obj):
    """``obj`` if it is a dict holding at least one tensor under a string key, else None."""
    if isinstance(obj, dict) and any(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        return obj
    return None


def _get(ckpt, *path):
    cur = ckpt
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _has(sd, prefix, probe):
    return all(prefix + k in sd and torch.is_tensor(sd[prefix + k]) for k in probe)


def iter_containers(ckpt, max_depth=4):
    """Yield ``(path, dict)`` for ``ckpt`` and every nested dict that holds tensors."""
    todo = [((), ckpt)]
    while todo:
        path, obj = todo.pop(0)
        if not isinstance(obj, dict):
            continue
        if _tensor_dict(obj) is not None:
            yield path, obj
        if len(path) < max_depth:
            for k, v in obj.items():
                if isinstance(k, str) and isinstance(v, dict):
                    todo.append((path + (k,), v))


def _path_str(path):
    return ".".join(path) if path else "<root>"


def _find_prefixes(sd, probe):
    """Every prefix P with P + probe[i] present for all i."""
    last = probe[-1]
    found = []
    for k in sd:
        if isinstance(k, str) and k.endswith(last):
            p = k[: len(k) - len(last)]
            if (p == "" or p.endswith(".")) and _has(sd, p, probe):
                found.append(p)
    return found


def _ignored(ckpt, path):
    if not isinstance(ckpt, dict) or not path:
        return []
    return [str(k) for k in ckpt if k != path[0]]


def take_prefix(fmt, ckpt, path, prefix, *, rename=None, meta=None, extra_sources=()):
    """
    Build an :class:`Extraction` from the tensors of ``ckpt[path...]`` whose keys start with
    ``prefix`` (renamed by stripping ``prefix``, then ``rename(name)``); the container's other
    tensors are dropped. ``extra_sources``: more ``(path, prefix, rename)`` to merge in (e.g. the
    res5 of a detectron2 C4 model).
    """
    state, original, dropped = OrderedDict(), {}, {}
    taken_keys = set()
    sources = [(path, prefix, rename)] + list(extra_sources)
    for src_path, src_prefix, src_rename in sources:
        container = _get(ckpt, *src_path) if src_path else ckpt
        for key, value in container.items():
            if not (isinstance(key, str) and torch.is_tensor(value)) or not key.startswith(src_prefix):
                continue
            name = key[len(src_prefix):]
            if src_rename is not None:
                name = src_rename(name)
            if name is None:
                continue
            if name in state:
                raise ConversionError(
                    f"{fmt}: both {original[name]!r} and {key!r} map to {name!r}"
                )
            state[name] = value
            original[name] = key
            taken_keys.add((src_path, key))
    for src_path in {s[0] for s in sources}:
        container = _get(ckpt, *src_path) if src_path else ckpt
        for key, value in container.items():
            if isinstance(key, str) and torch.is_tensor(value) and (src_path, key) not in taken_keys:
                dropped[key] = group_label(key)
    source = f"{_path_str(path)}: {prefix}*" if prefix else _path_str(path)
    return Extraction(
        format=fmt, source=source, state_dict=state, original_names=original, dropped=dropped,
        meta=dict(meta or {}), ignored=_ignored(ckpt, path),
    )


def _first_prefix(sd, prefixes, probe=_TV_PROBE):
    for p in prefixes:
        if _has(sd, p, probe):
            return p
    return None


# ----------------------------------------------------------------------------------------------
# readers


def read_canonical(ckpt):
    """contrastive_det canonical export: {"format": "contrastive_det.backbone/v1", "state_dict": torchvision keys, "meta": {...}}."""
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if not (isinstance(fmt, str) and fmt.startswith("contrastive_det.backbone/")):
        return None
    if fmt != CANONICAL_FORMAT:
        raise ConversionError(f"canonical format {fmt!r} is not readable by this version ({CANONICAL_FORMAT!r})")
    if not isinstance(ckpt.get("state_dict"), dict) or not isinstance(ckpt.get("meta"), dict):
        raise ConversionError("canonical checkpoint without a 'state_dict' dict and a 'meta' dict")
    ext = take_prefix("canonical", ckpt, ("state_dict",), "", meta=ckpt["meta"])
    ext.ignored = [k for k in ext.ignored if k not in ("format", "meta")]
    return ext


def _d2_rename(name):
    tv = d2_to_tv_key(name)
    return tv if tv is not None else name


def read_detectron2(ckpt):
    """detectron2 ResNet names (stem.conv1.*, res2-res5.*): a converted .pkl {"model": ..., "__author__": ...} or a detectron2 model checkpoint (backbone.[bottom_up.]*; a C4 model's res5 is read from roi_heads.res5)."""
    candidates = []
    for path, sd in iter_containers(ckpt):
        for p in _find_prefixes(sd, _D2_PROBE):
            candidates.append((path, p, sd))
    if not candidates:
        return None
    if len(candidates) > 1:
        raise ConversionError(
            "several detectron2 ResNets in the checkpoint: "
            + ", ".join(f"{_path_str(pa)}:{p}" for pa, p, _ in candidates)
            + "; choose one with --prefix CONTAINER:PREFIX"
        )
    path, prefix, sd = candidates[0]
    extra = []
    c4_res5 = "roi_heads.res5."
    if not _has(sd, prefix, ("res5.0.conv1.weight",)) and _has(sd, c4_res5, ("0.conv1.weight",)):
        # Faster R-CNN C4: res5 lives in the ROI head; its extra norm (res5.norm) is not backbone.
        def res5_rename(name):
            return _d2_rename("res5." + name) if re.match(r"^\d+\.", name) else None

        extra.append((path, c4_res5, res5_rename))
    return take_prefix("detectron2", ckpt, path, prefix, rename=_d2_rename, extra_sources=extra,
                       meta={"method": "unspecified"})


_VISSL_TRUNKS = [
    ("classy_state_dict", "base_model", "model"),
    ("base_model", "model"),
    ("model",),
]


def read_vissl(ckpt):
    """VISSL: {"classy_state_dict": {"base_model": {"model": {"trunk": {"_feature_blocks.conv1.weight", "_feature_blocks.layer1.0...", ...}, "heads": {...}}}}} (heads dropped)."""
    for model_path in _VISSL_TRUNKS:
        trunk = _tensor_dict(_get(ckpt, *model_path, "trunk"))
        if trunk is None or not _has(trunk, "_feature_blocks.", _TV_PROBE):
            continue
        ext = take_prefix("vissl", ckpt, model_path + ("trunk",), "_feature_blocks.", meta={"method": "vissl"})
        heads = _tensor_dict(_get(ckpt, *model_path, "heads"))
        for key, value in (heads or {}).items():
            if torch.is_tensor(value):
                ext.dropped[f"heads.{key}"] = "heads.*"
        return ext
    return None


def _state_dict_or_root(ckpt):
    sd = _tensor_dict(_get(ckpt, "state_dict"))
    if sd is not None:
        return ("state_dict",), sd
    root = _tensor_dict(ckpt)
    return ((), root) if root is not None else (None, None)


def read_moco(ckpt):
    """MoCo v1/v2: {"state_dict": {"module.encoder_q.*" (fc: linear v1 / MLP fc.0, fc.2 v2), "module.encoder_k.*", "module.queue", "module.queue_ptr"}, "arch", "epoch", "optimizer"}."""
    path, sd = _state_dict_or_root(ckpt)
    if sd is None:
        return None
    prefix = _first_prefix(sd, ("module.encoder_q.", "encoder_q."))
    if prefix is None:
        return None
    method = "mocov2" if prefix + "fc.0.weight" in sd else "mocov1"
    return take_prefix("moco", ckpt, path, prefix, meta={"method": method})


def read_mocov3(ckpt):
    """MoCo v3: {"state_dict": {"module.base_encoder.*" (fc = projection MLP), "module.momentum_encoder.*", "module.predictor.*"}, "arch", "epoch", "optimizer", "scaler"}."""
    path, sd = _state_dict_or_root(ckpt)
    if sd is None:
        return None
    prefix = _first_prefix(sd, ("module.base_encoder.", "base_encoder."))
    if prefix is None:
        return None
    return take_prefix("mocov3", ckpt, path, prefix, meta={"method": "mocov3"})


def _supcon_rename(name):
    # SupContrast's resnet_big names the projection shortcut "shortcut.0/1" (torchvision: downsample)
    return re.sub(r"\.shortcut\.([01])\.", r".downsample.\1.", name)


def read_supcon(ckpt):
    """SupContrast: {"model": {"encoder.*" | "module.encoder.*" | "encoder.module.*", "head.*"}, "opt", "optimizer", "epoch"} (shortcut.0/1 read as downsample.0/1)."""
    sd = _tensor_dict(_get(ckpt, "model"))
    if sd is None:
        return None
    prefix = _first_prefix(sd, ("encoder.module.", "module.encoder.", "encoder."))
    if prefix is None:
        return None
    return take_prefix("supcon", ckpt, ("model",), prefix, rename=_supcon_rename, meta={"method": "supcon"})


def read_lightning(ckpt):
    """PyTorch Lightning SSL checkpoints, e.g. solo-learn: {"state_dict": {"backbone.*", "momentum_backbone.*", "projector.*", "classifier.*", ...}, "pytorch-lightning_version", "epoch", "global_step", "hyper_parameters"}."""
    if not isinstance(ckpt, dict) or "pytorch-lightning_version" not in ckpt:
        return None
    sd = _tensor_dict(_get(ckpt, "state_dict"))
    if sd is None:
        return None
    prefix = _first_prefix(sd, ("backbone.", "model.backbone.", "encoder.", "model.encoder."))
    if prefix is None:
        return None
    hp = ckpt.get("hyper_parameters")
    method = hp.get("method") if isinstance(hp, dict) else None
    return take_prefix("lightning", ckpt, ("state_dict",), prefix,
                       meta={"method": method if isinstance(method, str) else "unspecified"})


def read_mmselfsup(ckpt):
    """mmselfsup / OpenMMLab: {"meta": {...}, "state_dict": {"backbone.*", "neck.*", "head.*", momentum encoder, queue...}, "optimizer"}."""
    if not isinstance(ckpt, dict) or not ("meta" in ckpt or "message_hub" in ckpt):
        return None
    sd = _tensor_dict(_get(ckpt, "state_dict"))
    if sd is None or not _has(sd, "backbone.", _TV_PROBE):
        return None
    return take_prefix("mmselfsup", ckpt, ("state_dict",), "backbone.", meta={"method": "unspecified"})


def read_timm(ckpt):
    """timm training checkpoint: {"state_dict": torchvision-named ResNet (conv1, bn1, layer1-4, fc), "arch", "epoch", "args", "state_dict_ema"?} (timm's pretrained files are plain state dicts: "torchvision")."""
    sd = _tensor_dict(_get(ckpt, "state_dict"))
    if sd is None:
        return None
    prefix = _first_prefix(sd, ("", "module."))
    if prefix is None:
        return None
    ext = take_prefix("timm", ckpt, ("state_dict",), prefix, meta={"method": "unspecified"})
    ema = _tensor_dict(_get(ckpt, "state_dict_ema"))
    for key, value in (ema or {}).items():
        if torch.is_tensor(value):
            ext.dropped[f"state_dict_ema: {key}"] = "state_dict_ema.*"
    return ext


def read_torchvision(ckpt):
    """torchvision ResNet state_dict (conv1, bn1, layer1-4, fc), bare or as {"model": ...} (torchvision's reference scripts), optionally under "module."; timm ResNet weights use the same names."""
    for path in ((), ("model",)):
        sd = _tensor_dict(_get(ckpt, *path) if path else ckpt)
        if sd is None:
            continue
        prefix = _first_prefix(sd, ("", "module."))
        if prefix is not None:
            return take_prefix("torchvision", ckpt, path, prefix, meta={"method": "unspecified"})
    return None


_PLAIN_PREFIXES = tuple(
    w + p for p in ("backbone.", "encoder.") for w in ("", "module.", "model.", "module.model.")
)


def read_prefixed(ckpt):
    """A torchvision-named ResNet under "backbone." or "encoder." (optionally inside "module."/"model."), in the file itself or in its "state_dict" / "model" entry."""
    for path in ((), ("state_dict",), ("model",)):
        sd = _tensor_dict(_get(ckpt, *path) if path else ckpt)
        if sd is None:
            continue
        prefix = _first_prefix(sd, _PLAIN_PREFIXES)
        if prefix is not None:
            return take_prefix("prefixed", ckpt, path, prefix, meta={"method": "unspecified"})
    return None


def parse_prefix(spec):
    """``"CONTAINER:PREFIX"`` (CONTAINER a dotted path of dict keys, empty for the root) or ``"PREFIX"``."""
    if ":" in spec:
        container, prefix = spec.split(":", 1)
        return (tuple(container.split(".")) if container else ()), prefix
    return None, spec


def read_raw(ckpt, prefix=None):
    """Any dict of tensors holding exactly one torchvision-named ResNet under some prefix, at any nesting level (--prefix CONTAINER:PREFIX picks one)."""
    want_path, want_prefix = parse_prefix(prefix) if prefix is not None else (None, None)
    candidates = []
    for path, sd in iter_containers(ckpt):
        if want_path is not None and path != want_path:
            continue
        for p in _find_prefixes(sd, _TV_PROBE):
            if want_prefix is None or p == want_prefix:
                candidates.append((path, p))
    if not candidates:
        if prefix is not None:
            raise ConversionError(
                f"no torchvision-named ResNet (conv1.weight, layer1.0.conv1.weight, ...) under --prefix {prefix!r}"
            )
        return None
    if len(candidates) > 1:
        raise ConversionError(
            "several ResNets in the checkpoint: "
            + ", ".join(f"{_path_str(pa) if pa else ''}:{p}" for pa, p in candidates)
            + "; choose one with --prefix CONTAINER:PREFIX"
        )
    path, p = candidates[0]
    return take_prefix("raw", ckpt, path, p, meta={"method": "unspecified"})


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
}


def register_reader(name, reader, before=None):
    """Add a reader (see the contract above); ``before``: the name it is tried before."""
    items = [(k, v) for k, v in READERS.items() if k != name]
    idx = next((i for i, (k, _) in enumerate(items) if k == before), len(items))
    items.insert(idx, (name, reader))
    READERS.clear()
    READERS.update(items)


def format_names():
    return list(READERS) + sorted(a for a in FORMAT_ALIASES if a not in READERS)


def resolve_format(name):
    key = FORMAT_ALIASES.get(name, name)
    if key not in READERS:
        raise ConversionError(f"unknown format {name!r}; known: {', '.join(format_names())}")
    return key


def layout_of(name):
    doc = (READERS[name].__doc__ or "").strip().splitlines()
    return doc[0] if doc else name


def describe_checkpoint(ckpt, max_groups=12):
    """Top-level keys and the key prefixes (with tensor counts) of every container, for errors."""
    if not isinstance(ckpt, dict):
        return f"the file holds a {type(ckpt).__name__}, not a dict"
    top = list(ckpt.keys())
    lines = [f"top-level keys: {top[:30]}{' ...' if len(top) > 30 else ''}"]
    containers = list(iter_containers(ckpt))
    if not containers:
        lines.append("no tensors found")
    for path, sd in containers[:8]:
        groups = OrderedDict()
        for k, v in sd.items():
            if isinstance(k, str) and torch.is_tensor(v):
                label = group_label(k)
                groups[label] = groups.get(label, 0) + 1
        shown = [f"{g} ({n})" for g, n in list(groups.items())[:max_groups]]
        more = f", ... {len(groups) - max_groups} more" if len(groups) > max_groups else ""
        lines.append(f"prefixes in {_path_str(path)}: {', '.join(shown)}{more}")
    return "\n".join(lines)


def read_checkpoint(ckpt, fmt=None, prefix=None, where="checkpoint"):
    """
    Find the ResNet backbone in a loaded checkpoint. ``fmt``: a format name (auto-detected when
    None); ``prefix``: ``"CONTAINER:PREFIX"`` or ``"PREFIX"`` of torchvision-named keys
    (overrides detection). Returns an :class:`Extraction`; raises :class:`ConversionError` with
    the top-level keys and prefixes found when nothing matches.
    """
    if isinstance(ckpt, torch.nn.Module):  # a whole pickled model (needs --trust)
        ckpt = ckpt.state_dict()
    if not isinstance(ckpt, dict):
        raise ConversionError(f"{where}: {describe_checkpoint(ckpt)}")
    if prefix is not None:
        return read_raw(ckpt, prefix=prefix)
    if fmt is not None:
        name = resolve_format(fmt)
        ext = READERS[name](ckpt)
        if ext is None:
            raise ConversionError(
                f"{where} is not a {fmt} checkpoint; expected {layout_of(name)}\n{describe_checkpoint(ckpt)}"
            )
        return ext
    for name, reader in READERS.items():
        ext = reader(ckpt)
        if ext is not None:
            return ext
    raise ConversionError(
        f"no ResNet backbone found in {where} (tried formats: {', '.join(READERS)}).\n"
        f"{describe_checkpoint(ckpt)}\n"
        "A ResNet is recognised by torchvision names (conv1.weight, bn1.*, layer1.0.conv1.weight, ...) "
        "or detectron2 names (stem.conv1.weight, res2.0.conv1.weight, ...) under some prefix; "
        "name the format with --format or the prefix with --prefix CONTAINER:PREFIX."
    )

"""
The machinery readers share: finding a ResNet's key prefix in the tensor dicts of a loaded
checkpoint and taking the tensors under it (:func:`take_prefix`) as an :class:`Extraction`.

A *container* is a dict holding tensors under string keys, at a *path* of dict keys from the
checkpoint's root (``()`` for the root, ``("state_dict",)``, ...). A ResNet is located in a
container by a *prefix* such that ``prefix + name`` exists for every name of a *probe*
(e.g. ``conv1.weight`` and ``layer1.0.conv1.weight`` for torchvision names).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

from ..utils.config_keys import get_key
from .errors import ConversionError

# Components that only wrap a model (DataParallel, torch.compile, Lightning's self.model).
WRAPPERS = ("module", "model", "_orig_mod")
TV_PROBE = ("conv1.weight", "layer1.0.conv1.weight")  # torchvision ResNet names
D2_PROBE = ("stem.conv1.weight", "res2.0.conv1.weight")  # detectron2 ResNet names


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


@dataclass(frozen=True)
class Candidate:
    """A ResNet found in a checkpoint: the tensors of ``container`` whose keys start with
    ``prefix``."""

    path: Tuple[str, ...]  # dict keys from the root to the container
    prefix: str  # key prefix inside the container
    # name after the prefix -> torchvision name
    rename: Optional[Callable[[str], Optional[str]]] = None

    @property
    def dotted(self) -> str:
        """The prefix as if nested dicts were flattened with dots: ``("student",), ""`` ->
        ``"student."``."""
        return "".join(p + "." for p in self.path) + self.prefix

    def __str__(self) -> str:
        return self.dotted or "<root>"


def group_label(key: str) -> str:
    """``module.encoder_k.layer1.0.conv1.weight`` -> ``module.encoder_k.*``; ``queue`` ->
    ``queue``."""
    parts = key.split(".")
    i = 0
    while i < len(parts) - 1 and parts[i] in WRAPPERS:
        i += 1
    label = ".".join(parts[: i + 1])
    return label + ".*" if i + 1 < len(parts) else label


def tensor_dict(obj: Any) -> dict[str, Any] | None:
    """``obj`` if it is a dict holding at least one tensor under a string key, else None."""
    if isinstance(obj, dict) and any(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()
    ):
        return obj
    return None


def container_at(ckpt: Any, path: tuple[str, ...]) -> dict[str, Any] | None:
    """The tensor dict at ``path`` (a tuple of dict keys; ``()`` is the root), or None."""
    return tensor_dict(get_key(ckpt, path, default=None))


def has_keys(sd: Mapping[str, Any], prefix: str, probe: Iterable[str]) -> bool:
    """True when ``prefix + name`` is a tensor of ``sd`` for every name of ``probe``."""
    return all(prefix + k in sd and torch.is_tensor(sd[prefix + k]) for k in probe)


def iter_containers(
    ckpt: Any, max_depth: int = 4
) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Yield ``(path, dict)`` for ``ckpt`` and every nested dict that holds tensors, breadth
    first."""
    todo = [((), ckpt)]
    while todo:
        path, obj = todo.pop(0)
        if not isinstance(obj, dict):
            continue
        if tensor_dict(obj) is not None:
            yield path, obj
        if len(path) < max_depth:
            for k, v in obj.items():
                if isinstance(k, str) and isinstance(v, dict):
                    todo.append((path + (k,), v))


def path_str(path: tuple[str, ...]) -> str:
    return ".".join(path) if path else "<root>"


def find_prefixes(sd: Mapping[str, Any], probe: Sequence[str]) -> list[str]:
    """Every prefix P of ``sd`` (``""`` or ending with ``.``) with ``P + name`` present for all of
    ``probe``."""
    last = probe[-1]
    found = []
    for k in sd:
        if isinstance(k, str) and k.endswith(last):
            p = k[: len(k) - len(last)]
            if (p == "" or p.endswith(".")) and has_keys(sd, p, probe):
                found.append(p)
    return found


def first_prefix(
    sd: Mapping[str, Any], prefixes: Iterable[str], probe: Sequence[str] = TV_PROBE
) -> str | None:
    """The first of ``prefixes`` under which ``sd`` holds ``probe``, or None."""
    for p in prefixes:
        if has_keys(sd, p, probe):
            return p
    return None


def find_candidates(
    ckpt: Any, probe: Sequence[str], rename: Callable[[str], str | None] | None = None
) -> list[Candidate]:
    """Every :class:`Candidate` holding ``probe`` in any container of ``ckpt``."""
    return [
        Candidate(path, p, rename)
        for path, sd in iter_containers(ckpt)
        for p in find_prefixes(sd, probe)
    ]


def _ignored(ckpt, path):
    if not isinstance(ckpt, dict) or not path:
        return []
    return [str(k) for k in ckpt if k != path[0]]


def take_prefix(
    fmt: str,
    ckpt: dict[str, Any],
    path: tuple[str, ...],
    prefix: str,
    *,
    rename: Callable[[str], str | None] | None = None,
    meta: Mapping[str, Any] | None = None,
    extra_sources: Iterable[tuple[tuple[str, ...], str, Callable[[str], str | None] | None]] = (),
) -> Extraction:
    """
    Build an :class:`Extraction` from the tensors of the container at ``path`` whose keys start
    with ``prefix``; the container's other tensors are listed as dropped, with a group label.

    Args:
        fmt (str): the reader's name, recorded in the extraction.
        ckpt (dict): the loaded checkpoint.
        path (tuple[str]): dict keys from the root to the container (``()``: the root).
        prefix (str): key prefix of the backbone inside the container (stripped).
        rename (callable or None): ``name -> torchvision name`` (or None to skip the tensor),
            applied after stripping ``prefix``.
        meta (dict or None): what the reader knows (method, pixel statistics...).
        extra_sources: more ``(path, prefix, rename)`` to merge in (e.g. the res5 of a
            detectron2 C4 model).

    Returns:
        Extraction

    Raises:
        ConversionError: when two keys map to the same torchvision name.
    """
    state, original, dropped = OrderedDict(), {}, {}
    taken_keys = set()
    sources = [(path, prefix, rename)] + list(extra_sources)
    for src_path, src_prefix, src_rename in sources:
        for key, value in get_key(ckpt, src_path).items():
            if not (isinstance(key, str) and torch.is_tensor(value)) or not key.startswith(
                src_prefix
            ):
                continue
            name = key[len(src_prefix) :]
            if src_rename is not None:
                name = src_rename(name)
            if name is None:
                continue
            if name in state:
                raise ConversionError(f"{fmt}: both {original[name]!r} and {key!r} map to {name!r}")
            state[name] = value
            original[name] = key
            taken_keys.add((src_path, key))
    for src_path in {s[0] for s in sources}:
        for key, value in get_key(ckpt, src_path).items():
            if (
                isinstance(key, str)
                and torch.is_tensor(value)
                and (src_path, key) not in taken_keys
            ):
                dropped[key] = group_label(key)
    source = f"{path_str(path)}: {prefix}*" if prefix else path_str(path)
    return Extraction(
        format=fmt,
        source=source,
        state_dict=state,
        original_names=original,
        dropped=dropped,
        meta=dict(meta or {}),
        ignored=_ignored(ckpt, path),
    )


def take_candidate(
    fmt: str, ckpt: dict[str, Any], candidate: Candidate, meta: Mapping[str, Any] | None = None
) -> Extraction:
    """:func:`take_prefix` for a :class:`Candidate`."""
    return take_prefix(
        fmt, ckpt, candidate.path, candidate.prefix, rename=candidate.rename, meta=meta
    )


def parse_prefix(spec: str) -> tuple[tuple[str, ...] | None, str]:
    """``"CONTAINER:PREFIX"`` (CONTAINER a dotted path of dict keys, empty for the root) or
    ``"PREFIX"``."""
    if ":" in spec:
        container, prefix = spec.split(":", 1)
        return (tuple(container.split(".")) if container else ()), prefix
    return None, spec


def select_candidates(candidates: Iterable[Candidate], spec: str) -> list[Candidate]:
    """
    The candidates a ``--prefix`` ``spec`` names: ``"CONTAINER:PREFIX"`` exactly, or ``"PREFIX"``
    as the prefix inside any container or as the dotted prefix from the root
    (``"student."`` for ``{"student": {"conv1.weight": ...}}``); when none is exactly there, the
    candidates under it (``"teacher."`` for DINO's ``{"teacher": {"module.backbone.*", ...}}``).
    """
    candidates = list(candidates)
    want_path, want_prefix = parse_prefix(spec)
    if want_path is not None:
        return [c for c in candidates if c.path == want_path and c.prefix == want_prefix]
    dotted = want_prefix if want_prefix.endswith(".") or not want_prefix else want_prefix + "."
    exact = [c for c in candidates if c.prefix == want_prefix or c.dotted == dotted]
    return exact or [c for c in candidates if c.dotted.startswith(dotted)]


def describe_checkpoint(ckpt: Any, max_groups: int = 12) -> str:
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
        lines.append(f"prefixes in {path_str(path)}: {', '.join(shown)}{more}")
    return "\n".join(lines)

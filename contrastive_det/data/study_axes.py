"""
Data axes of the pretraining study (docs/design.md section 6, after Cole et al.), as pure functions
on lists of dataset dicts ``{"file_name", "label", "class_name", ...}``:

* :func:`stratified_subset` - data quantity: a deterministic, class-stratified subset by count or
  fraction;
* :func:`mix_datasets` - domain mixing: several datasets combined with given proportions;
* :func:`load_label_map` / :func:`apply_label_map` - label granularity: fine -> coarse classes (also
  read by the classification transfer, ``CLASSIFICATION.LABEL_MAP``);
* :func:`describe` - the record of what was used (``OUTPUT_DIR/pretrain_data.json``).

Corruption of the images is in :mod:`contrastive_det.data.corruptions`. Nothing here reads a
config; :func:`check_axes_config` validates the ``DATASETS.PRETRAIN`` keys with messages naming
them.
"""

import json
import math
import zlib
from collections import Counter

import numpy as np

__all__ = [
    "stratified_subset",
    "subset_size",
    "apportion",
    "mix_datasets",
    "load_label_map",
    "coarse_classes",
    "mapped_classes",
    "apply_label_map",
    "count_images",
    "describe",
    "check_axes_config",
]


def _class_key(d):
    """The stratum of an image: its source dataset (if tagged) and its label."""
    return (d.get("source"), d.get("label", -1))


def _rng(seed, *salt):
    """A numpy generator depending only on ``seed`` and ``salt`` (strings hashed with CRC32)."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(repr(s).encode()) for s in salt]
    return np.random.default_rng(words)


def _round_half_up(x):
    return int(math.floor(x + 0.5))


def subset_size(total, count=0, fraction=1.0):
    """
    Number of images a subset keeps: ``count`` if > 0, else ``round(fraction * total)`` (halves
    up). Raises ValueError for both set, a count larger than ``total``, a fraction outside (0, 1]
    or a subset with no image.
    """
    count, fraction = int(count), float(fraction)
    if count < 0:
        raise ValueError(
            f"DATASETS.PRETRAIN.SUBSET_COUNT must be >= 0 (0 = all images), got {count}"
        )
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"DATASETS.PRETRAIN.SUBSET_FRACTION must be in (0, 1], got {fraction}")
    if count > 0 and fraction < 1.0:
        raise ValueError(
            f"Set either DATASETS.PRETRAIN.SUBSET_COUNT ({count}) or "
            f"DATASETS.PRETRAIN.SUBSET_FRACTION ({fraction}), not both"
        )
    if count > total:
        raise ValueError(
            f"DATASETS.PRETRAIN.SUBSET_COUNT {count} is larger than the data: the training set has "
            f"{total} images"
        )
    size = count if count > 0 else _round_half_up(fraction * total)
    if size == 0 and total > 0:
        raise ValueError(
            f"DATASETS.PRETRAIN.SUBSET_FRACTION {fraction} of {total} images selects no image"
        )
    return size


def stratified_subset(dicts, count=0, fraction=1.0, seed=0):
    """
    A deterministic, class-stratified subset of ``dicts`` (in their original order).

    Size: ``count`` images if ``count > 0``, else ``round(fraction * len(dicts))``; see
    :func:`subset_size` for the errors. Classes are the pairs (``source``, ``label``).

    Rule: every class is shuffled by a generator seeded with ``seed`` and the class (so a class's
    order does not depend on the other classes), and the images of all classes are merged into one
    sequence in which the ``k``-th image of a class of ``n`` images comes at position ``(k + 0.5) /
    n`` (ties: the class seen first in ``dicts`` first). A subset of size ``m`` is the first ``m``
    of that sequence. This is the sequential Sainte-Lague (Webster) apportionment: class ``c`` gets
    about ``m * n_c / N`` images (exactly that when it is an integer for every class), totals are
    exact, and a smaller subset at the same seed is always contained in a larger one (nested) - a
    property largest-remainder quotas lack (the Alabama paradox).

    Example: classes of 10/5/5 images, fraction 0.5 -> 10 images: 5/3/2 (classes 2 and 3 tie at
    2.5 for the last image; the one seen first wins).
    """
    dicts = list(dicts)
    size = subset_size(len(dicts), count, fraction)
    if size == len(dicts):
        return dicts
    groups = {}
    for i, d in enumerate(dicts):
        groups.setdefault(_class_key(d), []).append(i)
    positions, orders, indices = [], [], []
    for order, (key, idx) in enumerate(groups.items()):
        n = len(idx)
        perm = _rng(seed, "subset", key).permutation(n)
        indices.append(np.asarray(idx, dtype=np.int64)[perm])
        positions.append((np.arange(n) + 0.5) / n)
        orders.append(np.full(n, order, dtype=np.int64))
    indices, positions, orders = (np.concatenate(a) for a in (indices, positions, orders))
    sequence = indices[np.lexsort((orders, positions))]  # by position, then class order
    keep = np.sort(sequence[:size])
    return [dicts[i] for i in keep]


def apportion(total, weights, capacities=None):
    """
    Split ``total`` into integers proportional to ``weights`` by largest remainder (ties: lower
    index first); the parts sum to ``total`` exactly. With ``capacities``, raise ValueError when a
    part would need more than its capacity.
    """
    weights = [float(w) for w in weights]
    s = sum(weights)
    if s <= 0:
        raise ValueError(f"proportions must not all be 0, got {weights}")
    exact = [total * w / s for w in weights]
    parts = [int(math.floor(e)) for e in exact]
    rest = total - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))[:rest]:
        parts[i] += 1
    if capacities is not None:
        for i, (p, c) in enumerate(zip(parts, capacities)):
            if p > c:
                raise ValueError(
                    f"part {i} needs {p} images of a mixture of {total} but has only {c}"
                )
    return parts


def _largest_mix_total(sizes, proportions):
    """The largest total whose :func:`apportion` needs no more images of a part than it has."""
    s = sum(proportions)
    # a part of weight p gets at least floor(T * p / s) images, so T <= (size + 1) * s / p - tiny
    bound = min(int(math.floor((n + 1) * s / p)) for n, p in zip(sizes, proportions) if p > 0)
    for total in range(min(bound, sum(sizes)), -1, -1):
        parts = apportion(total, proportions)
        if all(k <= n for k, n in zip(parts, sizes)):
            return total
    return 0


def mix_datasets(parts, proportions, total=0, seed=0, names=None):
    """
    Combine datasets with given proportions.

    Args:
        parts: list of lists of dicts, one per dataset
        proportions: one weight >= 0 per part (not all 0); normalised by their sum
        total: images in the mixture; 0 = the largest total for which no part needs more images
            than it has
        seed: part ``i`` contributes the first of its images in a permutation seeded by (seed, i)
        names: names of the parts (default: their indices)
    Returns:
        the concatenation of the parts' selections (each in its original order); every dict is
        a copy tagged ``"source"`` = the part's name. Part sizes are ``apportion(total,
        proportions)`` (largest remainder: ``round(total * p / sum(p))`` up to the rounding that
        makes them sum to ``total``); images are drawn without replacement.
    """
    names = list(range(len(parts))) if names is None else list(names)
    proportions = [float(p) for p in proportions]
    if len(proportions) != len(parts):
        raise ValueError(
            f"DATASETS.PRETRAIN.MIX_PROPORTIONS has {len(proportions)} entries but DATASETS.TRAIN "
            f"has {len(parts)} datasets {names}; give one proportion per dataset"
        )
    for name, p in zip(names, proportions):
        if not p >= 0 or math.isinf(p):
            raise ValueError(
                f"DATASETS.PRETRAIN.MIX_PROPORTIONS must be finite and >= 0; got {p} for dataset "
                f"{name}"
            )
    if sum(proportions) <= 0:
        raise ValueError(f"DATASETS.PRETRAIN.MIX_PROPORTIONS must not all be 0, got {proportions}")
    total = int(total)
    if total < 0:
        raise ValueError(
            f"DATASETS.PRETRAIN.MIX_TOTAL must be >= 0 (0 = as many as possible), got {total}"
        )
    sizes = [len(p) for p in parts]
    if total == 0:
        total = _largest_mix_total(sizes, proportions)
    counts = apportion(total, proportions)
    for name, k, n, _p in zip(names, counts, sizes, proportions):
        if k > n:
            raise ValueError(
                f"DATASETS.PRETRAIN.MIX_TOTAL {total} with proportions {proportions} needs {k} "
                f"images of dataset {name}, which has only {n}"
            )
    mixed = []
    for i, (name, part, k) in enumerate(zip(names, parts, counts)):
        keep = np.sort(_rng(seed, "mix", i).permutation(len(part))[:k])
        mixed.extend(dict(part[j], source=name) for j in keep)
    return mixed


def load_label_map(path, key="DATASETS.PRETRAIN.LABEL_MAP"):
    """
    Read a label map: a JSON object ``{"fine class name": "coarse class name", ...}``. Raises
    ValueError naming ``path`` (and the config ``key`` it came from) when it cannot be read, is not
    valid JSON or is not such an object.
    """
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"Could not read label map {path} ({key}): {e}") from e
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"Label map {path} is not valid JSON: {e}") from e
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(
            f'Label map {path} must be a non-empty JSON object {{"fine class": "coarse class", '
            f"...}}, got {type(mapping).__name__}"
        )
    bad = {k: v for k, v in mapping.items() if not isinstance(v, str) or not v}
    if bad:
        raise ValueError(
            f"Label map {path}: coarse class names must be non-empty strings, got {bad}"
        )
    return mapping


def coarse_classes(mapping):
    """The coarse class names of a label map, sorted: coarse label ``i`` is
    ``coarse_classes(m)[i]``."""
    return sorted(set(mapping.values()))


def mapped_classes(classes, mapping, path="", where=""):
    """
    The sorted coarse class names that the fine ``classes`` (e.g. a dataset's class list) map to:
    coarse label ``i`` is ``mapped_classes(...)[i]``. Entries of ``mapping`` for other classes are
    ignored (one map may serve several sets). A class missing from ``mapping`` raises ValueError
    naming the class, ``where`` the classes come from and the map file ``path``.
    """
    missing = [str(c) for c in classes if str(c) not in mapping]
    if missing:
        raise ValueError(
            f"Label map {path} has no entry for class '{missing[0]}' (a class of "
            f"{where or 'the data'}); classes missing: {sorted(missing)}"
        )
    return sorted({mapping[str(c)] for c in classes})


def apply_label_map(dicts, mapping, path="", classes=None):
    """
    Copies of ``dicts`` with ``label`` replaced by the coarse label of their ``class_name`` (index
    in ``classes``, default :func:`coarse_classes` of the whole map); the fine label and the coarse
    name are kept as ``fine_label`` and ``coarse_class``. A class missing from ``mapping`` raises
    ValueError naming the class, an image of it and the map file ``path``; so does a coarse class
    that is not in ``classes``.
    """
    index = {c: i for i, c in enumerate(coarse_classes(mapping) if classes is None else classes)}
    missing = {}
    for d in dicts:
        if "class_name" not in d:
            raise ValueError(
                f"Image {d.get('file_name')} has no class name, so label map {path} cannot apply"
            )
        if d["class_name"] not in mapping:
            missing.setdefault(d["class_name"], d.get("file_name"))
    if missing:
        cls, example = next(iter(missing.items()))
        raise ValueError(
            f"Label map {path} has no entry for class '{cls}' (e.g. image {example}); classes "
            f"missing: {sorted(missing)}"
        )
    outside = sorted({mapping[d["class_name"]] for d in dicts} - set(index))
    if outside:
        raise ValueError(
            f"Label map {path}: coarse class(es) {outside} are not among the coarse classes "
            f"{list(index)}"
        )
    return [
        dict(
            d,
            label=index[mapping[d["class_name"]]],
            fine_label=d.get("label", -1),
            coarse_class=mapping[d["class_name"]],
        )
        for d in dicts
    ]


def count_images(dicts):
    """``{"total": N, "per_dataset": {source: n}, "per_class": {source: {class: n}}}`` (source "" if
    untagged)."""
    per_class = {}
    for d in dicts:
        source = "" if d.get("source") is None else str(d["source"])
        cls = str(d.get("class_name", d.get("label", -1)))
        per_class.setdefault(source, Counter())[cls] += 1
    return {
        "total": len(dicts),
        "per_dataset": {s: sum(c.values()) for s, c in per_class.items()},
        "per_class": {s: dict(sorted(c.items())) for s, c in per_class.items()},
    }


def describe(settings, before, after, mapping=None, map_path="", seed=0):
    """
    The content of ``pretrain_data.json``.

    Args:
        settings: the axes' config values (dict)
        before: the dicts of DATASETS.TRAIN, concatenated, before any axis
        after: the training dicts actually used
        mapping, map_path: the label map applied (None: fine labels)
        seed: the seed of subsetting and mixing
    """
    out = {
        "settings": dict(settings),
        "seed": int(seed),
        "before": count_images(before),
        "after": count_images(after),
        "label_map": None,
    }
    if mapping is not None:
        out["label_map"] = {
            "file": map_path,
            "classes": coarse_classes(mapping),
            "mapping": dict(mapping),
        }
        out["after"]["per_coarse_class"] = dict(
            sorted(Counter(d["coarse_class"] for d in after).items())
        )
    return out


def check_axes_config(cfg):
    """Validate ``DATASETS.PRETRAIN`` before any data is read; errors name the key."""
    p = cfg.DATASETS.PRETRAIN
    # count/fraction checks
    subset_size(max(int(p.SUBSET_COUNT), 0), p.SUBSET_COUNT, p.SUBSET_FRACTION)
    props = list(p.MIX_PROPORTIONS)
    if props:
        names = list(cfg.DATASETS.TRAIN)
        if len(props) != len(names):
            raise ValueError(
                f"DATASETS.PRETRAIN.MIX_PROPORTIONS has {len(props)} entries {props} but "
                f"DATASETS.TRAIN has {len(names)} datasets {names}; give one proportion per dataset"
            )
        for name, v in zip(names, props):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < math.inf:
                raise ValueError(
                    f"DATASETS.PRETRAIN.MIX_PROPORTIONS must be numbers >= 0; got {v!r} for "
                    f"dataset {name}"
                )
        if sum(props) <= 0:
            raise ValueError(f"DATASETS.PRETRAIN.MIX_PROPORTIONS must not all be 0, got {props}")
    elif int(p.MIX_TOTAL) != 0:
        raise ValueError(
            f"DATASETS.PRETRAIN.MIX_TOTAL ({p.MIX_TOTAL}) needs DATASETS.PRETRAIN.MIX_PROPORTIONS"
        )
    if int(p.MIX_TOTAL) < 0:
        raise ValueError(
            f"DATASETS.PRETRAIN.MIX_TOTAL must be >= 0 (0 = as many as possible), got {p.MIX_TOTAL}"
        )

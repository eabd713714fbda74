"""
Deterministic, class-stratified held-out splits for the sets that lack an official one.

The rule (datasets/README.md, "Downstream classification sets"): within each class, the images are
put in their canonical order (sorted by ``image_id``) and shuffled by a permutation drawn from
``numpy.random.RandomState(s)``, where ``s`` is the first 4 bytes (little endian) of
``sha256("<seed>/<salt>/<class_name>")``; the first ``k`` images of the permutation are held out.
A class's split therefore depends only on its own images, the seed and the salt ("test" for a
generated test split, "val" for a validation split), not on the other classes or on listing order.
"""

import hashlib
import math
from collections import OrderedDict

import numpy as np

SPLIT_SEED = 0  # the seed of every generated split
VAL_FRACTION = 0.2  # K_val: this fraction of each class of the official (or generated) train split
TEST_FRACTION = 0.2  # generated test splits: this fraction of each class of the whole set

__all__ = [
    "SPLIT_SEED",
    "VAL_FRACTION",
    "TEST_FRACTION",
    "fraction_held_out",
    "keep_per_class_held_out",
    "stratified_holdout",
    "ISLAM_TRAIN_FRACTION",
    "islam_partial_split",
]

# Islam et al.'s linear evaluation: 70% of each class to train, 30% to test
ISLAM_TRAIN_FRACTION = 0.7


def fraction_held_out(fraction):
    """
    ``n -> k``: hold out ``floor(fraction * n + 0.5)`` of a class of ``n`` images, at least 1 and at
    most ``n - 1`` when ``n >= 2`` (both sides keep every class), none when ``n < 2``.
    """

    def count(n):
        if n < 2:
            return 0
        return min(n - 1, max(1, int(math.floor(fraction * n + 0.5))))

    count.rule = (
        f"{fraction:.0%} of each class "
        "(rounded half up; at least 1, and 1 kept, per class of 2+ images)"
    )
    return count


def keep_per_class_held_out(num_keep):
    """``n -> k``: keep ``num_keep`` images of each class and hold out the rest (keep n - 1 if n <=
    num_keep)."""

    def count(n):
        if n < 2:
            return 0
        return n - min(num_keep, n - 1)

    count.rule = f"all but {num_keep} images of each class"
    return count


def _class_seed(seed, salt, class_key):
    digest = hashlib.sha256(f"{seed}/{salt}/{class_key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")


def stratified_holdout(dicts, held_out_count, seed=SPLIT_SEED, salt="val"):
    """
    Split single-label dataset dicts into (kept, held_out), class by class (see the module
    docstring).

    Args:
        dicts (list[dict]): with ``image_id`` and ``label`` (and ``class_name``, which keys the
            class's permutation; the label is used when it is absent)
        held_out_count (callable): ``n -> k``, how many of a class of ``n`` images to hold out,
            e.g. :func:`fraction_held_out` ``(0.2)``
        seed (int): the split seed
        salt (str): tells apart the splits drawn from the same images ("test", "val")
    Returns:
        (list[dict], list[dict]): kept and held-out dicts, each sorted by (label, image_id)
    """
    groups = OrderedDict()
    for d in dicts:
        if "labels" in d or int(d.get("label", -1)) < 0:
            raise ValueError(
                f"stratified_holdout needs single-label dicts; got {d.get('image_id')!r} without a "
                "label"
            )
        groups.setdefault(int(d["label"]), []).append(d)
    kept, held = [], []
    for label in sorted(groups):
        items = sorted(groups[label], key=lambda d: str(d["image_id"]))
        n = len(items)
        k = int(held_out_count(n))
        key = items[0].get("class_name", label)
        perm = np.random.RandomState(_class_seed(seed, salt, key)).permutation(n)
        out = set(perm[:k].tolist())
        for i, d in enumerate(items):
            (held if i in out else kept).append(d)
    return kept, held


def islam_partial_split(dicts, fraction=ISLAM_TRAIN_FRACTION, seed=0):
    """
    Islam et al.'s per-class split of the sets without an official one (their transfer code's
    ``create_partial_data``), reproduced draw for draw: the images are grouped by label in the order
    the labels first appear in ``dicts`` (the reference dataset's index order: CSV row order, or
    sorted class folders and files); one ``numpy.random.RandomState(seed)`` shuffles each group's
    positions in turn; the first ``int(fraction * n)`` (floor) go to train, the rest to test.

    Unlike :func:`stratified_holdout`, a class's split depends on the classes before it (one
    generator for all) and on the order of ``dicts``: pass them in the reference's order.

    Returns:
        (list[dict], list[dict]): train and test dicts, each in group order then permutation order.
    """
    groups = OrderedDict()
    for d in dicts:
        if "labels" in d or int(d.get("label", -1)) < 0:
            raise ValueError(
                f"islam_partial_split needs single-label dicts; got {d.get('image_id')!r} without "
                "a label"
            )
        groups.setdefault(int(d["label"]), []).append(d)
    rng = np.random.RandomState(seed)
    train, test = [], []
    for items in groups.values():
        order = list(range(len(items)))
        rng.shuffle(order)
        k = int(fraction * len(items))
        train += [items[i] for i in order[:k]]
        test += [items[i] for i in order[k:]]
    return train, test

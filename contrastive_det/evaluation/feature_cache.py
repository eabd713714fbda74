"""An on-disk cache of extracted frozen features (the L-BFGS probe and the few-shot protocol fit
many classifiers on the same centre-crop features; extracting them once per model and split is
what makes the 45-value regularisation sweep affordable).

An entry is identified by what determines its content, in two parts:

* the *identity* of the features: the weights (a digest of the checkpoint file), the dataset and
  split (names and where the data lives), the test transform and input normalisation, the layer;
* the *content* of the split: a digest of its dataset dicts and of the files they name
  (:func:`contrastive_det.data.fingerprint.dataset_fingerprint`).

Entries live at ``<root>/<identity>/<content>.pt`` (``{"features", "targets", "image_ids"}``) with
a ``<content>.json`` of free-form metadata beside it, both written atomically. A split edited on
disk keeps its identity and gets a new content digest: the old entry is no longer found,
:meth:`FeatureCache.stale_contents` names it (so the caller can say "dataset changed since it was
cached"), and the next :meth:`FeatureCache.save` of that identity removes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import re
from typing import Any, Sequence

import numpy as np
import torch

from ..utils.atomic import atomic_open
from ..utils.file_digest import file_sha256

__all__ = ["weights_digest", "FeatureCache"]

logger = logging.getLogger(__name__)

# Part of every identity: bump it when the stored layout changes, so old entries are no longer
# found.
_FORMAT = 2
_HEX64 = "[0-9a-f]{64}"
_KEY_RE = re.compile(rf"^({_HEX64})/({_HEX64})$")
_CONTENT_RE = re.compile(rf"^{_HEX64}$")


def weights_digest(path: str) -> str:
    """sha256 (hex) of the weights file at ``path``, memoised on (absolute path, size, mtime_ns)
    so that a file rewritten in place is hashed again.

    A model without a weights file (random initialisation) has no digest: the caller uses
    ``f"random-init-seed{seed}"`` as the ``weights`` of :meth:`FeatureCache.key` instead, so that
    differently seeded random networks do not share cache entries.

    Raises:
        ValueError: ``path`` is empty or None (see above).
        FileNotFoundError: no file at ``path``.
    """
    if not path:
        raise ValueError(
            f"weights_digest needs a weights file, got {path!r}; for a randomly initialised model "
            f"use weights='random-init-seed{{seed}}' in the cache key"
        )
    return file_sha256(path)


def _plain_image_id(image_id):
    """int or str image ids only (what ``torch.load(weights_only=True)`` reads back)."""
    if isinstance(image_id, str):
        return image_id
    if isinstance(image_id, numbers.Integral) and not isinstance(image_id, bool):
        return int(image_id)
    if torch.is_tensor(image_id) and image_id.numel() == 1 and not image_id.is_floating_point():
        return int(image_id.item())
    raise ValueError(
        f"image_ids must be ints or strings, got {image_id!r} ({type(image_id).__name__})"
    )


class FeatureCache:
    """Features of one (weights, dataset, split, transform, layer) and split content per file under
    ``root``.

    Example::

        cache = FeatureCache(os.path.join(cfg.OUTPUT_DIR, "feature_cache"))
        key = cache.key(weights=weights_digest(path), dataset="dtd_train@/data/dtd", split="train",
                        transform="resize256_centercrop224", layer="res5",
                        content=dataset_fingerprint(dicts))
        entry = cache.load(key)          # None on a miss
        if entry is None:
            if cache.stale_contents(key):
                logger.info("dataset changed since it was cached")
            cache.save(key, features, targets, image_ids, meta={"model": path})
    """

    def __init__(self, root: str | os.PathLike[str]):
        if not root:
            raise ValueError(f"FeatureCache needs a directory, got {root!r}")
        self.root = os.fspath(root)

    @staticmethod
    def key(
        *, weights: str, dataset: str, split: str, transform: str, layer: str, content: str
    ) -> str:
        """``"<identity>/<content>"``: the identity is the sha256 (hex) of the canonical JSON
        (sorted keys, no spaces) of the first five fields and the cache format version; ``content``
        is the split's content digest (64 lowercase hex characters, e.g. from
        ``dataset_fingerprint``). ``transform`` is a string describing the test transform and input
        normalisation.

        Raises:
            ValueError: a field that is not a non-empty string, or a content that is not a digest.
        """
        fields = {
            "weights": weights,
            "dataset": dataset,
            "split": split,
            "transform": transform,
            "layer": layer,
        }
        for name, value in fields.items():
            if not isinstance(value, str) or not value:
                raise ValueError(
                    f"FeatureCache.key: {name} must be a non-empty string, got {value!r}"
                )
        if not isinstance(content, str) or not _CONTENT_RE.match(content):
            raise ValueError(
                "FeatureCache.key: content must be a sha256 hex digest (dataset_fingerprint), got "
                f"{content!r}"
            )
        canonical = json.dumps(
            {"format": _FORMAT, **fields}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
        return hashlib.sha256(canonical.encode("ascii")).hexdigest() + "/" + content

    def _split_key(self, key):
        match = _KEY_RE.match(key) if isinstance(key, str) else None
        if not match:
            raise ValueError(
                f"not a FeatureCache key ('<identity>/<content>' from FeatureCache.key): {key!r}"
            )
        return match.group(1), match.group(2)

    def path(self, key: str) -> str:
        """The ``.pt`` file of ``key`` (which may not exist)."""
        identity, content = self._split_key(key)
        return os.path.join(self.root, identity, content + ".pt")

    def meta_path(self, key: str) -> str:
        """The ``.json`` metadata file beside :meth:`path`."""
        identity, content = self._split_key(key)
        return os.path.join(self.root, identity, content + ".json")

    def keys(self) -> list[str]:
        """The keys of the entries stored under ``root`` (sorted; temporary files left out)."""
        found = []
        if os.path.isdir(self.root):
            for identity in os.listdir(self.root):
                folder = os.path.join(self.root, identity)
                if _CONTENT_RE.match(identity) and os.path.isdir(folder):
                    found += [
                        f"{identity}/{n[:-3]}"
                        for n in os.listdir(folder)
                        if n.endswith(".pt") and _CONTENT_RE.match(n[:-3])
                    ]
        return sorted(found)

    def stale_contents(self, key: str) -> list[str]:
        """Content digests of the other entries of ``key``'s identity (the same features of the
        split as it was when they were cached), sorted; [] when there are none."""
        identity, content = self._split_key(key)
        folder = os.path.join(self.root, identity)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        others = {n[:-3] for n in names if n.endswith(".pt") and _CONTENT_RE.match(n[:-3])}
        return sorted(others - {content})

    def load(self, key: str) -> dict[str, Any] | None:
        """The entry of ``key``: ``{"features": NxD float tensor, "targets": tensor of N rows,
        "image_ids": list of N}`` on the CPU, or None when there is none. An unreadable or
        inconsistent file is a miss too: a warning is logged and the next :meth:`save`
        overwrites it.
        """
        path = self.path(key)
        if not os.path.exists(path):
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            features, targets, image_ids = entry["features"], entry["targets"], entry["image_ids"]
            if not (
                torch.is_tensor(features) and features.dim() == 2 and features.is_floating_point()
            ):
                raise ValueError(f"features are not an NxD float tensor: {type(features).__name__}")
            n = features.shape[0]
            if not (torch.is_tensor(targets) and targets.dim() >= 1 and targets.shape[0] == n):
                raise ValueError(f"targets do not have {n} rows")
            if not (isinstance(image_ids, list) and len(image_ids) == n):
                raise ValueError(f"image_ids are not a list of {n}")
        except (
            Exception
        ) as e:  # a truncated or foreign file: recompute rather than fail the evaluation
            logger.warning(
                f"Feature cache file {path} is unreadable ({type(e).__name__}: {e}); "
                "treating it as a miss, it will be overwritten"
            )
            return None
        return {"features": features, "targets": targets, "image_ids": image_ids}

    def save(
        self,
        key: str,
        features: torch.Tensor,
        targets: torch.Tensor | np.ndarray,
        image_ids: Sequence[int | str],
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Store an entry atomically (a temporary file renamed into place: readers see the old
        entry or the complete new one, two concurrent writers of one entry leave one of their
        complete files, and a failed save leaves no file), then ``meta`` as JSON beside it; then
        remove the entries of the same identity with another content (:meth:`stale_contents`).

        Args:
            key: from :meth:`key`.
            features: NxD floating-point tensor (stored on the CPU, dtype kept).
            targets: tensor (or array) with N rows (class ids, or NxC multi-label indicators).
            image_ids: N ints or strings.
            meta: JSON-serialisable dict (e.g. the weights path, the config); None = {}.

        Raises:
            ValueError: shapes or image ids that do not fit, or ``meta`` not JSON-serialisable
                (checked before anything is written).
        """
        path, meta_path = self.path(key), self.meta_path(key)
        features = torch.as_tensor(features).detach().cpu().contiguous()
        if features.dim() != 2 or not features.is_floating_point():
            raise ValueError(
                f"features must be an NxD floating-point tensor, got {features.dtype} of shape "
                f"{tuple(features.shape)}"
            )
        n = features.shape[0]
        targets = (
            torch.as_tensor(np.asarray(targets) if not torch.is_tensor(targets) else targets)
            .detach()
            .cpu()
            .contiguous()
        )
        if targets.dim() < 1 or targets.shape[0] != n:
            raise ValueError(f"targets must have N={n} rows, got shape {tuple(targets.shape)}")
        image_ids = [_plain_image_id(i) for i in image_ids]
        if len(image_ids) != n:
            raise ValueError(f"image_ids must have N={n} entries, got {len(image_ids)}")
        try:
            meta_text = json.dumps({} if meta is None else meta, indent=2, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"FeatureCache.save: meta must be JSON-serialisable: {e}") from None
        with atomic_open(path, "wb") as f:
            torch.save({"features": features, "targets": targets, "image_ids": image_ids}, f)
        with atomic_open(meta_path, "w") as f:
            f.write(meta_text + "\n")
        # the same features of an older version of the split: never found again, only taking space
        folder = os.path.dirname(path)
        for stale in self.stale_contents(key):
            for ext in (".pt", ".json"):
                try:
                    os.remove(os.path.join(folder, stale + ext))
                except FileNotFoundError:  # a concurrent save of the same identity removed it first
                    pass

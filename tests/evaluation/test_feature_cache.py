"""evaluation/feature_cache.py: keys, round trips, atomic saves, corrupt files, weights digests."""

import hashlib
import json
import logging
import os

import numpy as np
import pytest
import torch

from contrastive_det.evaluation import FeatureCache, weights_digest

FIELDS = {
    "weights": "ab" * 32,
    "dataset": "dtd_train",
    "split": "train",
    "transform": "resize256_crop224",
    "layer": "res5",
    "content": "cd" * 32,
}


def test_round_trip(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    key = cache.key(**FIELDS)
    assert cache.load(key) is None  # a miss before anything is saved
    features, targets = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    ids = [
        np.int64(10),
        11,
        12,
        13,
        14,
    ]  # numpy ints stored as plain ints (readable with weights_only)
    cache.save(key, features, targets, ids, meta={"weights_path": "/x/model.pth", "num_images": 5})
    entry = cache.load(key)
    assert set(entry) == {"features", "targets", "image_ids"}
    assert torch.equal(entry["features"], features) and torch.equal(entry["targets"], targets)
    assert entry["image_ids"] == [10, 11, 12, 13, 14] and all(
        type(i) is int for i in entry["image_ids"]
    )
    assert json.loads(open(cache.meta_path(key)).read()) == {
        "weights_path": "/x/model.pth",
        "num_images": 5,
    }
    identity, content = key.split("/")
    assert content == FIELDS["content"]
    assert cache.path(key) == os.path.join(str(tmp_path / "cache"), identity, content + ".pt")
    # multi-label targets and string ids
    cache.save(key, features.double(), torch.tensor([[1, 0, -1]] * 5), list("abcde"), meta=None)
    entry = cache.load(key)
    assert (
        entry["features"].dtype == torch.float64
        and entry["targets"].shape == (5, 3)
        and entry["image_ids"] == list("abcde")
    )


def test_key_depends_on_every_field_and_only_on_them():
    key = FeatureCache.key(**FIELDS)
    assert len(key) == 129 and key == FeatureCache.key(**dict(reversed(list(FIELDS.items()))))
    keys = {key}
    for name in FIELDS:
        keys.add(
            FeatureCache.key(
                **{**FIELDS, name: FIELDS[name] + "x" if name != "content" else "ce" * 32}
            )
        )
    assert len(keys) == 1 + len(FIELDS)
    # the content is the second part, the other fields make the identity (the first part)
    assert FeatureCache.key(**{**FIELDS, "content": "ce" * 32}).split("/")[0] == key.split("/")[0]
    with pytest.raises(ValueError, match="content must be a sha256 hex digest"):
        FeatureCache.key(**{**FIELDS, "content": "dtd"})
    # a canonical encoding: moving characters between fields gives another key
    assert FeatureCache.key(
        **{**FIELDS, "dataset": "dtd", "split": "_traintrain"}
    ) != FeatureCache.key(**{**FIELDS, "dataset": "dtd_train", "split": "train"})
    with pytest.raises(ValueError, match="weights must be a non-empty string, got None"):
        FeatureCache.key(**{**FIELDS, "weights": None})
    with pytest.raises(ValueError, match="not a FeatureCache key"):
        FeatureCache("/tmp").path("../../etc/passwd")


def test_failing_save_leaves_no_file(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    key = cache.key(**FIELDS)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.save(key, torch.randn(2, 3), torch.tensor([0, 1]), [0, 1], meta={})
    folder = os.path.dirname(cache.path(key))
    # neither the entry, nor its metadata, nor a temporary file
    assert not os.path.exists(folder) or os.listdir(folder) == []
    monkeypatch.undo()
    # an existing entry survives a failed overwrite
    cache.save(key, torch.ones(2, 3), torch.tensor([0, 1]), [0, 1], meta={})
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        cache.save(key, torch.zeros(2, 3), torch.tensor([0, 1]), [0, 1], meta={})
    monkeypatch.undo()
    assert torch.equal(cache.load(key)["features"], torch.ones(2, 3))
    assert sorted(os.listdir(folder)) == [FIELDS["content"] + ".json", FIELDS["content"] + ".pt"]


def test_bad_meta_or_shapes_fail_before_writing(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key(**FIELDS)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        cache.save(key, torch.randn(2, 3), torch.tensor([0, 1]), [0, 1], meta={"path": object()})
    with pytest.raises(ValueError, match="image_ids must have N=2 entries, got 3"):
        cache.save(key, torch.randn(2, 3), torch.tensor([0, 1]), [0, 1, 2])
    with pytest.raises(ValueError, match="targets must have N=2 rows"):
        cache.save(key, torch.randn(2, 3), torch.tensor([0, 1, 1]), [0, 1])
    assert not os.path.exists(cache.path(key)) and not os.path.exists(cache.meta_path(key))


@pytest.mark.parametrize("content", [b"", b"not a torch file", "truncated"])
def test_corrupt_file_is_a_logged_miss_and_gets_overwritten(tmp_path, caplog, content):
    cache = FeatureCache(tmp_path)
    key = cache.key(**FIELDS)
    if content == "truncated":
        cache.save(key, torch.randn(50, 40), torch.zeros(50, dtype=torch.long), list(range(50)))
        content = open(cache.path(key), "rb").read()[:-100]
    os.makedirs(os.path.dirname(cache.path(key)), exist_ok=True)
    with open(cache.path(key), "wb") as f:
        f.write(content)
    with caplog.at_level(logging.WARNING, logger="contrastive_det.evaluation.feature_cache"):
        assert cache.load(key) is None
    assert "unreadable" in caplog.text and cache.path(key) in caplog.text
    cache.save(key, torch.ones(2, 3), torch.tensor([0, 1]), ["a", "b"])
    assert cache.load(key)["image_ids"] == ["a", "b"]


def test_inconsistent_entry_is_a_miss(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    key = cache.key(**FIELDS)
    os.makedirs(os.path.dirname(cache.path(key)))
    torch.save(
        {"features": torch.randn(3, 2), "targets": torch.zeros(2), "image_ids": [0, 1, 2]},
        cache.path(key),
    )
    with caplog.at_level(logging.WARNING):
        assert cache.load(key) is None
    assert "targets do not have 3 rows" in caplog.text


def test_weights_digest(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"weights v1")
    assert weights_digest(str(path)) == hashlib.sha256(b"weights v1").hexdigest()
    # memoised on (path, size, mtime_ns): same size and mtime -> the remembered digest
    st = os.stat(path)
    path.write_bytes(b"weights v2")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights_digest(str(path)) == hashlib.sha256(b"weights v1").hexdigest()
    # a new mtime (or size) -> hashed again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert weights_digest(str(path)) == hashlib.sha256(b"weights v2").hexdigest()
    path.write_bytes(b"weights v3, longer")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights_digest(path) == hashlib.sha256(b"weights v3, longer").hexdigest()
    for empty in ("", None):
        with pytest.raises(ValueError, match="random-init-seed"):
            weights_digest(empty)
    with pytest.raises(FileNotFoundError):
        weights_digest(str(tmp_path / "missing.pth"))


def test_a_new_content_is_a_miss_that_names_the_stale_entry_and_replaces_it(tmp_path):
    cache = FeatureCache(tmp_path)
    old, new = cache.key(**FIELDS), cache.key(**{**FIELDS, "content": "ef" * 32})
    other = cache.key(**{**FIELDS, "layer": "res4"})
    cache.save(old, torch.ones(2, 3), torch.tensor([0, 1]), [0, 1])
    cache.save(other, torch.ones(2, 3), torch.tensor([0, 1]), [0, 1])
    assert cache.load(new) is None
    assert cache.stale_contents(new) == ["cd" * 32] and cache.stale_contents(old) == []
    assert cache.stale_contents(other) == []  # another identity is not the same features
    cache.save(new, torch.zeros(2, 3), torch.tensor([1, 0]), [0, 1])
    assert not os.path.exists(cache.path(old)) and not os.path.exists(cache.meta_path(old))
    assert (
        torch.equal(cache.load(new)["targets"], torch.tensor([1, 0]))
        and cache.load(other) is not None
    )
    assert cache.stale_contents(new) == []


def test_two_concurrent_writers_of_one_entry_leave_a_complete_file(tmp_path):
    """Two processes save the same entry at once: every read in between and after gets a whole
    entry."""
    import multiprocessing as mp

    cache = FeatureCache(tmp_path)
    key = cache.key(**FIELDS)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_save_many, args=(str(tmp_path), key, value)) for value in (1.0, 2.0)
    ]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        entry = cache.load(key)
        assert entry is None or float(entry["features"][0, 0]) in (1.0, 2.0)
    assert all(p.exitcode == 0 for p in procs)
    entry = cache.load(key)
    assert entry is not None and entry["features"].shape == (200, 64)
    assert len(set(entry["features"].flatten().tolist())) == 1
    assert sorted(os.listdir(os.path.dirname(cache.path(key)))) == [
        FIELDS["content"] + ".json",
        FIELDS["content"] + ".pt",
    ]


def _save_many(root, key, value):
    cache = FeatureCache(root)
    for _ in range(20):
        cache.save(
            key, torch.full((200, 64), value), torch.zeros(200, dtype=torch.long), list(range(200))
        )

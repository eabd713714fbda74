"""utils/atomic.py: complete-or-untouched writes, the usual file mode, a durable rename."""

import json
import os
import stat

import pytest

from contrastive_det.utils import atomic
from contrastive_det.utils.atomic import atomic_open, atomic_write_json


@pytest.fixture
def umask():
    """Set the process umask for one test; restored afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
@pytest.mark.parametrize("mode", ["w", "wb"])
def test_new_file_mode_follows_the_umask(tmp_path, umask, mask, expected, mode):
    umask(mask)
    path = tmp_path / "results.json"
    with atomic_open(str(path), mode) as f:
        f.write("{}" if mode == "w" else b"{}")
    assert stat.S_IMODE(os.stat(path).st_mode) == expected  # mkstemp would give 0600
    # the same mode as a plain open() under that umask
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert stat.S_IMODE(os.stat(plain).st_mode) == expected


def test_replacing_an_existing_file_also_gets_the_umask_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "last_checkpoint"
    atomic_write_json(str(path), 1)
    atomic_write_json(str(path), 2)
    assert json.loads(path.read_text()) == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file", None))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic_write_json(str(tmp_path / "metrics.json"), {"AP": 1.0})
    assert [e[0] for e in events] == ["fsync-file", "replace", "fsync-dir"]
    assert events[1][1] == "metrics.json"


def test_readers_see_old_content_until_the_write_completes(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(str(path), {"v": 1})
    with atomic_open(str(path)) as f:
        f.write('{"v": 2, "partial": ')
        f.flush()
        assert json.loads(path.read_text()) == {"v": 1}  # never half-written
        f.write("true}\n")
    assert json.loads(path.read_text()) == {"v": 2, "partial": True}
    assert os.listdir(tmp_path) == ["results.json"]


def test_failure_keeps_old_content_and_removes_the_temporary_file(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(str(path), {"v": 1})
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_open(str(path), "wb") as f:
            f.write(b"half")
            raise RuntimeError("interrupted")
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["results.json"]


def test_creates_missing_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "results.json"
    atomic_write_json(str(path), [1])
    assert json.loads(path.read_text()) == [1]


def test_stale_temporaries_of_a_killed_save_are_removed_and_nothing_else(tmp_path):
    import time as _time

    from contrastive_det.utils.atomic import remove_stale_temporaries

    old = tmp_path / ".model_0000004.pth.0123456789ab.tmp"
    fresh = tmp_path / ".model_0000005.pth.ba9876543210.tmp"  # a save in progress
    keep = [tmp_path / "model_0000004.pth", tmp_path / "notes.tmp", tmp_path / ".x.tmp"]
    for p in [old, fresh, *keep]:
        p.write_bytes(b"x")
    past = _time.time() - 3600
    for p in [old, *keep]:
        os.utime(p, (past, past))
    assert remove_stale_temporaries(str(tmp_path)) == [old.name]
    assert not old.exists() and fresh.exists() and all(p.exists() for p in keep)


def test_a_new_checkpointer_clears_what_a_killed_save_left(tmp_path):
    import time as _time

    import torch

    from contrastive_det.engine.checkpoint import AtomicDetectionCheckpointer

    left = tmp_path / ".model_0000009.pth.00000000abcd.tmp"
    left.write_bytes(b"half a checkpoint")
    os.utime(left, (_time.time() - 600, _time.time() - 600))
    AtomicDetectionCheckpointer(torch.nn.Linear(2, 2), str(tmp_path))
    assert not left.exists()

"""
The study folder's bookkeeping, each file written atomically:

* ``plan.json``: the expanded runs (id, kind, command, dependencies, folder, what the report needs).
* ``state.json``: each run's status ("pending", "running", "done", "failed", "skipped"), its
  digest, attempts, seconds and error; rewritten after every change, so a killed study knows
  where it stopped.
* ``<run folder>/study_run.json``: written when a run succeeds: its digest. A run is done when its
  outputs exist and this digest equals the digest the study computes for it now.

A run's digest (:func:`run_digest`) is the sha256 of its command, of the fully merged config of
the config file it names (``_BASE_`` chain and overrides, as the CLI loads it; the keys whose
value differs from the package's defaults, so that a new version adding a key with a default
does not redo finished runs), of the content of
the files outside the study it reads (``Run.inputs``: a brought checkpoint; and the files that the
config keys of :data:`CONTENT_KEYS` name, e.g. a label map) and of the digests of the runs it
depends on: a changed config file, override, seed, checkpoint file, label map or upstream run
changes it, and the run is done again. It also takes the content of every registered dataset the
config names, in any key (``DATASETS.TRAIN``/``TEST``, ``CLASSIFICATION.VAL_DATASET``,
``TEST.KNN.BANK``, ...): the :func:`~contrastive_det.data.fingerprint.dataset_fingerprint` of its
dicts (every annotation, label and file name, each file's size, mtime and inode), so that an image
replaced, a folder renamed or an annotation edited on disk redoes the runs that read it. A driver
loads each dataset once (``data_stamps``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from detectron2.data import DatasetCatalog

from ..config import get_cfg
from ..data import register_datasets_from_config
from ..data.fingerprint import dataset_fingerprint
from ..engine.checkpoint import flat_config
from ..engine.defaults import load_config
from ..utils.atomic import atomic_write_json
from ..utils.config_keys import get_key
from ..utils.file_digest import file_sha256

if TYPE_CHECKING:
    from .spec import Run

__all__ = [
    "StudyState",
    "StudyLock",
    "StudyLocked",
    "run_digest",
    "dataset_stamps",
    "config_fingerprint",
    "plan_digests",
    "is_done",
    "mark_done",
    "RUN_RECORD",
    "PLAN_FILE",
    "STATE_FILE",
    "LOCK_FILE",
    "CONTENT_KEYS",
]

PLAN_FILE = "plan.json"
STATE_FILE = "state.json"
RUN_RECORD = "study_run.json"
LOCK_FILE = "driver.lock"
STATUSES = ("pending", "running", "done", "failed", "skipped")
# config keys whose value is a file the run reads: the file's content is part of the run's digest
# (the key's value, a path, is already in the merged config; editing the file in place must count
# too)
CONTENT_KEYS = ("CLASSIFICATION.LABEL_MAP", "DATASETS.PRETRAIN.LABEL_MAP")


def _merged_config(argv):
    """The merged config of ``--config-file`` in ``argv`` (with the trailing KEY VALUE pairs), or
    None for a command without one or whose file does not exist yet."""
    if "--config-file" not in argv:
        return None
    i = argv.index("--config-file")
    config = argv[i + 1]
    if not os.path.isfile(config):
        return None
    opts = [a for a in argv[i + 2 :]]
    # the KEY VALUE pairs follow the flags of the tools' parsers; only the pairs matter here
    while opts and opts[0].startswith("--"):
        opts = opts[1:]
    return load_config(argparse.Namespace(config_file=config, opts=opts))


def config_fingerprint(cfg: Any, defaults: Any = None) -> str:
    """
    The text a run's digest takes from its merged config: one ``KEY: value`` line per leaf whose
    value differs from ``defaults`` (the package's :func:`~contrastive_det.config.get_cfg`), keys
    sorted. A key that a newer version adds with its default leaves the text unchanged; any value
    a config file or override sets apart from the default is in it.
    """

    # flat_config writes values as JSON reads them back: a tuple and a list of the same items alike
    base = flat_config(defaults if defaults is not None else get_cfg())
    missing = object()
    lines = [
        f"{key}: {json.dumps(value, sort_keys=True)}"
        for key, value in flat_config(cfg).items()
        if base.get(key, missing) != value
    ]
    return "\n".join(lines)


def _content_files(cfg):
    """The non-empty file paths that the keys of :data:`CONTENT_KEYS` hold in ``cfg``."""
    values = (get_key(cfg, key, None) for key in CONTENT_KEYS)
    return [v for v in values if isinstance(v, str) and v]


def dataset_stamps(cfg: Any, cache: dict[str, str] | None = None) -> list[str]:
    """
    ``["name:fingerprint", ...]`` of every registered dataset whose name is a value (or an item of
    a value) of ``cfg``, its ``DATASETS.CUSTOM`` entries registered first, names sorted. A dataset
    that cannot be read (missing, bad layout) stamps as unreadable: the run itself says why.
    ``cache``: {key: fingerprint} shared by the runs of one driver, so each dataset is read once;
    the key holds the name and its ``DATASETS.CUSTOM`` entry (two runs may declare one name
    differently).
    """
    cache = {} if cache is None else cache
    custom = {}
    try:
        register_datasets_from_config(cfg)
        custom = {str(e.get("NAME")): e for e in cfg.DATASETS.CUSTOM}
    except Exception as e:  # the run fails on it with the full message
        return [f"DATASETS.CUSTOM: unreadable ({type(e).__name__})"]
    registered = set(DatasetCatalog.list())
    names = set()
    for value in flat_config(cfg).values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v in registered:
                names.add(v)
    stamps = []
    for name in sorted(names):
        key = f"{name}|{json.dumps(custom.get(name), sort_keys=True, default=str)}"
        if key not in cache:
            try:
                cache[key] = dataset_fingerprint(DatasetCatalog.get(name))
            except Exception as e:  # any reader error: the run itself reports it
                cache[key] = f"unreadable ({type(e).__name__})"
        stamps.append(f"{name}:{cache[key]}")
    return stamps


def run_digest(
    run: Run, dep_digests: Iterable[str], data_stamps: dict[str, str] | None = None
) -> str:
    """sha256 of the run's command, merged config, datasets and dependencies' digests (see the
    module docstring); ``data_stamps``: the driver's cache of dataset fingerprints."""
    h = hashlib.sha256()
    h.update(json.dumps(run.argv[1:]).encode())
    h.update(os.path.basename(run.argv[0]).encode())
    cfg = _merged_config(run.argv)
    h.update((config_fingerprint(cfg) if cfg is not None else "").encode())
    for stamp in dataset_stamps(cfg, data_stamps) if cfg is not None else []:
        h.update(stamp.encode())
    files = list(getattr(run, "inputs", ())) + (_content_files(cfg) if cfg is not None else [])
    for path in files:  # a brought checkpoint, a label map: changed on disk = another run
        h.update(f"{path}:{file_sha256(path) if os.path.isfile(path) else 'missing'}".encode())
    for d in dep_digests:
        h.update(d.encode())
    return h.hexdigest()


def plan_digests(
    runs: Sequence[Run], data_stamps: dict[str, str] | None = None
) -> dict[str, str | None]:
    """{run id: digest, or None while a dependency is not done under its own digest}; ``runs`` in
    dependency order (as :func:`~.expansion.expand` lists them); ``data_stamps`` as in
    :func:`run_digest` (a new cache when None)."""
    by_id = {r.id: r for r in runs}
    data_stamps = {} if data_stamps is None else data_stamps
    digests = {}
    for r in runs:
        if all(digests.get(d) and is_done(by_id[d], digests[d]) for d in r.deps):
            digests[r.id] = run_digest(r, [digests[d] for d in r.deps], data_stamps)
        else:
            digests[r.id] = None
    return digests


def _record_path(run):
    return os.path.join(run.out_dir, RUN_RECORD)


def is_done(run: Run, digest: str | None) -> bool:
    """The run's outputs exist and its record carries ``digest``."""
    if not all(os.path.isfile(p) for p in run.outputs):
        return False
    try:
        with open(_record_path(run)) as f:
            return json.load(f).get("digest") == digest
    except (OSError, ValueError):
        return False


def mark_done(run: Run, digest: str, seconds: float) -> None:
    atomic_write_json(
        _record_path(run),
        {
            "id": run.id,
            "digest": digest,
            "seconds": seconds,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


class StudyState:
    """``state.json`` of a study folder: {run id: {status, digest, attempts, seconds, error,
    log}}."""

    def __init__(self, study_dir: str, study_digest: str):
        self.path = os.path.join(study_dir, STATE_FILE)
        self.study_digest = study_digest
        self.runs = {}
        if os.path.isfile(self.path):
            with open(self.path) as f:
                try:
                    self.runs = json.load(f).get("runs", {})
                except ValueError:
                    # only a torn copy could be unreadable; atomic writes make it unlikely
                    self.runs = {}

    def get(self, run_id: str) -> dict[str, Any]:
        return self.runs.setdefault(run_id, {"status": "pending", "attempts": 0})

    def set(self, run_id: str, **fields: Any) -> None:
        entry = self.get(run_id)
        status = fields.get("status")
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        entry.update(fields)
        self.save()

    def save(self) -> None:
        atomic_write_json(
            self.path,
            {
                "study_digest": self.study_digest,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "runs": self.runs,
            },
        )

    def counts(self, ids: Iterable[str]) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for i in ids:
            out[self.get(i)["status"]] += 1
        return out


class StudyLocked(RuntimeError):
    """Another driver runs this study."""


class StudyLock:
    """
    One driver per study folder: an exclusive ``flock`` on ``<study>/driver.lock``, which records
    the holder's pid, host and start time. A second driver stops with :class:`StudyLocked` naming
    the first (two drivers would submit the same runs twice and overwrite each other's
    ``state.json``). The kernel releases the lock when the holder dies, however it dies.
    """

    def __init__(self, study_dir: str):
        self.path = os.path.join(study_dir, LOCK_FILE)
        self._file = None

    def __enter__(self) -> StudyLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            try:
                holder = json.loads(f.read() or "{}")
            except ValueError:
                holder = {}
            f.close()
            raise StudyLocked(
                f"{os.path.dirname(self.path)} is being run by another driver (pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, started "
                f"{holder.get('started', '?')}; lock {self.path}); "
                "wait for it to finish or stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
            )
        )
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

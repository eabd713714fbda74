"""
What each run of a study asks of the cluster, by kind of run.

A run's resources are a dict of :data:`RESOURCE_KEYS`; they come, later entries winning, from

1. the base of its kind: the command line's ``--gpus-per-node``, ``--cpus-per-task``, ``--mem-gb``,
   ``--time`` and ``--nodes`` for pretraining, transfer and grid runs; :data:`KIND_DEFAULTS` for
   conversions (no GPU, 2 CPUs, one hour: a conversion never inherits a training job's 8 GPUs and
   days) and select runs (no GPU, 1 CPU, 10 minutes);
2. the study file's ``resources: {pretrain: {...}, convert: {...}, transfer: {...}}``;
3. a transfer entry's own ``resources: {...}`` (e.g. 1 GPU and 2 hours for a few-shot or probe run).

On a cluster the report's pictures run as one job of kind "report" (2 CPUs, two hours by default).

``--num-gpus`` of a training CLI follows its resources (``gpus`` per node / ``tasks_per_node``)
unless ``--num-gpus`` was given to the study.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

__all__ = [
    "RESOURCE_KEYS",
    "KINDS",
    "TRAINING_KINDS",
    "KIND_DEFAULTS",
    "check_resources",
    "run_resources",
    "submitit_parameters",
    "num_gpus_per_task",
    "partition_time_limit",
    "partition_has_gpus",
    "parse_slurm_time",
]

# key -> (type, meaning)
RESOURCE_KEYS = {
    "gpus": (int, "GPUs per node"),
    "cpus": (int, "CPUs per task"),
    "mem_gb": (int, "memory per node in GB"),
    "time": (int, "minutes per job (requeued with --resume on timeout)"),
    "nodes": (int, "nodes per run"),
    "tasks_per_node": (int, "tasks per node (each runs the CLI with one --machine-rank)"),
}
KINDS = ("pretrain", "convert", "transfer", "grid", "select", "report")
TRAINING_KINDS = ("pretrain", "transfer", "grid")  # the kinds that train a network (a GPU's work)
# "grid": a transfer's selection runs (train like the transfer); "select": the choice among them
# "report": the report's pictures (UMAP embeddings, detection pictures) as one job on a cluster
KIND_DEFAULTS = {
    "convert": {"gpus": 0, "cpus": 2, "time": 60, "nodes": 1, "tasks_per_node": 1},
    "select": {"gpus": 0, "cpus": 1, "time": 10, "nodes": 1, "tasks_per_node": 1},
    "report": {"gpus": 0, "cpus": 2, "time": 120, "nodes": 1, "tasks_per_node": 1},
}


def check_resources(where: str, value: Any) -> tuple[dict[str, int] | None, str | None]:
    """A ``resources`` mapping of a study file: known keys, positive integers (0 allowed for gpus).
    Returns (ok dict, error message or None)."""
    if not isinstance(value, dict):
        return None, f"{where}: expected a mapping of {', '.join(RESOURCE_KEYS)}, got {value!r}"
    for key, v in value.items():
        if key not in RESOURCE_KEYS:
            return None, f"{where}.{key}: unknown resource; known: {', '.join(RESOURCE_KEYS)}"
        low = 0 if key == "gpus" else 1
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            return (
                None,
                f"{where}.{key}: expected an integer >= {low} ({RESOURCE_KEYS[key][1]}), got {v!r}",
            )
    return dict(value), None


def run_resources(
    kind: str,
    cli: Mapping[str, int | None] | None,
    study_resources: Mapping[str, Mapping[str, int]] | None = None,
    entry_resources: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """The resources of one run of ``kind`` (see the module docstring). ``cli``: the command line's
    values."""
    base = dict(KIND_DEFAULTS.get(kind) or cli or {})
    base.update((study_resources or {}).get(kind) or {})
    base.update(entry_resources or {})
    return {k: v for k, v in base.items() if v is not None}


def num_gpus_per_task(resources: Mapping[str, int]) -> int:
    """``--num-gpus`` of a training CLI with these resources (0: the CLI's default)."""
    gpus = resources.get("gpus") or 0
    return gpus // max(1, resources.get("tasks_per_node", 1))


def submitit_parameters(resources: Mapping[str, int]) -> dict[str, int]:
    """submitit's ``update_parameters`` keywords for these resources."""
    names = {
        "gpus": "gpus_per_node",
        "cpus": "cpus_per_task",
        "mem_gb": "mem_gb",
        "time": "timeout_min",
        "nodes": "nodes",
        "tasks_per_node": "tasks_per_node",
    }
    return {names[k]: v for k, v in resources.items() if k in names}


def parse_slurm_time(text: str) -> float | None:
    """Minutes of a SLURM time limit ("infinite", "30", "1:00:00", "2-00:00:00", "UNLIMITED"); None
    = no limit."""
    text = text.strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        minutes = parts[0] if days == 0 else parts[0] * 60  # "M" alone; "D-H"
        return days * 1440 + minutes
    if len(parts) == 2:
        h_or_m, m_or_s = parts
        return days * 1440 + (h_or_m * 60 + m_or_s if days else h_or_m + m_or_s / 60)
    h, m, s = parts
    return days * 1440 + h * 60 + m + s / 60


def partition_time_limit(partition: str | None = None) -> float | None:
    """The time limit in minutes of ``partition`` (the default partition when None) from ``sinfo``;
    None when it has none or sinfo is not there."""
    if shutil.which("sinfo") is None:
        return None
    out = subprocess.run(["sinfo", "-h", "-o", "%P %l"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"sinfo failed: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        name, _, limit = line.strip().partition(" ")
        default = name.endswith("*")
        name = name.rstrip("*")
        if (partition is None and default) or name == partition:
            return parse_slurm_time(limit)
    if partition is not None:
        raise RuntimeError(
            f"SLURM has no partition {partition!r} (sinfo lists: "
            f"{', '.join(line.split()[0] for line in out.stdout.splitlines() if line.strip())})"
        )
    return None


def partition_has_gpus(partition: str | None = None) -> bool:
    """Whether ``partition`` (None: the default one) has GPUs (``sinfo``'s generic resources name
    "gpu")."""
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%P %G"], capture_output=True, text=True, timeout=60)
    for line in out.stdout.splitlines():
        name, _, gres = line.strip().partition(" ")
        if (partition is None and name.endswith("*")) or name.rstrip("*") == partition:
            if "gpu" in gres:
                return True
    return False

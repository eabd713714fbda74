"""
OUTPUT_DIR/results.json: one file per run (and one per seed sweep) that studies aggregate.

The one place that writes, reads and summarises these files: :func:`build_results` and
:func:`write_results` (a run), :func:`read_results` (any reader: the seed sweep, the study report,
the tools), :func:`summarize_values` (mean, sample std, n and values: the seed sweep and the report)
and :func:`headline_keys` (which metrics a task puts first).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import statistics
from typing import Iterable, Sequence

import torch
import torchvision

import detectron2
from detectron2.config import CfgNode
from detectron2.evaluation.testing import flatten_results_dict

from ..utils.atomic import atomic_write_json
from ..version import __version__

RESULTS_FILE = "results.json"


def config_digest(cfg: CfgNode) -> str:
    """sha256 of the fully merged config as YAML: equal digests mean equal configs."""
    return hashlib.sha256(cfg.dump().encode("utf-8")).hexdigest()


def versions() -> dict[str, str | None]:
    """Versions of everything that can change a number."""
    return {
        "contrastive_det": __version__,
        "detectron2": detectron2.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def normalize_metrics(
    results: dict | None, test_datasets: Sequence[str]
) -> dict[str, dict[str, float]]:
    """
    detectron2's ``test()`` returns ``{dataset: {task: {metric: value}}}``, or the inner dict
    alone when there is one dataset. Return ``{dataset: {"task/metric": value}}`` always.
    """
    if not results:
        return {}
    if len(test_datasets) == 1 and set(results.keys()) != set(test_datasets):
        results = {test_datasets[0]: results}
    return {name: flatten_results_dict(res) for name, res in results.items()}


def build_results(
    cfg: CfgNode,
    metrics: dict[str, dict[str, float]],
    *,
    task: str,
    method: str,
    iteration: int | None,
    config_file: str = "",
    seed: int | None = None,
    extra: dict | None = None,
) -> dict:
    """
    The results record of one run (see docs/design.md section 3).

    Args:
        cfg: the run's frozen config.
        metrics: ``{dataset: {"task/metric": value}}`` (see :func:`normalize_metrics`).
        task (str): the task's name (e.g. "detection").
        method (str): the pretraining method behind the weights (e.g. "mocov2", "random-init").
        iteration (int or None): training iterations completed by the evaluated model (the same
            number whether the record is written at the end of training or by ``--eval-only``);
            None when the weights do not record it.
        config_file (str): the config file given on the command line.
        seed (int): the run's seed; default ``cfg.SEED``.
        extra (dict or None): task-specific fields (e.g. the classification protocol), added after
            the common ones (they cannot replace them).
    """
    record = {
        "task": task,
        "method": method,
        "weights": cfg.MODEL.WEIGHTS,
        "weights_source": cfg.RESULTS.WEIGHTS_SOURCE or cfg.MODEL.WEIGHTS,
        "dataset": {"train": list(cfg.DATASETS.TRAIN), "test": list(cfg.DATASETS.TEST)},
        "metrics": metrics,
        "seed": cfg.SEED if seed is None else seed,
        "iteration": iteration,
        "config_file": config_file,
        "config_digest": config_digest(cfg),
        "output_dir": os.path.abspath(cfg.OUTPUT_DIR),
        "versions": versions(),
    }
    for key, value in (extra or {}).items():
        record.setdefault(key, value)
    return record


def write_results(output_dir: str, record: dict) -> str:
    path = os.path.join(output_dir, RESULTS_FILE)
    atomic_write_json(path, record)
    return path


def read_results(path: str) -> dict:
    """
    The record of ``path``: a results.json file or the run folder holding it. A missing or
    unreadable file raises an error naming it (FileNotFoundError, ValueError).
    """
    if os.path.isdir(path) or not path.endswith(".json"):
        path = os.path.join(path, RESULTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: no results file (a run writes it when its final evaluation ends)"
        )
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable results file: {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ValueError(
            f"{path}: not a results file (expected a JSON object with a 'metrics' mapping)"
        )
    return record


def summarize_values(values: Iterable[float]) -> dict:
    """
    ``{"mean", "std", "n", "values"}`` of a list of numbers: the mean, the sample standard deviation
    (n-1; None for one value: there is no spread to show), n and the values. A NaN or inf value
    makes the mean NaN: a mean over some of the runs would not be the mean of the runs.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize_values needs at least one value")
    finite = all(map(math.isfinite, values))
    return {
        "mean": statistics.fmean(values) if finite else float("nan"),
        "std": statistics.stdev(values) if len(values) > 1 and finite else None,
        "n": len(values),
        "values": values,
    }


def headline_keys(patterns: Sequence[str], names: Iterable[str]) -> list[str]:
    """
    The metric keys of ``names`` that a task puts first, in the order of ``patterns`` (the task's
    ``headline_metrics``: regular expressions matched in full, e.g. ``few_shot/\\d+way_\\d+shot``),
    then by name.
    """
    keys = []
    for pattern in patterns:
        keys += sorted(n for n in names if re.fullmatch(pattern, n) and n not in keys)
    return keys


def aggregate_seed_results(records: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """
    Mean and sample standard deviation (n-1) of every metric over per-seed records.

    Returns ``{dataset: {metric: {"mean", "std", "n", "values"}}}``; a metric missing from some
    seed raises, since a mean over a different set of runs would be misleading.
    """
    if not records:
        raise ValueError("aggregate_seed_results needs at least one per-seed record")
    keys = {(d, m) for r in records for d, ms in r["metrics"].items() for m in ms}
    summary = {}
    for dataset, metric in sorted(keys):
        values = []
        for r in records:
            try:
                values.append(float(r["metrics"][dataset][metric]))
            except KeyError:
                raise KeyError(
                    f"seed {r['seed']} has no metric {dataset}/{metric}; cannot aggregate"
                ) from None
        stats = summarize_values(values)
        if stats["std"] is None:  # the file's format: 0.0 for one seed
            stats["std"] = 0.0 if all(map(math.isfinite, values)) else float("nan")
        summary.setdefault(dataset, {})[metric] = stats
    return summary

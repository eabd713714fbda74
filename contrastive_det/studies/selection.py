"""
Selection on validation, a study step: a transfer entry's ``select:`` runs a grid of settings,
each scored on the validation split; a select run (``tools/select_config.py``) picks the best
point and writes it as a config whose ``_BASE_`` is the transfer's config; the transfer's runs
(the refit) then use that config. It follows the conversion step's pattern: a small run writes a
config, the runs after it read it.

A transfer entry::

    finetune:
      config: configs/toy/cls_finetune_R18.yaml
      select:
        grid: {SOLVER.BASE_LR: [0.1, 0.01], SOLVER.WEIGHT_DECAY: [0.0, 0.0001]}  # every combination
        # points: [{SOLVER.BASE_LR: 0.1, SOLVER.WEIGHT_DECAY: 0.001}, ...]        # or these points
        metric: classification/score    # in each grid run's results.json
                                        #   (mean over test sets, seeds)
        mode: max                       # max (default) or min
        opts: {CLASSIFICATION.EVAL_ON_VAL: true}  # what makes a grid run score on the
                                                  #   validation split
        seeds: [0]                      # the grid's seeds (default: the transfer's first seed)

The point chosen is the best mean score; ties go to the earlier point (grid order: the last key
varies fastest). A grid run without the metric, or with a NaN, stops the select run naming it.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any, Callable

import yaml

from ..engine.results import read_results, summarize_values
from ..utils.atomic import atomic_open, atomic_write_json
from ..utils.config_keys import nest_keys

__all__ = [
    "CHOSEN_CONFIG",
    "SELECTION_FILE",
    "grid_points",
    "point_name",
    "point_score",
    "choose",
    "write_selection",
]

CHOSEN_CONFIG = "chosen.yaml"
SELECTION_FILE = "selection.json"
MODES = ("max", "min")


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of ``{key: [values]}``, in order (the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_name(index: int, point: dict[str, Any], value_name: Callable[[Any], str]) -> str:
    """A grid point's folder: its index, then each key's last part and value
    (``03_base_lr0.01_weight_decay0.0``)."""
    return f"{index:02d}_" + "_".join(
        f"{key.split('.')[-1].lower()}{value_name(v)}" for key, v in point.items()
    )


def point_score(run_dirs: list[str], metric: str) -> float:
    """
    The mean of ``metric`` over the test sets of each run's ``results.json`` (a seed sweep's mean
    where a value is a summary), then over the runs. Raises ValueError naming the file when a run
    lacks the metric or scored NaN.
    """
    scores = []
    for run_dir in run_dirs:
        results = read_results(run_dir)
        per_set = []
        for metrics in results.get("metrics", {}).values():
            if metric not in metrics:
                continue
            value = metrics[metric]
            value = value["mean"] if isinstance(value, dict) else value
            per_set.append(float(value))
        if not per_set:
            raise ValueError(
                f"{os.path.join(run_dir, 'results.json')}: no {metric!r} in any test set "
                f"(sets: {sorted(results.get('metrics', {}))})"
            )
        if any(math.isnan(v) for v in per_set):
            raise ValueError(
                f"{os.path.join(run_dir, 'results.json')}: {metric!r} is NaN; the grid point "
                f"cannot be ranked"
            )
        scores.append(sum(per_set) / len(per_set))
    return summarize_values(scores)["mean"]


def choose(scores: list[float], mode: str = "max") -> int:
    """Index of the best score (``mode`` max or min); ties go to the earlier point."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not scores:
        raise ValueError("no grid points to choose from")
    best = 0
    for i, s in enumerate(scores):
        if (s > scores[best]) if mode == "max" else (s < scores[best]):
            best = i
    return best


def write_selection(
    out_dir: str,
    base_config: str,
    points: list[tuple[dict, list[str]]],
    metric: str,
    mode: str = "max",
    log: Callable[[str], Any] = print,
) -> dict:
    """
    Score every ``(point, run dirs)``, choose, and write ``out_dir/chosen.yaml`` (``_BASE_`` the
    absolute ``base_config``, then the chosen point's keys) and ``out_dir/selection.json`` (every
    score, the choice), both atomically. Returns the selection record.
    """
    scores = [point_score(dirs, metric) for _, dirs in points]
    best = choose(scores, mode)
    record = {
        "base": os.path.abspath(base_config),
        "metric": metric,
        "mode": mode,
        "points": [{"point": p, "score": s, "runs": dirs} for (p, dirs), s in zip(points, scores)],
        "chosen": {"index": best, "point": points[best][0], "score": scores[best]},
    }
    os.makedirs(out_dir, exist_ok=True)
    with atomic_open(os.path.join(out_dir, CHOSEN_CONFIG)) as f:
        f.write(
            f"# Chosen on validation by {metric} ({mode}) among {len(points)} points: "
            f"{SELECTION_FILE}\n"
        )
        yaml.safe_dump({"_BASE_": record["base"], **nest_keys(points[best][0])}, f, sort_keys=False)
    atomic_write_json(os.path.join(out_dir, SELECTION_FILE), record)
    width = max(len(str(p)) for p, _ in points)
    for i, ((p, _), s) in enumerate(zip(points, scores)):
        log(f"{'*' if i == best else ' '} {str(p):<{width}}  {metric} {s:.4f}")
    log(
        f"chosen: {points[best][0]} ({metric} {scores[best]:.4f}) -> "
        f"{os.path.join(out_dir, CHOSEN_CONFIG)}"
    )
    return record

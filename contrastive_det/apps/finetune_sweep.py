"""
The fine-tuning grid (Kornblith et al. 2019): every (learning rate, weight decay) of
``CLASSIFICATION.FINETUNE_GRID`` is trained on the training split and scored on the validation
split (``CLASSIFICATION.EVAL_ON_VAL True``); the best point is retrained on train+val and tested.
Every run is ``tools/train_net.py`` in its own process with its own OUTPUT_DIR, so ``--num-gpus``,
``--seeds`` and the rest pass through. Idempotent: a grid point whose ``results.json`` exists with
the same settings is not run again, so a killed sweep continues where it stopped.
"""
import json
import os
import subprocess
import sys

from ..engine.results import RESULTS_FILE, read_results
from ..utils.atomic import atomic_write_json

SWEEP_FILE = "sweep.json"
SCORE = "classification/score"


def _fmt(x):
    """Short form for folder names and messages (0.001, 1e-05, 0)."""
    return f"{x:g}"


def _value(x):
    """A float literal for a config override (yacs keeps the key's type: "0" would be an int)."""
    return repr(float(x))


def grid_points(lrs, wds, wd_over_lr=False):
    """
    ``(lr, grid wd, applied weight decay)`` triples in grid order (each lr, then each wd); the
    applied weight decay is ``wd / lr`` with ``wd_over_lr`` (``FINETUNE_GRID.WD_OVER_LR``, as
    ssl-transfer's finetune.py), else ``wd``. An empty axis raises naming its config key.
    """
    if not lrs:
        raise ValueError("CLASSIFICATION.FINETUNE_GRID.BASE_LRS is empty")
    if not wds:
        raise ValueError("CLASSIFICATION.FINETUNE_GRID.WEIGHT_DECAYS is empty")
    if any(x <= 0 for x in lrs) or any(x < 0 for x in wds):
        raise ValueError(f"FINETUNE_GRID needs BASE_LRS > 0 and WEIGHT_DECAYS >= 0, got {list(lrs)} and {list(wds)}")
    return [(float(lr), float(wd), float(wd) / float(lr) if wd_over_lr else float(wd)) for lr in lrs for wd in wds]


def point_dir(output_dir, lr, wd):
    """The folder of grid point (lr, grid wd)."""
    return os.path.join(output_dir, "grid", f"lr{_fmt(lr)}_wd{_fmt(wd)}")


def read_score(run_dir):
    """Mean over test sets of ``classification/score`` in ``run_dir/results.json`` (mean over seeds too)."""
    if not os.path.isfile(os.path.join(run_dir, RESULTS_FILE)):
        return None
    metrics = read_results(run_dir)["metrics"]
    values = []
    for per_set in metrics.values():
        value = per_set[SCORE]
        values.append(value["mean"] if isinstance(value, dict) else value)
    return sum(values) / len(values)


def choose(scores):
    """The best (lr, wd) by validation score; ties go to the earlier grid point."""
    best = None
    for point, score in scores:
        if best is None or score > best[1]:
            best = (point, score)
    return best


def run_sweep(train_net, config_file, output_dir, lrs, wds, launch_args=(), opts=(), log=print, wd_over_lr=False):
    """
    Run the grid, choose, retrain on train+val. Returns the sweep record (also written to
    ``output_dir/sweep.json``, atomically, after every grid point).

    Args:
        train_net (str): path of tools/train_net.py.
        config_file (str): a fine-tuning config (CLASSIFICATION.PROTOCOL finetune or core_tuning).
        lrs, wds: the grid axes.
        wd_over_lr: train each point with weight decay ``wd / lr`` (see :func:`grid_points`).
        launch_args: train_net options before the overrides (e.g. ["--num-gpus", "8", "--num-seeds", "3"]).
        opts: KEY VALUE overrides for every run.
    """
    points = grid_points(lrs, wds, wd_over_lr)
    record = {"config_file": config_file, "grid": [], "chosen": None, "final": None}
    path = os.path.join(output_dir, SWEEP_FILE)

    def run(run_dir, extra):
        argv = [sys.executable, train_net, "--config-file", config_file, *launch_args, *opts, *extra, "OUTPUT_DIR", run_dir]
        log("==> " + " ".join(argv[1:]))
        if subprocess.run(argv).returncode != 0:
            raise RuntimeError(f"finetune sweep: run failed: {' '.join(argv[1:])}")

    scores = []
    for i, (lr, grid_wd, wd) in enumerate(points):
        run_dir = point_dir(output_dir, lr, grid_wd)
        settings = ["SOLVER.BASE_LR", _value(lr), "SOLVER.WEIGHT_DECAY", _value(wd)]
        score = read_score(run_dir) if _same_settings(run_dir, settings, opts) else None
        if score is None:
            run(run_dir, ["CLASSIFICATION.EVAL_ON_VAL", "True", *settings])
            _write_settings(run_dir, settings, opts)
            score = read_score(run_dir)
        else:
            log(f"grid point {i + 1}/{len(points)} lr {_fmt(lr)} wd {_fmt(wd)}: done before, validation {score:.2f}")
        scores.append(((lr, wd), score))
        record["grid"].append({"base_lr": lr, "grid_weight_decay": grid_wd, "weight_decay": wd, "val_score": score,
                               "output_dir": run_dir})
        atomic_write_json(path, record)
    (lr, wd), best = choose(scores)
    record["chosen"] = {"base_lr": lr, "weight_decay": wd, "val_score": best}
    log(f"chosen on validation: lr {_fmt(lr)} wd {_fmt(wd)} ({best:.2f})")
    final_dir = os.path.join(output_dir, "final")
    run(final_dir, ["CLASSIFICATION.EVAL_ON_VAL", "False", "SOLVER.BASE_LR", _value(lr), "SOLVER.WEIGHT_DECAY", _value(wd)])
    record["final"] = {"output_dir": final_dir, "test_score": read_score(final_dir)}
    atomic_write_json(path, record)
    log(format_table(record))
    return record


def _settings_file(run_dir):
    return os.path.join(run_dir, "sweep_point.json")


def _write_settings(run_dir, settings, opts):
    atomic_write_json(_settings_file(run_dir), {"settings": list(settings), "opts": list(opts)})


def _same_settings(run_dir, settings, opts):
    try:
        with open(_settings_file(run_dir)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return False
    return saved == {"settings": list(settings), "opts": list(opts)}


def format_table(record):
    lines = ["| base lr | weight decay | validation score |", "|---|---|---|"]
    for row in record["grid"]:
        chosen = record["chosen"] and (row["base_lr"], row["weight_decay"]) == (
            record["chosen"]["base_lr"], record["chosen"]["weight_decay"])
        score = f"{row['val_score']:.2f}"
        lines.append(f"| {_fmt(row['base_lr'])} | {_fmt(row['weight_decay'])} | {'**' + score + '**' if chosen else score} |")
    if record.get("final") and record["final"]["test_score"] is not None:
        lines.append(f"\ntest score of the chosen point retrained on train+val: {record['final']['test_score']:.2f}")
    return "\n".join(lines)

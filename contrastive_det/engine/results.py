"""OUTPUT_DIR/results.json: one file per run (and one per seed sweep) that studies aggregate."""
import hashlib
import math
import os
import platform
import statistics

from detectron2.evaluation.testing import flatten_results_dict

from ..utils.atomic import atomic_write_json

RESULTS_FILE = "results.json"


def config_digest(cfg):
    """sha256 of the fully merged config as YAML: equal digests mean equal configs."""
    return hashlib.sha256(cfg.dump().encode("utf-8")).hexdigest()


def versions():
    """Versions of everything that can change a number."""
    import detectron2
    import torch
    import torchvision

    from ..version import __version__

    return {
        "contrastive_det": __version__,
        "detectron2": detectron2.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def normalize_metrics(results, test_datasets):
    """
    detectron2's ``test()`` returns ``{dataset: {task: {metric: value}}}``, or the inner dict
    alone when there is one dataset. Return ``{dataset: {"task/metric": value}}`` always.
    """
    if not results:
        return {}
    if len(test_datasets) == 1 and set(results.keys()) != set(test_datasets):
        results = {test_datasets[0]: results}
    return {name: flatten_results_dict(res) for name, res in results.items()}


def build_results(cfg, metrics, *, task, method, iteration, config_file="", seed=None, extra=None):
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


def write_results(output_dir, record):
    path = os.path.join(output_dir, RESULTS_FILE)
    atomic_write_json(path, record)
    return path


def aggregate_seed_results(records):
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
                raise KeyError(f"seed {r['seed']} has no metric {dataset}/{metric}; cannot aggregate") from None
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.setdefault(dataset, {})[metric] = {
            "mean": statistics.fmean(values) if all(map(math.isfinite, values)) else float("nan"),
            "std": std,
            "n": len(values),
            "values": values,
        }
    return summary

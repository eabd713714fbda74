"""Command-line runs: one config, one or several seeds, one or many processes (detectron2 launch)."""
import argparse
import json
import logging
import os
import random

from detectron2.engine import default_argument_parser, launch
from detectron2.utils import comm

from ..data import check_dataset_layout
from .checkpoint import AtomicDetectionCheckpointer
from .results import (
    RESULTS_FILE,
    aggregate_seed_results,
    build_results,
    normalize_metrics,
    write_results,
)
from .setup import load_config, setup
from .tasks import get_task
from .trainer import Trainer
from .weights import convert_weights_for_detection

logger = logging.getLogger("contrastive_det")


def _seed_list(text):
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2; got {text!r}") from None


def argument_parser(epilog=None):
    """detectron2's ``default_argument_parser`` plus ``--fewer-gpus``, ``--seeds``, ``--num-seeds``."""
    parser = default_argument_parser(epilog)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--fewer-gpus",
        action="store_true",
        help="MoCo's rule for fewer GPUs: half the images per batch and half the LR, "
        "twice the iterations, LR steps, warmup, checkpoint and eval periods",
    )
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        help="comma-separated seeds, e.g. 0,1,2: run once per seed into OUTPUT_DIR/seed<S>/, then "
        "write the mean and std of every metric to OUTPUT_DIR/results.json",
    )
    parser.add_argument(
        "--num-seeds",
        type=int,
        default=None,
        help="shorthand for --seeds B .. B+N-1 where B is SEED if SEED >= 0, else 0 "
        "(MoCo reports the mean of 5)",
    )
    return parser


def resolve_seeds(args, cfg_seed):
    """
    The seeds to run: ``--seeds``, or ``--num-seeds``, or the config's SEED (``cfg_seed``); a negative
    SEED is replaced by a drawn one so that results.json always records the seed actually used.
    """
    if args.seeds and args.num_seeds:
        raise ValueError("Give --seeds or --num-seeds, not both")
    if args.seeds:
        if len(set(args.seeds)) != len(args.seeds):
            raise ValueError(f"--seeds has duplicates: {args.seeds}")
        return list(args.seeds)
    if args.num_seeds is not None:
        if args.num_seeds < 1:
            raise ValueError(f"--num-seeds must be >= 1, got {args.num_seeds}")
        base = cfg_seed if cfg_seed >= 0 else 0
        return list(range(base, base + args.num_seeds))
    return [cfg_seed if cfg_seed >= 0 else random.SystemRandom().randrange(2**31)]


def run_task(args, seed, output_dir):
    """One run in one process (of possibly many): train (or only evaluate) and write results."""
    cfg = setup(args, seed=seed, output_dir=output_dir)
    for name in get_task(cfg).datasets_to_check(cfg, args.eval_only):
        check_dataset_layout(name)

    if args.eval_only:
        if not cfg.MODEL.WEIGHTS and not args.resume:
            logger.warning("--eval-only without MODEL.WEIGHTS: evaluating the randomly initialised model")
        model = Trainer.build_model(cfg)
        checkpoint = AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            metrics = normalize_metrics(results, list(cfg.DATASETS.TEST))
            record = build_results(cfg, metrics, iteration=checkpoint.get("iteration"), config_file=args.config_file)
            path = write_results(cfg.OUTPUT_DIR, record)
            logger.info(f"Results written to {path}")
        return results

    trainer = Trainer(cfg, config_file=args.config_file)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def launch_runs(run_fn, args):
    """
    Launch ``run_fn(args, seed, output_dir)`` on ``--num-gpus`` x ``--num-machines`` processes,
    once per seed. With several seeds, each run goes to ``OUTPUT_DIR/seed<S>`` and the mean/std
    summary to ``OUTPUT_DIR/results.json``. Returns the path of the results file.
    """
    cfg = load_config(args)
    seeds = resolve_seeds(args, cfg.SEED)
    base_dir = cfg.OUTPUT_DIR
    if get_task(cfg).name == "detection":
        # once, in the launching process, so that every process and seed loads the same verified file
        args.opts = list(args.opts) + convert_weights_for_detection(cfg, base_dir)
    run_dirs = [base_dir] if len(seeds) == 1 else [os.path.join(base_dir, f"seed{s}") for s in seeds]
    for seed, run_dir in zip(seeds, run_dirs):
        launch(
            run_fn,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args, seed, run_dir),
        )
    if args.machine_rank != 0:
        return None
    if len(seeds) == 1:
        return os.path.join(base_dir, RESULTS_FILE)
    return write_seed_summary(base_dir, run_dirs)


def write_seed_summary(base_dir, run_dirs):
    """Aggregate ``<run_dir>/results.json`` of each seed into ``<base_dir>/results.json``."""
    records = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, RESULTS_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Seed run {run_dir} wrote no {RESULTS_FILE}; cannot aggregate")
        with open(path) as f:
            records.append(json.load(f))
    first = records[0]
    summary = {
        "task": first["task"],
        "method": first["method"],
        "weights": first["weights"],
        "dataset": first["dataset"],
        "config_file": first["config_file"],
        "aggregate": "mean and sample std (n-1) over seeds",
        "seeds": [r["seed"] for r in records],
        "runs": [os.path.abspath(d) for d in run_dirs],
        "config_digests": [r["config_digest"] for r in records],
        "metrics": aggregate_seed_results(records),
        "versions": first["versions"],
    }
    path = write_results(base_dir, summary)
    headline = ("bbox/AP", "bbox/AP50", "bbox/AP75", "knn/top1")
    for dataset, metrics in summary["metrics"].items():
        for name in headline:
            if name in metrics:
                m = metrics[name]
                values = ", ".join(f"{v:.2f}" for v in m["values"])
                print(f"{dataset} {name}: {m['mean']:.2f} +- {m['std']:.2f} (n={m['n']}: {values})")
    return path

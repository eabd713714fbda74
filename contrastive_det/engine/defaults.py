"""
Command-line runs, detectron2's ``engine/defaults.py`` role: the argument parser, the frozen
config of one run adapted to the machine it runs on (:func:`setup`), and launching a run on
``--num-gpus`` x ``--num-machines`` processes once per seed (:func:`launch_runs`).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
from typing import Any, Callable, Sequence

import torch
import yaml

from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import get_cfg, upgrade_renamed_keys
from ..data import check_dataset_layout, register_datasets_from_config
from ..data.checks import check_images
from ..utils import collectives
from ..utils.yaml_files import load_yaml_file
from . import stop_request
from .checkpoint import ResumeState, read_resume_state, resumable_config
from .results import (
    RESULTS_FILE,
    aggregate_seed_results,
    headline_keys,
    read_results,
    write_results,
)
from .task import get_task

logger = logging.getLogger("contrastive_det")


def _seed_list(text):
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 0,1,2; got {text!r}"
        ) from None


def argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` plus ``--fewer-gpus``, ``--seeds``,
    ``--num-seeds``."""
    parser = default_argument_parser(epilog)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--fewer-gpus",
        action="store_true",
        help="MoCo's rule for fewer GPUs: half the images per batch and half the LR, "
        "twice the iterations, LR steps, warmup, checkpoint and eval periods",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue although the config differs from the checkpoint's "
        "(the differing keys are logged); without it such a resume stops and names them",
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


def resolve_seeds(args: argparse.Namespace, cfg_seed: int) -> list[int]:
    """
    The seeds to run: ``--seeds``, or ``--num-seeds``, or the config's SEED (``cfg_seed``); a
    negative SEED is replaced by a drawn one so that results.json always records the seed actually
    used.
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


SYNC_NORMS = ("SyncBN", "naiveSyncBN", "naiveSyncBN_N", "nnSyncBN")


def _norm_keys(node, prefix=""):
    """Yield (full key, parent node, key) for every ``NORM`` entry in the config tree."""
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from _norm_keys(value, f"{prefix}{key}.")
        elif key == "NORM":
            yield f"{prefix}{key}", node, key


def adapt_norms(cfg: CfgNode, world_size: int, device: str) -> str | None:
    """
    Cross-GPU BatchNorm needs a process group: in one process, every SyncBN flavour becomes
    plain BN (identical statistics with one process); on CPU with several processes, the
    CUDA-only ``SyncBN``/``nnSyncBN`` become ``naiveSyncBN`` (all-reduce over gloo).
    Returns a message describing the change, or None.
    """
    if world_size == 1:
        rule = {n: "BN" for n in SYNC_NORMS}
    elif device == "cpu":
        rule = {"SyncBN": "naiveSyncBN", "nnSyncBN": "naiveSyncBN"}
    else:
        return None
    changed = []
    for full_key, node, key in _norm_keys(cfg):
        if node[key] in rule:
            changed.append(f"{full_key} {node[key]} -> {rule[node[key]]}")
            node[key] = rule[node[key]]
    if not changed:
        return None
    why = "Single process" if world_size == 1 else f"{world_size} CPU processes"
    return f"{why}: synchronized BN replaced ({'; '.join(changed)})"


def apply_fewer_gpus_rule(cfg: CfgNode, factor: int = 2) -> str:
    """
    MoCo's rule for fewer GPUs: ``factor`` times fewer images per batch and a ``factor`` times
    smaller LR, with every iteration count (MAX_ITER, STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD,
    EVAL_PERIOD) ``factor`` times larger, so the run sees the same number of epochs.
    """
    s = cfg.SOLVER
    if s.IMS_PER_BATCH % factor:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={s.IMS_PER_BATCH} is not divisible by {factor}")
    s.IMS_PER_BATCH //= factor
    s.BASE_LR /= factor
    s.MAX_ITER *= factor
    s.STEPS = tuple(step * factor for step in s.STEPS)
    s.WARMUP_ITERS *= factor
    s.CHECKPOINT_PERIOD *= factor
    cfg.TEST.EVAL_PERIOD *= factor
    return (
        f"Fewer-GPU rule: IMS_PER_BATCH {s.IMS_PER_BATCH}, BASE_LR {s.BASE_LR:g}, "
        f"MAX_ITER {s.MAX_ITER}, STEPS {tuple(s.STEPS)}, WARMUP_ITERS {s.WARMUP_ITERS}"
    )


def check_config_bases(config_file: str) -> list[str]:
    """
    Follow the ``_BASE_`` chain of ``config_file`` and raise a :class:`FileNotFoundError` naming the
    file, the ``_BASE_`` value, the path it resolved to and the rule, before yacs/detectron2 would
    fail with a bare path. detectron2's rule: a relative ``_BASE_`` is resolved against the folder
    of the file that names it.
    """
    seen = []
    path = config_file
    while True:
        if path in seen:
            raise ValueError(f"{config_file}: _BASE_ chain loops: {' -> '.join(seen + [path])}")
        seen.append(path)
        try:
            # a key given twice is an error naming it, not a silent override
            data = load_yaml_file(path) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"Config file {path} is not valid YAML: {e}") from None
        base = data.get("_BASE_") if isinstance(data, dict) else None
        if not base or base.startswith(("http://", "https://")):
            return seen
        resolved = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        if not os.path.isfile(resolved):
            raise FileNotFoundError(
                f"{path}: _BASE_ {base!r} resolved to {os.path.normpath(resolved)}, which does not "
                "exist. A relative _BASE_ is resolved against the folder of the file that names "
                f"it ({os.path.dirname(path) or '.'}), not the working directory; use a path "
                "relative to "
                'that folder (e.g. "../detection/voc0712_R_50_C4_24k.yaml" from configs/my/) or an '
                "absolute path."
            )
        path = resolved


def load_config(args: argparse.Namespace) -> CfgNode:
    """Default config + contrastive-det keys + the config file + trailing KEY VALUE overrides."""
    defaults = get_cfg()
    cfg = defaults.clone()
    if args.config_file:
        if not os.path.isfile(args.config_file):
            raise FileNotFoundError(f"Config file {args.config_file} does not exist")
        check_config_bases(args.config_file)
        try:
            cfg.merge_from_file(args.config_file)
        except KeyError as e:  # yacs: "Non-existent config key: A.B"
            raise KeyError(f"{args.config_file}: {e.args[0]}") from None
    if len(args.opts) % 2:
        raise ValueError(
            f"Command-line overrides must be KEY VALUE pairs, got an odd list: {args.opts}"
        )
    try:
        cfg.merge_from_list(args.opts)
    except (KeyError, AssertionError) as e:  # yacs: AssertionError("Non-existent key: A.B")
        raise KeyError(f"command-line override: {e.args[0]}") from None
    return upgrade_renamed_keys(cfg, defaults, logging.getLogger("contrastive_det"))


def build_run_config(
    args: argparse.Namespace, seed: int | None = None, output_dir: str | None = None
) -> tuple[CfgNode, list[str]]:
    """
    The frozen config of one run: :func:`load_config`, then the seed and output folder of this run,
    the machine's device and BN flavour, the fewer-GPU rule (``--fewer-gpus``), the datasets
    declared in DATASETS.CUSTOM and the task's keys that follow from the data
    (``Task.adapt_config``). Returns (cfg, messages describing each adaptation).
    """
    cfg = load_config(args)
    task = get_task(cfg)
    task.check_config(cfg)
    trains = not getattr(args, "eval_only", False) and task.trains(cfg)
    if seed is not None:
        cfg.SEED = seed
    if output_dir is not None:
        cfg.OUTPUT_DIR = output_dir
    messages = []
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        messages.append("CUDA is not available: running on CPU (MODEL.DEVICE cpu)")
    messages.append(adapt_norms(cfg, comm.get_world_size(), cfg.MODEL.DEVICE))
    if getattr(args, "fewer_gpus", False):
        messages.append(apply_fewer_gpus_rule(cfg))
    registered = register_datasets_from_config(cfg)
    if registered:
        messages.append(f"Registered from DATASETS.CUSTOM: {', '.join(registered)}")
    # keys that follow from the data, before --resume compares the config with the checkpoint's
    if trains:
        messages += task.adapt_config(cfg)
        if cfg.SOLVER.MAX_ITER < 1:
            raise ValueError(
                f"SOLVER.MAX_ITER must be >= 1 for training, got {cfg.SOLVER.MAX_ITER}"
            )
    if getattr(args, "resume", False) and not getattr(args, "eval_only", False):
        state = read_resume_state(cfg.OUTPUT_DIR)  # read once: the seed and the config it recorded
        messages.append(adopt_checkpoint_seed(cfg, state))
        messages.append(
            check_resume_config(cfg, state, getattr(args, "allow_config_change", False))
        )
    cfg.freeze()
    return cfg, [m for m in messages if m]


def adopt_checkpoint_seed(cfg: CfgNode, state: ResumeState | None) -> str | None:
    """
    A resumed run continues with the seed it started with: when ``OUTPUT_DIR`` holds a checkpoint
    that records a seed, ``cfg.SEED`` becomes that seed (whatever the command line says; the data
    order and every random draw are functions of it). ``state`` is :func:`read_resume_state` of
    ``cfg.OUTPUT_DIR``. Returns a message when it changed.
    """
    if state is None:
        return None
    path, iteration, seed, _ = state
    if seed is None or int(seed) == cfg.SEED:
        return None
    message = (
        f"--resume: SEED {seed} recorded in {path} (iteration {iteration}) replaces SEED "
        f"{cfg.SEED} given by the config/command line; a resumed run keeps the seed it started with"
    )
    cfg.SEED = int(seed)
    return message


# Keys whose values a resumed run takes from the checkpoint's optimizer and LR scheduler state (the
# param groups' lr, weight decay, momentum, betas; the scheduler's base LRs), not from the config:
# changed on resume they would be recorded in config.yaml and results.json but not applied.
OPTIMIZER_STATE_KEYS = (
    "SOLVER.OPTIMIZER",
    "SOLVER.BASE_LR",
    "SOLVER.BIAS_LR_FACTOR",
    "SOLVER.WEIGHT_DECAY",
    "SOLVER.WEIGHT_DECAY_NORM",
    "SOLVER.WEIGHT_DECAY_BIAS",
    "SOLVER.MOMENTUM",
    "SOLVER.NESTEROV",
    "SOLVER.ADAM_BETAS",
    "SOLVER.LARS_ETA",
)


def check_resume_config(
    cfg: CfgNode, state: ResumeState | None, allow_change: bool = False
) -> str | None:
    """
    A resumed run continues the run of its checkpoint: a config that differs from the one the
    checkpoint recorded (other than the output folder, seed, device, workers and norm flavours:
    :func:`resumable_config`) stops it with the differing keys named, unless ``allow_change``
    (``--allow-config-change``), when they are returned as a message to log instead; a change of
    :data:`OPTIMIZER_STATE_KEYS` stops it even then (the checkpoint's optimizer state would win
    without a word). ``state`` is :func:`read_resume_state` of ``cfg.OUTPUT_DIR``.
    """
    if state is None or state[3] is None:
        return None
    path, iteration, _, recorded = state
    now = resumable_config(cfg)
    diffs = [
        f"{k}: {recorded.get(k, '<absent>')!r} in the checkpoint, {now.get(k, '<absent>')!r} now"
        for k in sorted(set(recorded) | set(now))
        if recorded.get(k, "<absent>") != now.get(k, "<absent>")
    ]
    if not diffs:
        return None
    listing = "\n  ".join(diffs)
    restored = [
        k
        for k in OPTIMIZER_STATE_KEYS
        if k in recorded or k in now
        if recorded.get(k, "<absent>") != now.get(k, "<absent>")
    ]
    if allow_change and restored:
        raise ValueError(
            f"--resume --allow-config-change: {', '.join(restored)} cannot change on resume: the "
            f"optimizer and LR scheduler state of {path} bring back their values, so the change "
            "would be recorded but not applied. To go on with other optimizer settings, start a "
            f"new OUTPUT_DIR with MODEL.WEIGHTS {path}."
        )
    if not allow_change:
        raise ValueError(
            f"--resume: the config differs from the one recorded in {path} (iteration "
            f"{iteration}):\n  {listing}\n"
            "Resume with the same settings, start a new OUTPUT_DIR, or add --allow-config-change "
            "to continue anyway."
        )
    return (
        f"--resume with --allow-config-change: the config differs from {path} "
        f"(iteration {iteration}):\n  {listing}"
    )


def set_deterministic() -> None:
    """``DETERMINISTIC True``: deterministic cuDNN and torch algorithms, cuDNN autotuning off,
    cuBLAS's fixed workspace (set before the first cuBLAS call of the process)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def setup(
    args: argparse.Namespace, seed: int | None = None, output_dir: str | None = None
) -> CfgNode:
    """
    :func:`build_run_config`, then detectron2's ``default_setup`` (logging, OUTPUT_DIR/config.yaml,
    seeding), every adaptation logged once, and the files of the task's datasets checked.
    """
    # SIGTERM: stop at an agreed iteration with a checkpoint (see stop_request)
    stop_request.install()
    if comm.get_world_size() > 1:
        # one seed for every process: a drawn SEED (-1) differs between machines, each launching
        # its own processes; the main process's is the run's (the data order and resume follow it)
        shared = collectives.shared_value(seed)
        if shared != seed:
            logger.info(f"SEED {shared} of the main process replaces this machine's {seed}")
        seed = shared
    cfg, messages = build_run_config(args, seed, output_dir)
    default_setup(cfg, args)
    if cfg.DETERMINISTIC:
        set_deterministic()
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="contrastive_det", abbrev_name="cdet"
    )
    for message in messages:
        logger.info(message)
        if message.startswith("--resume") and comm.is_main_process():
            print(message, flush=True)
    task = get_task(cfg)
    evaluates_only = args.eval_only or not task.trains(cfg)
    if evaluates_only and not cfg.MODEL.WEIGHTS and not args.resume:
        logger.warning(
            "Evaluation without MODEL.WEIGHTS: evaluating the randomly initialised model"
        )
    names = task.datasets_to_check(cfg, evaluates_only)
    for name in names:
        check_dataset_layout(name)
    if comm.get_local_rank() == 0:  # one scan per machine; a bad file stops the run before training
        check_images(cfg, dict.fromkeys(names))
    return cfg


def _run_then_close(run_fn: Callable[..., Any], *run_args: Any) -> Any:
    """
    One process of :func:`launch_runs`: ``run_fn(*run_args)``, then, when it returned on every
    process, the process groups are destroyed before the process exits. detectron2's ``launch``
    leaves them to the interpreter's exit, where gloo's threads can be torn down while still
    joinable: the process then aborts ("terminate called without an active exception", SIGABRT)
    after the run finished, and the launcher reports a failure. A run that raises skips this: its
    peers may never reach the barrier.
    """
    result = run_fn(*run_args)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        comm.synchronize()
        torch.distributed.destroy_process_group()
    return result


def launch_runs(run_fn: Callable[..., Any], args: argparse.Namespace) -> str | None:
    """
    Launch ``run_fn(args, seed, output_dir)`` on ``--num-gpus`` x ``--num-machines`` processes,
    once per seed. With several seeds, each run goes to ``OUTPUT_DIR/seed<S>`` and the mean/std
    summary to ``OUTPUT_DIR/results.json``. Returns the path of the results file.
    """
    cfg = load_config(args)
    seeds = resolve_seeds(args, cfg.SEED)
    base_dir = cfg.OUTPUT_DIR
    task = get_task(cfg)
    # once, in the launching process, so that every process and seed loads the same file
    args.opts = list(args.opts) + task.prepare_weights(cfg, base_dir)
    run_dirs = (
        [base_dir] if len(seeds) == 1 else [os.path.join(base_dir, f"seed{s}") for s in seeds]
    )
    if args.num_gpus > 1:
        # SIGTERM reaches the workers, which stop with a checkpoint
        stop_request.install(forward=True)
    for seed, run_dir in zip(seeds, run_dirs):
        try:
            launch(
                _run_then_close,
                args.num_gpus,
                num_machines=args.num_machines,
                machine_rank=args.machine_rank,
                dist_url=args.dist_url,
                args=(run_fn, args, seed, run_dir),
            )
        except torch.multiprocessing.ProcessExitedException as e:
            if e.exit_code == stop_request.STOPPED_EXIT_CODE:
                raise stop_request.TrainingStopped(f"seed {seed} stopped on request") from None
            raise
    if args.machine_rank != 0:
        return None
    if len(seeds) == 1:
        return os.path.join(base_dir, RESULTS_FILE)
    return write_seed_summary(base_dir, run_dirs, task.headline_metrics)


def write_seed_summary(base_dir: str, run_dirs: Sequence[str], headline: Sequence[str] = ()) -> str:
    """
    Aggregate ``<run_dir>/results.json`` of each seed into ``<base_dir>/results.json`` and print
    the ``headline`` metrics (mean +- std and the per-seed values).
    """
    records = []
    for run_dir in run_dirs:
        if not os.path.isfile(os.path.join(run_dir, RESULTS_FILE)):
            raise FileNotFoundError(f"Seed run {run_dir} wrote no {RESULTS_FILE}; cannot aggregate")
        records.append(read_results(run_dir))
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
    for dataset, metrics in summary["metrics"].items():
        for name in headline_keys(headline, metrics):
            m = metrics[name]
            values = ", ".join(f"{v:.2f}" for v in m["values"])
            print(f"{dataset} {name}: {m['mean']:.2f} +- {m['std']:.2f} (n={m['n']}: {values})")
    return path

#!/usr/bin/env python
"""
Run a study: the study file expands into runs of tools/pretrain_net.py, convert_to_detectron2.py
and train_net.py (pretrain -> export -> convert -> transfer), each in its own folder under the
study folder; done runs are skipped (same digest), failed runs are reported and the others go on,
a killed study continues where it stopped. At the end, tools/report.py writes the report.

    tools/run_study.py configs/studies/islam_toy.yaml                 # local, one run at a time
    tools/run_study.py configs/studies/islam_toy.yaml --dry-run       # print the plan
    tools/run_study.py configs/studies/islam_toy.yaml --jobs 4        # 4 runs at a time
    # the study's battery on checkpoints you have (rows: the labels, and random init)
    tools/run_study.py configs/studies/islam.yaml \\
        --checkpoint moco=/models/moco_v2_800ep_pretrain.pth.tar \\
        --checkpoint sup=/models/resnet50-0676ba61.pth --no-pretrain
    tools/run_study.py configs/studies/islam.yaml --executor slurm --partition gpu \\
        --gpus-per-node 8 --time 2880 --max-jobs 16
"""

import argparse
import os
import signal
import sys

from contrastive_det.studies import StudyError, load_study, run_study
from contrastive_det.studies.runner import report_study
from contrastive_det.studies.state import StudyLocked
from contrastive_det.studies.executors import EXECUTORS, build_executor

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))  # the runs call this folder's scripts


def _ask(question):
    """Ctrl-C on a terminal: cancel the study's cluster jobs only if the user says so."""
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", help="study file (YAML; see contrastive_det/studies/spec.py)")
    parser.add_argument(
        "--root",
        default=None,
        help="where the study file's relative paths (configs, checkpoints, output_dir) start "
        "(default: the working directory)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the runs and their state; run nothing"
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a row from an existing checkpoint (any layout tools/convert_to_detectron2.py reads), "
        "beside the study file's rows; repeat for several",
    )
    parser.add_argument(
        "--no-pretrain",
        action="store_true",
        help="leave out the study file's pretraining runs (rows: the checkpoints and random init)",
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: subprocesses here; slurm: submitit on SLURM; submitit-local: submitit's "
        "local executor (the SLURM path on this machine)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="local: runs at a time")
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=0,
        help="--num-gpus of every training run (0: each run's GPUs per task, else the CLI's "
        "default); on SLURM also the GPUs per task asked for when --gpus-per-node is not given",
    )
    parser.add_argument("--output", help="study folder instead of the file's output_dir")
    parser.add_argument(
        "--no-report", action="store_true", help="do not write the report at the end"
    )
    parser.add_argument(
        "--no-pictures",
        action="store_true",
        help="report: tables and plots only (on SLURM the pictures otherwise run as one job)",
    )
    slurm = parser.add_argument_group(
        "slurm (submitit)",
        "Resources of the pretraining and transfer runs; conversions ask for 2 CPUs, no GPU and an "
        "hour. A study file's `resources: {pretrain|convert|transfer: {gpus, cpus, mem_gb, time, "
        "nodes, tasks_per_node}}` and a transfer entry's own `resources:` override these.",
    )
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument(
        "--gpus-per-node",
        type=int,
        default=None,
        help="GPUs per node; also each training run's --num-gpus unless --num-gpus is given",
    )
    slurm.add_argument(
        "--nodes", type=int, default=1, help="nodes per run (each run's CLI gets --num-machines)"
    )
    slurm.add_argument(
        "--tasks-per-node",
        type=int,
        default=1,
        help="tasks per node, each one machine of the run's --num-machines (default 1: the CLI "
        "starts one process per GPU itself)",
    )
    slurm.add_argument("--cpus-per-task", type=int, default=None)
    slurm.add_argument("--mem-gb", type=int, default=None, help="memory per node")
    slurm.add_argument(
        "--time",
        type=int,
        default=60 * 24,
        help="minutes per job, checked against the partition's limit before submitting (requeued "
        "with --resume on timeout)",
    )
    slurm.add_argument(
        "--array-parallelism",
        type=int,
        default=32,
        help="at most this many jobs of an array at once",
    )
    slurm.add_argument(
        "--max-jobs",
        type=int,
        default=None,
        help="at most this many of the study's jobs queued or running at once "
        "(all arrays together)",
    )
    slurm.add_argument(
        "--slurm-extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more sbatch parameters (submitit's slurm_additional_parameters), e.g. account=abc",
    )
    args = parser.parse_args(argv)
    # SIGTERM (kill, the driver's own job being stopped) as an exit: local runs are stopped with
    # SIGTERM (each writes a checkpoint), cluster jobs keep running, the next start goes on
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    checkpoints = {}
    for item in args.checkpoint:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            parser.error(f"--checkpoint expects LABEL=PATH, got {item!r}")
        if label in checkpoints:
            parser.error(f"--checkpoint {label} given twice")
        checkpoints[label] = path
    try:
        study = load_study(
            args.study,
            checkpoints=checkpoints,
            no_pretrain=args.no_pretrain,
            root=args.root,
            tools_dir=TOOLS_DIR,
        )
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.output:
        study.output_dir = os.path.abspath(args.output)
    gpus = args.gpus_per_node
    # and the other way round: --num-gpus N asks SLURM for the N GPUs
    if gpus is None and args.num_gpus > 0:
        gpus = args.num_gpus * args.tasks_per_node
    resources = {
        "time": args.time,
        "nodes": args.nodes,
        "tasks_per_node": args.tasks_per_node,
        "gpus": gpus,
        "cpus": args.cpus_per_task,
        "mem_gb": args.mem_gb,
    }
    params = {}
    if args.executor == "slurm":
        params.update(slurm_array_parallelism=args.array_parallelism, slurm_signal_delay_s=120)
        if args.partition:
            params["slurm_partition"] = args.partition
        extra = {}
        for kv in args.slurm_extra:
            if "=" not in kv:
                parser.error(f"--slurm-extra expects KEY=VALUE, got {kv!r}")
            k, v = kv.split("=", 1)
            extra[k] = v
        if extra:
            params["slurm_additional_parameters"] = extra
    if args.max_jobs is not None and args.max_jobs < 1:
        parser.error(f"--max-jobs must be >= 1, got {args.max_jobs}")
    executor = (
        None
        if args.dry_run
        else build_executor(
            args.executor,
            study.output_dir,
            jobs=args.jobs,
            cwd=study.root,
            slurm=params,
            max_jobs=args.max_jobs,
        )
    )
    try:
        status = run_study(
            study,
            executor,
            dry_run=args.dry_run,
            num_gpus=args.num_gpus,
            resources=resources,
            log=lambda line: print(line, flush=True),
            confirm=_ask if sys.stdin.isatty() else None,
        )
    except (StudyLocked, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    if not args.no_report:
        path = report_study(
            study, executor, pictures=not args.no_pictures, log=lambda line: print(line, flush=True)
        )
        with open(os.path.join(os.path.dirname(path), "tables.md")) as f:
            print("\n" + f.read(), flush=True)
        print(f"report: {path}", flush=True)
    return 1 if any(s != "done" for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

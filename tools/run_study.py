#!/usr/bin/env python
"""
Run a study: the study file expands into runs of tools/pretrain_net.py, convert_to_detectron2.py
and train_net.py (pretrain -> export -> convert -> transfer), each in its own folder under the
study folder; done runs are skipped (same digest), failed runs are reported and the others go on,
a killed study continues where it stopped. At the end, tools/report.py writes the report.

    tools/run_study.py configs/studies/islam_toy.yaml                 # local, one run at a time
    tools/run_study.py configs/studies/islam_toy.yaml --dry-run       # print the plan
    tools/run_study.py configs/studies/islam_toy.yaml --jobs 4        # 4 runs at a time
    tools/run_study.py configs/studies/islam.yaml --executor slurm --partition gpu \\
        --gpus-per-node 8 --nodes 1 --time 2880 --array-parallelism 16 --num-gpus 8
"""
import argparse
import os
import sys

from contrastive_det.studies import StudyError, load_study, run_study
from contrastive_det.studies.executors import EXECUTORS, build_executor
from contrastive_det.studies.spec import REPO


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="study file (YAML; see contrastive_det/studies/spec.py)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and their state; run nothing")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: subprocesses here; slurm: submitit on SLURM; submitit-local: submitit's "
                             "local executor (the SLURM path on this machine)")
    parser.add_argument("--jobs", type=int, default=1, help="local: runs at a time")
    parser.add_argument("--num-gpus", type=int, default=0, help="--num-gpus of every training run (0: the CLI's default)")
    parser.add_argument("--output", help="study folder instead of the file's output_dir")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument("--no-pictures", action="store_true", help="report: tables and plots only")
    slurm = parser.add_argument_group("slurm (submitit)")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--gpus-per-node", type=int, default=None)
    slurm.add_argument("--nodes", type=int, default=1, help="nodes per run (each run's CLI gets --num-machines)")
    slurm.add_argument("--cpus-per-task", type=int, default=None)
    slurm.add_argument("--time", type=int, default=60 * 24, help="minutes per job (requeued with --resume on timeout)")
    slurm.add_argument("--array-parallelism", type=int, default=32, help="at most this many jobs of an array at once")
    slurm.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                       help="more sbatch parameters (submitit's slurm_additional_parameters), e.g. account=abc")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.output:
        study.output_dir = os.path.abspath(args.output)
    params = {"timeout_min": args.time, "nodes": args.nodes}
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
    if args.gpus_per_node is not None:
        params["gpus_per_node"] = args.gpus_per_node
    if args.cpus_per_task is not None:
        params["cpus_per_task"] = args.cpus_per_task
    executor = None if args.dry_run else build_executor(args.executor, study.output_dir, jobs=args.jobs, cwd=REPO,
                                                        slurm=params)
    status = run_study(study, executor, dry_run=args.dry_run, num_gpus=args.num_gpus,
                       log=lambda line: print(line, flush=True))
    if args.dry_run:
        return 0
    if not args.no_report:
        from contrastive_det.studies.report import write_report

        path = write_report(study.output_dir, pictures=not args.no_pictures, log=lambda line: print(line, flush=True))
        with open(os.path.join(os.path.dirname(path), "tables.md")) as f:
            print("\n" + f.read(), flush=True)
        print(f"report: {path}", flush=True)
    return 1 if any(s != "done" for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

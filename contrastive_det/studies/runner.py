"""
Run a study: expand it, skip what is done, run the rest in dependency order on an executor, keep
``state.json`` current, print progress (done / failed / left, ETA), and report failures without
stopping the runs that do not depend on them.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from ..utils.atomic import atomic_write_json
from .executors import DISTRIBUTED_TOOLS
from .expansion import expand
from .report import write_report
from .resources import num_gpus_per_task, run_resources
from .spec import Run, Study
from .state import PLAN_FILE, StudyLock, StudyState, is_done, mark_done, plan_digests, run_digest

__all__ = ["plan", "run_study", "write_plan", "report_study"]


def write_plan(study: Study, runs: list[Run]) -> None:
    """``plan.json`` of the study folder: what each run is (the report reads its ``meta``)."""
    atomic_write_json(
        os.path.join(study.output_dir, PLAN_FILE),
        {
            "study": study.name,
            "study_file": study.path,
            "study_digest": study.digest(),
            "axes": {a: s["key"] for a, s in study.axes.items()},
            "transfers": {name: e["config"] for name, e in study.transfers.items()},
            "claims": study.claims,
            "runs": [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "argv": r.argv,
                    "deps": r.deps,
                    "out_dir": r.out_dir,
                    "outputs": r.outputs,
                    "meta": r.meta,
                    "inputs": r.inputs,
                }
                for r in runs
            ],
        },
    )


def plan(
    study: Study, data_stamps: dict[str, str] | None = None
) -> tuple[list[Run], dict[str, str | None]]:
    """(runs, {run id: digest or None}) where a digest is None until its dependencies are done;
    ``data_stamps``: the driver's cache of dataset fingerprints (:func:`~.state.dataset_stamps`)."""
    runs = expand(study)
    return runs, plan_digests(runs, data_stamps)  # expand() lists dependencies first


def _group(run):
    """Runs that take about as long as each other: the same kind and transfer (pretraining,
    conversion, each transfer run)."""
    return run.kind, run.meta.get("transfer")


def estimate_eta(
    durations: dict[tuple[str, str | None], list[float]],
    pending: list[tuple[str, str | None]],
    width: int,
) -> tuple[float, int]:
    """
    (seconds, untimed): each pending run costs the mean duration of its group's finished runs (see
    :func:`_group`), ``width`` runs at a time; ``untimed`` counts the pending runs of groups none of
    whose runs has finished yet (not guessed: a probe and a detector differ by minutes).
    durations: {group: [seconds, ...]}; pending: [group, ...].
    """
    means = {g: sum(ss) / len(ss) for g, ss in durations.items() if ss}
    timed = [means[g] for g in pending if g in means]
    return sum(timed) / max(1, width), len(pending) - len(timed)


def _fmt_s(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _launch_argv(run, resume, num_gpus):
    argv = list(run.argv)
    flags = []
    if os.path.basename(argv[0]) in DISTRIBUTED_TOOLS:
        if resume:
            flags.append("--resume")
        if num_gpus:
            flags += ["--num-gpus", str(num_gpus)]
    return [argv[0], *flags, *argv[1:]]


def run_study(
    study: Study,
    executor: Any,
    *,
    dry_run: bool = False,
    num_gpus: int = 0,
    resources: dict | None = None,
    log: Callable[[str], Any] = print,
    confirm: Callable[[str], bool] | None = None,
) -> dict[str, str]:
    """
    :func:`run_study_locked` while holding the study's lock (one driver per study folder: a second
    one stops with :class:`~.state.StudyLocked`). ``resources``: the command line's per-run
    resources (see :mod:`.resources`).
    """
    if dry_run:
        return run_study_locked(
            study, executor, dry_run=True, num_gpus=num_gpus, resources=resources, log=log
        )
    os.makedirs(study.output_dir, exist_ok=True)
    with StudyLock(study.output_dir):
        return run_study_locked(
            study, executor, num_gpus=num_gpus, resources=resources, log=log, confirm=confirm
        )


def run_study_locked(
    study: Study,
    executor: Any,
    *,
    dry_run: bool = False,
    num_gpus: int = 0,
    resources: dict | None = None,
    log: Callable[[str], Any] = print,
    confirm: Callable[[str], bool] | None = None,
) -> dict[str, str]:
    """
    Run every run of ``study`` that is not done, on ``executor``.

    A run is done when its outputs exist and its record carries its current digest (see
    :mod:`.state`); such runs are skipped. A run whose dependency failed is skipped and reported.
    A run that was started before with the same digest and left a ``last_checkpoint`` (killed
    study, preempted job) continues with ``--resume``.

    Args:
        study: a :class:`~.spec.Study`.
        executor: see :mod:`.executors`.
        dry_run: print the plan (each run's state and command) and run nothing.
        num_gpus: ``--num-gpus`` for the training CLIs (0 = each run's resources decide: its GPUs
            per task, else the CLI's default).
        resources: the command line's resources for pretraining and transfer runs
            (:mod:`.resources`).
        log: takes one line.
        confirm: question -> bool, asked on an interrupt before cluster jobs are cancelled (None:
            cancel).

    A run whose job an earlier driver submitted (its job id is in ``state.json``) and that has the
    same digest is followed again, not submitted twice. An interrupt (Ctrl-C) stops or cancels what
    runs and says which; any other error of the driver leaves cluster jobs running.

    Returns:
        dict: run id -> final status ("done", "failed", "skipped"; "pending" in a dry run).
    """
    os.makedirs(study.output_dir, exist_ok=True)
    data_stamps = {}  # each dataset's content is read once per driver
    t0 = time.perf_counter()
    runs, digests = plan(study, data_stamps)
    if data_stamps:
        log(
            f"study {study.name}: {len(data_stamps)} dataset(s) checked on disk "
            f"({time.perf_counter() - t0:.1f} s with the plan)"
        )
    by_id = {r.id: r for r in runs}
    order = [r.id for r in runs]
    if dry_run:
        log(f"study {study.name}: {len(runs)} runs in {study.output_dir}")
        status = {}
        for r in runs:
            done = digests[r.id] is not None and is_done(r, digests[r.id])
            status[r.id] = "done" if done else "pending"
            log(
                f"  [{'done' if done else 'todo'}] {r.id}"
                + (f"  (after {', '.join(r.deps)})" if r.deps else "")
            )
            log(f"        {' '.join(r.argv)}")
        return status

    write_plan(study, runs)
    state = StudyState(study.output_dir, study.digest())
    logs_dir = os.path.join(study.output_dir, "logs")
    finished = {}  # id -> "done" / "failed" / "skipped"
    for rid in order:
        d = digests[rid]
        if d is not None and is_done(by_id[rid], d):
            finished[rid] = "done"
            if state.get(rid).get("status") != "done" or state.get(rid).get("digest") != d:
                state.set(rid, status="done", digest=d)
    skipped_at_start = len(finished)
    todo = [rid for rid in order if rid not in finished]
    log(
        f"study {study.name}: {len(runs)} runs, {skipped_at_start} done before, {len(todo)} to run "
        f"(folder {study.output_dir})"
    )
    running = {}  # id -> (start time, digest)
    durations = {}  # run group (see _group) -> seconds of its finished runs
    start = time.time()
    run_res = {rid: study.run_resources(by_id[rid], resources) for rid in order}
    if hasattr(executor, "check_resources"):  # e.g. each job's time against the partition's limit
        for line in (
            executor.check_resources(
                {rid: run_res[rid] for rid in todo}, {rid: by_id[rid].kind for rid in todo}
            )
            or []
        ):
            log(line)
    if hasattr(executor, "reattach"):
        for rid in todo:
            entry = state.get(rid)
            if (
                entry.get("status") == "running"
                and entry.get("job_id")
                and entry.get("digest") is not None
            ):
                run = by_id[rid]
                # plan() computed the digest of every run whose dependencies are done
                if (
                    all(finished.get(d) == "done" for d in run.deps)
                    and entry["digest"] == digests[rid]
                    and executor.reattach(rid, entry["job_id"], entry.get("tasks", 1))
                ):
                    running[rid] = (time.time(), entry["digest"])
                    log(f"REATTACH {rid}: job {entry['job_id']} of an earlier driver")

    def progress():
        counts = {
            s: sum(1 for v in finished.values() if v == s) for s in ("done", "failed", "skipped")
        }
        left = len(runs) - len(finished)
        eta = ""
        if durations and left:
            pending = [_group(by_id[rid]) for rid in order if rid not in finished]
            width = getattr(executor, "jobs", None) or max(1, len(running))
            seconds, untimed = estimate_eta(durations, pending, width)
            eta = f", ETA {_fmt_s(seconds)}" + (
                f" + {untimed} runs of kinds not timed yet" if untimed else ""
            )
        log(
            f"[study {study.name}] {counts['done']} done, {counts['failed']} failed, "
            f"{counts['skipped']} skipped, {left} left ({len(running)} running){eta}; "
            f"{_fmt_s(time.time() - start)} elapsed"
        )

    try:
        while len(finished) < len(runs):
            # skip what can no longer run
            for rid in todo:
                if rid in finished or rid in running:
                    continue
                bad = [d for d in by_id[rid].deps if finished.get(d) in ("failed", "skipped")]
                if bad:
                    finished[rid] = "skipped"
                    state.set(
                        rid, status="skipped", error=f"dependency {bad[0]} {finished[bad[0]]}"
                    )
                    log(f"SKIPPED {rid}: dependency {bad[0]} {finished[bad[0]]}")
            ready = [
                rid
                for rid in todo
                if rid not in finished
                and rid not in running
                and all(finished.get(d) == "done" for d in by_id[rid].deps)
            ]
            cap = executor.capacity()
            if cap is not None:
                ready = ready[: max(0, cap)]
            items = []
            for rid in ready:
                run = by_id[rid]
                digest = run_digest(run, [digests[d] for d in run.deps], data_stamps)
                digests[rid] = digest
                if is_done(run, digest):  # e.g. a dependency was redone with the same result digest
                    finished[rid] = "done"
                    state.set(rid, status="done", digest=digest)
                    continue
                previous = state.get(rid)
                resume = (
                    previous.get("digest") == digest
                    and previous.get("status") in ("running", "failed")
                    and os.path.isfile(os.path.join(run.out_dir, "last_checkpoint"))
                )
                os.makedirs(run.out_dir, exist_ok=True)
                stale = os.path.join(run.out_dir, "last_checkpoint")
                if not resume and os.path.isfile(stale):
                    # a checkpoint of another digest (or of a run whose state was lost): the fresh
                    # run must never resume from it, so a later --resume only finds what this run
                    # wrote
                    os.remove(stale)
                    log(
                        f"{rid}: its folder holds a checkpoint of an earlier version of the run; "
                        f"starting afresh"
                    )
                log_path = os.path.join(logs_dir, rid.replace("/", "__") + ".log")
                argv = _launch_argv(run, resume, num_gpus or num_gpus_per_task(run_res[rid]))
                state.set(
                    rid,
                    status="running",
                    digest=digest,
                    attempts=previous.get("attempts", 0) + 1,
                    log=log_path,
                    error=None,
                    started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                )
                log(f"START {rid}{' (--resume)' if resume else ''}: log {log_path}")
                running[rid] = (time.time(), digest)
                items.append((rid, argv, log_path, run_res[rid]))
            executor.start(items)
            if hasattr(executor, "job_id"):
                # kept so that a restarted driver follows the job instead of resubmitting
                for rid, *_ in items:
                    state.set(rid, job_id=executor.job_id(rid), tasks=executor.job_tasks(rid))
            if not running:
                if len(finished) < len(runs) and not ready:
                    raise RuntimeError(
                        f"study {study.name}: no run can start; the plan's dependencies are broken"
                    )
                continue
            ended = []
            while not ended:
                time.sleep(executor.poll_interval)
                ended = executor.poll()
            for rid, code, error in ended:
                t0, digest = running.pop(rid)
                seconds = time.time() - t0
                run = by_id[rid]
                missing = [p for p in run.outputs if not os.path.isfile(p)]
                if code == 0 and not missing:
                    mark_done(run, digest, seconds)
                    finished[rid] = "done"
                    durations.setdefault(_group(run), []).append(seconds)
                    state.set(rid, status="done", seconds=seconds)
                    log(f"DONE  {rid} ({_fmt_s(seconds)})")
                else:
                    why = (
                        error
                        or "finished without "
                        f"{', '.join(os.path.relpath(p, run.out_dir) for p in missing)}"
                    )
                    finished[rid] = "failed"
                    state.set(rid, status="failed", seconds=seconds, error=why)
                    log(f"FAILED {rid}: {why} (log: {state.get(rid).get('log')})")
                progress()
    except BaseException as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        cancel = interrupted  # only an interrupt cancels cluster jobs, and only if the user agrees
        if interrupted and confirm is not None and hasattr(executor, "reattach") and running:
            cancel = confirm(
                f"Cancel the {len(running)} running jobs of study {study.name} "
                f"({', '.join(sorted(running))})?"
            )
        what = executor.stop(cancel=cancel)
        if what:
            log(
                f"study {study.name}: "
                f"{'interrupted' if interrupted else f'driver error ({type(e).__name__})'}: {what}"
            )
        for rid in running:
            # left as running: the next start follows or resumes it
            state.set(rid, status="running")
        raise
    failed = [rid for rid, s in finished.items() if s == "failed"]
    skipped = [rid for rid, s in finished.items() if s == "skipped"]
    log(
        f"study {study.name}: {sum(1 for s in finished.values() if s == 'done')} of {len(runs)} "
        "runs done"
        + f" in {_fmt_s(time.time() - start)}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; skipped: {len(skipped)}" if skipped else "")
    )
    return finished


def report_study(
    study: Study,
    executor: Any,
    *,
    pictures: bool = True,
    resources: dict | None = None,
    log: Callable[[str], Any] = print,
) -> str:
    """
    Write the study's report (``<study>/report/``); returns the path of report.md. On a cluster
    (an executor that keeps jobs: SLURM) the tables are written here and the pictures, which rebuild
    the runs' models, run as one job of kind "report" (:mod:`.resources`), never on the login node.
    """
    if not pictures or not hasattr(executor, "reattach"):
        return write_report(study.output_dir, pictures=pictures, log=log)
    path = write_report(study.output_dir, pictures=False, log=log)
    log_path = os.path.join(study.output_dir, "logs", "report.log")
    executor.start(
        [
            (
                "report",
                [os.path.join(study.tools_dir, "report.py"), study.output_dir],
                log_path,
                run_resources("report", None, study.resources),
            )
        ]
    )
    log(f"START report pictures as job {executor.job_id('report')}: log {log_path}")
    ended = []
    while not ended:
        time.sleep(executor.poll_interval)
        ended = executor.poll()
    _, code, error = ended[0]
    log(
        "DONE  report pictures"
        if code == 0
        else f"FAILED report pictures: {error} (log: {log_path})"
    )
    return path

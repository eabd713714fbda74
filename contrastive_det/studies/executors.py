"""
Where a study's runs execute. An executor starts commands and reports when they end:

* :class:`LocalExecutor`: subprocesses on this machine, ``jobs`` at a time (1 = sequential), each
  with its own GPUs when the machine has some (``CUDA_VISIBLE_DEVICES``).
* :class:`SubmititExecutor`: SLURM through submitit (the way detectron2 / VISSL users submit), one
  job per run; the runs that are ready together and ask for the same resources are submitted as one
  array job. A preempted, requeued or timed-out job continues with ``--resume`` (see
  :class:`CommandJob`). With ``cluster="local"`` submitit runs the same jobs as local processes.

Contract: ``capacity()`` (how many more commands may start now, None = no limit),
``start(items)`` with items ``(key, argv, log_path, resources)`` (argv after the interpreter;
resources: see :mod:`.resources`), ``poll()`` returning ``[(key, returncode or None, error text)]``
for the commands that ended since the last call (returncode 0 = success), and ``stop(cancel)``.
Executors that keep jobs beyond the driver's life also have ``job_id(key)`` and
``reattach(key, job_id, tasks)``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..utils.exit_codes import STOPPED_EXIT_CODE
from .resources import TRAINING_KINDS, partition_has_gpus, partition_time_limit, submitit_parameters

if TYPE_CHECKING:
    import submitit
    from submitit.helpers import DelayedSubmission

__all__ = [
    "LocalExecutor",
    "shared_thread_env",
    "SubmititExecutor",
    "CommandJob",
    "build_executor",
    "EXECUTORS",
    "visible_gpus",
]

EXECUTORS = ("local", "slurm", "submitit-local")
DISTRIBUTED_TOOLS = (
    "train_net.py",
    "pretrain_net.py",
)  # the tools that take --num-gpus / --num-machines


def shared_thread_env(
    jobs: int, env: Mapping[str, str] | None = None, cpus: int | None = None
) -> dict[str, str]:
    """
    The environment for ``jobs`` processes sharing this machine's ``cpus`` cores: each gets
    ``OMP_NUM_THREADS = max(1, cpus // jobs)`` (torch's intra-op threads), so that N runs at a time
    do not oversubscribe the cores. A value the user set in ``env`` is kept.
    """
    env = dict(os.environ if env is None else env)
    if "OMP_NUM_THREADS" not in env:
        if cpus is None:
            cpus = (
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else (os.cpu_count() or 1)
            )
        env["OMP_NUM_THREADS"] = str(max(1, cpus // jobs))
    return env


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this machine lets a run use: ``CUDA_VISIBLE_DEVICES`` when set, else torch's
    count."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return [
            d.strip()
            for d in env["CUDA_VISIBLE_DEVICES"].split(",")
            if d.strip() and d.strip() != "-1"
        ]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch, no driver
        return []


def _num_gpus(argv):
    """``--num-gpus`` of a training command (1 when absent: the CLIs' default), 0 for other
    tools."""
    if os.path.basename(argv[0]) not in DISTRIBUTED_TOOLS:
        return 0
    return int(argv[argv.index("--num-gpus") + 1]) if "--num-gpus" in argv else 1


_PR_SET_PDEATHSIG = 1  # prctl(2), Linux


def _stop_with_the_driver():
    """``preexec_fn`` of a local run: SIGTERM it when the driver dies (Linux ``prctl``), so a driver
    killed with SIGKILL leaves no run behind; the run stops with a checkpoint and the next start
    resumes it. Elsewhere a no-op."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the driver died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class LocalExecutor:
    """
    Subprocesses on this machine, ``jobs`` at a time, sharing its cores (:func:`shared_thread_env`);
    each writes its output to its log file. With GPUs (``devices``: ids, default
    :func:`visible_gpus`) each training run gets its ``--num-gpus`` devices of its own through
    ``CUDA_VISIBLE_DEVICES`` (a run waits until enough are free); other tools see no GPU.

    Each run is a session of its own: a Ctrl-C on the driver's terminal reaches the driver alone,
    which stops the runs with SIGTERM (each writes a checkpoint); and a run gets SIGTERM when the
    driver dies, however it dies (:func:`_stop_with_the_driver`).
    """

    poll_interval = 0.2

    def __init__(
        self,
        jobs: int = 1,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        devices: Sequence[str] | None = None,
    ):
        if jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {jobs}")
        self.jobs, self.cwd, self.env = jobs, cwd, shared_thread_env(jobs, env)
        self.devices = list(visible_gpus(self.env) if devices is None else devices)
        self._free = list(self.devices)
        self._waiting = []  # items started by the runner that wait for GPUs
        self._procs = {}  # key -> (Popen, log file, devices)

    def capacity(self) -> int:
        return self.jobs - len(self._procs) - len(self._waiting)

    def start(self, items: Iterable[tuple]) -> None:
        self._waiting.extend(items)
        self._launch_waiting()

    def _launch_waiting(self):
        still = []
        for item in self._waiting:
            key, argv, log_path = item[:3]
            need = _num_gpus(argv) if self.devices else 0
            if need > len(self.devices):
                raise ValueError(
                    f"{key}: asks for {need} GPUs; this machine has {len(self.devices)}"
                )
            if need > len(self._free):
                still.append(item)
                continue
            mine, self._free = self._free[:need], self._free[need:]
            env = dict(self.env)
            if self.devices:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(mine) if mine else ""
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            log = open(log_path, "ab")
            proc = subprocess.Popen(
                [sys.executable, *argv],
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_stop_with_the_driver,
            )
            self._procs[key] = (proc, log, mine)
        self._waiting = still

    def poll(self) -> list[tuple[str, int, str | None]]:
        ended = []
        for key, (proc, log, mine) in list(self._procs.items()):
            code = proc.poll()
            if code is not None:
                log.close()
                del self._procs[key]
                self._free.extend(mine)
                ended.append((key, code, None if code == 0 else f"exit status {code}"))
        if ended and self._waiting:
            self._launch_waiting()
        return ended

    def stop(self, cancel: bool = True) -> str | None:
        """Stop what is still running (SIGTERM: a training run saves a checkpoint and exits); local
        runs never outlive the study. Returns a line saying what was stopped."""
        for proc, _, _ in self._procs.values():
            proc.terminate()
        for proc, log, _ in self._procs.values():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        stopped = len(self._procs)
        self._procs.clear()
        self._waiting.clear()
        return f"stopped {stopped} local runs" if stopped else None


class CommandJob:
    """
    The callable a submitit job runs: the CLI in a subprocess, its output appended to ``log_path``
    (task ``r > 0`` of a job of several tasks: ``log_path.rank<r>``).

    * Several tasks (nodes x tasks per node): each runs the training CLI as one machine of
      ``--num-machines`` (= the job's tasks), ``--machine-rank`` = its global rank, ``--dist-url``
      on the first node at a port derived from the job id.
    * SIGTERM (preemption, ``scontrol requeue``, ``scancel``) and SIGUSR2 (submitit's time-limit
      signal) are passed to the CLI, which stops at an agreed iteration with a checkpoint (exit
      status 75). The job then writes its next submission, the same command with ``--resume``, and
      ends without a result: after SIGUSR2 it requeues itself; after SIGTERM it waits for SLURM to
      kill it, which requeues a preempted or requeued job and leaves a cancelled one cancelled
      (reported as such). See :meth:`_continue_later`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: str,
        cwd: str | None = None,
        nodes: int = 1,
        port: int | None = None,
    ):
        self.argv, self.log_path, self.cwd, self.nodes, self.port = (
            list(argv),
            log_path,
            cwd,
            nodes,
            port,
        )

    def command(self, env: submitit.JobEnvironment | None = None) -> list[str]:
        argv = list(self.argv)
        tasks = env.num_tasks if env is not None else 1
        if tasks > 1 and os.path.basename(argv[0]) in DISTRIBUTED_TOOLS:
            port = self.port or 20000 + zlib.crc32(str(env.job_id).encode()) % 20000
            argv[1:1] = [
                "--num-machines",
                str(tasks),
                "--machine-rank",
                str(env.global_rank),
                "--dist-url",
                f"tcp://{env.hostnames[0]}:{port}",
            ]
        return [sys.executable, *argv]

    def _log_path(self, env):
        rank = env.global_rank if env is not None else 0
        return self.log_path if rank == 0 else f"{self.log_path}.rank{rank}"

    def __call__(self):
        env = _job_environment()
        log_path = self._log_path(env)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        received = []
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                self.command(env), cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
            )

            def forward(signum, frame):
                received.append(signum)
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)  # the CLI stops with a checkpoint

            for sig in (signal.SIGTERM, signal.SIGUSR2):
                signal.signal(sig, forward)
            code = child.wait()
        if code == 0:
            return 0
        if received or code in (STOPPED_EXIT_CODE, -signal.SIGTERM, -signal.SIGKILL):
            self._continue_later(env, received)
            raise SystemExit(STOPPED_EXIT_CODE)  # no result file: the job is not over for submitit
        raise RuntimeError(f"{' '.join(self.argv)} exited with status {code} (log: {log_path})")

    # after SIGTERM, how long the job waits for SLURM to end it (preemption: GraceTime; requeue and
    # cancel: KillWait) before it requeues itself
    stop_wait_s = 300

    def _continue_later(self, env, received):
        """
        The next submission of this job is the command with ``--resume``. Then, on SIGUSR2 first
        (time limit) the job requeues itself, as submitit does; on SIGTERM it waits to be killed:
        SLURM requeues a preempted job only when it kills it (a job that exits in its grace time
        counts as finished), and a cancelled job stays cancelled. If nothing kills it within
        :attr:`stop_wait_s` (a bare ``scancel --signal=TERM``), it requeues itself.
        """
        if env is None:
            return
        countdown = 0
        timed_out = bool(received) and received[0] == signal.SIGUSR2
        if env.global_rank == 0:
            from submitit.core import utils
            from submitit.helpers import DelayedSubmission

            path = env.paths.submitted_pickle
            delayed = DelayedSubmission.load(path)
            countdown = delayed._timeout_countdown - int(timed_out)
            following = self.checkpoint()
            following.set_timeout(delayed._timeout_min, countdown)
            with utils.temporary_save_path(path) as tmp:
                following.dump(tmp)
        if "SLURM_JOB_ID" not in os.environ:
            return  # submitit's local jobs: nothing requeues them
        if not timed_out:
            deadline = time.time() + self.stop_wait_s
            while time.time() < deadline:
                time.sleep(1)
        if env.global_rank == 0 and countdown >= 0:
            env._requeue(countdown)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        from submitit.helpers import DelayedSubmission

        argv = list(self.argv)
        if os.path.basename(argv[0]) in DISTRIBUTED_TOOLS and "--resume" not in argv:
            argv.insert(1, "--resume")
        return DelayedSubmission(CommandJob(argv, self.log_path, self.cwd, self.nodes, self.port))


def _job_environment():
    """submitit's job environment inside a submitit job, else None."""
    if "SUBMITIT_FOLDER" not in os.environ:
        return None
    import submitit

    return submitit.JobEnvironment()


class SubmititExecutor:
    """
    SLURM (or submitit's local stand-in) through submitit.

    Args:
        folder: submitit's folder for job scripts, pickles and its own logs.
        cluster: "slurm" or "local" (submitit's LocalExecutor: the same jobs as local processes).
        max_jobs: at most this many of the study's jobs queued or running at once (None: no cap).
        parameters: submitit's ``update_parameters`` keywords shared by every job, e.g.
            ``slurm_partition``, ``slurm_array_parallelism``; each run's own resources
            (:mod:`.resources`) are added per array.
    """

    poll_interval = 1.0

    def __init__(
        self,
        folder: str,
        cluster: str = "slurm",
        cwd: str | None = None,
        max_jobs: int | None = None,
        **parameters: Any,
    ):
        import submitit

        self.folder, self.cluster, self.max_jobs = folder, cluster, max_jobs
        if cluster == "local":
            self.executor = submitit.LocalExecutor(folder=folder)
            keep = {"timeout_min", "gpus_per_node", "nodes", "tasks_per_node", "cpus_per_task"}
            self._keep = keep
            parameters = {k: v for k, v in parameters.items() if k in keep}
            parameters.setdefault("timeout_min", 60 * 24)
        elif cluster == "slurm":
            self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
            self._keep = None
            # the CLIs launch their own processes per GPU
            parameters.setdefault("tasks_per_node", 1)
        else:
            raise ValueError(f"unknown submitit cluster {cluster!r}; use 'slurm' or 'local'")
        self.parameters = parameters
        self.cwd = cwd
        self._jobs = {}  # key -> job
        self._no_output_since = {}  # key -> when a job was first seen ended without a result
        self._sacct_state = {}  # key -> (when sacct was last asked, the state it gave)

    def capacity(self) -> int | None:
        return None if self.max_jobs is None else self.max_jobs - len(self._jobs)

    def _parameters(self, resources):
        params = dict(self.parameters)
        params.update(submitit_parameters(resources))
        if self._keep is not None:
            params = {k: v for k, v in params.items() if k in self._keep}
        return params

    def start(self, items: Iterable[tuple]) -> None:
        groups = {}  # the same resources -> one array
        for item in items:
            resources = item[3] if len(item) > 3 else {}
            groups.setdefault(json.dumps(resources, sort_keys=True), []).append(item)
        for group in groups.values():
            resources = group[0][3] if len(group[0]) > 3 else {}
            params = self._parameters(resources)
            self.executor.update_parameters(**params)
            nodes = int(params.get("nodes", 1))
            jobs = []
            if len(group) > 1 and hasattr(self.executor, "batch"):
                with self.executor.batch():  # one array job (slurm_array_parallelism applies)
                    for _key, argv, log_path, *_ in group:
                        jobs.append(
                            self.executor.submit(CommandJob(argv, log_path, self.cwd, nodes))
                        )
            else:
                for _key, argv, log_path, *_ in group:
                    jobs.append(self.executor.submit(CommandJob(argv, log_path, self.cwd, nodes)))
            for (key, *_), job in zip(group, jobs):
                self._jobs[key] = job

    def check_resources(
        self, run_resources: Mapping[str, Mapping[str, int]], kinds: Mapping[str, str] | None = None
    ) -> list[str]:
        """Before anything is submitted: each run's time against the partition's limit (``sinfo``;
        an error naming the runs), and a warning line for CPU-only training runs (``kinds``: run id
        -> its :attr:`~.spec.Run.kind`, one of :data:`~.resources.TRAINING_KINDS`) on a partition
        with GPUs."""
        if self.cluster != "slurm":
            return []
        partition = self.parameters.get("slurm_partition")
        limit = partition_time_limit(partition)
        where = f"partition {partition!r}" if partition else "the default partition"
        over = {
            rid: r["time"]
            for rid, r in run_resources.items()
            if limit is not None and r.get("time", 0) > limit
        }
        if over:
            first = ", ".join(f"{rid} ({m} min)" for rid, m in list(over.items())[:5])
            raise ValueError(
                f"{len(over)} runs ask for more time than {where} allows ({limit:g} min): {first}"
                f"{' ...' if len(over) > 5 else ''}; lower --time or the study's "
                f"resources.<kind>.time"
            )
        lines = []
        if partition_has_gpus(partition):
            cpu_only = [
                rid
                for rid, r in run_resources.items()
                if not r.get("gpus") and (kinds or {}).get(rid) in TRAINING_KINDS
            ]
            if cpu_only:
                lines.append(
                    f"warning: {len(cpu_only)} training runs ask for no GPU on {where}, which has "
                    f"GPUs (e.g. {cpu_only[0]}); give --gpus-per-node or resources.<kind>.gpus"
                )
        return lines

    def job_id(self, key: str) -> str | None:
        job = self._jobs.get(key)
        return None if job is None else str(job.job_id)

    def job_tasks(self, key: str) -> int:
        job = self._jobs.get(key)
        return 1 if job is None else max(1, len(getattr(job, "_tasks", (0,))))

    def reattach(self, key: str, job_id: str, tasks: int = 1) -> bool:
        """Follow job ``job_id`` (submitted by an earlier driver) as ``key``; False when this
        cluster cannot (submitit's local jobs die with their driver)."""
        if self.cluster != "slurm":
            return False
        import submitit

        self._jobs[key] = submitit.SlurmJob(
            self.folder, str(job_id), tasks=tuple(range(int(tasks)))
        )
        return True

    def poll(self) -> list[tuple[str, int, str | None]]:
        ended = []
        for key, job in list(self._jobs.items()):
            if not job.done():
                continue
            try:
                job.results()  # every task's (result() refuses jobs of several tasks)
                ended.append((key, 0, None))
            except Exception as e:  # the command failed, or the job system did
                if self._maybe_requeued(key, job, e):
                    continue
                ended.append((key, 1, _job_error(e, job)))
            del self._jobs[key]
            self._no_output_since.pop(key, None)
            self._sacct_state.pop(key, None)
        return ended

    def _maybe_requeued(self, key: str, job: Any, error: Exception) -> bool:
        """
        True while a SLURM job that ended without a result may still run again. A requeue
        (``scontrol requeue``, preemption) can show the old attempt in a terminal state for a
        moment; submitit then calls the job done and never asks again. So a job without output is
        followed with ``sacct`` of its own until its state stays terminal for REQUEUE_GRACE_S.
        """
        from submitit.core.utils import UncompletedJobError

        if self.cluster != "slurm" or not isinstance(error, UncompletedJobError):
            return False
        now = time.time()
        first = self._no_output_since.setdefault(key, now)
        asked = self._sacct_state.get(key)
        if asked is None or now - asked[0] >= SACCT_EVERY_S:  # spare slurmdbd: one sacct per 10 s
            asked = self._sacct_state[key] = (now, slurm_job_state(str(job.job_id)))
        if asked[1] in SLURM_INCOMPLETE_STATES:
            self._no_output_since[key] = now  # requeued: wait for its result again
            return True
        return now - first < REQUEUE_GRACE_S

    def stop(self, cancel: bool = False) -> str | None:
        """``cancel``: cancel every job still queued or running (an explicit interrupt); otherwise
        leave them to SLURM (the next start of the study reattaches to them). Returns a line saying
        which."""
        ids = sorted(str(job.job_id) for job in self._jobs.values())
        if not ids:
            return None
        if cancel or self.cluster == "local":
            for job in self._jobs.values():
                job.cancel(check=False)
            self._jobs.clear()
            return f"cancelled {len(ids)} jobs: {', '.join(ids)}"
        self._jobs.clear()
        return (
            f"left {len(ids)} jobs running: {', '.join(ids)} "
            "(the next start of the study follows them)"
        )


#: how long a SLURM job without a result must stay in a terminal state to count as failed
REQUEUE_GRACE_S = 60.0
#: how often such a job's state is asked of sacct (the driver polls every second)
SACCT_EVERY_S = 10.0
SLURM_INCOMPLETE_STATES = frozenset(
    {
        "READY",
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "COMPLETING",
        "CONFIGURING",
        "PREEMPTED",
        "RESIZING",
        "SUSPENDED",
        "UNKNOWN",
    }
)


def slurm_job_state(job_id: str) -> str:
    """The state ``sacct`` reports for the job's allocation now (e.g. "PENDING", "FAILED");
    "" when sacct cannot say (not installed, no answer, job unknown): such a job is not followed
    beyond REQUEUE_GRACE_S, so a cluster without accounting never holds the driver."""
    try:
        out = subprocess.run(
            ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    states = [line.split()[0].upper() for line in out.splitlines() if line.strip()]
    return states[-1] if states else ""


def _job_error(error, job):
    """One line on a failed job: the command's exit line when it ran, else the job's own error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if "exited with status" in line:
            return line[line.find(" ") + 1 :] if line.startswith("RuntimeError") else line
    tail = next(
        (line for line in reversed(lines) if "Error" in line or "state" in line),
        lines[-1] if lines else "",
    )
    return f"job {getattr(job, 'job_id', '?')} failed: {tail}"


def build_executor(
    name: str,
    study_dir: str,
    *,
    jobs: int = 1,
    cwd: str | None = None,
    slurm: Mapping[str, Any] | None = None,
    max_jobs: int | None = None,
) -> LocalExecutor | SubmititExecutor:
    """``name`` in EXECUTORS; ``slurm``: submitit parameters shared by every job ("slurm" /
    "submitit-local")."""
    if name == "local":
        return LocalExecutor(jobs=jobs, cwd=cwd)
    if name in ("slurm", "submitit-local"):
        folder = os.path.join(study_dir, "submitit")
        return SubmititExecutor(
            folder,
            cluster="slurm" if name == "slurm" else "local",
            cwd=cwd,
            max_jobs=max_jobs,
            **(slurm or {}),
        )
    raise ValueError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")

"""
Where a study's runs execute. An executor starts commands and reports when they end:

* :class:`LocalExecutor`: subprocesses on this machine, ``jobs`` at a time (1 = sequential).
* :class:`SubmititExecutor`: SLURM through submitit (the way detectron2 / VISSL users submit), one
  job per run, the runs that are ready together submitted as one array job with a concurrency
  limit; a preempted or timed-out job is requeued and continues with ``--resume``. With
  ``cluster="local"`` submitit runs the same jobs as local processes (what the tests use).

Contract: ``capacity()`` (how many more commands may start now, None = no limit),
``start(items)`` with items ``(key, argv, log_path)`` (argv after the interpreter), and ``poll()``
returning ``[(key, returncode or None, error text)]`` for the commands that ended since the last
call (returncode 0 = success; None with an error = the job system failed).
"""
import os
import subprocess
import sys

__all__ = ["LocalExecutor", "shared_thread_env", "SubmititExecutor", "CommandJob", "build_executor", "EXECUTORS"]

EXECUTORS = ("local", "slurm", "submitit-local")
DISTRIBUTED_TOOLS = ("train_net.py", "pretrain_net.py")  # the tools that take --num-gpus / --num-machines


def shared_thread_env(jobs, env=None, cpus=None):
    """
    The environment for ``jobs`` processes sharing this machine's ``cpus`` cores: each gets
    ``OMP_NUM_THREADS = max(1, cpus // jobs)`` (torch's intra-op threads), so that N runs at a time do
    not oversubscribe the cores. A value the user set in ``env`` is kept.
    """
    env = dict(os.environ if env is None else env)
    if "OMP_NUM_THREADS" not in env:
        if cpus is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        env["OMP_NUM_THREADS"] = str(max(1, cpus // jobs))
    return env


class LocalExecutor:
    """Subprocesses on this machine, ``jobs`` at a time, sharing its cores (:func:`shared_thread_env`);
    each writes its output to its log file."""

    poll_interval = 0.2

    def __init__(self, jobs=1, cwd=None, env=None):
        if jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {jobs}")
        self.jobs, self.cwd, self.env = jobs, cwd, shared_thread_env(jobs, env)
        self._procs = {}  # key -> (Popen, log file)

    def capacity(self):
        return self.jobs - len(self._procs)

    def start(self, items):
        for key, argv, log_path in items:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            log = open(log_path, "ab")
            proc = subprocess.Popen([sys.executable, *argv], cwd=self.cwd, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self._procs[key] = (proc, log)

    def poll(self):
        ended = []
        for key, (proc, log) in list(self._procs.items()):
            code = proc.poll()
            if code is not None:
                log.close()
                del self._procs[key]
                ended.append((key, code, None if code == 0 else f"exit status {code}"))
        return ended

    def stop(self):
        """Terminate what is still running (the study was interrupted)."""
        for proc, log in self._procs.values():
            proc.terminate()
        for proc, log in self._procs.values():
            proc.wait()
            log.close()
        self._procs.clear()


class CommandJob:
    """
    The callable a submitit job runs: the CLI in a subprocess, its output appended to ``log_path``.
    On several nodes (one task per node) it adds ``--num-machines``, ``--machine-rank`` and
    ``--dist-url`` from submitit's job environment. ``checkpoint`` (called by submitit on
    preemption or timeout) requeues the same command with ``--resume``.
    """

    def __init__(self, argv, log_path, cwd=None, nodes=1, port=29500):
        self.argv, self.log_path, self.cwd, self.nodes, self.port = list(argv), log_path, cwd, nodes, port

    def command(self):
        argv = list(self.argv)
        if self.nodes > 1 and os.path.basename(argv[0]) in DISTRIBUTED_TOOLS:
            import submitit

            env = submitit.JobEnvironment()
            argv[1:1] = ["--num-machines", str(self.nodes), "--machine-rank", str(env.global_rank),
                         "--dist-url", f"tcp://{env.hostnames[0]}:{self.port}"]
        return [sys.executable, *argv]

    def __call__(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as log:
            code = subprocess.call(self.command(), cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            raise RuntimeError(f"{' '.join(self.argv)} exited with status {code} (log: {self.log_path})")
        return code

    def checkpoint(self, *args, **kwargs):
        import submitit

        argv = list(self.argv)
        if os.path.basename(argv[0]) in DISTRIBUTED_TOOLS and "--resume" not in argv:
            argv.insert(1, "--resume")
        return submitit.helpers.DelayedSubmission(CommandJob(argv, self.log_path, self.cwd, self.nodes, self.port))


class SubmititExecutor:
    """
    SLURM (or submitit's local stand-in) through submitit.

    Args:
        folder: submitit's folder for job scripts, pickles and its own logs.
        cluster: "slurm" or "local" (submitit's LocalExecutor: the same jobs as local processes).
        parameters: submitit's ``update_parameters`` keywords, e.g. ``slurm_partition``,
            ``gpus_per_node``, ``nodes``, ``timeout_min``, ``cpus_per_task``,
            ``slurm_array_parallelism`` (the array's concurrency limit).
    """

    poll_interval = 1.0

    def __init__(self, folder, cluster="slurm", cwd=None, **parameters):
        import submitit

        self.nodes = int(parameters.get("nodes", 1))
        if cluster == "local":
            self.executor = submitit.LocalExecutor(folder=folder)
            keep = {"timeout_min", "gpus_per_node", "nodes", "tasks_per_node", "cpus_per_task"}
            parameters = {k: v for k, v in parameters.items() if k in keep}
            parameters.setdefault("timeout_min", 60 * 24)
            self.executor.update_parameters(**parameters)
            self.array_parallelism = None
        elif cluster == "slurm":
            self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
            parameters.setdefault("tasks_per_node", 1)  # the CLIs launch their own processes per GPU
            self.executor.update_parameters(**parameters)
        else:
            raise ValueError(f"unknown submitit cluster {cluster!r}; use 'slurm' or 'local'")
        self.cwd = cwd
        self._jobs = {}  # key -> job

    def capacity(self):
        return None

    def start(self, items):
        if not items:
            return
        jobs = []
        if len(items) > 1 and hasattr(self.executor, "batch"):
            with self.executor.batch():  # one array job (slurm_array_parallelism applies)
                for key, argv, log_path in items:
                    jobs.append(self.executor.submit(CommandJob(argv, log_path, self.cwd, self.nodes)))
        else:
            for key, argv, log_path in items:
                jobs.append(self.executor.submit(CommandJob(argv, log_path, self.cwd, self.nodes)))
        for (key, _, _), job in zip(items, jobs):
            self._jobs[key] = job

    def poll(self):
        ended = []
        for key, job in list(self._jobs.items()):
            if job.done():
                del self._jobs[key]
                try:
                    job.result()
                    ended.append((key, 0, None))
                except Exception as e:  # the command failed, or the job system did
                    ended.append((key, 1, _job_error(e, job)))
        return ended

    def stop(self):
        for job in self._jobs.values():
            job.cancel(check=False)
        self._jobs.clear()


def _job_error(error, job):
    """One line on a failed job: the command's exit line when it ran, else the job's own error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if "exited with status" in line:
            return line[line.find(" ") + 1:] if line.startswith("RuntimeError") else line
    tail = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
    return f"job {getattr(job, 'job_id', '?')} failed: {tail}"


def build_executor(name, study_dir, *, jobs=1, cwd=None, slurm=None):
    """``name`` in EXECUTORS; ``slurm``: submitit parameters for "slurm" / "submitit-local"."""
    if name == "local":
        return LocalExecutor(jobs=jobs, cwd=cwd)
    if name in ("slurm", "submitit-local"):
        folder = os.path.join(study_dir, "submitit")
        return SubmititExecutor(folder, cluster="slurm" if name == "slurm" else "local", cwd=cwd, **(slurm or {}))
    raise ValueError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")

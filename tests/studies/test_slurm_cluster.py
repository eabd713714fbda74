"""
The SLURM path on a real one-node SLURM cluster (scripts/slurm_cluster.sh: slurmctld, slurmd,
slurmdbd with MariaDB, munge), through submitit as users run it. CI runs these as root; elsewhere
they skip with the reason.

One study carries the cluster's events in order: array jobs, a second driver refused by the lock,
``scontrol requeue`` of the running pretraining job (SIGTERM, then SLURM runs it again), the
time-limit signal (SIGUSR2: the job requeues itself), the driver killed with SIGKILL and restarted
(it follows its jobs, submits none twice), per-kind resources in ``sacct``, a second start that
submits nothing.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, copy_crops

SCRIPT = os.path.join(REPO, "scripts", "slurm_cluster.sh")


def _why_not():
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to start a SLURM cluster (CI runs as root)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "no SLURM and no apt-get to install it"
    return None


# one pytest-xdist worker runs them all (make test: --dist loadgroup): a preempting job of one test
# would otherwise requeue another test's jobs, and their jobs would wait for each other's CPUs
pytestmark = [
    pytest.mark.skipif(_why_not() is not None, reason=str(_why_not())),
    pytest.mark.xdist_group("slurm_cluster"),
]


@pytest.fixture(scope="module")
def cluster():
    out = subprocess.run(["bash", SCRIPT, "start"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (
        f"the SLURM cluster did not start:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    )
    print(out.stdout.strip().splitlines()[-1])
    return True


def sacct(*job_ids):
    out = subprocess.run(
        [
            "sacct",
            "-n",
            "-X",
            "-P",
            "-o",
            "JobID,JobName,State,ReqCPUS,Timelimit",
            "-j",
            ",".join(job_ids),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line.split("|") for line in out.stdout.splitlines() if line.strip()]


def _wait(what, predicate, timeout, proc=None, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"the driver ended ({proc.returncode}) while waiting for {what}:\n{_tail(log)}"
            )
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{_tail(log)}")


def _tail(path, n=4000):
    return open(path).read()[-n:] if path and os.path.isfile(path) else ""


def _state(out):
    try:
        return json.load(open(out / "state.json"))["runs"]
    except (OSError, ValueError):
        return {}


def _study(tmp_path, sets):
    custom = (
        f"[{{'NAME': 'sl_train', 'FORMAT': 'folder', 'ROOT': '{sets / 'train'}'}}, "
        f"{{'NAME': 'sl_test', 'FORMAT': 'folder', 'ROOT': '{sets / 'test'}'}}]"
    )
    small = {"DATASETS.CUSTOM": custom, "DATALOADER.NUM_WORKERS": 0}
    study = {
        "name": "slurm_tiny",
        "output_dir": str(tmp_path / "slurm_tiny"),
        "resources": {"pretrain": {"time": 30}, "report": {"cpus": 1, "time": 15}},
        "pretrain": {
            "methods": {
                "simclr": {
                    "config": "configs/toy/pretrain_simclr_R18.yaml",
                    "opts": {
                        **small,
                        "DATASETS.TRAIN": ["sl_train"],
                        "DATASETS.TEST": ["sl_test"],
                        "SOLVER.IMS_PER_BATCH": 8,
                        "INPUT.TWO_VIEW.CROP_SIZE": 32,
                        "INPUT.TWO_VIEW.TEST_RESIZE": 32,
                        "SOLVER.MAX_ITER": 400,
                        "SOLVER.CHECKPOINT_PERIOD": 100000,
                        "SOLVER.WARMUP_ITERS": 1,
                        "TEST.KNN.K": 5,
                    },
                }
            },
            "seeds": [0],
        },
        "transfer": {
            "seeds": [1, 2],
            "runs": {
                "lbfgs": {
                    "config": "configs/toy/cls_linear_lbfgs_R18.yaml",
                    "resources": {"time": 20},
                    "opts": {
                        **small,
                        "DATASETS.TRAIN": ["sl_train"],
                        "DATASETS.TEST": ["sl_test"],
                        "INPUT.CLS.CROP_SIZE": 32,
                        "INPUT.CLS.TEST_RESIZE": 32,
                        "CLASSIFICATION.LBFGS.NUM_REGS": 2,
                        "CLASSIFICATION.FEATURE_CACHE": str(tmp_path / "cache"),
                    },
                }
            },
        },
    }
    path = tmp_path / "slurm_tiny.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _driver(path, toy_root, log, report=False):
    env = dict(
        os.environ, DETECTRON2_DATASETS=str(toy_root), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"
    )
    return subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO, "tools", "run_study.py"),
            str(path),
            "--executor",
            "slurm",
            *([] if report else ["--no-report"]),
            "--cpus-per-task",
            "1",
            "--time",
            "45",
        ],
        cwd=REPO,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def _training_starts(run_log):
    text = _tail(run_log, 10**7)
    return [
        int(line.split("Starting training from iteration")[1].split()[0])
        for line in text.splitlines()
        if "Starting training from iteration" in line
    ]


@pytest.mark.slow
def test_study_on_slurm_survives_requeue_time_limit_and_a_killed_driver(
    cluster, toy_root, tmp_path
):
    sets = copy_crops(toy_root, tmp_path / "sets", {"train": 4, "test": 2})
    path = _study(tmp_path, sets)
    out = tmp_path / "slurm_tiny"
    pre = "pretrain/simclr/seed0"
    run_log = out / "logs" / "pretrain__simclr__seed0.log"
    log1 = tmp_path / "driver1.log"
    driver = _driver(path, toy_root, log1)

    # the pretraining job runs: one driver per study
    job = _wait(
        "the pretraining job id", lambda: _state(out).get(pre, {}).get("job_id"), 300, driver, log1
    )
    second = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "run_study.py"),
            str(path),
            "--executor",
            "slurm",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, DETECTRON2_DATASETS=str(toy_root)),
    )
    assert second.returncode == 2 and f"pid {driver.pid}" in second.stderr, second.stderr[-2000:]

    # scontrol requeue: SIGTERM to the job (the CLI saves a checkpoint and stops), SLURM runs it
    # again
    _wait("training to start", lambda: _training_starts(run_log), 600, driver, log1)
    time.sleep(3)
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
    _wait(
        "the stop with a checkpoint",
        lambda: "Stopped on request after iteration" in _tail(run_log, 10**7),
        120,
        driver,
        log1,
    )
    starts = _wait(
        "the resumed run",
        lambda: [s for s in _training_starts(run_log) if s > 0],
        400,
        driver,
        log1,
    )
    assert "--resume" in _tail(run_log, 10**7)

    # the time-limit signal (SIGUSR2, what submitit sends 90 s before the limit): the job requeues
    # itself, resumes again
    time.sleep(3)
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=60)
    _wait(
        "a second resume",
        lambda: len([s for s in _training_starts(run_log) if s > 0]) >= 2,
        400,
        driver,
        log1,
    )

    # the driver dies (SIGKILL); a new one follows the running job instead of submitting it again
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    log2 = tmp_path / "driver2.log"
    driver = _driver(path, toy_root, log2)
    code = driver.wait(timeout=1500)
    text = _tail(log2, 10**6)
    assert code == 0, text[-4000:]
    if _state(out)[pre].get("status") == "done" and f"REATTACH {pre}" not in text:
        assert "1 done before" in text  # the pretraining ended while no driver ran: read as done
    else:
        assert f"REATTACH {pre}: job {job}" in text
    assert f"START {pre}" not in text and _state(out)[pre]["job_id"] == job
    assert starts and all(s > 0 for s in _training_starts(run_log)[1:])

    # every job completed; the transfers ran as one array; each kind got its own time limit
    state = _state(out)
    assert {v["status"] for v in state.values()} == {"done"}, state
    for row in ("random-init", "simclr"):  # the seeds of a row are ready together: one array job
        jobs = [v["job_id"] for k, v in state.items() if k.startswith(f"transfer/lbfgs/{row}/")]
        assert (
            len(jobs) == 2
            and all("_" in j for j in jobs)
            and len({j.split("_")[0] for j in jobs}) == 1
        ), jobs
    ids = {v["job_id"].split("_")[0] for v in state.values()}
    _wait(
        "sacct to show every job COMPLETED",
        lambda: all(r[2] == "COMPLETED" for r in sacct(*ids)),
        120,
    )
    rows = {r[0]: r for r in sacct(*ids)}  # id -> sacct row
    for rid, entry in state.items():
        jid, _, _, cpus, limit = rows[entry["job_id"]]
        expected = (
            "00:30:00"
            if rid.startswith("pretrain/")
            else "01:00:00"
            if rid.startswith("convert/")
            else "00:20:00"
        )
        assert limit == expected, (rid, limit)

    # a second start submits no run; the report's pictures run as a job, not in the driver
    log3 = tmp_path / "driver3.log"
    assert _driver(path, toy_root, log3, report=True).wait(timeout=900) == 0, _tail(log3)
    text = _tail(log3, 10**6)
    assert ", 0 to run" in text and "START pretrain" not in text and "START transfer" not in text
    assert "START report pictures as job" in text and "DONE  report pictures" in text, text[-3000:]
    assert "## Pictures" in (out / "report" / "report.md").read_text()


def test_a_job_of_two_tasks_is_read_with_results(cluster, tmp_path):
    from contrastive_det.studies.executors import SubmititExecutor

    executor = SubmititExecutor(str(tmp_path / "submitit"), cluster="slurm", cwd=REPO)
    argv = ["-c", "import os; print('task', os.environ['SLURM_PROCID'])"]
    executor.start(
        [
            (
                "two",
                argv,
                str(tmp_path / "logs" / "two.log"),
                {"tasks_per_node": 2, "cpus": 1, "time": 5},
            )
        ]
    )
    assert executor.job_tasks("two") == 2
    ended = _wait("the two-task job", executor.poll, 300)
    assert ended == [("two", 0, None)]
    assert "task 0" in (tmp_path / "logs" / "two.log").read_text()
    assert "task 1" in (tmp_path / "logs" / "two.log.rank1").read_text()


@pytest.mark.slow
def test_preempted_run_continues_with_resume(cluster, toy_root, tmp_path, monkeypatch):
    """SLURM's preemption (PreemptMode=REQUEUE): a job of the high-priority partition takes the
    CPUs; the running pretraining job gets SIGTERM, stops with a checkpoint, is requeued by SLURM
    and ends with --resume from that checkpoint; the executor reports one success."""
    from contrastive_det.studies.executors import SubmititExecutor

    monkeypatch.setenv("DETECTRON2_DATASETS", str(toy_root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sets = copy_crops(toy_root, tmp_path / "sets", {"train": 4, "test": 2})
    custom = (
        f"[{{'NAME': 'pp_train', 'FORMAT': 'folder', 'ROOT': '{sets / 'train'}'}}, "
        f"{{'NAME': 'pp_test', 'FORMAT': 'folder', 'ROOT': '{sets / 'test'}'}}]"
    )
    out = tmp_path / "pre"
    argv = [
        os.path.join(REPO, "tools", "pretrain_net.py"),
        "--config-file",
        os.path.join(REPO, "configs", "toy", "pretrain_simclr_R18.yaml"),
        "DATASETS.CUSTOM",
        custom,
        "DATASETS.TRAIN",
        "('pp_train',)",
        "DATASETS.TEST",
        "('pp_test',)",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "INPUT.TWO_VIEW.CROP_SIZE",
        "32",
        "INPUT.TWO_VIEW.TEST_RESIZE",
        "32",
        "SOLVER.MAX_ITER",
        "300",
        "SOLVER.CHECKPOINT_PERIOD",
        "100000",
        "SOLVER.WARMUP_ITERS",
        "1",
        "TEST.KNN.K",
        "5",
        "DATALOADER.NUM_WORKERS",
        "0",
        "SEED",
        "0",
        "OUTPUT_DIR",
        str(out),
    ]
    log = tmp_path / "pre.log"
    executor = SubmititExecutor(str(tmp_path / "submitit"), cluster="slurm", cwd=REPO)
    executor.start([("pre", argv, str(log), {"cpus": 1, "time": 30})])
    job = executor.job_id("pre")
    _wait("training to start", lambda: _training_starts(log), 600, log=log)
    time.sleep(3)
    urgent = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-p",
            "urgent",
            "-c",
            "2",
            "-o",
            str(tmp_path / "urgent.out"),
            "--wrap",
            "sleep 5",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    _wait(
        "the preempted run to stop",
        lambda: "Stopped on request after iteration" in _tail(log, 10**7),
        300,
        log=log,
    )
    ended = _wait("the requeued run to end", executor.poll, 900, log=log)
    assert ended == [("pre", 0, None)], _tail(log)
    starts = _training_starts(log)
    assert starts[0] == 0 and len(starts) >= 2 and starts[-1] > 0, starts
    assert "Received SIGTERM" in _tail(log, 10**7) and (out / "results.json").is_file()
    # sacct follows the job's end by a few seconds
    _wait(
        "sacct to show both jobs COMPLETED",
        lambda: (
            all(row[2] == "COMPLETED" for row in sacct(job, urgent))
            and len(sacct(job, urgent)) == 2
        ),
        120,
    )
    requeued = subprocess.run(
        ["sacct", "-n", "-X", "-D", "-P", "-o", "JobID,State", "-j", job],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "PREEMPTED" in requeued or "REQUEUED" in requeued, requeued


def test_a_time_over_the_partitions_limit_is_refused_before_anything_is_submitted(
    cluster, toy_root, tmp_path
):
    sets = copy_crops(toy_root, tmp_path / "sets", {"train": 2, "test": 1})
    path = _study(tmp_path, sets)
    env = dict(os.environ, DETECTRON2_DATASETS=str(toy_root))
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "run_study.py"),
            str(path),
            "--executor",
            "slurm",
            "--partition",
            "short",
            "--time",
            "45",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    # the study's own times (30 and 20 min) pass; --time 45 is what the other runs got
    assert "ask for more time than partition 'short' allows (10 min)" in out.stderr, out.stderr[
        -2000:
    ]
    assert "START" not in out.stdout and not any(
        v.get("job_id") for v in _state(tmp_path / "slurm_tiny").values()
    )
    assert not list((tmp_path / "slurm_tiny").glob("submitit/*.sh"))  # no job script written

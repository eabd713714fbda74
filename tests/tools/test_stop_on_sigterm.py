"""
SIGTERM (what SLURM sends on preemption, ``scontrol requeue`` or ``scancel``) to the launcher of a
2-process run: both processes stop at the same iteration, the main one writes a checkpoint of it,
the command exits with status 75 (EX_TEMPFAIL) and no results.json, and ``--resume`` ends with the
weights and metrics of an uninterrupted run.
"""

import signal
import time

import pytest

from test_resume_after_kill import SEED, _finish, _start, assert_same_run, mini_crops, pretrain_args  # noqa: F401

from conftest import free_port

from contrastive_det.engine.stop_request import STOPPED_EXIT_CODE


def _wait_for(proc, text, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended ({proc.returncode}) before "
                f"{text!r}:\n{open(proc.log_path).read()[-4000:]}"
            )
        if text in open(proc.log_path).read():
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{text!r} did not appear in time")


@pytest.mark.slow
def test_sigterm_stops_both_processes_with_a_checkpoint_and_resume_is_exact(
    mini_crops,  # noqa: F811 (the fixture, imported)
    toy_root,
    tmp_path,
):
    script, args = pretrain_args("mocov2", mini_crops)
    args = [
        *args,
        "SOLVER.MAX_ITER",
        "30",
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        "SOLVER.STEPS",
        "(15,)",
        "MODEL.CONTRASTIVE.QUEUE_SIZE",
        "64",
    ]
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "stopped"

    def two():
        return ["--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{free_port()}"]

    reference = _start(script, args, ref_dir, SEED, toy_root, extra=two())
    stopped = _start(script, args, run_dir, SEED, toy_root, extra=two())
    _wait_for(stopped, "Starting training from iteration 0")
    time.sleep(1.0)
    stopped.send_signal(signal.SIGTERM)
    stopped.wait(timeout=300)
    text = open(stopped.log_path).read()
    assert stopped.returncode == STOPPED_EXIT_CODE, text[-4000:]
    name = (run_dir / "last_checkpoint").read_text().strip()
    iteration = int(name[len("model_") : -len(".pth")])
    assert 0 <= iteration < 29 and f"Stopped on request after iteration {iteration}" in text
    assert not (run_dir / "results.json").exists()
    resumed = _start(script, args, run_dir, SEED, toy_root, extra=[*two(), "--resume"])
    text = _finish(resumed)
    assert f"Starting training from iteration {iteration + 1}" in text
    _finish(reference)
    assert_same_run(ref_dir, run_dir)


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_with_loader_workers_still_stops_with_a_checkpoint(
    mini_crops,  # noqa: F811 (the fixture, imported)
    toy_root,
    tmp_path,
):
    """SLURM's preemption and ``kill -- -PGID`` signal every process, loader workers included:
    the workers ignore it (they died before, and the run failed on "DataLoader worker ... killed
    by signal" without its stop checkpoint), the run stops with a checkpoint, exits 75 without
    hanging on the workers, and resumes exactly."""
    import os

    script, args = pretrain_args("simclr", mini_crops)
    args = [*args, "SOLVER.MAX_ITER", "30", "SOLVER.CHECKPOINT_PERIOD", "1000"]
    args += ["DATALOADER.NUM_WORKERS", "2"]
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "stopped"
    reference = _start(script, args, ref_dir, SEED, toy_root)
    _finish(reference)
    stopped = _start(script, args, run_dir, SEED, toy_root, start_new_session=True)
    _wait_for(stopped, "Starting training from iteration 0")
    time.sleep(1.0)
    os.killpg(stopped.pid, signal.SIGTERM)  # the run and its loader workers
    stopped.wait(timeout=300)
    text = open(stopped.log_path).read()
    assert stopped.returncode == STOPPED_EXIT_CODE, text[-4000:]
    assert "killed by signal" not in text
    name = (run_dir / "last_checkpoint").read_text().strip()
    iteration = int(name[len("model_") : -len(".pth")])
    assert f"Stopped on request after iteration {iteration}" in text
    resumed = _start(script, args, run_dir, SEED, toy_root, extra=["--resume"])
    assert f"Starting training from iteration {iteration + 1}" in _finish(resumed)
    assert_same_run(ref_dir, run_dir)


@pytest.mark.slow
def test_sigterm_during_the_final_evaluation_exits_at_once_and_resume_only_evaluates(
    toy_root, tmp_path
):
    """After the last iteration (model_final.pth written) the run no longer waits: a COCO-size
    evaluation outlasts a scheduler's grace time. Exit 75, no results.json; --resume evaluates."""
    from conftest import FAST, TOY_CONFIG

    args = [
        "--config-file",
        TOY_CONFIG,
        *FAST,
        "SOLVER.MAX_ITER",
        "2",
        "INPUT.MIN_SIZE_TEST",
        "320",
    ]
    out = tmp_path / "run"
    proc = _start("train_net.py", args, out, SEED, toy_root)
    _wait_for(proc, "Start inference on")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    text = open(proc.log_path).read()
    assert proc.returncode == STOPPED_EXIT_CODE, text[-4000:]
    assert "Total inference time" not in text  # stopped inside the evaluation
    assert (out / "model_final.pth").is_file() and not (out / "results.json").exists()
    resumed = _finish(_start("train_net.py", args, out, SEED, toy_root, extra=["--resume"]))
    assert "Starting training from iteration 2" in resumed
    assert (out / "results.json").is_file()

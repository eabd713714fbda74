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

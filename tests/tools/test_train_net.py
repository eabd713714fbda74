"""End to end: the real tools/train_net.py on the toy config, a few iterations at a time."""

import fractions
import json
import math
import os

import pytest
import torch

from conftest import FAST, TOY_CONFIG, run_cli


def read_results(output_dir):
    with open(os.path.join(output_dir, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def trained(toy_root, tmp_path_factory):
    """One 4-iteration toy run, shared by the tests that inspect or continue it."""
    out = tmp_path_factory.mktemp("train")
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            *FAST,
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "SEED",
            "3",
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
    )
    return out, proc


@pytest.mark.slow
def test_train_writes_checkpoints_and_finite_ap(trained):
    out, proc = trained
    assert os.path.isfile(out / "model_0000001.pth") and os.path.isfile(out / "model_final.pth")
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert (
        torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["iteration"]
        == 3
    )
    res = read_results(out)
    metrics = res["metrics"]["toy_digits_test"]
    for key in ("bbox/AP", "bbox/AP50", "bbox/AP75"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 100.0
    assert res["task"] == "detection" and res["method"] == "random-init" and res["seed"] == 3
    assert res["iteration"] == 4 and res["dataset"] == {
        "train": ["toy_digits_trainval"],
        "test": ["toy_digits_test"],
    }
    assert len(res["config_digest"]) == 64 and res["versions"]["detectron2"]
    # single process on CPU: SyncBN replaced by BN, and said so once
    assert (out / "config.yaml").read_text().count("NORM: SyncBN") == 0
    assert "synchronized BN replaced (MODEL.RESNETS.NORM SyncBN -> BN)" in proc.stdout + proc.stderr
    # no temporary files left behind by atomic writes
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


@pytest.mark.slow
def test_resume_continues_at_the_next_iteration(trained, toy_root, tmp_path):
    out, _ = trained
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ("model_final.pth", "last_checkpoint"):
        (resumed / name).write_bytes((out / name).read_bytes())
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            "--resume",
            "--allow-config-change",
            *FAST,
            "SOLVER.MAX_ITER",
            "6",
            "SEED",
            "3",
            "OUTPUT_DIR",
            str(resumed),
        ],
        toy_root,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "the config differs from" in log and "SOLVER.MAX_ITER: 4 in the checkpoint, 6 now" in log
    assert "Starting training from iteration 4" in log
    assert (
        torch.load(resumed / "model_final.pth", map_location="cpu", weights_only=True)["iteration"]
        == 5
    )
    assert read_results(resumed)["iteration"] == 6


def copy_run(out, dest, names=("model_final.pth", "model_0000001.pth", "last_checkpoint")):
    dest.mkdir()
    for name in names:
        (dest / name).write_bytes((out / name).read_bytes())
    return dest


def test_resume_with_another_config_names_the_keys_and_stops(trained, toy_root, tmp_path):
    out, _ = trained
    resumed = copy_run(out, tmp_path / "changed")
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            "--resume",
            *FAST,
            "SOLVER.MAX_ITER",
            "4",
            "SEED",
            "3",
            "SOLVER.BASE_LR",
            "0.5",
            "OUTPUT_DIR",
            str(resumed),
        ],
        toy_root,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "--resume: the config differs from the one recorded in" in log
    listed = log.split("the config differs from the one recorded in")[1].split(
        "Resume with the same settings"
    )[0]
    assert (
        "SOLVER.BASE_LR: 0.0025 in the checkpoint, 0.5 now" in listed
        and len(listed.strip().splitlines()) == 2
    )
    assert "--allow-config-change" in log
    assert sorted(os.listdir(resumed)) == [
        "last_checkpoint",
        "model_0000001.pth",
        "model_final.pth",
    ]  # nothing written


def test_resume_of_a_finished_run_records_the_iteration_it_finished_at(trained, toy_root, tmp_path):
    out, _ = trained
    resumed = copy_run(out, tmp_path / "finished")
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            "--resume",
            *FAST,
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "SEED",
            "3",
            "OUTPUT_DIR",
            str(resumed),
        ],
        toy_root,
    )
    assert "Starting training from iteration 4" in proc.stdout + proc.stderr
    assert read_results(resumed)["iteration"] == 4 == read_results(out)["iteration"]
    assert read_results(resumed)["metrics"] == read_results(out)["metrics"]


@pytest.mark.parametrize(
    "tag, damage, message",
    [
        ("../elsewhere.pth", None, "which is not a file of"),
        ("/etc/hostname", None, "which is not a file of"),
        ("model_final.pth", "truncate", "cannot be read"),
        ("model_final.pth", "foreign", "cannot be read"),
    ],
)
def test_resume_refuses_a_checkpoint_it_cannot_trust(
    tag, damage, message, trained, toy_root, tmp_path
):
    out, _ = trained
    resumed = copy_run(out, tmp_path / "bad")
    (resumed / "last_checkpoint").write_text(tag)
    (tmp_path / "elsewhere.pth").write_bytes((out / "model_final.pth").read_bytes())
    if damage == "truncate":
        data = (resumed / "model_final.pth").read_bytes()
        (resumed / "model_final.pth").write_bytes(data[: len(data) // 2])
    elif damage == "foreign":  # needs arbitrary unpickling: not a checkpoint of ours
        torch.save(
            {"model": {}, "iteration": 3, "hook": fractions.Fraction(1, 3)},
            resumed / "model_final.pth",
        )
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            "--resume",
            *FAST,
            "SOLVER.MAX_ITER",
            "4",
            "SEED",
            "3",
            "OUTPUT_DIR",
            str(resumed),
        ],
        toy_root,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in log, log[-3000:]
    # the message itself names the file
    assert "Traceback" not in log.split(message)[0].splitlines()[-1]
    assert not (resumed / "results.json").exists()


def test_eval_only_with_saved_model(trained, toy_root, tmp_path):
    out, _ = trained
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            "--eval-only",
            *FAST,
            "MODEL.WEIGHTS",
            str(out / "model_final.pth"),
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        toy_root,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    res, trained_res = read_results(tmp_path), read_results(out)
    # the same model records the same number of finished iterations, trained or evaluated later
    assert res["iteration"] == trained_res["iteration"] == 4
    assert res["weights"].endswith("model_final.pth") and res["method"] == "unspecified"
    # the same weights on the same data give the same AP as the evaluation at the end of training
    assert res["metrics"] == trained_res["metrics"]

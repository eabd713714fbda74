"""
Exact resume after ``kill -9``, through the real CLIs: a run killed with SIGKILL right after a
checkpoint and continued with ``--resume`` ends with the same weights (max |diff| <= 1e-6), the
same queue, queue pointer and momentum encoder (all part of the model's state), and the same
results.json metrics as an uninterrupted run of the same config and seed. The resumed process
gets a different SEED on its command line: it must take the seed from the checkpoint, so any
state rebuilt from the seed instead of restored makes the runs differ.
"""

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from conftest import FAST, REPO, TOY_CONFIG, copy_crops, start_cli

PRETRAIN_METHODS = ["simclr", "mocov2", "supcon", "ce_selfsupcon", "supcon_selfsupcon", "scan"]
SEED, OTHER_SEED = 3, 11


@pytest.fixture(scope="module")
def mini_crops(toy_root, tmp_path_factory):
    return copy_crops(toy_root, tmp_path_factory.mktemp("resume_crops"), {"train": 6, "test": 2})


def pretrain_args(method, crops):
    custom = (
        f"[{{'NAME': 'resume_train', 'FORMAT': 'folder', 'ROOT': '{crops / 'train'}'}}, "
        f"{{'NAME': 'resume_test', 'FORMAT': 'folder', 'ROOT': '{crops / 'test'}'}}]"
    )
    opts = {
        "DATASETS.CUSTOM": custom,
        "DATASETS.TRAIN": "('resume_train',)",
        "DATASETS.TEST": "('resume_test',)",
        "SOLVER.IMS_PER_BATCH": "8",
        "SOLVER.MAX_ITER": "10",
        "SOLVER.CHECKPOINT_PERIOD": "3",
        "SOLVER.WARMUP_ITERS": "2",
        "SOLVER.STEPS": "(6,)",
        "INPUT.TWO_VIEW.CROP_SIZE": "32",
        "INPUT.TWO_VIEW.TEST_RESIZE": "32",
        "MODEL.CONTRASTIVE.QUEUE_SIZE": "32",
        "MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM": "32",
        "MODEL.SCAN.NUM_NEIGHBORS": "4",
        "MODEL.CONTRASTIVE.MOMENTUM": "0.9",
        "DATALOADER.NUM_WORKERS": "1",
        "TEST.KNN.K": "5",
    }
    cfg = os.path.join(REPO, "configs", "toy", f"pretrain_{method}_R18.yaml")
    return "pretrain_net.py", ["--config-file", cfg, *[x for kv in opts.items() for x in kv]]


def detection_args():
    opts = FAST + [
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "SOLVER.STEPS",
        "(4,)",
        "SOLVER.WARMUP_ITERS",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "DATALOADER.NUM_WORKERS",
        "1",
    ]
    return "train_net.py", ["--config-file", TOY_CONFIG, *opts]


def _start(script, args, out, seed, datasets_root, extra=(), **popen_kwargs):
    out.mkdir(parents=True, exist_ok=True)
    log = open(
        out.parent / f"{out.name}.{len(list(out.parent.glob(out.name + '.*.log')))}.log", "w"
    )
    proc = start_cli(
        script,
        [*extra, *args, "SEED", str(seed), "OUTPUT_DIR", str(out)],
        datasets_root,
        stdout=log,
        stderr=subprocess.STDOUT,
        **popen_kwargs,
    )
    proc.log_path = log.name
    return proc


def _finish(proc, timeout=600):
    proc.wait(timeout=timeout)
    text = open(proc.log_path).read()
    assert proc.returncode == 0, f"{proc.args} failed ({proc.returncode}):\n{text[-6000:]}"
    return text


def _kill_after_first_checkpoint(proc, out, timeout=600):
    """SIGKILL ``proc`` as soon as ``out/last_checkpoint`` names a periodic (not final)
    checkpoint."""
    tag = out / "last_checkpoint"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended ({proc.returncode}) before it could be "
                f"killed:\n{open(proc.log_path).read()[-4000:]}"
            )
        name = tag.read_text().strip() if tag.is_file() else ""
        if name.startswith("model_0") and name != "model_final.pth":
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return name
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no checkpoint appeared in time")


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def assert_same_run(ref_dir, resumed_dir):
    ref, got = _state(ref_dir / "model_final.pth"), _state(resumed_dir / "model_final.pth")
    assert set(ref) == set(got)
    different = {}
    for key in ref:
        a, b = ref[key], got[key]
        diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
        if a.shape != b.shape or diff > 1e-6:
            different[key] = diff
    assert not different, (
        f"{len(different)} of {len(ref)} tensors differ after resume: "
        f"{dict(list(different.items())[:8])}"
    )
    r_ref = json.loads((ref_dir / "results.json").read_text())
    r_got = json.loads((resumed_dir / "results.json").read_text())
    assert r_got["seed"] == r_ref["seed"] == SEED
    assert r_got["iteration"] == r_ref["iteration"]
    # the same config (the resumed one took SEED back from the checkpoint); only OUTPUT_DIR differs
    same = [(ref_dir / "config.yaml").read_text(), (resumed_dir / "config.yaml").read_text()]
    same = [
        [line for line in text.splitlines() if not line.startswith("OUTPUT_DIR:")] for text in same
    ]
    assert same[0] == same[1]
    for dataset, metrics in r_ref["metrics"].items():
        for name, value in metrics.items():
            assert r_got["metrics"][dataset][name] == pytest.approx(value, abs=1e-6, nan_ok=True), (
                dataset,
                name,
            )


def check_kill_and_resume(script, args, tmp_path, datasets_root):
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = _start(script, args, ref_dir, SEED, datasets_root)  # runs beside the killed run
    killed = _start(script, args, run_dir, SEED, datasets_root)
    killed_at = _kill_after_first_checkpoint(killed, run_dir)
    assert not (run_dir / "results.json").exists()
    resumed = _start(script, args, run_dir, OTHER_SEED, datasets_root, extra=["--resume"])
    text = _finish(resumed)
    assert f"SEED {SEED} recorded in" in text and f"replaces SEED {OTHER_SEED}" in text, text[
        -3000:
    ]
    assert f"{killed_at}" in text  # detectron2 logs the checkpoint it resumes from
    _finish(reference)
    assert_same_run(ref_dir, run_dir)
    return ref_dir, run_dir


@pytest.mark.slow
def test_detection_resumes_exactly_after_kill(toy_root, tmp_path):
    script, args = detection_args()
    check_kill_and_resume(script, args, tmp_path, toy_root)


@pytest.mark.parametrize("method", PRETRAIN_METHODS)
@pytest.mark.slow
def test_pretraining_resumes_exactly_after_kill(method, mini_crops, toy_root, tmp_path):
    script, args = pretrain_args(method, mini_crops)
    ref_dir, run_dir = check_kill_and_resume(script, args, tmp_path, toy_root)
    # the momentum encoder moved and is part of the state
    if method != "simclr" and method != "supcon":
        before = torch.load(ref_dir / "model_0000002.pth", map_location="cpu", weights_only=False)[
            "model"
        ]
        after = _state(ref_dir / "model_final.pth")
        key_params = [
            k for k in after if k.startswith("encoder_k.") and after[k].is_floating_point()
        ]
        assert key_params and any(not torch.equal(before[k], after[k]) for k in key_params)


@pytest.mark.slow
def test_segmentation_resumes_exactly_after_kill(toy_root, tmp_path):
    """Random scale/crop/flip, photometric distortion, dropout and the pixel Core-tuning draws
    included."""
    config = os.path.join(REPO, "configs", "toy", "seg_digits_R_50_FCN_D8.yaml")
    opts = [
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "INPUT.SEM_SEG.CROP_SIZE",
        "(64, 64)",
        "INPUT.SEM_SEG.BASE_SIZE",
        "(256, 64)",
        "INPUT.SEM_SEG.TEST_BASE_SIZE",
        "(256, 64)",
        "MODEL.SEM_SEG_HEAD.CORE_TUNING.ENABLED",
        "True",
        "MODEL.SEM_SEG_HEAD.CONVS_DIM",
        "64",
        "DATALOADER.NUM_WORKERS",
        "1",
    ]
    check_kill_and_resume("train_net.py", ["--config-file", config, *opts], tmp_path, toy_root)

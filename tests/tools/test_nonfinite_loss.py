"""A NaN/inf loss stops every process at the same iteration, names it, and keeps the last checkpoint
loadable."""

import os

import pytest
import torch

from conftest import REPO, copy_crops, run_cli


@pytest.mark.slow
def test_nan_loss_stops_both_processes_and_keeps_the_last_checkpoint(toy_root, tmp_path):
    crops = copy_crops(toy_root, tmp_path / "crops", {"train": 2, "test": 1})
    out = tmp_path / "run"
    custom = (
        f"[{{'NAME': 'nan_train', 'FORMAT': 'folder', 'ROOT': '{crops / 'train'}'}}, "
        f"{{'NAME': 'nan_test', 'FORMAT': 'folder', 'ROOT': '{crops / 'test'}'}}]"
    )
    # SGD with LR 1e30: the first step is finite, the second forward overflows
    opts = [
        "DATASETS.CUSTOM",
        custom,
        "DATASETS.TRAIN",
        "('nan_train',)",
        "DATASETS.TEST",
        "('nan_test',)",
        "SOLVER.OPTIMIZER",
        "SGD",
        "SOLVER.BASE_LR",
        "1e30",
        "SOLVER.WARMUP_ITERS",
        "0",
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "INPUT.TWO_VIEW.CROP_SIZE",
        "32",
        "INPUT.TWO_VIEW.TEST_RESIZE",
        "32",
        "MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM",
        "32",
        "DATALOADER.NUM_WORKERS",
        "0",
        "SEED",
        "0",
        "OUTPUT_DIR",
        str(out),
    ]
    config = os.path.join(REPO, "configs", "toy", "pretrain_simclr_R18.yaml")
    proc = run_cli(
        "pretrain_net.py",
        ["--num-gpus", "2", "--config-file", config, *opts],
        toy_root,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert (
        "rank 0: non-finite loss at iteration 1" in log
        and "rank 1: non-finite loss at iteration 1" in log
    ), log[-3000:]
    assert "Loss became infinite or NaN at iteration 1" in log
    last = out / "model_0000000.pth"
    assert f"Last good checkpoint: {last}" in log
    # the step that produced the NaN was not applied or saved; nothing pretends the run finished
    assert (out / "last_checkpoint").read_text() == "model_0000000.pth"
    assert not (out / "model_0000001.pth").exists() and not (out / "results.json").exists()
    assert not (out / "backbone.pth").exists()
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == 0 and ckpt["seed"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())

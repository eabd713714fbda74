"""End to end: toy segmentation (MoCo's FCN-16s protocol, SyncBN in trunk and head) on 2 CPU
processes (--num-gpus 2: gloo under the simulated NCCL device rule; SyncBN becomes naiveSyncBN). The
scores of the 2-process evaluation equal a 1-process evaluation of the same final model: every test
image is counted once, whichever process predicted it."""

import json
import os

import pytest
import torch

from conftest import run_cli
from ddp_helpers import REPO, free_port

TOY_SEG = os.path.join(REPO, "configs", "toy", "seg_digits_R_50_FCN16s.yaml")
FAST = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "INPUT.SEM_SEG.CROP_SIZE",
    "(64, 64)",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.CHECKPOINT_PERIOD",
    "100",
    "SEED",
    "5",
]


@pytest.mark.slow
def test_segmentation_on_two_processes_trains_with_synced_bn_and_evaluates_every_image(
    toy_root, tmp_path
):
    out = tmp_path / "two"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_SEG,
            "--num-gpus",
            "2",
            "--dist-url",
            f"tcp://127.0.0.1:{free_port()}",
            *FAST,
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert "World size: 2" in log
    assert (
        "MODEL.RESNETS.NORM SyncBN -> naiveSyncBN" in log
        and "MODEL.SEM_SEG_HEAD.NORM SyncBN -> naiveSyncBN" in log
    )
    two = json.load(open(out / "results.json"))["metrics"]["toy_digits_sem_seg_test"]
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    # the synchronised BN layers of trunk and head collected statistics
    assert final["backbone.res2.0.conv1.norm.running_mean"].abs().sum() > 0
    assert any(
        k.startswith("sem_seg_head.") and k.endswith("running_mean") and v.abs().sum() > 0
        for k, v in final.items()
    )

    again = tmp_path / "one"
    run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_SEG,
            "--eval-only",
            *FAST,
            "MODEL.WEIGHTS",
            str(out / "model_final.pth"),
            "OUTPUT_DIR",
            str(again),
        ],
        toy_root,
        timeout=900,
    )
    one = json.load(open(again / "results.json"))["metrics"]["toy_digits_sem_seg_test"]
    assert set(one) == set(two)
    for key in (
        "sem_seg/mIoU",
        "sem_seg/fwIoU",
        "sem_seg/pACC",
        "sem_seg/mACC",
        "sem_seg/IoU-background",
    ):
        assert abs(one[key] - two[key]) < 1e-6, (key, one[key], two[key])

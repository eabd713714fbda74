"""End to end: Mask R-CNN R50-C4 (MoCo's COCO protocol) on the toy digits' COCO JSON with stroke
masks."""

import json
import math
import os

import pytest

from conftest import FAST, REPO, run_cli

TOY_MASK_CONFIG = os.path.join(REPO, "configs", "toy", "digits_mask_R_50_C4.yaml")


@pytest.mark.slow
def test_mask_rcnn_trains_and_reports_box_and_mask_ap(toy_root, tmp_path):
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_MASK_CONFIG,
            *FAST,
            "SOLVER.MAX_ITER",
            "2",
            "SEED",
            "0",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        toy_root,
    )
    with open(tmp_path / "results.json") as f:
        res = json.load(f)
    assert res["dataset"] == {
        "train": ["toy_digits_coco_trainval"],
        "test": ["toy_digits_coco_test"],
    }
    metrics = res["metrics"]["toy_digits_coco_test"]
    for task in ("bbox", "segm"):  # COCOEvaluator runs the segm task when MODEL.MASK_ON
        for key in ("AP", "AP50", "AP75"):
            value = metrics[f"{task}/{key}"]
            assert math.isfinite(value) and 0.0 <= value <= 100.0, (task, key, value)
    # the mask head was trained: its loss is logged with the others
    with open(tmp_path / "metrics.json") as f:
        logged = [json.loads(line) for line in f if line.strip()]
    assert any(math.isfinite(entry.get("loss_mask", math.nan)) for entry in logged), proc.stdout[
        -2000:
    ]

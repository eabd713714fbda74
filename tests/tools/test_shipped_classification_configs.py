"""
Every classification protocol runs end to end from its shipped per-dataset config
(configs/classification/<protocol>/eurosat.yaml, ResNet-50 as shipped) on a tiny EuroSAT tree in
EuroSAT's real on-disk layout (eurosat/2750/<class>/<class>_<n>.jpg), found through
$DETECTRON2_DATASETS like a user's copy. Only sizes, schedules and batch sizes are overridden.
"""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from contrastive_det.data.datasets.downstream.meta import EUROSAT_CLASSES

from conftest import REPO, run_cli

HEADLINE = {
    "linear_lbfgs": "linear/score",
    "layerwise": "layerwise/res5/score",
    "few_shot": "few_shot/5way_1shot",
    "linear_sgd": "classification/score",
    "finetune": "classification/score",
    "core_tuning": "classification/score",
    "linear_sgd_islam": "classification/score",
}
PROTOCOL_OF = {
    "linear_sgd_islam": "linear_sgd"
}  # config folder -> CLASSIFICATION.PROTOCOL, where they differ
TEST_SET = {"few_shot": "eurosat_all", "linear_sgd_islam": "eurosat_islam_test"}
SMALL = {
    "linear_lbfgs": ["CLASSIFICATION.LBFGS.NUM_REGS", "2", "CLASSIFICATION.LBFGS.MAX_ITER", "20"],
    "layerwise": [
        "CLASSIFICATION.LBFGS.NUM_REGS",
        "2",
        "CLASSIFICATION.LBFGS.MAX_ITER",
        "20",
        "CLASSIFICATION.LAYERS",
        "('res4', 'res5')",
    ],
    "few_shot": [
        "CLASSIFICATION.FEW_SHOT.SHOTS",
        "(1,)",
        "CLASSIFICATION.FEW_SHOT.QUERIES",
        "2",
        "CLASSIFICATION.FEW_SHOT.EPISODES",
        "3",
    ],
    "linear_sgd": [
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "TEST.PRECISE_BN.NUM_ITER",
        "1",
    ],
    "finetune": [
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "TEST.PRECISE_BN.NUM_ITER",
        "1",
    ],
    "linear_sgd_islam": [
        "CLASSIFICATION.EPOCHS",
        "1",
        "CLASSIFICATION.STEP_EPOCHS",
        "()",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "TEST.PRECISE_BN.NUM_ITER",
        "1",
    ],
    "core_tuning": [
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "CLASSIFICATION.CORE_TUNING.HIDDEN_DIM",
        "64",
        "TEST.PRECISE_BN.NUM_ITER",
        "1",
    ],
}


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory):
    """$DETECTRON2_DATASETS with eurosat/2750/<class>/<class>_<n>.jpg: 6 small images per class."""
    root = tmp_path_factory.mktemp("datasets")
    rng = np.random.default_rng(0)
    for c, cls in enumerate(EUROSAT_CLASSES):
        folder = root / "eurosat" / "2750" / cls
        folder.mkdir(parents=True)
        for i in range(1, 7):
            pixels = np.clip(rng.normal(25 * c, 30, size=(20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{cls}_{i}.jpg")
    return root


@pytest.mark.parametrize("protocol", sorted(HEADLINE))
def test_shipped_config_runs_end_to_end_on_the_real_layout(protocol, eurosat_root, tmp_path):
    out = tmp_path / "out"
    config = os.path.join(REPO, "configs", "classification", protocol, "eurosat.yaml")
    run_cli(
        "train_net.py",
        [
            "--config-file",
            config,
            "INPUT.CLS.CROP_SIZE",
            "32",
            "INPUT.CLS.TEST_RESIZE",
            "32",
            "DATALOADER.NUM_WORKERS",
            "0",
            "CLASSIFICATION.TEST_BATCH_SIZE",
            "16",
            "SEED",
            "0",
            "CLASSIFICATION.FEATURE_CACHE",
            str(tmp_path / "cache"),
            "OUTPUT_DIR",
            str(out),
            *SMALL[protocol],
        ],
        eurosat_root,
    )
    record = json.load(open(out / "results.json"))
    assert record["task"] == "classification" and record["protocol"] == PROTOCOL_OF.get(
        protocol, protocol
    )
    test_set = TEST_SET.get(protocol, "eurosat_test")
    assert record["dataset"]["test"] == [test_set]
    value = record["metrics"][test_set][HEADLINE[protocol]]
    # 1 epoch of the 42 images of Islam's 70% (floor of 0.7 x 6 per class) at batch 8
    if protocol == "linear_sgd_islam":
        assert record["iteration"] == 42 // 8
    assert math.isfinite(value) and 0.0 <= value <= 100.0

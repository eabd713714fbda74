"""
The classification benchmarks (tools/benchmark.py --only probe_speed/extraction/probe_cache) run
end to end on a tiny textured-crop set and print finite, positive ratios; no timing is asserted.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO

# tiny: 32 px crops (ResNet-18 ends at 1x1), 3 penalties instead of 45, 3 SGD epochs, one trial
TINY = [
    "INPUT.CLS.CROP_SIZE",
    "32",
    "INPUT.CLS.TEST_RESIZE",
    "32",
    "CLASSIFICATION.TEST_BATCH_SIZE",
    "32",
    "CLASSIFICATION.LBFGS.NUM_REGS",
    "3",
    "CLASSIFICATION.LBFGS.REG_MIN",
    "0.1",
    "CLASSIFICATION.LBFGS.REG_MAX",
    "10.0",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "16",
]


@pytest.fixture(scope="module")
def textured_root(tmp_path_factory):
    """$DETECTRON2_DATASETS with toy_digits/crops_textured/{train,test}/<class>/ of 32x32 images
    (6 per class in train, 2 in test), a class-dependent colour plus noise."""
    root = tmp_path_factory.mktemp("cls_bench_data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in range(10):
            folder = root / "toy_digits" / "crops_textured" / split / str(c)
            folder.mkdir(parents=True)
            for i in range(n):
                base = np.array([25 * c, 255 - 25 * c, (70 * c) % 256], dtype=np.float64)
                pixels = np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{c * 100 + i}.png")
    return root


def _positive_finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_cls_benchmarks_print_finite_ratios(textured_root, tmp_path):
    out = tmp_path / "bench.json"
    env = dict(
        os.environ,
        DETECTRON2_DATASETS=str(textured_root),
        PYTHONWARNINGS="ignore",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "benchmark.py"),
            "--only",
            "probe_speed",
            "--only",
            "extraction",
            "--only",
            "probe_cache",
            "--cls-trials",
            "1",
            "--cls-sgd-epochs",
            "3",
            "--cls-workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
            *TINY,
        ],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    figures = json.load(open(out))
    speed, extraction, cache = figures["probe_speed"], figures["extraction"], figures["probe_cache"]
    assert speed["num_train"] == 60 and speed["num_test"] == 20 and speed["grid_size"] == 3
    for key in ("ratio_sweep", "ratio_single_fit", "lbfgs_sweep_s", "sgd_time_to_best_s"):
        assert _positive_finite(speed[key]), (key, speed[key])
    assert 0 <= speed["lbfgs_sweep_score"] <= 100 and 0 <= speed["sgd_best_score"] <= 100
    assert speed["ratio_reach"] is None or _positive_finite(speed["ratio_reach"])
    assert extraction["images"] == 80  # train + val + test, every split extracted
    for key in ("ratio", "real_images_per_s", "bare_images_per_s"):
        assert _positive_finite(extraction[key]), (key, extraction[key])
    for key in ("ratio", "first_s", "second_s", "ratio_without_fit"):
        assert _positive_finite(cache[key]), (key, cache[key])
    assert cache["same_score"]  # the cached features give the probe the same result
    # nothing to extract the second time
    assert cache["second"][0]["extract_s"] < cache["first"][0]["extract_s"]
    for line in (
        "probe_speed ratio",
        "extraction ratio real/bare time",
        "probe_cache ratio second/first run",
    ):
        assert line in proc.stdout, proc.stdout


def test_sgd_probe_and_lbfgs_reach_on_separable_features():
    from contrastive_det.benchmarks.classification import (
        _time_to_score,
        lbfgs_time_to_reach,
        sgd_probe_on_features,
    )

    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 8, generator=g) + 4 * torch.eye(8)[y]  # three separable clusters
    run = sgd_probe_on_features(
        (x, y),
        (x, y),
        num_classes=3,
        epochs=4,
        batch_size=16,
        lr=0.1,
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,
    )
    assert len(run["scores"]) == len(run["train_s"]) == 4
    assert run["train_s"] == sorted(run["train_s"]) and run["time_to_best_s"] > 0
    assert run["best_score"] == max(run["scores"]) and run["best_score"] > 90
    assert _time_to_score(run, 101.0) is None
    seconds, iters, score = lbfgs_time_to_reach((x, y), (x, y), reg=1.0, num_classes=3, target=90.0)
    assert seconds is not None and seconds > 0 and score >= 90.0 and iters >= 1

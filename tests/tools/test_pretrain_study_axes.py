"""End to end: tools/pretrain_net.py with the study axes (subset, label map, corruption) on toy
digit crops."""

import json
import os

import pytest

from conftest import REPO, copy_crops, run_cli

CONFIG = os.path.join(REPO, "configs", "toy", "pretrain_simclr_R18.yaml")


@pytest.fixture(scope="module")
def axes_crops(toy_root, tmp_path_factory):
    """8 train and 2 test crops per digit, copied from the toy digit crops; a parity label map."""
    root = copy_crops(toy_root, tmp_path_factory.mktemp("axes_crops"), {"train": 8, "test": 2})
    (root / "parity.json").write_text(
        json.dumps({str(i): "odd" if i % 2 else "even" for i in range(10)})
    )
    return root


def opts(root, out, **extra):
    custom = (
        f"[{{'NAME': 'axes_train', 'FORMAT': 'folder', 'ROOT': '{root / 'train'}'}}, "
        f"{{'NAME': 'axes_test', 'FORMAT': 'folder', 'ROOT': '{root / 'test'}'}}]"
    )
    values = {
        "DATASETS.CUSTOM": custom,
        "DATASETS.TRAIN": "('axes_train',)",
        "DATASETS.TEST": "('axes_test',)",
        "SOLVER.IMS_PER_BATCH": "8",
        "SOLVER.MAX_ITER": "2",
        "SOLVER.WARMUP_ITERS": "1",
        "MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM": "32",
        "DATALOADER.NUM_WORKERS": "0",
        "SEED": "3",
        "TEST.KNN.K": "5",
        "OUTPUT_DIR": str(out),
    }
    values.update(extra)
    return [x for kv in values.items() for x in kv]


def test_subset_label_map_and_corruption_are_used_and_recorded(axes_crops, toy_root, tmp_path):
    out = tmp_path / "run"
    label_map = str(axes_crops / "parity.json")
    run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            CONFIG,
            *opts(
                axes_crops,
                out,
                **{
                    "DATASETS.PRETRAIN.SUBSET_COUNT": "30",
                    "DATASETS.PRETRAIN.SUBSET_SEED": "5",
                    "DATASETS.PRETRAIN.LABEL_MAP": label_map,
                    "INPUT.CORRUPTION.JPEG_QUALITY": "20",
                    "INPUT.CORRUPTION.SALT_PEPPER": "0.05",
                    "INPUT.CORRUPTION.DOWNSAMPLE": "2",
                },
            ),
        ],
        toy_root,
    )
    res = json.loads((out / "results.json").read_text())
    assert res["iteration"] == 2 and 0 <= res["metrics"]["axes_test"]["knn/top1"] <= 100

    rec = json.loads((out / "pretrain_data.json").read_text())
    assert rec["before"]["per_class"] == {"axes_train": {str(c): 8 for c in range(10)}}
    assert rec["after"]["total"] == 30  # 10 balanced classes: 3 images each
    assert rec["after"]["per_class"] == {"axes_train": {str(c): 3 for c in range(10)}}
    assert rec["after"]["per_coarse_class"] == {"even": 15, "odd": 15}
    assert rec["label_map"]["file"] == label_map and rec["label_map"]["classes"] == ["even", "odd"]
    assert rec["seed"] == 5
    settings = rec["settings"]
    assert (
        settings["DATASETS.PRETRAIN.SUBSET_COUNT"] == 30
        and settings["INPUT.CORRUPTION.JPEG_QUALITY"] == 20
    )
    assert (
        settings["INPUT.CORRUPTION.SALT_PEPPER"] == 0.05
        and settings["INPUT.CORRUPTION.DOWNSAMPLE"] == 2
    )

    lines = [line.split("\t") for line in (out / "pretrain_images.txt").read_text().splitlines()]
    assert len(lines) == 30 and len({f for f, _ in lines}) == 30
    for file_name, label in lines:
        digit = int(os.path.basename(os.path.dirname(file_name)))
        assert os.path.isfile(file_name) and file_name.startswith(str(axes_crops / "train"))
        assert int(label) == digit % 2  # "even" = 0, "odd" = 1


def test_subset_larger_than_the_data_fails_before_training(axes_crops, toy_root, tmp_path):
    out = tmp_path / "too_big"
    proc = run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            CONFIG,
            *opts(axes_crops, out, **{"DATASETS.PRETRAIN.SUBSET_COUNT": "1000"}),
        ],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0
    assert (
        "DATASETS.PRETRAIN.SUBSET_COUNT 1000 is larger than the data: the training set has 80 "
        "images" in proc.stderr
    )
    assert "Starting training" not in proc.stdout + proc.stderr
    assert not (out / "results.json").exists() and not (out / "pretrain_data.json").exists()

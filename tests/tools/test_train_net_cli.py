"""tools/train_net.py: bad input, seed sweeps, user datasets from YAML, and DDP on 2 CPU
processes."""

import json
import os
import shutil
import statistics

import pytest

from conftest import FAST, REPO, TOY_CONFIG, run_cli

VOC_CONFIG = os.path.join(REPO, "configs", "detection", "voc0712_R_50_C4_24k.yaml")


def test_missing_dataset_folder_names_path_and_layout(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    proc = run_cli(
        "train_net.py",
        ["--config-file", VOC_CONFIG, "OUTPUT_DIR", str(tmp_path / "out")],
        empty,
        check=False,
    )
    err = proc.stderr
    assert proc.returncode != 0
    assert "DatasetLayoutError" in err and str(empty / "VOC2007") in err
    assert "JPEGImages/<id>.jpg, Annotations/<id>.xml" in err and "datasets/README.md" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_unknown_config_key_names_the_key(toy_root, tmp_path):
    proc = run_cli(
        "train_net.py",
        ["--config-file", TOY_CONFIG, "SOLVER.BASE_LRR", "0.1"],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0 and "SOLVER.BASE_LRR" in proc.stderr


def test_corrupt_training_image_names_the_file(toy_root, tmp_path):
    voc = tmp_path / "VOC"
    shutil.copytree(toy_root / "toy_digits" / "VOC", voc)
    ids = (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split()[:2]
    for image_id in ids:
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (voc / "ImageSets" / "Main" / "broken.txt").write_text("\n".join(ids) + "\n")
    classes = [str(i) for i in range(10)]
    custom = (
        f"[{{'NAME': 'broken_train', 'FORMAT': 'voc', 'ROOT': '{voc}', 'SPLIT': 'broken', "
        f"'CLASSES': {classes}}}]"
    )
    args = [
        "--config-file",
        TOY_CONFIG,
        *FAST,
        "DATASETS.CUSTOM",
        custom,
        "DATASETS.TRAIN",
        "('broken_train',)",
        "SOLVER.MAX_ITER",
        "2",
        "OUTPUT_DIR",
        str(tmp_path / "out"),
    ]
    # the pre-flight scan (on by default for small sets) lists every bad file (train + test) before
    # training
    proc = run_cli("train_net.py", args, toy_root, check=False)
    assert proc.returncode != 0 and "2 of 6 images cannot be read" in proc.stderr, proc.stderr[
        -3000:
    ]
    assert all(f"{voc / 'JPEGImages' / i}.jpg" in proc.stderr for i in ids)
    assert not (tmp_path / "out" / "last_checkpoint").exists()
    # without the scan, the first bad image met in training names the file and stops the run
    proc = run_cli(
        "train_net.py", args + ["DATALOADER.CHECK_IMAGES_MAX", "0"], toy_root, check=False
    )
    assert proc.returncode != 0
    assert any(f"Could not read image {voc / 'JPEGImages' / i}.jpg" in proc.stderr for i in ids), (
        proc.stderr[-3000:]
    )
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
def test_seed_sweep_writes_mean_and_std(toy_root, tmp_path):
    out = tmp_path / "sweep"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            "--seeds",
            "1,2",
            *FAST,
            "SOLVER.MAX_ITER",
            "2",
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
    )
    per_seed = [json.load(open(out / f"seed{s}" / "results.json")) for s in (1, 2)]
    assert [r["seed"] for r in per_seed] == [1, 2]
    summary = json.load(open(out / "results.json"))
    assert summary["seeds"] == [1, 2] and summary["aggregate"].startswith("mean and sample std")
    ap50 = summary["metrics"]["toy_digits_test"]["bbox/AP50"]
    values = [r["metrics"]["toy_digits_test"]["bbox/AP50"] for r in per_seed]
    assert ap50["values"] == values and ap50["n"] == 2
    assert ap50["mean"] == pytest.approx(statistics.fmean(values))
    assert ap50["std"] == pytest.approx(statistics.stdev(values))
    assert "toy_digits_test bbox/AP50:" in proc.stdout


def test_user_dataset_declared_in_yaml_trains_on_voc_and_evaluates_with_coco(toy_root, tmp_path):
    toy = toy_root / "toy_digits"
    user_cfg = tmp_path / "my_dataset.yaml"
    user_cfg.write_text(
        f"""_BASE_: "{TOY_CONFIG}"
DATASETS:
  CUSTOM:
    - NAME: my_digits_train
      FORMAT: voc
      ROOT: {toy / "VOC"}
      SPLIT: trainval
      CLASSES: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    - NAME: my_digits_test
      FORMAT: coco
      JSON: {toy / "coco" / "annotations" / "instances_test.json"}
      IMAGE_ROOT: {toy / "VOC" / "JPEGImages"}
  TRAIN: ("my_digits_train",)
  TEST: ("my_digits_test",)
"""
    )
    out = tmp_path / "out"
    run_cli(
        "train_net.py",
        ["--config-file", str(user_cfg), *FAST, "SOLVER.MAX_ITER", "1", "OUTPUT_DIR", str(out)],
        toy_root,
    )
    res = json.load(open(out / "results.json"))
    metrics = res["metrics"]["my_digits_test"]
    # COCOEvaluator's metrics
    assert {"bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/APs"} <= set(metrics)
    assert res["dataset"] == {"train": ["my_digits_train"], "test": ["my_digits_test"]}


@pytest.mark.slow
def test_two_cpu_processes_with_gloo(toy_root, tmp_path):
    out = tmp_path / "ddp"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            "--num-gpus",
            "2",
            *FAST,
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "2",
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
    )
    log = proc.stdout + proc.stderr
    assert (
        "2 CPU processes: synchronized BN replaced (MODEL.RESNETS.NORM SyncBN -> naiveSyncBN)"
        in log
    )
    res = json.load(open(out / "results.json"))
    assert res["iteration"] == 2 and "bbox/AP50" in res["metrics"]["toy_digits_test"]

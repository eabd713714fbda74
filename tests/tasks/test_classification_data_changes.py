"""
A user's dataset edited on disk between two runs (two class folders swapped, a CSV label changed, an
image added) or a run with other input normalisation never gets the features of the old data from
the feature cache; labels follow class names, so a test split missing a class keeps every other
label and a test class unseen in training is an error naming it.
"""

import csv
import json
import os
import shutil

import pytest

from contrastive_det.data.classification_loader import train_val_dicts
from contrastive_det.data.pretraining import knn_dicts, pretrain_train_dicts
from contrastive_det.evaluation import FeatureCache
from contrastive_det.tasks.classification import cache_keys, probe_dicts

from conftest import REPO, copy_crops, folder_sets, run_cli, run_config, tiny_probe_opts

LBFGS = os.path.join(REPO, "configs", "toy", "cls_linear_lbfgs_R18.yaml")
FEW_SHOT = os.path.join(REPO, "configs", "toy", "cls_few_shot_R18.yaml")
PRETRAIN = os.path.join(REPO, "configs", "toy", "pretrain_simclr_R18.yaml")


def opts(custom, prefix, out, cache, **extra):
    return tiny_probe_opts(custom, prefix, out, cache, **extra)


def swap_folders(a, b):
    tmp = a.parent / (a.name + ".swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


@pytest.mark.slow
def test_swapped_class_folders_are_extracted_again_and_give_the_uncached_result(toy_root, tmp_path):
    """The issue's measurement: probe, swap two training class folders, probe again."""
    root = copy_crops(toy_root, tmp_path / "data", {"train": 8, "test": 6}, "crops_textured")
    custom, cache = folder_sets("swap", root), tmp_path / "cache"

    def probe(out, cache):
        proc = run_cli(
            "train_net.py",
            ["--config-file", LBFGS, *opts(custom, "swap", tmp_path / out, cache)],
            toy_root,
        )
        metrics = json.load(open(tmp_path / out / "results.json"))["metrics"]["swap_test"]
        return metrics, proc.stdout + proc.stderr

    before, _ = probe("before", cache)
    assert len(FeatureCache(cache).keys()) == 3
    swap_folders(root / "train" / "0", root / "train" / "1")
    after, log = probe("after", cache)
    assert "dataset changed since it was cached" in log
    # the test split did not change
    assert "Features of split(s) ['test'] come from the cache" in log
    assert after != before
    fresh, _ = probe("fresh", tmp_path / "fresh_cache")  # the swapped data, nothing cached
    assert after == fresh
    # the stale train/val entries were replaced, not kept
    assert len(FeatureCache(cache).keys()) == 3


def test_cache_keys_follow_every_edit_of_the_data_and_the_input(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "data", {"train": 6, "test": 4}, "crops_textured")
    base = opts(folder_sets("edit", root), "edit", tmp_path / "o", tmp_path / "c")

    def keys(*extra):
        return cache_keys(run_config(LBFGS, [*base, *extra]), "edit_test")

    first = keys()
    assert keys() == first  # nothing changed: the same entries
    swap_folders(root / "train" / "2", root / "train" / "3")
    swapped = keys()
    for split in ("train", "val"):
        old, new = first[(split, "res5")].split("/"), swapped[(split, "res5")].split("/")
        assert old[0] == new[0] and old[1] != new[1]  # same features' identity, other content
    assert swapped[("test", "res5")] == first[("test", "res5")]
    image = sorted(os.listdir(root / "test" / "4"))[0]
    shutil.copy(root / "test" / "4" / image, root / "test" / "4" / ("copy_" + image))
    added = keys()
    assert added[("test", "res5")] != swapped[("test", "res5")]
    # the input normalisation is part of what the features are
    std = keys("MODEL.PIXEL_STD", "[57.0, 57.0, 57.0]")
    assert all(std[k].split("/")[0] != added[k].split("/")[0] for k in added)


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])


def test_an_edited_csv_label_changes_the_key(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "data", {"train": 6, "test": 4}, "crops_textured")
    rows = {
        split: [
            (f"{split}/{c}/{n}", c)
            for c in map(str, range(10))
            for n in sorted(os.listdir(root / split / c))
        ]
        for split in ("train", "test")
    }
    for split in rows:
        write_csv(root / f"{split}.csv", rows[split])
    classes = str([str(c) for c in range(10)])
    custom = (
        f"[{{'NAME': 'csv_train', 'FORMAT': 'csv', 'CSV': '{root / 'train.csv'}', 'CLASSES': "
        f"{classes}}}, {{'NAME': 'csv_test', 'FORMAT': 'csv', 'CSV': '{root / 'test.csv'}', "
        f"'CLASSES': {classes}}}]"
    )
    base = opts(custom, "csv", tmp_path / "o", tmp_path / "c")
    first = cache_keys(run_config(LBFGS, base), "csv_test")
    edited = list(rows["train"])
    edited[0] = (edited[0][0], "9")  # a user fixes one label
    write_csv(root / "train.csv", edited)
    second = cache_keys(run_config(LBFGS, base), "csv_test")
    assert {first[("train", "res5")], first[("val", "res5")]} != {
        second[("train", "res5")],
        second[("val", "res5")],
    }
    assert first[("test", "res5")] == second[("test", "res5")]


def test_a_test_split_without_a_class_keeps_every_other_label(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "data", {"train": 6, "test": 4}, "crops_textured")
    shutil.rmtree(root / "test" / "0")  # the first class: every label would shift by one
    cfg = run_config(LBFGS, opts(folder_sets("gap", root), "gap", tmp_path / "o", tmp_path / "c"))
    dicts = probe_dicts(cfg, "gap_test")
    assert {d["class_name"] for d in dicts["test"]} == set(map(str, range(1, 10)))
    assert all(d["label"] == int(d["class_name"]) for split in dicts.values() for d in split)
    # the SGD protocols' validation split and the few-shot episodes too
    train, val = train_val_dicts(cfg)
    assert all(d["label"] == int(d["class_name"]) for d in train + val)


def test_a_test_class_unseen_in_training_is_named(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "data", {"train": 6, "test": 4}, "crops_textured")
    shutil.rmtree(root / "train" / "7")
    out = tmp_path / "out"
    proc = run_cli(
        "train_net.py",
        ["--config-file", LBFGS, *opts(folder_sets("unseen", root), "unseen", out, tmp_path / "c")],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0
    assert (
        "Dataset 'unseen_test' has class(es) '7' (4 images) that the training set 'unseen_train' "
        "does not have" in (proc.stdout + proc.stderr)
    )
    assert not (out / "results.json").exists()


def test_declared_classes_with_a_missing_folder_keep_their_labels(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "data", {"train": 6, "test": 4}, "crops_textured")
    shutil.rmtree(root / "test" / "0")
    classes = str([str(c) for c in range(10)])
    custom = (
        f"[{{'NAME': 'decl_train', 'FORMAT': 'folder', 'ROOT': '{root / 'train'}', 'CLASSES': "
        f"{classes}}}, {{'NAME': 'decl_test', 'FORMAT': 'folder', 'ROOT': '{root / 'test'}', "
        f"'CLASSES': {classes}}}]"
    )
    cfg = run_config(LBFGS, opts(custom, "decl", tmp_path / "o", tmp_path / "c"))
    test = probe_dicts(cfg, "decl_test")["test"]
    assert test and all(d["label"] == int(d["class_name"]) for d in test)
    (root / "test" / "extra").mkdir()
    with pytest.raises(
        ValueError, match=r"has folder\(s\) \['extra'\] that are not among its declared classes"
    ):
        probe_dicts(cfg, "decl_test")


def test_few_shot_uses_the_test_sets_own_classes(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "data", {"train": 6, "test": 4}, "crops_textured")
    shutil.rmtree(root / "train" / "7")  # few-shot never uses training labels
    cfg = run_config(FEW_SHOT, opts(folder_sets("fs", root), "fs", tmp_path / "o", tmp_path / "c"))
    test = probe_dicts(cfg, "fs_test")["test"]
    assert sorted({d["class_name"] for d in test}) == [str(c) for c in range(10)]


def test_knn_queries_and_mixed_pretraining_sets_follow_class_names(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "data", {"train": 4, "test": 3}, "crops_textured")
    shutil.rmtree(root / "test" / "0")
    other = copy_crops(toy_root, tmp_path / "other", {"train": 2}, "crops")
    shutil.rmtree(other / "train" / "0")
    shutil.rmtree(other / "train" / "1")
    custom = (
        f"[{{'NAME': 'knn_train', 'FORMAT': 'folder', 'ROOT': '{root / 'train'}'}}, "
        f"{{'NAME': 'knn_test', 'FORMAT': 'folder', 'ROOT': '{root / 'test'}'}}, "
        f"{{'NAME': 'knn_other', 'FORMAT': 'folder', 'ROOT': '{other / 'train'}'}}]"
    )
    cfg = run_config(
        PRETRAIN,
        [
            "DATASETS.CUSTOM",
            custom,
            "DATASETS.TRAIN",
            "('knn_train', 'knn_other')",
            "DATASETS.TEST",
            "('knn_test',)",
            "OUTPUT_DIR",
            str(tmp_path / "o"),
            "DATALOADER.NUM_WORKERS",
            "0",
        ],
    )
    queries = [d for d in knn_dicts(cfg, "knn_test") if d["knn_role"] == "query"]
    assert queries and all(d["label"] == int(d["class_name"]) for d in queries)
    dicts, _ = pretrain_train_dicts(cfg)
    assert {d["source"] for d in dicts} == {"knn_train", "knn_other"}
    assert all(d["label"] == int(d["class_name"]) for d in dicts)

"""
CLASSIFICATION.LABEL_MAP: a classification transfer evaluated at a coarser label granularity (Cole
et al. 2022, finding iv) on a tiny class-per-folder copy of the textured toy digits: digit -> parity
gives 2 classes everywhere (head, labels of every split, evaluator, cached targets), results.json
names the map, a class missing from the map stops the run naming it, and each granularity has its
own feature cache entries (a changed map is extracted again, never served the other map's labels).
"""

import json
import os

import pytest

from contrastive_det.data.classification_loader import (
    label_map_file,
    train_val_dicts,
    transfer_classes,
)
from contrastive_det.evaluation import FeatureCache
from contrastive_det.modeling.classifier import resolve_num_classes
from contrastive_det.tasks.classification import cache_keys, probe_dicts

from conftest import REPO, copy_crops, folder_sets, run_cli, run_config, tiny_probe_opts

LBFGS = os.path.join(REPO, "configs", "toy", "cls_linear_lbfgs_R18.yaml")
SGD = os.path.join(REPO, "configs", "toy", "cls_linear_sgd_R18.yaml")
FEW_SHOT = os.path.join(REPO, "configs", "toy", "cls_few_shot_R18.yaml")
PARITY = os.path.join(REPO, "configs", "label_maps", "toy_digits_parity.json")
MAGNITUDE = os.path.join(REPO, "configs", "label_maps", "toy_digits_magnitude.json")


@pytest.fixture(scope="module")
def crops(toy_root, tmp_path_factory):
    """6 train and 4 test textured crops per digit (class-per-folder)."""
    return copy_crops(
        toy_root, tmp_path_factory.mktemp("granularity"), {"train": 6, "test": 4}, "crops_textured"
    )


def opts(root, out, cache, label_map="", **extra):
    return tiny_probe_opts(
        folder_sets("gran", root),
        "gran",
        out,
        cache,
        **{"CLASSIFICATION.LABEL_MAP": str(label_map), **extra},
    )


def write_map(path, mapping):
    with open(path, "w") as f:
        json.dump(mapping, f)
    return path


@pytest.mark.slow
def test_a_parity_probe_has_two_classes_and_each_granularity_its_own_cache_entries(
    crops, toy_root, tmp_path
):
    cache = tmp_path / "cache"

    def probe(out, label_map=""):
        proc = run_cli(
            "train_net.py",
            ["--config-file", LBFGS, *opts(crops, tmp_path / out, cache, label_map)],
            toy_root,
        )
        with open(tmp_path / out / "results.json") as f:
            return json.load(f), proc.stdout + proc.stderr

    fine, _ = probe("fine")
    assert fine["label_map"] is None and len(FeatureCache(cache).keys()) == 3
    parity, log = probe("parity", PARITY)
    assert "come from the cache" not in log  # the fine entries hold digit labels: extracted again
    # another granularity, not a stale version
    assert "dataset changed since it was cached" not in log
    from contrastive_det.utils.file_digest import file_sha256

    assert parity["label_map"] == {"file": PARITY, "path": PARITY, "sha256": file_sha256(PARITY)}
    assert parity["config_digest"] != fine["config_digest"]
    score = parity["metrics"]["gran_test"]["linear/score"]
    assert 0.0 <= score <= 100.0 and score != fine["metrics"]["gran_test"]["linear/score"]
    # the cached targets of every split are the parity labels: even = 0, odd = 1 (sorted coarse
    # names)
    cfg = run_config(LBFGS, opts(crops, tmp_path / "x", cache, PARITY))
    keys, store = cache_keys(cfg, "gran_test"), FeatureCache(cache)
    for split in ("train", "val", "test"):
        entry = store.load(keys[(split, "res5")])
        digits = [
            int(i.split("/")[0]) for i in entry["image_ids"]
        ]  # image ids are "<class folder>/<file>"
        assert entry["targets"].tolist() == [d % 2 for d in digits], split
    assert len(store.keys()) == 6  # both granularities kept
    again, log = probe("fine_again")
    assert "Features of split(s) ['train', 'val', 'test'] come from the cache" in log
    assert again["metrics"] == fine["metrics"]


def test_the_head_the_labels_and_the_evaluator_follow_the_coarse_classes(crops, tmp_path):
    from contrastive_det.engine.task import get_task
    from detectron2.modeling import build_model

    cfg = run_config(
        SGD, opts(crops, tmp_path / "o", tmp_path / "c", PARITY, **{"MODEL.DEVICE": "cpu"})
    )
    assert resolve_num_classes(cfg) == 2 and transfer_classes(cfg, "gran_train") == ["even", "odd"]
    head = [m for m in build_model(cfg).head.modules() if hasattr(m, "out_features")]
    assert head[-1].out_features == 2
    task = get_task(cfg)
    assert task.build_evaluator(cfg, "gran_test").num_classes == 2
    train = task.training_dicts(cfg)
    assert {d["label"] for d in train} == {0, 1}
    assert all(
        d["label"] == int(d["class_name"]) % 2 and d["coarse_class"] == ["even", "odd"][d["label"]]
        for d in train
    )
    # the validation split holds out the same images at every granularity (drawn on the digits)
    fine = run_config(SGD, opts(crops, tmp_path / "o", tmp_path / "c"))
    for coarse_split, fine_split in zip(train_val_dicts(cfg), train_val_dicts(fine)):
        assert sorted(d["image_id"] for d in coarse_split) == sorted(
            d["image_id"] for d in fine_split
        )
    # magnitude: small = 0..4 and large = 5..9, numbered in sorted order (large = 0, small = 1)
    cfg = run_config(LBFGS, opts(crops, tmp_path / "o", tmp_path / "c", MAGNITUDE))
    for split, dicts in probe_dicts(cfg, "gran_test").items():
        assert dicts and all(d["label"] == int(int(d["class_name"]) < 5) for d in dicts), split


def test_a_map_may_name_classes_the_data_lacks(crops, tmp_path):
    mapping = dict(json.load(open(PARITY)), cat="animal", dog="animal")  # one map for several sets
    cfg = run_config(
        LBFGS, opts(crops, tmp_path / "o", tmp_path / "c", write_map(tmp_path / "m.json", mapping))
    )
    assert resolve_num_classes(cfg) == 2  # "animal" is no class of this transfer
    assert {d["label"] for d in probe_dicts(cfg, "gran_test")["test"]} == {0, 1}
    # few-shot episodes: the test set's own classes, coarsened too
    cfg = run_config(FEW_SHOT, opts(crops, tmp_path / "o", tmp_path / "c", PARITY))
    from contrastive_det.tasks.classification import few_shot_num_classes

    assert few_shot_num_classes(cfg, "gran_test") == 2
    assert {d["label"] for d in probe_dicts(cfg, "gran_test")["test"]} == {0, 1}


def test_a_class_missing_from_the_map_is_named(crops, toy_root, tmp_path):
    mapping = json.load(open(PARITY))
    del mapping["7"]
    bad = write_map(tmp_path / "no7.json", mapping)
    out = tmp_path / "out"
    proc = run_cli(
        "train_net.py",
        ["--config-file", LBFGS, *opts(crops, out, tmp_path / "c", bad)],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0
    assert f"Label map {bad} has no entry for class '7'" in proc.stdout + proc.stderr
    assert not (out / "results.json").exists()
    cfg = run_config(LBFGS, opts(crops, out, tmp_path / "c", bad))
    for call in (
        lambda: probe_dicts(cfg, "gran_test"),
        lambda: resolve_num_classes(cfg),
        lambda: train_val_dicts(cfg),
    ):
        with pytest.raises(ValueError, match=f"Label map {bad} has no entry for class '7'"):
            call()
    cfg = run_config(LBFGS, opts(crops, out, tmp_path / "c", tmp_path / "absent.json"))
    with pytest.raises(
        ValueError, match=r"Could not read label map .*absent.json \(CLASSIFICATION.LABEL_MAP\)"
    ):
        probe_dicts(cfg, "gran_test")


def test_cache_keys_change_with_the_maps_content(crops, tmp_path):
    def keys(label_map):
        return cache_keys(
            run_config(LBFGS, opts(crops, tmp_path / "o", tmp_path / "c", label_map)), "gran_test"
        )

    fine, parity, magnitude = keys(""), keys(PARITY), keys(MAGNITUDE)
    # each granularity: another identity, so one never replaces the other as a stale version
    for k in fine:
        assert (
            len({fine[k].split("/")[0], parity[k].split("/")[0], magnitude[k].split("/")[0]}) == 3
        ), k
    # the same file rewritten with another map (same name, same size: labels swapped) is another
    # entry
    edited = write_map(tmp_path / "edit.json", json.load(open(PARITY)))
    before = keys(edited)
    write_map(
        edited, {d: {"even": "odd", "odd": "even"}[c] for d, c in json.load(open(PARITY)).items()}
    )
    after = keys(edited)
    assert all(
        after[k] != before[k] and after[k].split("/")[0] != before[k].split("/")[0] for k in before
    )


def test_a_map_under_the_dataset_root(monkeypatch, tmp_path):
    cfg = run_config(
        LBFGS, ["CLASSIFICATION.LABEL_MAP", "$DETECTRON2_DATASETS/inat2021/label_maps/genus.json"]
    )
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert label_map_file(cfg) == str(tmp_path / "inat2021" / "label_maps" / "genus.json")
    monkeypatch.delenv("DETECTRON2_DATASETS")
    assert label_map_file(cfg) == os.path.join("datasets", "inat2021", "label_maps", "genus.json")

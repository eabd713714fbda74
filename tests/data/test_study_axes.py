"""Data axes of the pretraining study: stratified subsets, domain mixing, label maps, the record."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive_det.config import get_cfg
from contrastive_det.data.datasets.catalog import register_classification
from contrastive_det.data.study_axes import (
    apply_label_map,
    apportion,
    check_axes_config,
    coarse_classes,
    describe,
    load_label_map,
    mix_datasets,
    stratified_subset,
)


def make_dicts(sizes, source=None):
    """``sizes[c]`` images of class c, file names ``c/i.png``."""
    out = []
    for label, n in enumerate(sizes):
        for i in range(n):
            d = {"file_name": f"{label}/{i}.png", "label": label, "class_name": str(label)}
            if source is not None:
                d["source"] = source
            out.append(d)
    return out


def per_class(dicts):
    return [n for _, n in sorted(Counter(d["label"] for d in dicts).items())]


def files(dicts):
    return [d["file_name"] for d in dicts]


# ---------------------------------------------------------------------------------------------
# stratified_subset
# ---------------------------------------------------------------------------------------------
def test_subset_quotas_by_hand():
    d = make_dicts([10, 5, 5])
    # Exact shares of 10 images: 5 / 2.5 / 2.5. The k-th image of a class of n comes at (k + .5) /
    # n: class 0 at .05 .15 .25 .35 .45 .55 ...; classes 1 and 2 at .1 .3 .5 .7 .9. Merged (ties:
    # class 1 before 2): 0 1 2 0 0 1 2 0 0 1 | 2 ... -> the first 10 are 5 / 3 / 2 (as largest
    # remainder).
    assert per_class(stratified_subset(d, fraction=0.5)) == [5, 3, 2]
    assert per_class(stratified_subset(d, count=10)) == [5, 3, 2]
    # first 4 of the sequence: 0 1 2 0 -> 2 / 1 / 1; first 6: 0 1 2 0 0 1 -> 3 / 2 / 1
    assert per_class(stratified_subset(d, count=4)) == [2, 1, 1]
    assert per_class(stratified_subset(d, fraction=0.3)) == [3, 2, 1]  # round(0.3 * 20) = 6
    # 4 balanced classes of 8: 12 images -> exactly 3 each, for any seed
    for seed in range(5):
        assert per_class(stratified_subset(make_dicts([8] * 4), count=12, seed=seed)) == [
            3,
            3,
            3,
            3,
        ]
    # fraction rounds halves up: 0.25 * 10 = 2.5 -> 3 images
    assert len(stratified_subset(make_dicts([5, 5]), fraction=0.25)) == 3


def test_subset_is_deterministic_ordered_and_unique():
    d = make_dicts([40, 30, 7])
    a, b = stratified_subset(d, count=20, seed=3), stratified_subset(d, count=20, seed=3)
    assert files(a) == files(b) and len(set(files(a))) == 20
    position = {f: i for i, f in enumerate(files(d))}
    # original order kept
    assert [position[f] for f in files(a)] == sorted(position[f] for f in files(a))
    assert stratified_subset(d, count=len(d)) == d and stratified_subset(d) == d


def test_subset_nested_for_every_size():
    # Largest-remainder quotas would break nesting here: 12 images -> 6/3/2/1, 13 -> 7/4/2/0.
    d = make_dicts([13, 7, 5, 1])
    previous = set()
    for m in range(1, len(d) + 1):
        current = set(files(stratified_subset(d, count=m, seed=11)))
        assert len(current) == m and previous <= current, m
        previous = current
    small, large = (
        stratified_subset(d, fraction=0.2, seed=2),
        stratified_subset(d, fraction=0.6, seed=2),
    )
    assert set(files(small)) <= set(files(large))


def test_subset_seeds_differ_and_classes_are_independent():
    d = make_dicts([50, 50])
    assert set(files(stratified_subset(d, count=20, seed=0))) != set(
        files(stratified_subset(d, count=20, seed=1))
    )
    # the images chosen of class 0 do not depend on how big the other class is
    first = [
        f
        for f in files(stratified_subset(make_dicts([50, 50]), fraction=0.5, seed=4))
        if f.startswith("0/")
    ]
    other = [
        f
        for f in files(stratified_subset(make_dicts([50, 10]), fraction=0.5, seed=4))
        if f.startswith("0/")
    ]
    assert first == other


def test_subset_strata_are_source_and_label():
    # both label 0, different datasets
    d = make_dicts([10], source="a") + make_dicts([2], source="b")
    sub = stratified_subset(d, count=6)
    assert Counter(x["source"] for x in sub) == {"a": 5, "b": 1}


def test_subset_errors():
    d = make_dicts([3, 3])
    with pytest.raises(
        ValueError, match=r"SUBSET_COUNT 7 is larger than the data: the training set has 6 images"
    ):
        stratified_subset(d, count=7)
    with pytest.raises(
        ValueError,
        match=r"either DATASETS.PRETRAIN.SUBSET_COUNT \(2\) or .*SUBSET_FRACTION \(0.5\)",
    ):
        stratified_subset(d, count=2, fraction=0.5)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"SUBSET_FRACTION must be in \(0, 1\]"):
            stratified_subset(d, fraction=bad)
    with pytest.raises(ValueError, match=r"SUBSET_COUNT must be >= 0"):
        stratified_subset(d, count=-1)
    with pytest.raises(ValueError, match=r"selects no image"):
        stratified_subset(d, fraction=0.01)


# ---------------------------------------------------------------------------------------------
# mix_datasets
# ---------------------------------------------------------------------------------------------
def test_apportion_largest_remainder():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]  # 3.33 each; the leftover goes to the first
    assert apportion(7, [0.5, 0.25, 0.25]) == [
        3,
        2,
        2,
    ]  # 3.5 / 1.75 / 1.75 -> 3 / 1 / 1 + two by remainder
    assert sum(apportion(1001, [0.2, 0.3, 0.5])) == 1001


def test_mix_counts_sources_and_no_duplicates():
    a, b = make_dicts([6, 6]), make_dicts([10, 10, 10])
    mixed = mix_datasets([a, b], [1, 3], total=16, seed=0, names=["a", "b"])
    assert Counter(d["source"] for d in mixed) == {"a": 4, "b": 12}  # 16 * 1/4, 16 * 3/4
    keys = [(d["source"], d["file_name"]) for d in mixed]
    assert len(set(keys)) == len(keys) == 16
    assert "source" not in a[0]  # inputs untouched
    assert mix_datasets([a, b], [1, 3], 16, 0, ["a", "b"]) == mixed
    assert mix_datasets([a, b], [1, 3], 16, 1, ["a", "b"]) != mixed
    # nested in the total at one seed
    bigger = mix_datasets([a, b], [1, 3], total=32, seed=0, names=["a", "b"])
    assert set(keys) <= {(d["source"], d["file_name"]) for d in bigger}


def test_mix_total_zero_takes_the_largest_possible():
    a, b = make_dicts([10]), make_dicts([30])
    assert Counter(d["source"] for d in mix_datasets([a, b], [1, 1])) == {0: 10, 1: 10}
    assert Counter(d["source"] for d in mix_datasets([a, b], [1, 3])) == {0: 10, 1: 30}
    # 0.3/0.7: 34 -> 10.2/23.8 -> 10/24 fits; 35 -> 10.5/24.5 -> 11/24 does not (a has 10)
    assert Counter(d["source"] for d in mix_datasets([a, b], [0.3, 0.7])) == {0: 10, 1: 24}
    # a zero proportion drops that dataset
    assert Counter(d["source"] for d in mix_datasets([a, b], [0, 1])) == {1: 30}


def test_mix_errors():
    a, b = make_dicts([10]), make_dicts([30])
    with pytest.raises(
        ValueError,
        match=r"MIX_PROPORTIONS has 3 entries but DATASETS.TRAIN has 2 datasets \['x', 'y'\]",
    ):
        mix_datasets([a, b], [1, 1, 1], names=["x", "y"])
    with pytest.raises(ValueError, match=r"must be finite and >= 0; got -1.0 for dataset y"):
        mix_datasets([a, b], [1, -1], names=["x", "y"])
    with pytest.raises(ValueError, match="must not all be 0"):
        mix_datasets([a, b], [0, 0])
    with pytest.raises(
        ValueError, match=r"MIX_TOTAL 30 .* needs 15 images of dataset x, which has only 10"
    ):
        mix_datasets([a, b], [1, 1], total=30, names=["x", "y"])


# ---------------------------------------------------------------------------------------------
# label maps
# ---------------------------------------------------------------------------------------------
PARITY = {str(i): ("even" if i % 2 == 0 else "odd") for i in range(10)}


def test_label_map_remaps_to_sorted_coarse_classes(tmp_path):
    path = tmp_path / "parity.json"
    path.write_text(json.dumps({"3": "odd", "0": "even", "1": "odd", "2": "even"}))
    mapping = load_label_map(str(path))
    assert coarse_classes(mapping) == ["even", "odd"]
    d = make_dicts([1, 2, 1, 1])
    out = apply_label_map(d, mapping, str(path))
    assert [x["label"] for x in out] == [0, 1, 1, 0, 1]
    assert [x["fine_label"] for x in out] == [0, 1, 1, 2, 3] and out[1]["coarse_class"] == "odd"
    assert [x["label"] for x in d] == [0, 1, 1, 2, 3]  # input untouched
    # three coarse classes: sorted names give the integers
    m3 = {"0": "zebra", "1": "ant", "2": "moth"}
    assert [x["label"] for x in apply_label_map(make_dicts([1, 1, 1]), m3)] == [2, 0, 1]


def test_label_map_errors(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"0": "even", "1": "odd"}))
    d = make_dicts([1, 1, 1])
    with pytest.raises(
        ValueError, match=rf"Label map {path} has no entry for class '2' \(e.g. image 2/0.png\)"
    ):
        apply_label_map(d, load_label_map(str(path)), str(path))
    bad = tmp_path / "bad.json"
    bad.write_text('{"0": "even",')
    with pytest.raises(ValueError, match=rf"Label map {bad} is not valid JSON"):
        load_label_map(str(bad))
    with pytest.raises(ValueError, match=rf"Could not read label map {tmp_path / 'nope.json'}"):
        load_label_map(str(tmp_path / "nope.json"))
    listy = tmp_path / "list.json"
    listy.write_text('["even", "odd"]')
    with pytest.raises(ValueError, match=rf"Label map {listy} must be a non-empty JSON object"):
        load_label_map(str(listy))
    numeric = tmp_path / "numeric.json"
    numeric.write_text('{"0": 1}')
    with pytest.raises(
        ValueError, match=rf"Label map {numeric}: coarse class names must be non-empty strings"
    ):
        load_label_map(str(numeric))


def test_describe_counts_before_and_after():
    before = make_dicts([4, 2], source="s")
    after = apply_label_map(stratified_subset(before, count=3), {"0": "x", "1": "y"}, "m.json")
    rec = describe({"k": 1}, before, after, {"0": "x", "1": "y"}, "m.json", seed=5)
    assert rec["before"] == {
        "total": 6,
        "per_dataset": {"s": 6},
        "per_class": {"s": {"0": 4, "1": 2}},
    }
    assert rec["after"]["total"] == 3 and rec["after"]["per_class"] == {"s": {"0": 2, "1": 1}}
    assert rec["after"]["per_coarse_class"] == {"x": 2, "y": 1}
    assert rec["label_map"] == {
        "file": "m.json",
        "classes": ["x", "y"],
        "mapping": {"0": "x", "1": "y"},
    }
    assert rec["seed"] == 5 and rec["settings"] == {"k": 1}
    assert json.loads(json.dumps(rec)) == rec


def test_check_axes_config_names_the_keys():
    cfg = get_cfg()
    check_axes_config(cfg)  # defaults are valid
    cfg.DATASETS.TRAIN = ("a", "b")
    cfg.DATASETS.PRETRAIN.MIX_PROPORTIONS = (1.0,)
    with pytest.raises(
        ValueError,
        match=r"MIX_PROPORTIONS has 1 entries \[1.0\] "
        r"but DATASETS.TRAIN has 2 datasets \['a', 'b'\]",
    ):
        check_axes_config(cfg)
    cfg.DATASETS.PRETRAIN.MIX_PROPORTIONS = (1.0, -0.5)
    with pytest.raises(
        ValueError, match=r"MIX_PROPORTIONS must be numbers >= 0; got -0.5 for dataset b"
    ):
        check_axes_config(cfg)
    cfg.DATASETS.PRETRAIN.MIX_PROPORTIONS = ()
    cfg.DATASETS.PRETRAIN.SUBSET_COUNT, cfg.DATASETS.PRETRAIN.SUBSET_FRACTION = 10, 0.5
    with pytest.raises(ValueError, match="not both"):
        check_axes_config(cfg)


# ---------------------------------------------------------------------------------------------
# the loaders of contrastive_det.data.pretraining.py
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """Classes 0-3 with 6/6/6/6 images (train) and 2 each (test), 8x8 grey levels."""
    root = tmp_path_factory.mktemp("tiny_folder")
    for split, n in (("train", 6), ("test", 2)):
        for cls in range(4):
            (root / split / str(cls)).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 40 * cls + i, np.uint8)).save(
                    root / split / str(cls) / f"{i}.png"
                )
    register_classification("axes_tiny_train", str(root / "train"))
    register_classification("axes_tiny_test", str(root / "test"))
    (root / "parity.json").write_text(
        json.dumps({"0": "even", "1": "odd", "2": "even", "3": "odd"})
    )
    return root


def loader_cfg(tiny_folder, out, **pretrain):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("axes_tiny_train",), ("axes_tiny_test",)
    cfg.INPUT.TWO_VIEW.CROP_SIZE, cfg.INPUT.TWO_VIEW.TEST_RESIZE = 8, 8
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS, cfg.TEST.KNN.BATCH_SIZE = 4, 0, 64
    cfg.OUTPUT_DIR = str(out)
    for k, v in pretrain.items():
        setattr(cfg.DATASETS.PRETRAIN, k, v)
    return cfg


def test_train_dicts_record_and_files(tiny_folder, tmp_path):
    from contrastive_det.data.pretraining import build_pretrain_train_loader

    cfg = loader_cfg(
        tiny_folder,
        tmp_path,
        SUBSET_FRACTION=0.5,
        SUBSET_SEED=3,
        LABEL_MAP=str(tiny_folder / "parity.json"),
    )
    batch = next(iter(build_pretrain_train_loader(cfg)))
    assert len(batch) == 4 and all(b["label"] in (0, 1) for b in batch)
    rec = json.loads((tmp_path / "pretrain_data.json").read_text())
    assert rec["before"]["per_class"] == {"axes_tiny_train": {str(c): 6 for c in range(4)}}
    assert rec["after"]["per_class"] == {"axes_tiny_train": {str(c): 3 for c in range(4)}}
    assert rec["after"]["per_coarse_class"] == {"even": 6, "odd": 6} and rec["seed"] == 3
    assert rec["settings"]["DATASETS.PRETRAIN.SUBSET_FRACTION"] == 0.5
    lines = [
        line.split("\t") for line in (tmp_path / "pretrain_images.txt").read_text().splitlines()
    ]
    assert len(lines) == 12
    for file_name, label in lines:
        assert int(label) == int(file_name.split("/")[-2]) % 2


def test_train_loader_mixes_two_datasets(tiny_folder, tmp_path):
    from contrastive_det.data.pretraining import pretrain_train_dicts

    cfg = loader_cfg(tiny_folder, tmp_path, MIX_PROPORTIONS=(1.0, 2.0))
    cfg.DATASETS.TRAIN = ("axes_tiny_train", "axes_tiny_test")
    dicts, rec = pretrain_train_dicts(cfg)
    # 24 and 8 images at 1:2 -> the largest total is 12 (4 + 8)
    assert (
        rec["after"]["per_dataset"] == {"axes_tiny_train": 4, "axes_tiny_test": 8}
        and len(dicts) == 12
    )
    cfg.DATASETS.PRETRAIN.MIX_PROPORTIONS = (1.0, 2.0, 3.0)
    with pytest.raises(
        ValueError, match=r"3 entries .* 2 datasets \['axes_tiny_train', 'axes_tiny_test'\]"
    ):
        pretrain_train_dicts(cfg)


def test_knn_loader_uses_coarse_labels(tiny_folder, tmp_path):
    from contrastive_det.data.pretraining import build_knn_test_loader

    def labels(cfg):
        items = [x for batch in build_knn_test_loader(cfg, "axes_tiny_test") for x in batch]
        return Counter((x["knn_role"], x["label"]) for x in items)

    fine = labels(loader_cfg(tiny_folder, tmp_path))
    assert fine == {**{("bank", c): 6 for c in range(4)}, **{("query", c): 2 for c in range(4)}}
    # the kNN bank is the whole bank dataset, whatever the subset of the training images
    coarse = labels(
        loader_cfg(
            tiny_folder, tmp_path, SUBSET_COUNT=4, LABEL_MAP=str(tiny_folder / "parity.json")
        )
    )
    assert coarse == {("bank", 0): 12, ("bank", 1): 12, ("query", 0): 4, ("query", 1): 4}


def test_train_mapper_corrupts_and_eval_mapper_does_not(tiny_folder):
    from contrastive_det.data.transforms import TwoViewMapper

    cfg = get_cfg()
    cfg.INPUT.CORRUPTION.SALT_PEPPER = 1.0  # every pixel black or white
    d = {"file_name": str(tiny_folder / "train" / "1" / "3.png"), "label": 1}
    train, test = TwoViewMapper(cfg, is_train=True), TwoViewMapper(cfg, is_train=False)
    train.transform = test.transform = lambda x: x  # look at the image the views are drawn from
    views = train(d)["views"]
    assert all(bool(((v == 0) | (v == 255)).all()) for v in views)
    assert torch.equal(test(d)["image"], torch.full((3, 8, 8), 43, dtype=torch.uint8))

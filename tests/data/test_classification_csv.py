"""User classification sets without code: DATASETS.CUSTOM entries of FORMAT csv (and folder's
METRIC)."""

import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from contrastive_det.config import get_cfg
from contrastive_det.data import (
    DatasetLayoutError,
    check_dataset_layout,
    register_datasets_from_config,
)
from contrastive_det.data.classification import ClassificationCSVError, load_classification_csv

CLASSES = ["bird", "cat", "dog"]


def cfg_with(entries):
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = entries
    return cfg


@pytest.fixture
def images(tmp_path):
    for rel in ("imgs/a.png", "imgs/b.png", "imgs/c.png", "other/d.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / rel)
    return tmp_path


def test_csv_dataset_from_config(images):
    (images / "train.csv").write_text(
        f"path,label\nimgs/a.png,cat\n\nimgs/b.png, 2\n{images}/other/d.png,bird\n"
    )
    (images / "lists").mkdir()
    # no header; paths relative to ROOT
    (images / "lists" / "test.csv").write_text("imgs/c.png,dog\n")
    names = register_datasets_from_config(
        cfg_with(
            [
                {
                    "NAME": "csv_train",
                    "FORMAT": "csv",
                    "CSV": str(images / "train.csv"),
                    "CLASSES": CLASSES,
                },
                {
                    "NAME": "csv_test",
                    "FORMAT": "csv",
                    "CSV": str(images / "lists" / "test.csv"),
                    "ROOT": str(images),
                    "CLASSES": CLASSES,
                    "METRIC": "mean_per_class",
                },
            ]
        )
    )
    assert names == ["csv_train", "csv_test"]
    train = DatasetCatalog.get("csv_train")
    assert [(d["image_id"], d["label"], d["class_name"]) for d in train] == [
        ("imgs/a.png", 1, "cat"),
        ("imgs/b.png", 2, "dog"),
        (f"{images}/other/d.png", 0, "bird"),
    ]
    assert train[0]["file_name"] == str(images / "imgs" / "a.png")
    assert DatasetCatalog.get("csv_test")[0]["file_name"] == str(images / "imgs" / "c.png")
    meta = MetadataCatalog.get("csv_test")
    assert meta.classes == CLASSES and meta.metric == "mean_per_class" and meta.multi_label is False
    assert (
        meta.evaluator_type == "classification"
        and MetadataCatalog.get("csv_train").metric == "top1"
    )
    check_dataset_layout("csv_test")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "path,label\nimgs/a.png,cat\nimgs/b.png,horse\n",
            r"train\.csv:3: label 'horse' is not one of CLASSES",
        ),
        ("imgs/a.png,3\n", r"train\.csv:1: integer label 3 is out of range \[0, 3\)"),
        ("imgs/a.png,-1\n", r"train\.csv:1: integer label -1 is out of range"),
        (
            "imgs/a.png,cat\nimgs/zz.png,cat\n",
            r"train\.csv:2: image file .*imgs/zz\.png does not exist",
        ),
        ("imgs/a.png,cat\n,dog\n", r"train\.csv:2: the image path \(first column\) is empty"),
        ("imgs/a.png\n", r"train\.csv:1: expected 2 columns 'path,label', got 1"),
        ("imgs/a.png,cat,extra\n", r"train\.csv:1: expected 2 columns"),
        (
            "imgs/a.png,cat\nimgs/a.png,dog\n",
            r"train\.csv:2: image 'imgs/a.png' is already listed on line 1",
        ),
        ("", r"train\.csv:1: the file lists no images"),
        ("path,label\n\n", r"train\.csv:1: the file lists no images"),
    ],
)
def test_csv_errors_name_file_and_line(images, text, message):
    (images / "train.csv").write_text(text)
    register_datasets_from_config(
        cfg_with(
            [
                {
                    "NAME": "csv_bad",
                    "FORMAT": "csv",
                    "CSV": str(images / "train.csv"),
                    "CLASSES": CLASSES,
                }
            ]
        )
    )
    with pytest.raises(ClassificationCSVError, match=message):
        DatasetCatalog.get("csv_bad")


def test_missing_csv_file_is_a_layout_error(tmp_path):
    register_datasets_from_config(
        cfg_with(
            [
                {
                    "NAME": "csv_gone",
                    "FORMAT": "csv",
                    "CSV": str(tmp_path / "gone.csv"),
                    "CLASSES": CLASSES,
                }
            ]
        )
    )
    with pytest.raises(DatasetLayoutError) as err:
        check_dataset_layout("csv_gone")
    assert str(tmp_path / "gone.csv") in str(err.value) and "rows 'path,label'" in str(err.value)
    with pytest.raises(FileNotFoundError, match="gone.csv"):
        load_classification_csv(str(tmp_path / "gone.csv"), CLASSES)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"NAME": "x", "FORMAT": "csv", "CSV": "a.csv"}, r"missing key\(s\) \['CLASSES'\]"),
        (
            {"NAME": "x", "FORMAT": "csv", "CSV": "a.csv", "CLASSES": []},
            r"CLASSES must list the \(unique\) class names",
        ),
        (
            {"NAME": "x", "FORMAT": "csv", "CSV": "a.csv", "CLASSES": ["a", "a"]},
            "CLASSES must list the",
        ),
        (
            {"NAME": "x", "FORMAT": "csv", "CSV": "a.csv", "CLASSES": ["a"], "METRIC": "map11"},
            r"DATASETS.CUSTOM\[0\].METRIC must be one of \['top1', 'mean_per_class'\]",
        ),
        (
            {"NAME": "x", "FORMAT": "csv", "CSV": "a.csv", "CLASSES": ["a"], "IMAGE_ROOT": "b"},
            r"unknown key\(s\) \['IMAGE_ROOT'\]",
        ),
        ({"NAME": "x", "FORMAT": "folder", "ROOT": "r", "METRIC": "top5"}, "METRIC must be one of"),
    ],
)
def test_malformed_csv_entries_name_the_key(entry, message):
    with pytest.raises(ValueError, match=message):
        register_datasets_from_config(cfg_with([entry]))


def test_folder_format_takes_a_metric(tmp_path):
    for cls in ("b", "a"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / cls / "0.png")
    register_datasets_from_config(
        cfg_with(
            [
                {
                    "NAME": "folder_mpc",
                    "FORMAT": "folder",
                    "ROOT": str(tmp_path),
                    "METRIC": "mean_per_class",
                }
            ]
        )
    )
    meta = MetadataCatalog.get("folder_mpc")
    assert (
        meta.metric == "mean_per_class"
        and list(meta.classes) == ["a", "b"]
        and meta.multi_label is False
    )
    assert [d["label"] for d in DatasetCatalog.get("folder_mpc")] == [0, 1]


def test_a_csv_saved_by_excel_with_a_byte_order_mark_reads_its_header(images):
    (images / "bom.csv").write_bytes("path,label\nimgs/a.png,cat\n".encode("utf-8-sig"))
    dicts = load_classification_csv(str(images / "bom.csv"), CLASSES)
    assert [d["label"] for d in dicts] == [1]

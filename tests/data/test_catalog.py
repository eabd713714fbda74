"""Dataset registration from the config, layout checks, and errors that name the file."""

import os

import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from contrastive_det.config import get_cfg
from contrastive_det.data import (
    CheckedDatasetMapper,
    DatasetLayoutError,
    ImageReadError,
    check_dataset_layout,
    register_datasets_from_config,
)
from contrastive_det.data.datasets.catalog import (
    register_classification,
    register_toy_digits,
    register_voc,
)

from conftest import TOY_CONFIG


def cfg_with_custom(entries):
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = entries
    return cfg


def test_toy_digits_registered_in_every_format(toy_root):
    names = DatasetCatalog.list()
    for name in (
        "toy_digits_trainval",
        "toy_digits_test",
        "toy_digits_coco_trainval",
        "toy_digits_coco_test",
        "toy_digits_cls_train",
        "toy_digits_cls_test",
    ):
        assert name in names
    assert MetadataCatalog.get("toy_digits_test").year == 2007
    cls = DatasetCatalog.get("toy_digits_cls_test")
    assert {d["label"] for d in cls} == set(range(10)) and all(
        os.path.isfile(d["file_name"]) for d in cls[:5]
    )


def test_classification_metadata_of_toy_crops_and_folder_sets(toy_root, tmp_path):
    for name in ("toy_digits_cls_train", "toy_digits_cls_test"):
        meta = MetadataCatalog.get(name)
        assert list(meta.classes) == [str(i) for i in range(10)]
        assert (
            meta.metric == "top1"
            and meta.multi_label is False
            and meta.evaluator_type == "classification"
        )
        assert meta.required_paths == [meta.image_root + "/"]
        check_dataset_layout(name)
    # a folder set without class names: classes are the sorted folder names, read on first use
    for cls in ("dog", "cat"):
        (tmp_path / "set" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "set" / cls / "0.png")
    register_classification("test_folder_meta", str(tmp_path / "set"))
    assert list(MetadataCatalog.get("test_folder_meta").classes) == ["cat", "dog"]
    assert [d["class_name"] for d in DatasetCatalog.get("test_folder_meta")] == ["cat", "dog"]
    register_classification("test_folder_missing", str(tmp_path / "nope"))
    with pytest.raises(
        DatasetLayoutError, match=r"missing .*nope/\. Expected layout: .*nope/<class_name>/<image>"
    ):
        check_dataset_layout("test_folder_missing")


def test_textured_toy_crops_are_registered_when_present(toy_root, tmp_path):
    root = tmp_path / "toy_digits"
    for split in ("train", "test"):
        for cls in range(10):
            (root / "crops_textured" / split / str(cls)).mkdir(parents=True)
            Image.new("RGB", (28, 28), (cls, 0, 0)).save(
                root / "crops_textured" / split / str(cls) / f"{cls}.png"
            )
    try:
        assert register_toy_digits(str(root)) == [
            "toy_digits_textured_cls_train",
            "toy_digits_textured_cls_test",
        ]
        meta = MetadataCatalog.get("toy_digits_textured_cls_test")
        assert (
            list(meta.classes) == [str(i) for i in range(10)]
            and meta.metric == "top1"
            and not meta.multi_label
        )
        assert meta.image_root == str(root / "crops_textured" / "test")
        assert [d["label"] for d in DatasetCatalog.get("toy_digits_textured_cls_train")] == list(
            range(10)
        )
    finally:
        register_toy_digits(str(toy_root / "toy_digits"))  # the session's toy data again


def test_custom_voc_and_coco_datasets_from_config(toy_root):
    toy = toy_root / "toy_digits"
    cfg = cfg_with_custom(
        [
            {
                "NAME": "my_voc_test",
                "FORMAT": "voc",
                "ROOT": str(toy / "VOC"),
                "SPLIT": "test",
                "CLASSES": [str(i) for i in range(10)],
            },
            {
                "NAME": "my_coco_test",
                "FORMAT": "coco",
                "JSON": str(toy / "coco/annotations/instances_test.json"),
                "IMAGE_ROOT": str(toy / "VOC/JPEGImages"),
            },
        ]
    )
    assert register_datasets_from_config(cfg) == ["my_voc_test", "my_coco_test"]
    voc, coco = DatasetCatalog.get("my_voc_test"), DatasetCatalog.get("my_coco_test")
    assert len(voc) == len(coco) == 4
    assert MetadataCatalog.get("my_voc_test").evaluator_type == "pascal_voc"
    assert MetadataCatalog.get("my_coco_test").evaluator_type == "coco"
    assert sum(len(d["annotations"]) for d in voc) == sum(len(d["annotations"]) for d in coco)


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"NAME": "x", "FORMAT": "yolo"},
            r"DATASETS.CUSTOM\[0\].FORMAT must be one of \['coco', 'csv', 'folder', 'sem_seg', "
            r"'voc'\]",
        ),
        (
            {"NAME": "x", "FORMAT": "voc", "ROOT": "/d", "SPLIT": "test"},
            r"missing key\(s\) \['CLASSES'\]",
        ),
        (
            {"NAME": "x", "FORMAT": "coco", "JSON": "a", "IMAGE_ROOT": "b", "ROOTS": "c"},
            r"unknown key\(s\) \['ROOTS'\]",
        ),
        (
            {"NAME": "x", "FORMAT": "voc", "ROOT": "/d", "SPLIT": "t", "CLASSES": "cat"},
            "CLASSES must be a list",
        ),
    ],
)
def test_malformed_custom_entries_name_the_key(entry, message):
    with pytest.raises(ValueError, match=message):
        register_datasets_from_config(cfg_with_custom([entry]))


def test_missing_voc_folder_names_path_and_layout(tmp_path):
    register_voc("test_missing_voc", str(tmp_path / "VOC2007"), "trainval", ["a"])
    with pytest.raises(DatasetLayoutError) as err:
        check_dataset_layout("test_missing_voc")
    msg = str(err.value)
    assert str(tmp_path / "VOC2007" / "JPEGImages") in msg
    assert (
        "ImageSets/Main/trainval.txt" in msg
        and "Annotations/<id>.xml" in msg
        and "datasets/README.md" in msg
    )


def test_missing_coco_json_and_unregistered_names(tmp_path):
    register_datasets_from_config(
        cfg_with_custom(
            [
                {
                    "NAME": "test_missing_coco",
                    "FORMAT": "coco",
                    "JSON": str(tmp_path / "inst.json"),
                    "IMAGE_ROOT": str(tmp_path),
                }
            ]
        )
    )
    with pytest.raises(DatasetLayoutError, match=r"missing its annotation file .*inst\.json"):
        check_dataset_layout("test_missing_coco")
    with pytest.raises(KeyError, match="'nope' is not registered"):
        check_dataset_layout("nope")


def test_corrupt_and_truncated_images_name_the_file(toy_root, tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(TOY_CONFIG)
    mapper = CheckedDatasetMapper(cfg, is_train=True)
    record = DatasetCatalog.get("toy_digits_trainval")[0]
    assert mapper(dict(record))["image"].shape[0] == 3  # the real file maps

    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageReadError, match="garbage.jpg"):
        mapper(dict(record, file_name=str(garbage)))

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(record["file_name"], "rb").read()[:300])
    with pytest.raises(ImageReadError, match="truncated.jpg"):
        mapper(dict(record, file_name=str(truncated)))


def test_voc_image_set_with_one_id_is_reported(tmp_path):
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "one.txt").write_text("000001\n")
    register_voc("test_one_id_voc", str(tmp_path), "one", ["a"])
    with pytest.raises(DatasetLayoutError, match=r"one\.txt lists 1 image\(s\)"):
        check_dataset_layout("test_one_id_voc")


def test_importing_the_package_does_not_import_the_toy_generator():
    """Registration needs only the toy constants; the generator (cv2, mlxtend) loads on demand."""
    import subprocess
    import sys

    code = (
        "import sys, contrastive_det\n"
        "from detectron2.data import DatasetCatalog\n"
        "assert 'contrastive_det.data.datasets.toy_constants' in sys.modules\n"
        "assert 'contrastive_det.data.toy.write' not in sys.modules, 'generator imported'\n"
        "assert 'mlxtend' not in sys.modules\n"
        "from contrastive_det.data.toy.write import generate_toy_digits, default_output_dir, "
        "TOY_DIGITS_CLASSES\nfrom contrastive_det.data.datasets import toy_constants as c\n"
        "assert default_output_dir is c.default_output_dir and TOY_DIGITS_CLASSES is "
        "c.TOY_DIGITS_CLASSES\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_readme_own_data_examples_load(tmp_path):
    """datasets/README.md's DATASETS.CUSTOM examples: the YAML files (from configs/my/) and the
    commands."""
    import re
    import shlex

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(repo, "datasets", "README.md")) as f:
        readme = f.read()
    configs = tmp_path / "configs"
    (configs / "my").mkdir(parents=True)
    # a checkout's configs/, plus configs/my/
    for entry in os.listdir(os.path.join(repo, "configs")):
        (configs / entry).symlink_to(os.path.join(repo, "configs", entry))
    examples = re.findall(r"```yaml\n# configs/my/(\S+)\n(.*?)```", readme, re.S)
    assert len(examples) >= 2
    formats = set()
    for name, body in examples:
        (configs / "my" / name).write_text(body)
        cfg = get_cfg()
        cfg.merge_from_file(str(configs / "my" / name))  # relative _BASE_ resolved from configs/my/
        names = register_datasets_from_config(cfg)
        assert set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST) <= set(names)
        assert cfg.SOLVER.MAX_ITER <= 200  # a CPU-sized starting point, not the 24k protocol
        formats |= {e["FORMAT"] for e in cfg.DATASETS.CUSTOM}
    commands = re.findall(
        r"^python tools/\S+ --config-file (\S+) \\\n(.*?)\n(?:\n|```)", readme, re.S | re.M
    )
    assert len(commands) >= 2
    for config_file, rest in commands:
        opts = shlex.split(rest.replace("\\\n", " "))
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(repo, config_file))
        cfg.merge_from_list(opts)
        names = register_datasets_from_config(cfg)
        assert set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST) <= set(names)
        formats |= {e["FORMAT"] for e in cfg.DATASETS.CUSTOM}
    assert formats == {"voc", "coco", "folder", "csv"}

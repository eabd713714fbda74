"""The detector's class count and the datasets' classes must agree before training: a class past
ROI_HEADS.NUM_CLASSES would train as background and be scored all the same."""

import json

import pytest

from contrastive_det.config import get_cfg
from contrastive_det.data import register_datasets_from_config
from contrastive_det.tasks.detection import DetectionTask, check_detection_classes


def _coco(path, names):
    cats = [{"id": 10 + 3 * i, "name": n} for i, n in enumerate(names)]  # ids not contiguous
    image = {"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}
    ann = {"id": 1, "image_id": 1, "category_id": cats[-1]["id"], "bbox": [1, 1, 4, 4]}
    ann.update(area=16, iscrowd=0)
    path.write_text(json.dumps({"images": [image], "annotations": [ann], "categories": cats}))
    return str(path)


def _cfg(tmp_path, train, test, num_classes):
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = [
        {"NAME": n, "FORMAT": "coco", "JSON": _coco(tmp_path / f"{n}.json", c), "IMAGE_ROOT": "x"}
        for n, c in (("dc_train", train), ("dc_test", test))
    ]
    register_datasets_from_config(cfg)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("dc_train",), ("dc_test",)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    return cfg


def test_a_head_with_fewer_classes_than_the_dataset_is_refused(tmp_path):
    cfg = _cfg(tmp_path, ["car", "cat", "dog", "bus"], ["car", "cat", "dog", "bus"], 2)
    with pytest.raises(ValueError, match=r"NUM_CLASSES is 2 but dataset 'dc_train' has 4 .*set"):
        check_detection_classes(cfg, ["dc_train", "dc_test"])
    with pytest.raises(ValueError, match="dc_test"):  # --eval-only checks its test set too
        DetectionTask.build_test_loader(cfg, "dc_test")
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 4
    check_detection_classes(cfg, ["dc_train", "dc_test"])
    cfg.MODEL.META_ARCHITECTURE = "RetinaNet"  # its own key
    with pytest.raises(ValueError, match="MODEL.RETINANET.NUM_CLASSES is 80"):
        check_detection_classes(cfg, ["dc_train"])


def test_train_and_test_sets_must_list_the_same_classes(tmp_path):
    cfg = _cfg(tmp_path, ["car", "cat"], ["cat", "car"], 2)
    with pytest.raises(ValueError, match="'dc_train' and 'dc_test' list different classes"):
        check_detection_classes(cfg, ["dc_train", "dc_test"])


def test_coco_classes_declared_out_of_the_jsons_order_are_named(tmp_path):
    from detectron2.data import DatasetCatalog

    json_file = _coco(tmp_path / "c.json", ["car", "cat"])
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = [
        {"NAME": "dc_order", "FORMAT": "coco", "JSON": json_file, "IMAGE_ROOT": "x"}
        | {"CLASSES": ["cat", "car"]}
    ]
    register_datasets_from_config(cfg)
    with pytest.raises(ValueError, match=r"CLASSES \['cat', 'car'\] are not .* \['car', 'cat'\]"):
        DatasetCatalog.get("dc_order")


def test_segmentation_checks_its_class_count_the_same_way(toy_root):
    from contrastive_det.tasks.segmentation import check_datasets_match

    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 11, 255
    names = ["toy_digits_sem_seg_trainval", "toy_digits_sem_seg_test"]
    check_datasets_match(cfg, names)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 21
    with pytest.raises(
        ValueError, match="SEM_SEG_HEAD.NUM_CLASSES is 21 but dataset 'toy_digits_sem"
    ):
        check_datasets_match(cfg, names)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 11, 0
    with pytest.raises(ValueError, match="IGNORE_VALUE is 0"):
        check_datasets_match(cfg, names)

"""Segmentation scores: detectron2's SemSegEvaluator through the suite's reader, pinned on hand-made
label maps."""

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from contrastive_det.data.sem_seg_labels import LabelMapError
from contrastive_det.data.datasets.voc_sem_seg import voc_palette
from contrastive_det.evaluation import SemanticSegmentationEvaluator, mmseg_miou

IGN = 255


def _palette_png(path, label):
    im = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    im.putpalette(voc_palette())
    im.save(path)


def register_dataset(tmp_path, name, gts, num_classes=3):
    records = []
    for i, gt in enumerate(gts):
        path = tmp_path / f"{name}_{i}.png"
        _palette_png(path, gt)
        records.append(
            {"file_name": f"img_{name}_{i}.jpg", "sem_seg_file_name": str(path), "image_id": str(i)}
        )
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        stuff_classes=[f"c{k}" for k in range(num_classes)],
        ignore_label=IGN,
        evaluator_type="sem_seg",
    )
    return records


def _evaluate(tmp_path, name, gts, preds, num_classes=3):
    records = register_dataset(tmp_path, name, gts, num_classes)
    ev = SemanticSegmentationEvaluator(name, distributed=False)
    ev.reset()
    for rec, pred in zip(records, preds):
        pred = torch.as_tensor(np.asarray(pred))
        logits = torch.nn.functional.one_hot(pred, num_classes).permute(2, 0, 1).float()  # KxHxW
        ev.process([{"file_name": rec["file_name"]}], [{"sem_seg": logits}])
    return ev.evaluate()["sem_seg"]


def test_goldens_on_a_3x3_map(tmp_path):
    # class 0: 3 px, 2 right; class 1: 3 px, 2 right; class 2: 2 px, both right; one void pixel
    # predicted 0
    gt = [[0, 0, 0], [1, 1, 1], [2, 2, IGN]]
    pred = [[0, 0, 1], [1, 1, 2], [2, 2, 0]]
    res = _evaluate(tmp_path, "seg_golden", [gt], [pred])
    # IoU: 2/3, 2/4, 2/3 -> mean 11/18; fw: 3/8*2/3 + 3/8*1/2 + 2/8*2/3 = 29/48; ACC 2/3, 2/3, 1; 6
    # of 8 61.1111 (the void pixel counted: IoU0 = 1/2, 55.5556)
    assert res["mIoU"] == pytest.approx(100 * 11 / 18)
    assert res["fwIoU"] == pytest.approx(100 * 29 / 48)  # 60.4167
    assert res["mACC"] == pytest.approx(100 * 7 / 9)  # 77.7778
    assert res["pACC"] == pytest.approx(75.0)
    assert res["IoU-c1"] == pytest.approx(50.0)
    # every class in the ground truth: the rules agree
    assert res["mIoU_mmseg"] == pytest.approx(100 * 11 / 18)


def test_predicted_class_absent_from_ground_truth(tmp_path):
    gt = [[0, 0, 0], [0, 1, 1], [1, 1, IGN]]
    pred = [
        [0, 0, 0],
        [2, 1, 1],
        [1, 2, 2],
    ]  # class 2 is predicted on 2 valid pixels, never in the truth
    res = _evaluate(tmp_path, "seg_absent", [gt], [pred])
    assert res["mIoU"] == pytest.approx(75.0)  # detectron2: (3/4 + 3/4) / 2, class 2 left out
    assert res["mIoU_mmseg"] == pytest.approx(50.0)  # mmseg: (3/4 + 3/4 + 0) / 3
    assert np.isnan(res["IoU-c2"])


def test_scores_accumulate_over_the_dataset(tmp_path):
    gts = [[[0, 0], [1, 1]], [[0, 0], [0, 1]]]
    preds = [[[0, 0], [1, 1]], [[0, 0], [1, 0]]]
    res = _evaluate(tmp_path, "seg_accumulate", gts, preds)
    # per image: 100 and (2/4 + 0/2) / 2 = 25 -> mean 62.5; over the dataset: class 0 4/6, class 1
    # 2/4
    assert res["mIoU"] == pytest.approx(100 * 7 / 12)  # 58.3333, not 62.5


def test_mmseg_miou_of_a_confusion_matrix():
    cm = np.zeros((4, 4), np.int64)  # rows: prediction, columns: truth, last: void
    cm[0, 0], cm[1, 1], cm[1, 0], cm[2, 2] = 3, 1, 1, 0
    # class 2: empty union, left out
    assert mmseg_miou(cm) == pytest.approx(100 * (3 / 4 + 1 / 2) / 2)


def test_label_of_another_size_or_with_unknown_values_is_named(tmp_path):
    with pytest.raises(LabelMapError, match="seg_size_0.png"):
        _evaluate(tmp_path, "seg_size", [[[0, 0, 0]]], [[[0, 0], [0, 0]]])
    with pytest.raises(LabelMapError, match=r"seg_values_0.png holds value\(s\) \[7\]"):
        _evaluate(tmp_path, "seg_values", [[[0, 7]]], [[[0, 0]]])

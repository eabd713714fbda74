"""Label maps as class indices (the VOC palette trap), the training augmentations, and named
errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import detection_utils as d2_utils

from contrastive_det.config import get_cfg
from contrastive_det.data.sem_seg_labels import LabelMapError, read_sem_seg_label
from contrastive_det.data.datasets.voc_sem_seg import voc_palette
from contrastive_det.data.sem_seg_mapper import (
    PhotometricDistortion,
    RandomScaleRatio,
    SemSegDatasetMapper,
)

VOC_LABELS = np.array([[0, 1, 15], [255, 20, 1]], dtype=np.uint8)


def _palette_png(path, label):
    im = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    im.putpalette(voc_palette())
    im.save(path)
    return str(path)


def test_palette_png_reads_as_indices_not_luminance(tmp_path):
    path = _palette_png(tmp_path / "2007_000032.png", VOC_LABELS)
    np.testing.assert_array_equal(read_sem_seg_label(path), VOC_LABELS)
    # the trap: detectron2's default mapper reads label maps with convert("L") (detectron2#1760)
    luminance = d2_utils.read_image(path, "L").squeeze(2)
    np.testing.assert_array_equal(luminance, [[0, 38, 147], [220, 52, 38]])


def test_rgb_label_image_is_refused_by_name(tmp_path):
    path = tmp_path / "colour.png"
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(path)
    with pytest.raises(LabelMapError, match=r"colour.png is a RGB image; expected class indices"):
        read_sem_seg_label(str(path))


def test_reduce_zero_label_and_single_channel(tmp_path):
    path = tmp_path / "ade.png"
    Image.fromarray(np.array([[0, 1, 150]], np.uint8)).save(path)  # mode L
    label = read_sem_seg_label({"sem_seg_file_name": str(path), "sem_seg_reduce_zero_label": True})
    np.testing.assert_array_equal(label, [[255, 0, 149]])


def _cfg(**sem_seg):
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 21
    cfg.INPUT.SEM_SEG.CROP_SIZE = (24, 24)
    for k, v in sem_seg.items():
        setattr(cfg.INPUT.SEM_SEG, k, v)
    return cfg


def _record(tmp_path, h=10, w=16, label=None):
    image = np.random.RandomState(0).randint(0, 255, (h, w, 3)).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "img.jpg")
    label = np.random.RandomState(1).randint(0, 21, (h, w)) if label is None else label
    return {
        "file_name": str(tmp_path / "img.jpg"),
        "image_id": "img",
        "sem_seg_file_name": _palette_png(tmp_path / "img.png", label),
    }


def test_training_sample_is_cropped_and_padded_with_the_ignore_value(tmp_path):
    record = _record(tmp_path)
    mapper = SemSegDatasetMapper(_cfg(SCALE_RATIO=(1.0, 1.0), FLIP_PROB=0.0), is_train=True)
    out = mapper(record)
    assert out["image"].shape == (3, 24, 24) and out["sem_seg"].shape == (24, 24)
    assert out["sem_seg"].dtype == torch.int64
    np.testing.assert_array_equal(out["sem_seg"][:10, :16].numpy(), read_sem_seg_label(record))
    assert (out["sem_seg"][10:] == 255).all() and (out["sem_seg"][:, 16:] == 255).all()
    # padded pixels hold the pixel mean (BGR), i.e. 0 after the model's normalisation
    assert out["image"][:, 20, 20].tolist() == [103, 116, 123]
    assert (out["height"], out["width"]) == (10, 16)


def test_augmentations_follow_numpys_seed(tmp_path):
    record = _record(tmp_path, 40, 40)
    mapper = SemSegDatasetMapper(_cfg(PHOTOMETRIC=True), is_train=True)
    np.random.seed(3)
    a = mapper(record)
    np.random.seed(3)
    b = mapper(record)
    np.random.seed(4)
    c = mapper(record)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["sem_seg"], b["sem_seg"])
    assert not torch.equal(a["image"], c["image"])


def test_test_sample_keeps_the_original_size_and_carries_no_label(tmp_path):
    out = SemSegDatasetMapper(_cfg(), is_train=False)(_record(tmp_path))
    assert out["image"].shape == (3, 10, 16) and "sem_seg" not in out
    out = SemSegDatasetMapper(_cfg(TEST_BASE_SIZE=(64, 20)), is_train=False)(_record(tmp_path))
    assert out["image"].shape == (3, 20, 32) and (out["height"], out["width"]) == (10, 16)


def test_label_values_outside_the_classes_are_named(tmp_path):
    record = _record(tmp_path, label=np.full((10, 16), 30))
    with pytest.raises(
        LabelMapError, match=r"img.png holds value\(s\) \[30\] outside the 21 classes"
    ):
        SemSegDatasetMapper(_cfg(), is_train=True)(record)


def test_random_scale_ratio_of_own_size_and_of_a_base_size():
    image = np.zeros((100, 200, 3), np.uint8)
    np.random.seed(0)
    t = RandomScaleRatio((0.5, 0.5)).get_transform(image)
    assert (t.new_h, t.new_w) == (50, 100)
    # short side 512, long <= 2048
    t = RandomScaleRatio((1.0, 1.0), (2048, 512)).get_transform(image)
    assert (t.new_h, t.new_w) == (512, 1024)
    t = RandomScaleRatio((0.5, 0.5), (2048, 512)).get_transform(np.zeros((100, 1000, 3), np.uint8))
    assert (t.new_h, t.new_w) == (102, 1024)  # long side limits: 2048 / 1000 * 0.5


def test_photometric_distortion_keeps_uint8_and_shape():
    image = np.random.RandomState(0).randint(0, 255, (8, 8, 3)).astype(np.uint8)
    np.random.seed(1)
    out = PhotometricDistortion("RGB").get_transform(image).apply_image(image)
    assert out.dtype == np.uint8 and out.shape == image.shape

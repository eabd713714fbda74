"""Semantic segmentation labels of the toy digit scenes (VOC/SegmentationClass) and their
registration."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from contrastive_det.data.toy import render
from contrastive_det.data.toy import write as td
from contrastive_det.data.datasets.catalog import register_toy_digits
from contrastive_det.data.checks import DatasetLayoutError, check_dataset_layout
from contrastive_det.data.sem_seg_labels import read_sem_seg_label
from contrastive_det.data.datasets.voc_sem_seg import load_voc_sem_seg

# seed 5: 11 difficult digits, touching strokes
ARGS = dict(num_trainval=8, num_test=4, seed=5, min_digits=3, max_digits=6)
VOID = 255


def _reference_voc_palette():
    """The Pascal VOC colour map, written out independently of the code under test."""
    palette = []
    for i in range(256):
        rgb = [0, 0, 0]
        for j in range(8):
            for ch in range(3):
                rgb[ch] |= ((i >> (3 * j + ch)) & 1) << (7 - j)
        palette += rgb
    return palette


def _dilate3(mask):
    """3x3 dilation of an HxW bool mask (pixels outside the image count as False)."""
    h, w = mask.shape
    padded = np.pad(mask, 1)
    return np.any([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)


def _few_digits(mp):
    """Builds use 20 MNIST digits per class (fast crops), as in tests/data/test_toy_digits.py."""
    images, labels = render.load_mnist_digits()
    keep = np.concatenate([np.flatnonzero(labels == c)[:20] for c in range(10)])
    mp.setattr(td, "load_mnist_digits", lambda: (images[keep], labels[keep]))


def _generate(path, **overrides):
    return td.generate_toy_digits(str(path), progress=False, **{**ARGS, **overrides})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A tiny build plus the objects of every scene as render_scene returned them: (root, {image_id:
    objects})."""
    root = tmp_path_factory.mktemp("toy_sem_seg") / "toy_digits"
    scenes = []
    real = render.render_scene

    def recording(*args, **kwargs):
        image, objects = real(*args, **kwargs)
        scenes.append([dict(o, mask=o["mask"].copy()) for o in objects])
        return image, objects

    with pytest.MonkeyPatch.context() as mp:
        _few_digits(mp)
        mp.setattr(td, "render_scene", recording)
        _generate(root)
    assert len(scenes) == ARGS["num_trainval"] + ARGS["num_test"]
    return root, {
        f"{k + 1:06d}": objects for k, objects in enumerate(scenes)
    }  # ids in rendering order


def _label(root, image_id):
    return read_sem_seg_label(str(root / "VOC" / "SegmentationClass" / f"{image_id}.png"))


def _expected_label(objects, hw):
    expected = np.zeros(hw, np.int64)
    strokes = np.zeros(hw, bool)
    for o in objects:
        expected[_dilate3(o["mask"])] = VOID
        strokes |= o["mask"]
    for o in objects:
        expected[o["mask"]] = VOID if o["difficult"] else o["label"] + 1
    return expected, strokes


# ------------------------------------------------------------------------------------------------
# The label maps
# ------------------------------------------------------------------------------------------------
def test_the_scenes_exercise_difficult_digits_and_touching_strokes(recorded):
    """
    Preconditions of the tests below: the build has difficult digits, and rings that run over
    another digit's stroke.
    """
    _, scenes = recorded
    objects = [o for objs in scenes.values() for o in objs]
    assert any(o["difficult"] and o["mask"].any() for o in objects)
    touching = sum(
        bool((_dilate3(a["mask"]) & b["mask"]).any())
        for objs in scenes.values()
        for i, a in enumerate(objs)
        for j, b in enumerate(objs)
        if i != j and not b["difficult"]
    )
    assert touching >= 1


def test_label_png_is_a_palette_png_with_the_voc_palette(recorded):
    root, scenes = recorded
    palette = _reference_voc_palette()
    assert palette[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0] and palette[15 * 3 : 16 * 3] == [
        192,
        128,
        128,
    ]
    assert palette[-3:] == [224, 224, 192]
    label_dir = root / "VOC" / "SegmentationClass"
    assert sorted(os.listdir(label_dir)) == [f"{image_id}.png" for image_id in sorted(scenes)]
    for image_id in scenes:
        with (
            Image.open(label_dir / f"{image_id}.png") as im,
            Image.open(root / "VOC" / "JPEGImages" / f"{image_id}.jpg") as jpg,
        ):
            assert im.format == "PNG" and im.mode == "P"
            assert im.getpalette() == palette
            assert im.size == jpg.size


def test_label_values_strokes_and_void(recorded):
    root, scenes = recorded
    for image_id, objects in scenes.items():
        label = _label(root, image_id)
        hw = objects[0]["mask"].shape
        assert label.shape == hw
        expected_values = {0, VOID} | {
            o["label"] + 1 for o in objects if not o["difficult"] and o["mask"].any()
        }
        assert set(np.unique(label).tolist()) == expected_values, image_id
        strokes = np.zeros(hw, bool)
        for o in objects:
            strokes |= o["mask"]
            if o["difficult"]:
                # every pixel of a difficult digit
                assert (label[o["mask"]] == VOID).all(), image_id
            else:
                assert (label[o["mask"]] == o["label"] + 1).all(), image_id  # class c -> c + 1
        # the ring: next to a stroke of this digit, outside every stroke
        for o in (o for o in objects if o["mask"].any()):
            ring = _dilate3(o["mask"]) & ~strokes
            assert ring.any() and (label[ring] == VOID).all(), image_id
        rings = _dilate3(strokes)
        assert (label[~rings] == 0).all(), image_id  # background elsewhere
        expected, _ = _expected_label(objects, hw)
        np.testing.assert_array_equal(label, expected, err_msg=image_id)


def test_segmentation_lists_match_the_main_lists(recorded, toy_root):
    for voc in (recorded[0] / "VOC", toy_root / "toy_digits" / "VOC"):
        for split in ("trainval", "test"):
            seg = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_bytes()
            assert seg and seg == (voc / "ImageSets" / "Main" / f"{split}.txt").read_bytes()
    with open(recorded[0] / td.MANIFEST) as f:
        counts = json.load(f)["counts"]
    labels = [_label(recorded[0], image_id) for image_id in recorded[1]]
    assert counts["trainval"]["void_pixels"] + counts["test"]["void_pixels"] == sum(
        int((x == VOID).sum()) for x in labels
    )
    assert counts["trainval"]["digit_pixels"] + counts["test"]["digit_pixels"] == sum(
        int(((x > 0) & (x != VOID)).sum()) for x in labels
    )


# ------------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------------
def test_sem_seg_sets_are_registered(toy_root):
    voc = toy_root / "toy_digits" / "VOC"
    for split, num in (("trainval", 10), ("test", 4)):
        name = f"toy_digits_sem_seg_{split}"
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == ["background"] + [str(i) for i in range(10)]
        assert (
            len(meta.stuff_classes) == 11
            and meta.ignore_label == 255
            and meta.evaluator_type == "sem_seg"
        )
        assert not hasattr(meta, "dirname")
        assert str(voc / "ImageSets" / "Segmentation" / f"{split}.txt") in meta.required_paths
        check_dataset_layout(name)
        dicts = DatasetCatalog.get(name)
        ids = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert [d["image_id"] for d in dicts] == ids and len(ids) == num
        for d in dicts:
            assert set(d) == {"file_name", "sem_seg_file_name", "image_id", "height", "width"}
            assert d["file_name"] == str(voc / "JPEGImages" / f"{d['image_id']}.jpg")
            assert d["sem_seg_file_name"] == str(voc / "SegmentationClass" / f"{d['image_id']}.png")
            assert os.path.isfile(d["file_name"]) and os.path.isfile(d["sem_seg_file_name"])
            with Image.open(d["file_name"]) as im:
                assert im.size == (d["width"], d["height"])
            label = read_sem_seg_label(d)
            assert label.shape == (d["height"], d["width"])
            assert set(np.unique(label).tolist()) <= set(range(11)) | {255}


def test_missing_label_file_raises_a_layout_error(toy_root, tmp_path):
    root = tmp_path / "toy_digits"
    shutil.copytree(toy_root / "toy_digits" / "VOC", root / "VOC")
    missing = root / "VOC" / "SegmentationClass" / "000012.png"  # a test image (ids 11..14)
    missing.unlink()
    with pytest.raises(DatasetLayoutError, match=str(missing)):
        load_voc_sem_seg(str(root / "VOC"), "test")
    assert len(load_voc_sem_seg(str(root / "VOC"), "trainval")) == 10
    try:
        assert "toy_digits_sem_seg_test" in register_toy_digits(str(root))
        with pytest.raises(
            DatasetLayoutError, match=r"Dataset 'toy_digits_sem_seg_test': .*000012\.png"
        ):
            DatasetCatalog.get("toy_digits_sem_seg_test")
        shutil.rmtree(root / "VOC" / "SegmentationClass")
        with pytest.raises(DatasetLayoutError, match=r"missing .*SegmentationClass/"):
            check_dataset_layout("toy_digits_sem_seg_test")
    finally:
        register_toy_digits(str(toy_root / "toy_digits"))  # the session's toy data again
    with pytest.raises(DatasetLayoutError, match="no_such_split.txt"):
        load_voc_sem_seg(str(toy_root / "toy_digits" / "VOC"), "no_such_split")


def test_not_registered_without_segmentation_folder(toy_root, tmp_path):
    root = tmp_path / "toy_digits"
    shutil.copytree(
        toy_root / "toy_digits" / "VOC",
        root / "VOC",
        ignore=shutil.ignore_patterns("SegmentationClass"),
    )
    try:
        names = register_toy_digits(str(root))
        assert "toy_digits_trainval" in names and not any("sem_seg" in n for n in names)
    finally:
        register_toy_digits(str(toy_root / "toy_digits"))


# ------------------------------------------------------------------------------------------------
# Determinism and rebuilding
# ------------------------------------------------------------------------------------------------
def _seg_files(root):
    """{relative path: bytes} of every semantic segmentation file."""
    out = {}
    for sub in ("VOC/SegmentationClass", "VOC/ImageSets/Segmentation"):
        for name in sorted(os.listdir(os.path.join(root, sub))):
            with open(os.path.join(root, sub, name), "rb") as f:
                out[f"{sub}/{name}"] = f.read()
    return out


def test_same_args_give_identical_label_pngs(tmp_path, recorded):
    with pytest.MonkeyPatch.context() as mp:
        _few_digits(mp)
        _generate(tmp_path / "again")
        _generate(tmp_path / "other", seed=1)
    first, again = _seg_files(recorded[0]), _seg_files(tmp_path / "again")
    assert len(first) == ARGS["num_trainval"] + ARGS["num_test"] + 2 and first == again
    other = _seg_files(tmp_path / "other")
    assert other["VOC/SegmentationClass/000001.png"] != first["VOC/SegmentationClass/000001.png"]


def test_format_version_3_dataset_is_rebuilt_with_labels(tmp_path):
    root = tmp_path / "toy_digits"
    with pytest.MonkeyPatch.context() as mp:
        _few_digits(mp)
        manifest = _generate(root, num_trainval=2, num_test=2)
        assert manifest["format_version"] == td.FORMAT_VERSION == 4
        expected = _seg_files(root)
        # what format version 3 wrote: no semantic segmentation files
        shutil.rmtree(root / "VOC" / "SegmentationClass")
        shutil.rmtree(root / "VOC" / "ImageSets" / "Segmentation")
        old_counts = {
            s: {k: v for k, v in c.items() if not k.endswith("_pixels")}
            if isinstance(c, dict)
            else c
            for s, c in manifest["counts"].items()
        }
        (root / td.MANIFEST).write_text(
            json.dumps(dict(manifest, counts=old_counts, format_version=3))
        )
        rebuilt = _generate(root, num_trainval=2, num_test=2)
    assert rebuilt == manifest and rebuilt["format_version"] == 4
    with open(root / td.MANIFEST) as f:
        assert json.load(f)["format_version"] == 4
    assert _seg_files(root) == expected

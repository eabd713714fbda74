"""Tests of the toy digit-scene generator (contrastive_det/data/toy/) and its CLI."""

import json
import os
import runpy
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from PIL import Image

from contrastive_det.data.toy import render
from contrastive_det.data.toy import write as td

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = dict(num_trainval=12, num_test=6, seed=0, min_digits=2, max_digits=6)


def _generate(path, **overrides):
    return td.generate_toy_digits(str(path), progress=False, **{**ARGS, **overrides})


@pytest.fixture
def few_digits(monkeypatch):
    """Builds in this test use 20 MNIST digits per class (200 raw and 200 textured crops, not 5000
    of each)."""
    images, labels = render.load_mnist_digits()
    keep = np.concatenate([np.flatnonzero(labels == c)[:20] for c in range(10)])
    monkeypatch.setattr(td, "load_mnist_digits", lambda: (images[keep], labels[keep]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "toy_digits"
    manifest = _generate(root)
    return str(root), manifest


def _voc_dicts(root, split):
    from detectron2.data.datasets.pascal_voc import load_voc_instances

    return load_voc_instances(os.path.join(root, td.VOC_SUBDIR), split, td.TOY_DIGITS_CLASSES)


def _xml_objects(root, image_id):
    tree = ET.parse(os.path.join(root, td.VOC_SUBDIR, "Annotations", image_id + ".xml"))
    objs = []
    for obj in tree.findall("object"):
        box = [int(obj.find("bndbox/" + k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        objs.append((obj.find("name").text, int(obj.find("difficult").text), box))
    return tree, objs


def _annotation_files(root):
    """{relative path: bytes} of every annotation / index / manifest file."""
    out = {}
    for sub in ("VOC/Annotations", "VOC/ImageSets/Main", td.COCO_ANN_DIR):
        for name in sorted(os.listdir(os.path.join(root, sub))):
            with open(os.path.join(root, sub, name), "rb") as f:
                out[f"{sub}/{name}"] = f.read()
    with open(os.path.join(root, td.MANIFEST), "rb") as f:
        out[td.MANIFEST] = f.read()
    return out


# ------------------------------------------------------------------------------------------------
# Formats
# ------------------------------------------------------------------------------------------------
def test_detectron2_voc_loader_reads_both_splits(dataset):
    root, _ = dataset
    trainval, test = _voc_dicts(root, "trainval"), _voc_dicts(root, "test")
    assert [d["image_id"] for d in trainval] == [f"{i:06d}" for i in range(1, 13)]
    assert [d["image_id"] for d in test] == [f"{i:06d}" for i in range(13, 19)]
    for d in trainval + test:
        with Image.open(d["file_name"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert im.size == (d["width"], d["height"])
        assert 192 <= d["width"] <= 256 and 192 <= d["height"] <= 256
        tree, _ = _xml_objects(root, d["image_id"])
        assert tree.find("size/depth").text == "3"
        assert tree.find("filename").text == d["image_id"] + ".jpg"
        for ann in d["annotations"]:
            assert 0 <= ann["category_id"] < 10


def test_coco_json_matches_voc_exactly(dataset):
    from pycocotools.coco import COCO

    root, _ = dataset
    for split in td.SPLITS:
        coco = COCO(os.path.join(root, td.COCO_ANN_DIR, f"instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))] == list(
            td.TOY_DIGITS_CLASSES
        )
        assert sorted(coco.getCatIds()) == list(range(1, 11))
        voc = _voc_dicts(root, split)
        assert sorted(coco.getImgIds()) == [int(d["image_id"]) for d in voc]
        for d in voc:
            img = coco.loadImgs(int(d["image_id"]))[0]
            assert img["file_name"] == d["image_id"] + ".jpg"
            assert (img["width"], img["height"]) == (d["width"], d["height"])
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            from_coco = sorted(
                (
                    a["category_id"] - 1,
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                )
                for a in anns
            )
            from_voc = sorted((a["category_id"], *a["bbox"]) for a in d["annotations"])
            assert from_coco == from_voc
            _, xml_objs = _xml_objects(root, d["image_id"])
            assert sorted(a["difficult"] for a in anns) == sorted(o[1] for o in xml_objs)
            for a in anns:
                # area of the mask
                assert a["area"] == int(coco.annToMask(a).sum()) and a["iscrowd"] == 0


def _masks_by_image(root, split):
    """{image id: [(annotation, HxW uint8 mask), ...] in drawing order} from the COCO JSON."""
    from pycocotools.coco import COCO

    coco = COCO(os.path.join(root, td.COCO_ANN_DIR, f"instances_{split}.json"))
    out = {}
    for img_id in sorted(coco.getImgIds()):
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=img_id)), key=lambda a: a["id"])
        out[img_id] = (coco.loadImgs(img_id)[0], [(a, coco.annToMask(a)) for a in anns])
    return out


def _tight(mask):
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_coco_masks_are_the_visible_digit_strokes(dataset):
    from pycocotools import mask as mask_util

    root, _ = dataset
    n_occluded = 0
    for split in td.SPLITS:
        for img, anns in _masks_by_image(root, split).values():
            image = np.asarray(
                Image.open(os.path.join(root, td.VOC_SUBDIR, "JPEGImages", img["file_name"]))
            )
            union = np.zeros((img["height"], img["width"]), np.uint8)
            for k, (a, m) in enumerate(anns):
                seg = a["segmentation"]
                assert isinstance(seg["counts"], str) and seg["size"] == [
                    img["height"],
                    img["width"],
                ]  # compressed RLE
                assert m.shape == (img["height"], img["width"]) and a["area"] == int(m.sum()) > 0
                assert mask_util.area(seg) == a["area"]  # pycocotools reads it as it is
                x, y, w, h = a["bbox"]
                assert m[y : y + h, x : x + w].sum() == m.sum()  # inside the box
                # the last digit drawn is never covered: its strokes fill the box
                if k == len(anns) - 1:
                    assert _tight(m) == (x, y, x + w - 1, y + h - 1)
                # the mask is drawn ink: its mean colour is not the image's mean colour
                assert not np.array_equal(
                    image[m.astype(bool)].mean(0).round(), image.mean((0, 1)).round()
                )
                n_occluded += int(_tight(m) != (x, y, x + w - 1, y + h - 1))
                assert not (
                    union & m
                ).any()  # visible parts: every pixel belongs to one digit at most
                union |= m
            # strokes are thin: a mask covers well under its box
            assert all(a["area"] < a["bbox"][2] * a["bbox"][3] for a, _ in anns)
    assert n_occluded >= 1  # some digit is partly hidden by a later one


def test_render_scene_masks_are_strokes_minus_later_strokes():
    images, labels = render.load_mnist_digits()
    pools = render.pools_by_class(labels, np.arange(len(labels)))
    for k in range(30):
        rng = np.random.RandomState([11, 0, k])
        _, objects = render.render_scene(rng, images, pools, 6, (128, 160))
        union = np.zeros((128, 160), bool)
        for obj in reversed(objects):  # from the last drawn (on top) to the first
            mask = obj["mask"]
            assert mask.dtype == bool and mask.shape == (128, 160)
            assert not (mask & union).any()
            x0, y0, x1, y1 = obj["box"]
            assert mask[y0 : y1 + 1, x0 : x1 + 1].sum() == mask.sum()
            union |= mask
        assert _tight(objects[-1]["mask"]) == objects[-1]["box"]


def test_detectron2_loads_the_masks_for_mask_rcnn(dataset):
    from detectron2.data import DatasetMapper
    from detectron2.data.datasets import load_coco_json
    from detectron2.structures import BitMasks

    from contrastive_det.config import get_cfg

    root, _ = dataset
    dicts = load_coco_json(
        os.path.join(root, td.COCO_ANN_DIR, "instances_test.json"),
        os.path.join(root, td.VOC_SUBDIR, "JPEGImages"),
    )
    assert all("segmentation" in a for d in dicts for a in d["annotations"])
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "toy", "digits_mask_R_50_C4.yaml"))
    mapped = DatasetMapper(cfg, is_train=True)(dicts[0])
    inst = mapped["instances"]
    assert isinstance(inst.gt_masks, BitMasks) and len(inst.gt_masks) == len(
        dicts[0]["annotations"]
    )
    assert tuple(inst.gt_masks.tensor.shape[1:]) == tuple(mapped["image"].shape[1:])
    # the masks follow the resize (and flip): each still lies inside its box
    boxes = inst.gt_boxes.tensor
    for m, (x0, y0, x1, y1) in zip(inst.gt_masks.tensor, boxes.tolist()):
        ys, xs = np.nonzero(m.numpy())
        assert (
            len(ys)
            and xs.min() >= x0 - 2
            and xs.max() <= x1 + 2
            and ys.min() >= y0 - 2
            and ys.max() <= y1 + 2
        )


def test_boxes_inside_image_and_tight(dataset):
    root, _ = dataset
    for d in _voc_dicts(root, "trainval") + _voc_dicts(root, "test"):
        _, objs = _xml_objects(root, d["image_id"])
        for _, _, (x0, y0, x1, y1) in objs:
            assert 1 <= x0 <= x1 <= d["width"] and 1 <= y0 <= y1 <= d["height"]
    # Tightness of the box of a resized digit: stroke pixels touch all four sides, none outside.
    images, labels = render.load_mnist_digits()
    for index, height, aspect in (
        (0, 20.0, 1.0),
        (1234, 45.0, 0.9),
        (4999, 78.0, 1.15),
        (2500, 10.0, 1.0),
    ):
        alpha, (x0, y0, x1, y1) = render._digit_patch(images[index], height, aspect)
        stroke = alpha > render.STROKE_THRESHOLD
        assert stroke[y0, x0 : x1 + 1].any() and stroke[y1, x0 : x1 + 1].any()
        assert stroke[y0 : y1 + 1, x0].any() and stroke[y0 : y1 + 1, x1].any()
        assert stroke.sum() == stroke[y0 : y1 + 1, x0 : x1 + 1].sum()
        assert abs((y1 - y0 + 1) - height) <= 2.5
    # A "1" gets a narrow box (a box around the square 28x28 frame would not).
    ones = np.flatnonzero(labels == 1)[:20]
    widths = []
    for i in ones:
        _, (x0, _, x1, _) = render._digit_patch(images[i], 60.0, 1.0)
        widths.append(x1 - x0 + 1)
    assert np.median(widths) < 0.8 * 60 and min(widths) < 0.3 * 60


# ------------------------------------------------------------------------------------------------
# Digit split and crops
# ------------------------------------------------------------------------------------------------
def test_digit_split_disjoint_complete_stratified(dataset):
    root, manifest = dataset
    train, test = manifest["train_digit_indices"], manifest["test_digit_indices"]
    assert set(train).isdisjoint(test)
    assert sorted(train + test) == list(range(5000))
    _, labels = render.load_mnist_digits()
    assert np.bincount(labels[test], minlength=10).tolist() == [100] * 10
    assert np.bincount(labels[train], minlength=10).tolist() == [400] * 10
    # Deterministic by seed, different for another seed.
    tr2, te2 = render.split_digit_indices(labels, 0.2, 0)
    assert te2.tolist() == test and tr2.tolist() == train
    assert render.split_digit_indices(labels, 0.2, 1)[1].tolist() != test


def test_crops_follow_the_split(dataset):
    root, manifest = dataset
    images, labels = render.load_mnist_digits()
    for split, key in (("train", "train_digit_indices"), ("test", "test_digit_indices")):
        indices = manifest[key]
        for c, name in enumerate(td.TOY_DIGITS_CLASSES):
            files = os.listdir(os.path.join(root, td.CROPS_SUBDIR, split, name))
            expected = {f"{i}.png" for i in indices if labels[i] == c}
            assert set(files) == expected
        i = indices[len(indices) // 2]
        with Image.open(
            os.path.join(root, td.CROPS_SUBDIR, split, str(labels[i]), f"{i}.png")
        ) as im:
            assert im.mode == "L" and np.array_equal(np.asarray(im), images[i])


def _sample(indices, step=25):
    return [int(i) for i in indices[::step]]


def test_textured_crops_follow_the_split(dataset):
    root, manifest = dataset
    images, labels = render.load_mnist_digits()
    assert sorted(os.listdir(os.path.join(root, td.CROPS_TEXTURED_SUBDIR))) == ["test", "train"]
    for split, key in (("train", "train_digit_indices"), ("test", "test_digit_indices")):
        indices = manifest[key]
        assert manifest["counts"][f"crops_textured_{split}"] == len(indices)
        split_dir = os.path.join(root, td.CROPS_TEXTURED_SUBDIR, split)
        assert sorted(os.listdir(split_dir)) == sorted(td.TOY_DIGITS_CLASSES)
        for c, name in enumerate(td.TOY_DIGITS_CLASSES):
            assert set(os.listdir(os.path.join(split_dir, name))) == {
                f"{i}.png" for i in indices if labels[i] == c
            }
        for i in _sample(indices):
            with Image.open(os.path.join(split_dir, str(labels[i]), f"{i}.png")) as im:
                assert im.format == "PNG" and im.mode == "RGB" and im.size == (64, 64)
                pixels = np.asarray(im)
            # the file is the digit's own stream: it does not depend on the other digits or their
            # order
            expected, _ = render.render_textured_crop(render.textured_crop_rng(0, i), images[i])
            assert np.array_equal(pixels, expected)


def _ring_and_far(mask):
    """Pixels 2 px around the strokes and pixels more than 2 px away, as HxW bool."""
    near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    touching = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return near & ~touching, ~near


def test_textured_crops_are_another_domain_than_the_raw_crops(dataset):
    root, manifest = dataset
    images, labels = render.load_mnist_digits()
    bg_spread = []
    for i in _sample(manifest["train_digit_indices"], 40) + _sample(
        manifest["test_digit_indices"], 10
    ):
        split = "train" if i in set(manifest["train_digit_indices"]) else "test"
        with Image.open(
            os.path.join(root, td.CROPS_SUBDIR, split, str(labels[i]), f"{i}.png")
        ) as im:
            raw = np.asarray(im)  # 28x28 grayscale, background exactly 0
        assert raw.ndim == 2 and (raw[np.asarray(images[i]) == 0] == 0).all()
        with Image.open(
            os.path.join(root, td.CROPS_TEXTURED_SUBDIR, split, str(labels[i]), f"{i}.png")
        ) as im:
            img = np.asarray(im).astype(np.float32)  # 64x64x3
        _, info = render.render_textured_crop(render.textured_crop_rng(0, i), images[i])
        ring, far = _ring_and_far(info["mask"])
        assert (img.max(axis=2) - img.min(axis=2)).mean() > 10  # coloured, not grey
        spread = cv2.blur(img, (5, 5))[far].std(axis=0).max()  # texture beyond the sensor noise
        assert spread > 2
        bg_spread.append(spread)
        lum = img @ np.array([0.299, 0.587, 0.114], np.float32)  # 64x64
        # the digit stands out from what is around it
        assert abs(lum[info["mask"]].mean() - lum[ring].mean()) > 15
    assert np.median(bg_spread) > 20


def _orientation(mask):
    """Orientation (degrees) of the principal axis of a mask's pixels, image coordinates."""
    ys, xs = np.nonzero(mask)
    xs, ys = xs - xs.mean(), ys - ys.mean()
    return 0.5 * np.degrees(np.arctan2(2 * (xs * ys).mean(), (xs * xs).mean() - (ys * ys).mean()))


def test_render_textured_crop_rotation_scale_and_placement():
    images, labels = render.load_mnist_digits()
    angles, fractions, mnist_heights, errors = [], [], [], []
    for i in range(0, 5000, 17):
        image, info = render.render_textured_crop(render.textured_crop_rng(3, i), images[i])
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        mask = info["mask"]
        ys, xs = np.nonzero(mask)
        # whole digit inside
        assert len(ys) > 0 and xs.min() >= 1 and ys.min() >= 1 and xs.max() <= 62 and ys.max() <= 62
        assert abs(info["angle"]) <= render.TEXTURED_MAX_ROTATION
        angles.append(info["angle"])
        upright = images[i] > render.STROKE_THRESHOLD * 255  # 28x28
        up_ys, _ = np.nonzero(upright)
        mnist_heights.append(up_ys.max() - up_ys.min() + 1)
        # the stroke area grows with the square of the scale, whatever the rotation: the drawn
        # height (before rotation) as a fraction of the crop side, estimated from the pixels
        fractions.append(np.sqrt(mask.sum() / upright.sum()) * mnist_heights[-1] / 64)
        if labels[i] == 1:  # an elongated digit: its axis turns by -angle (image y points down)
            errors.append(
                abs((_orientation(mask) - _orientation(upright) + info["angle"] + 90) % 180 - 90)
            )
    assert min(angles) < -20 and max(angles) > 20 and np.std(angles) > 10
    # scaled to a random height (TEXTURED_HEIGHT_RANGE, 0.45-0.75 of the side; the area estimate is
    # ~4% high), not to a fixed factor of the MNIST height
    assert 0.4 < min(fractions) and max(fractions) < 0.9 and np.std(fractions) > 0.06
    assert abs(np.corrcoef(fractions, mnist_heights)[0, 1]) < 0.35
    assert len(errors) >= 20 and np.median(errors) < 3 and np.mean(np.array(errors) < 8) > 0.8
    # the stream is the seed's and the digit's: another seed, another crop; the same, the same
    # pixels
    a, _ = render.render_textured_crop(render.textured_crop_rng(3, 17), images[17])
    b, _ = render.render_textured_crop(render.textured_crop_rng(3, 17), images[17])
    c, _ = render.render_textured_crop(render.textured_crop_rng(4, 17), images[17])
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_scenes_use_only_their_split_digits(dataset):
    root, manifest = dataset
    for split, key in (("trainval", "train_digit_indices"), ("test", "test_digit_indices")):
        with open(os.path.join(root, td.COCO_ANN_DIR, f"instances_{split}.json")) as f:
            anns = json.load(f)["annotations"]
        used = {a["mnist_index"] for a in anns}
        assert used and used <= set(manifest[key])
        _, labels = render.load_mnist_digits()
        assert all(labels[a["mnist_index"]] == a["category_id"] - 1 for a in anns)


# ------------------------------------------------------------------------------------------------
# Scene statistics
# ------------------------------------------------------------------------------------------------
def test_objects_per_image_difficult_and_overlap(dataset):
    root, manifest = dataset
    n_objects = n_difficult = n_overlap = 0
    for split in td.SPLITS:
        for d in _voc_dicts(root, split):
            _, objs = _xml_objects(root, d["image_id"])
            assert ARGS["min_digits"] <= len(objs) <= ARGS["max_digits"]
            flags = [o[1] for o in objs]
            assert set(flags) <= {0, 1} and not all(flags)
            n_objects += len(objs)
            n_difficult += sum(flags)
            for i in range(len(objs)):
                for j in range(i):
                    iou = render._box_iou(objs[i][2], objs[j][2])
                    assert iou <= render.MAX_OVERLAP_IOU + 1e-9
                    n_overlap += iou > 0
        assert manifest["counts"][split]["objects"] == sum(
            len(_xml_objects(root, d["image_id"])[1]) for d in _voc_dicts(root, split)
        )
    assert (
        n_difficult
        == manifest["counts"]["trainval"]["difficult"] + manifest["counts"]["test"]["difficult"]
    )
    assert 0 < n_difficult < 0.3 * n_objects
    assert n_overlap >= 1


def test_difficult_rate_over_many_scenes():
    images, labels = render.load_mnist_digits()
    train, _ = render.split_digit_indices(labels, 0.2, 0)
    pools = render.pools_by_class(labels, train)
    n = difficult = 0
    reasons = set()
    for k in range(150):
        rng = np.random.RandomState([7, 0, k])
        image, objects = render.render_scene(rng, images, pools, int(rng.randint(2, 7)), (200, 240))
        assert image.shape == (200, 240, 3) and image.dtype == np.uint8
        assert not all(o["difficult"] for o in objects)
        n += len(objects)
        difficult += sum(o["difficult"] for o in objects)
        reasons.update(r for o in objects for r in o["reason"])
    assert 0.04 <= difficult / n <= 0.18
    assert reasons == {"small", "occluded", "low_contrast"}


# ------------------------------------------------------------------------------------------------
# Determinism, reuse, atomicity, arguments
# ------------------------------------------------------------------------------------------------
def _image_files(root, sub):
    """{path relative to ``sub``: decoded pixels} of every image under root/sub."""
    out = {}
    for dirpath, _, files in os.walk(os.path.join(root, sub)):
        for name in files:
            with Image.open(os.path.join(dirpath, name)) as im:
                out[os.path.relpath(os.path.join(dirpath, name), os.path.join(root, sub))] = (
                    np.asarray(im)
                )
    return out


def test_same_seed_identical_other_seed_different(tmp_path, few_digits):
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    manifest = _generate(first)
    again = _generate(second)
    assert again == manifest
    files_a, files_b = _annotation_files(first), _annotation_files(second)
    assert files_a.keys() == files_b.keys() and files_a == files_b
    assert b"time" not in files_a[td.MANIFEST]
    for sub, count in (
        (os.path.join(td.VOC_SUBDIR, "JPEGImages"), 18),
        (td.CROPS_SUBDIR, 200),
        (td.CROPS_TEXTURED_SUBDIR, 200),
    ):
        images_a, images_b = _image_files(first, sub), _image_files(second, sub)
        assert images_a.keys() == images_b.keys() and len(images_a) == count
        assert all(np.array_equal(images_a[k], images_b[k]) for k in images_a)  # identical pixels

    other = _generate(tmp_path / "other", seed=1)
    files_c = _annotation_files(str(tmp_path / "other"))
    assert files_c["VOC/Annotations/000001.xml"] != files_a["VOC/Annotations/000001.xml"]
    assert (
        files_c["coco/annotations/instances_test.json"]
        != files_a["coco/annotations/instances_test.json"]
    )
    assert other["test_digit_indices"] != manifest["test_digit_indices"]
    textured_a = _image_files(first, td.CROPS_TEXTURED_SUBDIR)
    textured_c = _image_files(str(tmp_path / "other"), td.CROPS_TEXTURED_SUBDIR)
    common = textured_c.keys() & textured_a.keys()  # digits in the same split under both seeds
    assert common and not any(np.array_equal(textured_c[k], textured_a[k]) for k in common)


def test_reuse_with_same_args_does_not_regenerate(dataset):
    root, manifest = dataset
    watched = [
        os.path.join(root, td.MANIFEST),
        os.path.join(root, "VOC", "JPEGImages", "000001.jpg"),
    ]
    before = [os.stat(p).st_mtime_ns for p in watched]
    again = _generate(root)
    assert again == manifest
    assert [os.stat(p).st_mtime_ns for p in watched] == before
    assert sorted(os.listdir(os.path.dirname(root))) == ["toy_digits"]  # no temporary leftovers


def test_dataset_of_an_older_format_version_is_rebuilt(tmp_path, few_digits):
    root = tmp_path / "toy_digits"
    manifest = _generate(root, num_trainval=2, num_test=2)
    coco = root / td.COCO_ANN_DIR / "instances_test.json"
    expected = coco.read_bytes()
    textured = root / td.CROPS_TEXTURED_SUBDIR / "test" / "3"
    expected_textured = {p.name: p.read_bytes() for p in textured.iterdir()}
    # 20 digits of class 3 in this build, 20% of them in the test part
    assert len(expected_textured) == 4
    old = json.loads(coco.read_text())
    for a in old["annotations"]:  # what format version 1 wrote: no masks
        del a["segmentation"]
    coco.write_text(json.dumps(old))
    shutil.rmtree(root / td.CROPS_TEXTURED_SUBDIR)  # nor textured crops (versions 1 and 2)
    counts = {k: v for k, v in manifest["counts"].items() if not k.startswith("crops_textured")}
    # format version 2 is the newest without textured crops: such a dataset must be rebuilt, not
    # reused
    (root / td.MANIFEST).write_text(json.dumps(dict(manifest, counts=counts, format_version=2)))
    assert _generate(root, num_trainval=2, num_test=2) == manifest
    assert coco.read_bytes() == expected
    assert {p.name: p.read_bytes() for p in textured.iterdir()} == expected_textured
    # a newer format version than this code knows is not downgraded
    (root / td.MANIFEST).write_text(
        json.dumps(dict(manifest, format_version=td.FORMAT_VERSION + 1))
    )
    with pytest.raises(FileExistsError, match="format version"):
        _generate(root, num_trainval=2, num_test=2)


def test_existing_dir_with_other_args_raises(dataset, tmp_path):
    root, manifest = dataset
    with pytest.raises(FileExistsError, match="overwrite=True") as info:
        _generate(root, num_test=7)
    assert root in str(info.value)
    with open(os.path.join(root, td.MANIFEST)) as f:
        assert json.load(f) == manifest  # untouched
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=str(unrelated)):
        _generate(unrelated)
    assert (unrelated / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_atomically(tmp_path, few_digits):
    target = tmp_path / "toy_digits"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    manifest = _generate(target, num_trainval=2, num_test=2, overwrite=True)
    assert manifest["args"]["num_trainval"] == 2 and manifest["counts"]["test"]["images"] == 2
    assert not (target / "stale.txt").exists()
    assert sorted(os.listdir(target / "VOC" / "JPEGImages")) == [
        f"{i:06d}.jpg" for i in range(1, 5)
    ]
    assert sorted(os.listdir(tmp_path)) == ["toy_digits"]


@pytest.mark.parametrize("writer", ["_write_crops", "_write_textured_crops"])
def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch, few_digits, writer):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(td, writer, boom)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path / "toy_digits", num_trainval=2, num_test=2)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(min_digits=4, max_digits=3), "min_digits"),
        (dict(min_digits=0), "min_digits"),
        (dict(max_digits=21), "max_digits"),
        (dict(num_test=0), "num_test"),
        (dict(num_test=1), "num_test"),
        (dict(num_trainval=-1), "num_trainval"),
        (dict(num_trainval=2.5), "num_trainval"),
        (dict(test_digit_fraction=0.0), "test_digit_fraction"),
        (dict(test_digit_fraction=1.0), "test_digit_fraction"),
        (dict(seed=-1), "seed"),
        (dict(image_size=(300, 200)), "image_size"),
        (dict(image_size=(32, 64)), "image_size"),
        (dict(image_size=256), "image_size"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, overrides, name):
    with pytest.raises(ValueError, match=name):
        _generate(tmp_path / "toy_digits", **overrides)
    assert os.listdir(tmp_path) == []


def test_cli_runs(tmp_path, few_digits, capsys):
    out = tmp_path / "cli" / "toy_digits"
    args = [
        "--output",
        str(out),
        "--num-trainval",
        "3",
        "--num-test",
        "2",
        "--min-digits",
        "1",
        "--max-digits",
        "3",
        "--seed",
        "5",
    ]
    # the build in this process (20 digits per class), the script itself in a subprocess below
    cli = runpy.run_path(os.path.join(REPO_ROOT, "datasets", "prepare_toy_digits.py"))
    cli["main"](args + ["--no-progress"])
    stdout = capsys.readouterr().out
    assert str(out) in stdout
    with open(out / td.MANIFEST) as f:
        manifest = json.load(f)
    assert manifest["args"]["seed"] == 5 and manifest["args"]["max_digits"] == 3
    c = manifest["counts"]["trainval"]
    assert f"images {c['images']:5d}  objects {c['objects']:6d}" in stdout
    assert (
        "crops    train 160  test 40" in stdout and "textured crops  train 160  test 40" in stdout
    )
    assert sorted(os.listdir(out / "VOC" / "JPEGImages")) == [f"{i:06d}.jpg" for i in range(1, 6)]
    # run as a script: other arguments on the existing folder -> an error that names --overwrite
    cmd = (
        [sys.executable, "datasets/prepare_toy_digits.py"]
        + args[:-2]
        + ["--seed", "6", "--no-progress"]
    )
    bad = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "overwrite" in bad.stderr and str(out) in bad.stderr

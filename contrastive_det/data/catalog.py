"""Registration of the built-in toy datasets and of user datasets declared in the config."""
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.pascal_voc import load_voc_instances

from .classification import load_class_folders
from .paths import datasets_root
from .toy_constants import COCO_ANN_DIR, CROPS_SUBDIR, TOY_DIGITS_CLASSES, VOC_SUBDIR, default_output_dir

logger = logging.getLogger(__name__)


def _register(name, loader, **metadata):
    """Register ``name`` (idempotent; re-registering with other metadata replaces the entry)."""
    if name in DatasetCatalog.list():
        old = MetadataCatalog.get(name).as_dict()
        if all(old.get(k) == v for k, v in metadata.items()):
            return
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)


def register_voc(name, dirname, split, class_names, year=2007):
    """A dataset in Pascal VOC layout, evaluated with detectron2's VOC evaluator (2007: 11-point)."""
    class_names = list(class_names)
    _register(
        name,
        lambda: load_voc_instances(dirname, split, class_names),
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
    _register(name, lambda: load_coco_json(json_file, image_root, name), **metadata)


def register_classification(name, root, class_names=None):
    """A class-per-folder classification set (``root/<class>/<image>``)."""
    metadata = dict(image_root=root, evaluator_type="classification")
    if class_names:
        metadata["classes"] = list(class_names)
    _register(name, lambda: load_class_folders(root, class_names), **metadata)


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
    for split in ("train", "test"):
        crops = os.path.join(root, CROPS_SUBDIR, split)
        if os.path.isdir(crops):
            register_classification(f"toy_digits_cls_{split}", crops, TOY_DIGITS_CLASSES)
            names.append(f"toy_digits_cls_{split}")
    return names


def register_imagenet(root=None):
    """
    ImageNet in its class-per-folder layout, ``$DETECTRON2_DATASETS/imagenet/{train,val}/<wnid>/``,
    as ``imagenet_train`` and ``imagenet_val`` (registered lazily, like detectron2's builtins: a
    missing folder is reported when a run uses the name). Labels follow the sorted wnids of train.
    """
    root = root or os.path.join(datasets_root(), "imagenet")
    train = os.path.join(root, "train")

    def classes():
        return sorted(d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d)))

    for split in ("train", "val"):
        split_root = os.path.join(root, split)
        name = f"imagenet_{split}"
        _register(
            name,
            lambda split_root=split_root: load_class_folders(split_root, classes()),
            image_root=split_root,
            evaluator_type="classification",
        )
    return ["imagenet_train", "imagenet_val"]


_CUSTOM_KEYS = {
    "voc": ({"NAME", "FORMAT", "ROOT", "SPLIT", "CLASSES"}, {"YEAR"}),
    "coco": ({"NAME", "FORMAT", "JSON", "IMAGE_ROOT"}, {"CLASSES"}),
    "folder": ({"NAME", "FORMAT", "ROOT"}, {"CLASSES"}),
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
            raise ValueError(f"{where} must be a mapping with keys NAME, FORMAT, ...; got {entry!r}")
        fmt = str(entry.get("FORMAT", "")).lower()
        if fmt not in _CUSTOM_KEYS:
            raise ValueError(f"{where}.FORMAT must be one of {sorted(_CUSTOM_KEYS)}, got {entry.get('FORMAT')!r}")
        required, optional = _CUSTOM_KEYS[fmt]
        missing = sorted(required - set(entry))
        unknown = sorted(set(entry) - required - optional)
        if missing:
            raise ValueError(f"{where} (FORMAT {fmt}) is missing key(s) {missing}; required: {sorted(required)}")
        if unknown:
            raise ValueError(
                f"{where} (FORMAT {fmt}) has unknown key(s) {unknown}; allowed: {sorted(required | optional)}"
            )
        classes = entry.get("CLASSES")
        if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
            raise ValueError(f"{where}.CLASSES must be a list of class names, got {classes!r}")
        name = entry["NAME"]
        if fmt == "voc":
            register_voc(name, os.path.expanduser(entry["ROOT"]), entry["SPLIT"], classes, int(entry.get("YEAR", 2007)))
        elif fmt == "folder":
            register_classification(name, os.path.expanduser(entry["ROOT"]), classes)
        else:
            register_coco(name, os.path.expanduser(entry["JSON"]), os.path.expanduser(entry["IMAGE_ROOT"]), classes)
        logger.info(f"Registered {fmt} dataset '{name}' from {where}")
        names.append(name)
    return names

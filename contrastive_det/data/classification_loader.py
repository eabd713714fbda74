"""
Loaders of classification transfer: the image mapper (training crop + flip, test resize + centre
crop), the validation split, and the loaders of the SGD protocols and of the frozen-feature
protocols (several splits in one pass, cached splits left out).
"""

import logging
import os

from torchvision.transforms import v2 as T

from detectron2.data import MetadataCatalog, build_detection_test_loader

from ..utils.file_digest import file_sha256
from .classification import (
    dataset_classes,
    dataset_dicts,
    read_classification_image,
    relabel_by_name,
)
from .datasets.downstream.splits import fraction_held_out, stratified_holdout
from .paths import datasets_root
from .loader_signals import shield_workers
from .samplers import build_resumable_train_loader
from .study_axes import apply_label_map, load_label_map, mapped_classes
from .transforms import to_chw_uint8

logger = logging.getLogger(__name__)

#: keys of a dataset dict that travel to the model and evaluator (besides the image)
PASSED_KEYS = ("image_id", "label", "labels", "ignore_labels", "probe_split")


#: ``INPUT.CLS.TEST_PIPELINE`` presets: the test (and frozen-feature) image pipeline of each
# reference, : as ``(description, cfg.INPUT.CLS -> list of torchvision v2 transforms)``
TEST_PIPELINES = {
    # MoCo's lincls (ImageNet): shorter side to TEST_RESIZE (256), centre crop CROP_SIZE (224),
    # bilinear
    "resize_crop": (
        "resize the shorter side to TEST_RESIZE, centre crop CROP_SIZE (bilinear; MoCo lincls)",
        lambda c: [T.Resize(c.TEST_RESIZE, antialias=True), T.CenterCrop(c.CROP_SIZE)],
    ),
    # ssl-transfer's linear.py / few-shot (Kornblith et al.'s sets): the shorter side to CROP_SIZE,
    # bicubic, then the centre CROP_SIZE square: a square image (CIFAR, SVHN) loses nothing
    "ssl_transfer": (
        "resize the shorter side to CROP_SIZE (bicubic), centre crop CROP_SIZE (ssl-transfer)",
        lambda c: [
            T.Resize(c.CROP_SIZE, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(c.CROP_SIZE),
        ],
    ),
    # Islam et al.'s transfer code (the cross-domain few-shot benchmark's loader): a square resize
    # to int(1.15 x CROP_SIZE) whatever the aspect ratio, then the centre CROP_SIZE square, bilinear
    "islam": (
        "resize to a square of int(1.15 x CROP_SIZE), centre crop CROP_SIZE (bilinear; Islam et "
        "al.)",
        lambda c: [
            T.Resize([int(c.CROP_SIZE * 1.15)] * 2, antialias=True),
            T.CenterCrop(c.CROP_SIZE),
        ],
    ),
}


def check_test_pipeline(cfg):
    """``INPUT.CLS.TEST_PIPELINE`` is a preset of :data:`TEST_PIPELINES`; else ValueError naming
    them."""
    name = cfg.INPUT.CLS.TEST_PIPELINE
    if name not in TEST_PIPELINES:
        raise ValueError(
            f"INPUT.CLS.TEST_PIPELINE must be one of {', '.join(TEST_PIPELINES)}, got {name!r}"
        )
    return name


def build_classification_transform(cfg, is_train):
    """Training: RandomResizedCrop + flip (INPUT.CLS); test: the ``INPUT.CLS.TEST_PIPELINE``
    preset."""
    c = cfg.INPUT.CLS
    if is_train:
        return T.Compose(
            [
                T.RandomResizedCrop(c.CROP_SIZE, scale=tuple(c.CROP_SCALE), antialias=True),
                T.RandomHorizontalFlip(c.FLIP_PROB),
            ]
        )
    return T.Compose(TEST_PIPELINES[check_test_pipeline(cfg)][1](c))


def describe_test_transform(cfg):
    """The test transform and the input normalisation as a string (part of the feature cache
    key)."""
    c = cfg.INPUT.CLS
    mean = ",".join(repr(float(v)) for v in cfg.MODEL.PIXEL_MEAN)
    std = ",".join(repr(float(v)) for v in cfg.MODEL.PIXEL_STD)
    return (
        f"{check_test_pipeline(cfg)}-resize{c.TEST_RESIZE}-centercrop{c.CROP_SIZE}-{cfg.INPUT.FORMAT}"
        f"-mean[{mean}]-std[{std}]"
    )


class ClassificationMapper:
    """
    Dataset dict (see contrastive_det/data/classification.py) -> ``{"image": 3xHxW uint8 RGB tensor,
    "image_id", "label" | "labels"/"ignore_labels", ["probe_split"]}``. Augmentation randomness
    comes from torch's global generator, which the resumable loader seeds per item.
    """

    def __init__(self, cfg, is_train):
        self.transform = build_classification_transform(cfg, is_train)

    def __call__(self, dataset_dict):
        image = self.transform(read_classification_image(dataset_dict))
        out = {k: dataset_dict[k] for k in PASSED_KEYS if k in dataset_dict}
        out["image"] = to_chw_uint8(image)
        return out


def check_labels(dicts, num_classes, name):
    """Every label in [0, num_classes); the first one outside raises naming the image and
    dataset."""
    for d in dicts:
        labels = list(d.get("labels", [])) + list(d.get("ignore_labels", []))
        if "labels" not in d:
            labels.append(int(d["label"]))
        for y in labels:
            if not 0 <= int(y) < num_classes:
                raise ValueError(
                    f"Dataset '{name}': image {d.get('image_id', d.get('file_name'))} has label "
                    f"{y}, outside [0, {num_classes}) (MODEL.CLASSIFIER.NUM_CLASSES / the "
                    f"dataset's classes)"
                )


def training_classes(cfg):
    """
    ``(classes, reference)``: the class names that define the labels of every split of a
    classification transfer, the classes of ``DATASETS.TRAIN[0]`` (the label order of the trained
    head, see ``resolve_num_classes``), and a phrase naming them for messages; ``(None, "")`` when
    that set records no class names (its labels are used as they are).
    """
    if not cfg.DATASETS.TRAIN:
        return None, ""
    name = cfg.DATASETS.TRAIN[0]
    return dataset_classes(name), f"the training set '{name}'"


# ----------------------------------------------------------------------------------------------
# Coarser labels: CLASSIFICATION.LABEL_MAP (fine class name -> coarse class name)
# ----------------------------------------------------------------------------------------------
LABEL_MAP_KEY = "CLASSIFICATION.LABEL_MAP"
_DATASETS_VARIABLES = ("${DETECTRON2_DATASETS}", "$DETECTRON2_DATASETS")


def label_map_file(cfg):
    """
    The file of ``CLASSIFICATION.LABEL_MAP`` ("" when unset): a leading ``$DETECTRON2_DATASETS``
    (or ``${DETECTRON2_DATASETS}``) is the dataset root (:func:`~.paths.datasets_root`, ``datasets``
    when the variable is unset), ``~`` is the home folder; a relative path starts at the cwd.
    """
    path = cfg.CLASSIFICATION.LABEL_MAP
    for variable in _DATASETS_VARIABLES:
        if path == variable or path.startswith(variable + "/"):
            path = datasets_root() + path[len(variable) :]
            break
    return os.path.expanduser(path)


def transfer_label_map(cfg):
    """``(mapping, file)`` of ``CLASSIFICATION.LABEL_MAP`` (the pretraining label maps' reader and
    format, :func:`~.study_axes.load_label_map`), or ``(None, "")`` when the fine labels are
    used."""
    path = label_map_file(cfg)
    return (load_label_map(path, LABEL_MAP_KEY), path) if path else (None, "")


def label_map_record(cfg):
    """What ``results.json`` records of the label map: ``{"file" (as configured), "path",
    "sha256"}``, or None."""
    mapping, path = transfer_label_map(cfg)  # a missing or malformed file raises naming the key
    if mapping is None:
        return None
    return {
        "file": cfg.CLASSIFICATION.LABEL_MAP,
        "path": os.path.abspath(path),
        "sha256": file_sha256(path),
    }


def label_map_identity(cfg):
    """ "" without a label map, else ``"labelmap-<sha256 of the file>"``: part of the feature
    cache's identity of each split, whose cached targets are the coarse labels."""
    path = label_map_file(cfg)
    if not path:
        return ""
    transfer_label_map(cfg)  # a missing or malformed file raises naming the key
    return f"labelmap-{file_sha256(path)}"


def _coarse_classes(classes, reference, mapping, path):
    if classes is None:
        raise ValueError(
            f"{LABEL_MAP_KEY} {path} relabels images by class name, but "
            f"{reference or 'the training set'} records "
            "no class names"
        )
    return mapped_classes(classes, mapping, path, reference)


def transfer_classes(cfg, name):
    """
    The class names of the labels that follow the classes of registered dataset ``name``, in label
    order: its own class names, or with ``CLASSIFICATION.LABEL_MAP`` the sorted set of the coarse
    names they map to (a class of ``name`` missing from the map raises ValueError naming the class
    and the file). None when ``name`` records no class names and there is no map.
    """
    classes = dataset_classes(name)
    mapping, path = transfer_label_map(cfg)
    if mapping is None:
        return classes
    return _coarse_classes(classes, f"the dataset '{name}'", mapping, path)


def _coarsen(cfg, dicts, name, classes, reference):
    """``dicts`` of dataset ``name`` (labels following ``classes``) with
    ``CLASSIFICATION.LABEL_MAP`` applied by class name: labels index the sorted coarse names of
    ``classes``; unchanged without a map."""
    mapping, path = transfer_label_map(cfg)
    if mapping is None:
        return dicts
    if any("labels" in d for d in dicts):
        raise ValueError(f"{LABEL_MAP_KEY} applies to single-label sets; '{name}' is multi-label")
    return apply_label_map(dicts, mapping, path, _coarse_classes(classes, reference, mapping, path))


def _fine_labelled_dicts(cfg, name):
    classes, reference = training_classes(cfg)
    dicts = dataset_dicts(name)
    return dicts if classes is None else relabel_by_name(dicts, classes, name, reference)


def labelled_dicts(cfg, name):
    """The dicts of dataset ``name`` with labels following the class names of
    :func:`training_classes`; with ``CLASSIFICATION.LABEL_MAP``, the coarse labels of those class
    names (:func:`transfer_classes`)."""
    classes, reference = training_classes(cfg)
    return _coarsen(cfg, _fine_labelled_dicts(cfg, name), name, classes, reference)


def own_labelled_dicts(cfg, name):
    """The dicts of dataset ``name`` with its own labels (few-shot episodes: the test set's own
    classes), coarse ones with ``CLASSIFICATION.LABEL_MAP``."""
    return _coarsen(cfg, dataset_dicts(name), name, dataset_classes(name), f"the dataset '{name}'")


def train_val_dicts(cfg):
    """
    (train, val) dicts, labels following the class names of ``DATASETS.TRAIN[0]``:
    ``DATASETS.TRAIN`` and ``CLASSIFICATION.VAL_DATASET`` when one is named, else a
    class-stratified ``VAL_FRACTION`` of DATASETS.TRAIN held out (seed VAL_SEED; the rule of the
    downstream sets' generated splits, datasets/README.md). With ``CLASSIFICATION.LABEL_MAP`` both
    carry the coarse labels; a held-out split is drawn on the fine classes first, so that every
    granularity holds out the same images.
    """
    classes, reference = training_classes(cfg)
    fine = [d for name in cfg.DATASETS.TRAIN for d in _fine_labelled_dicts(cfg, name)]
    c = cfg.CLASSIFICATION
    if c.VAL_DATASET:
        train = _coarsen(cfg, fine, "+".join(cfg.DATASETS.TRAIN), classes, reference)
        return train, labelled_dicts(cfg, c.VAL_DATASET)
    if not 0.0 < c.VAL_FRACTION < 1.0:
        raise ValueError(f"CLASSIFICATION.VAL_FRACTION must be in (0, 1), got {c.VAL_FRACTION}")
    if any("labels" in d for d in fine):
        raise ValueError(
            f"{', '.join(cfg.DATASETS.TRAIN)} is multi-label: name its validation split in "
            f"CLASSIFICATION.VAL_DATASET"
        )
    kept, held = stratified_holdout(
        fine, fraction_held_out(float(c.VAL_FRACTION)), seed=int(c.VAL_SEED), salt="val"
    )
    name = "+".join(cfg.DATASETS.TRAIN)
    return _coarsen(cfg, kept, name, classes, reference), _coarsen(
        cfg, held, name, classes, reference
    )


def build_classification_train_loader(cfg, dicts, num_classes):
    """Resumable training loader of the SGD protocols over ``dicts`` (labels checked first)."""
    check_labels(dicts, num_classes, ",".join(cfg.DATASETS.TRAIN))
    return build_resumable_train_loader(
        dicts,
        ClassificationMapper(cfg, is_train=True),
        seed=cfg.SEED,
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        aspect_ratio_grouping=False,
    )


def build_classification_test_loader(cfg, dicts):
    """
    Inference loader (test transform) over ``dicts``, split across processes like detectron2's.
    No dicts (every split of a probe cached): an empty list, which detectron2's inference loop
    walks through without a batch.
    """
    if not dicts:
        return []
    loader = build_detection_test_loader(
        dicts,
        mapper=ClassificationMapper(cfg, is_train=False),
        batch_size=cfg.CLASSIFICATION.TEST_BATCH_SIZE,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
    return shield_workers(loader)


def dataset_metric(cfg, dataset_name):
    """``CLASSIFICATION.METRIC`` or the dataset's metadata ``metric`` (default "top1")."""
    return cfg.CLASSIFICATION.METRIC or MetadataCatalog.get(dataset_name).get("metric", "top1")

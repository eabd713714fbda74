"""
Pretraining loaders: the training dicts after the study axes of docs/design.md section 6
(``DATASETS.PRETRAIN.*``, ``INPUT.CORRUPTION.*``), the two-view training loader and the kNN
monitor's bank + query loader.
"""

import logging
import os

from detectron2.data import build_detection_test_loader
from detectron2.utils import comm

from ..utils.atomic import atomic_open, atomic_write_json
from .classification import dataset_classes, dataset_dicts, relabel_by_name
from .corruptions import check_corruption_config
from .loader_signals import shield_workers
from .samplers import build_resumable_train_loader
from .study_axes import (
    apply_label_map,
    check_axes_config,
    describe,
    load_label_map,
    mix_datasets,
    stratified_subset,
)
from .transforms import TwoViewMapper

logger = logging.getLogger(__name__)

PRETRAIN_DATA_FILE = "pretrain_data.json"
PRETRAIN_IMAGES_FILE = "pretrain_images.txt"


def classification_dicts(names):
    """The concatenated dicts of registered classification datasets; an empty one raises naming
    it."""
    dicts = []
    for name in names:
        dicts.extend(dataset_dicts(name))
    return dicts


def union_classes(names):
    """The class names of datasets ``names`` in order: those of the first, then each new name of the
    others; None when one of them records no class names (labels are then used as they are)."""
    classes = []
    for name in names:
        own = dataset_classes(name)
        if own is None:
            return None
        classes += [c for c in own if c not in classes]
    return classes


def pretraining_parts(names):
    """``[dicts of each dataset, tagged source]``, labels following the class names of
    :func:`union_classes` (a class keeps one label in every dataset that has it)."""
    classes = union_classes(names)
    parts = []
    for name in names:
        dicts = [dict(d, source=name) for d in dataset_dicts(name)]
        if classes is not None:
            dicts = relabel_by_name(dicts, classes, name, f"DATASETS.TRAIN {list(names)}")
        parts.append(dicts)
    return parts


def _label_map(cfg):
    """(mapping, path) of DATASETS.PRETRAIN.LABEL_MAP, or (None, "") when fine labels are used."""
    path = cfg.DATASETS.PRETRAIN.LABEL_MAP
    return (load_label_map(path), path) if path else (None, "")


def _axes_settings(cfg):
    p, c = cfg.DATASETS.PRETRAIN, cfg.INPUT.CORRUPTION
    return {
        "DATASETS.TRAIN": list(cfg.DATASETS.TRAIN),
        "DATASETS.PRETRAIN.SUBSET_COUNT": int(p.SUBSET_COUNT),
        "DATASETS.PRETRAIN.SUBSET_FRACTION": float(p.SUBSET_FRACTION),
        "DATASETS.PRETRAIN.SUBSET_SEED": int(p.SUBSET_SEED),
        "DATASETS.PRETRAIN.MIX_PROPORTIONS": [float(x) for x in p.MIX_PROPORTIONS],
        "DATASETS.PRETRAIN.MIX_TOTAL": int(p.MIX_TOTAL),
        "DATASETS.PRETRAIN.LABEL_MAP": p.LABEL_MAP,
        "INPUT.CORRUPTION.JPEG_QUALITY": c.JPEG_QUALITY,
        "INPUT.CORRUPTION.SALT_PEPPER": float(c.SALT_PEPPER),
        "INPUT.CORRUPTION.DOWNSAMPLE": c.DOWNSAMPLE,
    }


def pretrain_train_dicts(cfg):
    """
    The training dicts after the study axes, and the record of them (``pretrain_data.json``):
    dicts of each DATASETS.TRAIN entry (tagged ``source``) -> domain mixing (if MIX_PROPORTIONS)
    -> class-stratified subset (SUBSET_COUNT or SUBSET_FRACTION) -> label map (LABEL_MAP).
    Every setting is validated before any image list is read.
    """
    check_axes_config(cfg)
    check_corruption_config(cfg)
    mapping, map_path = _label_map(cfg)
    p = cfg.DATASETS.PRETRAIN
    names = list(cfg.DATASETS.TRAIN)
    parts = pretraining_parts(names)
    before = [d for part in parts for d in part]
    if len(p.MIX_PROPORTIONS):
        dicts = mix_datasets(
            parts, list(p.MIX_PROPORTIONS), int(p.MIX_TOTAL), int(p.SUBSET_SEED), names
        )
    else:
        dicts = before
    dicts = stratified_subset(
        dicts, int(p.SUBSET_COUNT), float(p.SUBSET_FRACTION), int(p.SUBSET_SEED)
    )
    if mapping is not None:
        dicts = apply_label_map(dicts, mapping, map_path)
    record = describe(_axes_settings(cfg), before, dicts, mapping, map_path, int(p.SUBSET_SEED))
    return dicts, record


def write_pretrain_data(output_dir, dicts, record):
    """``pretrain_data.json`` and ``pretrain_images.txt`` (``file_name<TAB>label`` per image),
    atomically."""
    atomic_write_json(os.path.join(output_dir, PRETRAIN_DATA_FILE), record)
    with atomic_open(os.path.join(output_dir, PRETRAIN_IMAGES_FILE)) as f:
        f.write("".join(f"{d['file_name']}\t{int(d.get('label', -1))}\n" for d in dicts))


def build_pretrain_train_loader(cfg):
    dicts, record = pretrain_train_dicts(cfg)
    after = record["after"]
    logger.info(
        f"Pretraining images: {after['total']} of {record['before']['total']} "
        f"(per dataset {after['per_dataset']}); label map: "
        f"{cfg.DATASETS.PRETRAIN.LABEL_MAP or 'none'}"
    )
    if comm.is_main_process() and cfg.OUTPUT_DIR:
        write_pretrain_data(cfg.OUTPUT_DIR, dicts, record)
    return build_resumable_train_loader(
        dicts,
        TwoViewMapper(cfg, is_train=True),
        seed=cfg.SEED,
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def knn_bank_name(cfg):
    return cfg.TEST.KNN.BANK or cfg.DATASETS.TRAIN[0]


def knn_dicts(cfg, dataset_name):
    """
    Bank images (``knn_role`` "bank") then the query images of ``dataset_name`` ("query", labels
    following the bank's class names: a query class the bank lacks is an error naming it), with
    the coarse labels of DATASETS.PRETRAIN.LABEL_MAP when one is given (no subset, mixing or
    corruption: the bank is the whole bank dataset).
    """
    bank_name = knn_bank_name(cfg)
    bank = [dict(d, knn_role="bank") for d in classification_dicts([bank_name])]
    query = [dict(d, knn_role="query") for d in classification_dicts([dataset_name])]
    classes = dataset_classes(bank_name)
    if classes is not None:
        query = relabel_by_name(query, classes, dataset_name, f"the kNN bank '{bank_name}'")
    mapping, map_path = _label_map(cfg)
    if mapping is not None:
        bank, query = (
            apply_label_map(bank, mapping, map_path),
            apply_label_map(query, mapping, map_path),
        )
    return bank + query


def build_knn_test_loader(cfg, dataset_name):
    """The kNN monitor's inference loader over :func:`knn_dicts`."""
    loader = build_detection_test_loader(
        knn_dicts(cfg, dataset_name),
        mapper=TwoViewMapper(cfg, is_train=False),
        batch_size=cfg.TEST.KNN.BATCH_SIZE,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
    return shield_workers(loader)

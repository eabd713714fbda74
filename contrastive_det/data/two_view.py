"""
Two-view augmentation (torchvision.transforms.v2) and the mapper/loaders of pretraining, with the
study axes of DESIGN.md section 6 (``DATASETS.PRETRAIN.*``, ``INPUT.CORRUPTION.*``).
"""
import logging
import os

import torch
from torchvision.transforms import v2 as T

from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data.detection_utils import read_image
from detectron2.utils import comm

from ..utils.atomic import atomic_open, atomic_write_json
from .corruptions import build_corruption, check_corruption_config
from .mapper import ImageReadError
from .study_axes import apply_label_map, check_axes_config, describe, load_label_map, mix_datasets, stratified_subset

logger = logging.getLogger(__name__)

PRETRAIN_DATA_FILE = "pretrain_data.json"
PRETRAIN_IMAGES_FILE = "pretrain_images.txt"


def build_two_view_transform(cfg):
    """One random view: crop, flip, colour jitter, grayscale, blur, solarize (INPUT.TWO_VIEW.*)."""
    c = cfg.INPUT.TWO_VIEW
    kernel = max(3, int(c.BLUR_KERNEL_FRACTION * c.CROP_SIZE) // 2 * 2 + 1)  # odd
    ops = [
        T.RandomResizedCrop(c.CROP_SIZE, scale=tuple(c.CROP_SCALE), antialias=True),
        T.RandomHorizontalFlip(c.FLIP_PROB),
        T.RandomApply([T.ColorJitter(*c.JITTER)], p=c.JITTER_PROB),
        T.RandomGrayscale(p=c.GRAYSCALE_PROB),
    ]
    if c.BLUR_PROB > 0:
        ops.append(T.RandomApply([T.GaussianBlur(kernel, sigma=tuple(c.BLUR_SIGMA))], p=c.BLUR_PROB))
    if c.SOLARIZE_PROB > 0:
        ops.append(T.RandomSolarize(threshold=128, p=c.SOLARIZE_PROB))
    return T.Compose(ops)


def build_test_transform(cfg):
    c = cfg.INPUT.TWO_VIEW
    return T.Compose([T.Resize(c.TEST_RESIZE, antialias=True), T.CenterCrop(c.CROP_SIZE)])


def read_rgb_tensor(file_name):
    """3xHxW uint8 RGB tensor; unreadable files raise :class:`ImageReadError` naming the file."""
    try:
        image = read_image(file_name, format="RGB")  # HxWx3 uint8
    except OSError as e:
        raise ImageReadError(f"Could not read image {file_name}: {e}") from e
    return torch.from_numpy(image.copy()).permute(2, 0, 1)


class TwoViewMapper:
    """
    Dataset dict ``{"file_name", "label"}`` -> training: ``{"views": [view1, view2], "label"}``;
    inference: ``{"image", "label"}`` plus the dict's other keys (e.g. ``knn_role``).
    Views are 3xHxW uint8 RGB tensors (normalisation happens in the model). In training, the
    corruption of ``INPUT.CORRUPTION`` (if any) is applied to the decoded image before the views;
    inference images stay clean.
    """

    def __init__(self, cfg, is_train):
        self.is_train = is_train
        self.transform = build_two_view_transform(cfg) if is_train else build_test_transform(cfg)
        self.corruption = build_corruption(cfg) if is_train else None

    def __call__(self, dataset_dict):
        image = read_rgb_tensor(dataset_dict["file_name"])
        label = int(dataset_dict.get("label", -1))
        if self.is_train:
            if self.corruption is not None:
                image = self.corruption(image)
            return {"views": [self.transform(image), self.transform(image)], "label": label}
        out = {k: v for k, v in dataset_dict.items() if k != "file_name"}
        out.update(image=self.transform(image), label=label, file_name=dataset_dict["file_name"])
        return out


def classification_dicts(names):
    """The concatenated dicts of registered classification datasets; an empty one raises naming it."""
    dicts = []
    for name in names:
        dicts.extend(_dataset_dicts(name))
    return dicts


def _dataset_dicts(name):
    part = DatasetCatalog.get(name)
    if not part:
        raise ValueError(f"Dataset '{name}' has no images")
    return part


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
    parts = [[dict(d, source=name) for d in _dataset_dicts(name)] for name in names]
    before = [d for part in parts for d in part]
    if len(p.MIX_PROPORTIONS):
        dicts = mix_datasets(parts, list(p.MIX_PROPORTIONS), int(p.MIX_TOTAL), int(p.SUBSET_SEED), names)
    else:
        dicts = before
    dicts = stratified_subset(dicts, int(p.SUBSET_COUNT), float(p.SUBSET_FRACTION), int(p.SUBSET_SEED))
    if mapping is not None:
        dicts = apply_label_map(dicts, mapping, map_path)
    record = describe(_axes_settings(cfg), before, dicts, mapping, map_path, int(p.SUBSET_SEED))
    return dicts, record


def write_pretrain_data(output_dir, dicts, record):
    """``pretrain_data.json`` and ``pretrain_images.txt`` (``file_name<TAB>label`` per image), atomically."""
    atomic_write_json(os.path.join(output_dir, PRETRAIN_DATA_FILE), record)
    with atomic_open(os.path.join(output_dir, PRETRAIN_IMAGES_FILE)) as f:
        f.write("".join(f"{d['file_name']}\t{int(d.get('label', -1))}\n" for d in dicts))


def build_pretrain_train_loader(cfg):
    dicts, record = pretrain_train_dicts(cfg)
    after = record["after"]
    logger.info(
        f"Pretraining images: {after['total']} of {record['before']['total']} "
        f"(per dataset {after['per_dataset']}); label map: {cfg.DATASETS.PRETRAIN.LABEL_MAP or 'none'}"
    )
    if comm.is_main_process() and cfg.OUTPUT_DIR:
        write_pretrain_data(cfg.OUTPUT_DIR, dicts, record)
    return build_detection_train_loader(
        dicts,
        mapper=TwoViewMapper(cfg, is_train=True),
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def knn_bank_name(cfg):
    return cfg.TEST.KNN.BANK or cfg.DATASETS.TRAIN[0]


def build_knn_test_loader(cfg, dataset_name):
    """
    Bank images (``knn_role`` "bank") then the query images of ``dataset_name`` ("query"), with
    the coarse labels of DATASETS.PRETRAIN.LABEL_MAP when one is given (no subset, mixing or
    corruption: the bank is the whole bank dataset).
    """
    bank = [dict(d, knn_role="bank") for d in classification_dicts([knn_bank_name(cfg)])]
    query = [dict(d, knn_role="query") for d in classification_dicts([dataset_name])]
    mapping, map_path = _label_map(cfg)
    if mapping is not None:
        bank, query = apply_label_map(bank, mapping, map_path), apply_label_map(query, mapping, map_path)
    return build_detection_test_loader(
        bank + query,
        mapper=TwoViewMapper(cfg, is_train=False),
        batch_size=cfg.TEST.KNN.BATCH_SIZE,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )

"""Detection transfer: Faster R-CNN (and Mask R-CNN) on VOC-layout or COCO-JSON datasets."""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable

from detectron2.config import CfgNode
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator

from ..convert.detection_weights import convert_weights_for_detection
from ..data import CheckedDatasetMapper
from ..data.checks import check_class_lists
from ..data.datasets.voc_detection import check_voc_annotations
from ..data.loader_signals import shield_workers
from ..data.samplers import build_resumable_train_loader
from ..engine.task import TASK_REGISTRY, Task
from ..evaluation import VOCDetectionEvaluator

logger = logging.getLogger(__name__)


def detection_train_dicts(cfg: CfgNode) -> list[dict[str, Any]]:
    """The training dicts of ``DATASETS.TRAIN`` with detectron2's filtering (empty images,
    keypoints)."""
    return get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE
        if cfg.MODEL.KEYPOINT_ON
        else 0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )


def _num_classes_key(cfg: CfgNode) -> str | None:
    """The config key of the detector's class count (None: a proposal network has none)."""
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch == "ProposalNetwork":
        return None
    return "MODEL.RETINANET.NUM_CLASSES" if arch == "RetinaNet" else "MODEL.ROI_HEADS.NUM_CLASSES"


def thing_classes(name: str) -> list[str]:
    """The class names of detection dataset ``name`` (a COCO set records them once loaded)."""
    meta = MetadataCatalog.get(name)
    if meta.get("thing_classes") is None:
        DatasetCatalog.get(name)  # load_coco_json sets thing_classes from the JSON's categories
    classes = meta.get("thing_classes")
    if classes is None:
        raise ValueError(f"dataset '{name}' records no thing_classes: is it a detection set?")
    return list(classes)


def check_detection_classes(cfg: CfgNode, names: Iterable[str]) -> None:
    """
    Every dataset of ``names`` has as many classes as the detector predicts, and the same list (a
    label means one class in training and in evaluation); else ValueError naming the key, the
    dataset and its classes. Without it a class past the head's count trains as background.
    """
    key = _num_classes_key(cfg)
    if key is None:
        return
    node = cfg.MODEL.RETINANET if key.startswith("MODEL.RETINANET") else cfg.MODEL.ROI_HEADS
    check_class_lists([(n, thing_classes(n)) for n in names], key, node.NUM_CLASSES)


@TASK_REGISTRY.register()
class DetectionTask(Task):
    """
    Object detection transfer (docs/design.md section 4). Training batches are a function of
    (SEED, iteration) (exact ``--resume``); VOC sets are scored with the VOC metric of their
    year, COCO sets with pycocotools (``bbox``, plus ``segm`` when ``MODEL.MASK_ON``).
    ``MODEL.WEIGHTS`` in any layout the converter reads is converted (and verified) before launch.
    """

    name = "detection"
    headline_metrics = ("bbox/AP50", "bbox/AP", "bbox/AP75", "segm/AP")
    study_weights = "converted"

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Iterable:
        mapper = CheckedDatasetMapper(cfg, is_train=True)
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            logger.warning(
                f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN}: detectron2's loader is "
                "used and --resume does not restore the data order (only TrainingSampler is "
                "resumable)"
            )
            loader = shield_workers(build_detection_train_loader(cfg, mapper=mapper))
        else:
            loader = build_resumable_train_loader(
                detection_train_dicts(cfg),
                mapper,
                seed=cfg.SEED,
                total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                num_workers=cfg.DATALOADER.NUM_WORKERS,
                aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            )
        # after the training dicts are read (a COCO JSON records its classes then: read once),
        # before any iteration
        check_detection_classes(cfg, list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
        for name in cfg.DATASETS.TEST:  # a broken test annotation must fail before training
            meta = MetadataCatalog.get(name)
            if meta.get("evaluator_type") == "pascal_voc":
                check_voc_annotations(meta.dirname, meta.split, meta.thing_classes)
        return loader

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Iterable:
        loader = build_detection_test_loader(
            cfg, dataset_name, mapper=CheckedDatasetMapper(cfg, is_train=False)
        )
        # after the loader read the set: a COCO JSON records its classes then, and is read once
        check_detection_classes(cfg, [dataset_name])
        return shield_workers(loader)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type == "pascal_voc":
            if cfg.MODEL.MASK_ON:
                raise ValueError(
                    f"MODEL.MASK_ON: dataset '{dataset_name}' is scored with the VOC box metric; "
                    "mask AP needs a COCO-JSON dataset with segmentations"
                )
            return VOCDetectionEvaluator(dataset_name)
        if evaluator_type == "coco":
            tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
            return COCOEvaluator(dataset_name, tasks=tasks, output_dir=output_folder)
        raise NotImplementedError(
            f"No detection evaluator for dataset '{dataset_name}' "
            f"(evaluator_type={evaluator_type!r}); "
            "register it as Pascal VOC or COCO (see DATASETS.CUSTOM)."
        )

    @classmethod
    def prepare_weights(cls, cfg: CfgNode, output_dir: str) -> list[str]:
        """Convert ``MODEL.WEIGHTS`` to detectron2's layout once, or refuse it before training."""
        return convert_weights_for_detection(cfg, output_dir)

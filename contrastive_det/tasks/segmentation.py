"""Semantic segmentation transfer: an FCN head on a dilated ResNet (MoCo's FCN-16s, mmseg's
FCN-D8)."""

from __future__ import annotations

import logging
import os
from typing import Iterable, Sequence

from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from detectron2.evaluation import DatasetEvaluator

from ..convert.detection_weights import REMOTE_PREFIXES, convert_weights_for_detection
from ..convert.errors import ConversionError
from ..convert.verify import load_detectron2_file
from ..data.checks import check_class_lists
from ..data.loader_signals import shield_workers
from ..data.samplers import build_resumable_train_loader
from ..data.sem_seg_mapper import SemSegDatasetMapper, sem_seg_metadata
from ..engine.task import TASK_REGISTRY, Task
from ..evaluation import SemanticSegmentationEvaluator

logger = logging.getLogger(__name__)


def check_datasets_match(cfg: CfgNode, names: Iterable[str]) -> None:
    """
    Every dataset of ``names`` is a segmentation set whose classes are
    MODEL.SEM_SEG_HEAD.NUM_CLASSES (the same list across sets) and whose ignore label is
    MODEL.SEM_SEG_HEAD.IGNORE_VALUE.
    """
    head = cfg.MODEL.SEM_SEG_HEAD
    sets = []
    for name in names:
        classes, ignore = sem_seg_metadata(name)
        if ignore != head.IGNORE_VALUE:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE is {head.IGNORE_VALUE} but dataset '{name}' "
                f"ignores {ignore}"
            )
        sets.append((name, classes))
    check_class_lists(sets, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", head.NUM_CLASSES)


def check_backbone_covered(cfg: CfgNode, weights: str, overrides: Sequence[str] = ()) -> None:
    """
    Raise ConversionError when the detectron2-layout file ``weights`` leaves a backbone tensor of
    the model of ``cfg`` (with the ``KEY VALUE`` ``overrides`` the run will apply) at its random
    initialisation (detectron2 only warns): e.g. the three-conv "deeplab" stem
    (MODEL.RESNETS.STEM_TYPE) under a standard ResNet-50 checkpoint.
    """
    from detectron2.modeling import build_model

    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list(list(overrides))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    model = build_model(cfg)
    missing, _, mis_shaped = load_detectron2_file(model, weights)
    missing = [k for k in missing if k.startswith("backbone.")]
    mis_shaped = [k for k in mis_shaped if k.startswith("backbone.")]
    if missing or mis_shaped:
        listed = "\n    ".join((missing + mis_shaped)[:12])
        stem = any(".stem." in k or k.startswith("backbone.stem") for k in missing + mis_shaped)
        raise ConversionError(
            f"MODEL.WEIGHTS {weights} leaves {len(missing)} backbone tensor(s) missing and "
            f"{len(mis_shaped)} mis-shaped in the {cfg.MODEL.BACKBONE.NAME} of this config; they "
            f"would train from random initialisation:\n    {listed}\n"
            + (
                "The stem is not covered: a standard ResNet has one 7x7 stem conv, so set "
                "MODEL.RESNETS.STEM_TYPE basic (the deeplab stem has three 3x3 convs)."
                if stem
                else "Check MODEL.RESNETS.DEPTH / WIDTH_PER_GROUP against the checkpoint."
            )
        )


@TASK_REGISTRY.register()
class SegmentationTask(Task):
    """
    Semantic segmentation transfer (docs/segmentation.md): detectron2's ``SemanticSegmentor``
    family (``FCNSemanticSegmentor`` + ``FCNHead``) trained on ``DATASETS.TRAIN`` with random
    scale / crop / flip, scored with detectron2's ``SemSegEvaluator`` (mIoU, fwIoU, mACC, pACC,
    plus mmseg's mIoU) on ``DATASETS.TEST`` at the original image size. Batches are a function of
    (SEED, iteration) (exact ``--resume``). ``MODEL.WEIGHTS`` in any layout the converter reads is
    converted, and must cover every backbone tensor.
    """

    name = "segmentation"
    headline_metrics = ("sem_seg/mIoU", "sem_seg/mACC")
    study_weights = "converted"

    @classmethod
    def check_config(cls, cfg: CfgNode) -> None:
        if not cfg.MODEL.META_ARCHITECTURE.endswith("SemanticSegmentor"):
            raise ValueError(
                f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r}: SegmentationTask trains "
                'a semantic segmentor ("FCNSemanticSegmentor", see configs/segmentation/)'
            )
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            raise ValueError(
                f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r}: segmentation samples "
                'images uniformly ("TrainingSampler")'
            )

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Iterable:
        check_datasets_match(cfg, list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
        dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False)
        return build_resumable_train_loader(
            dicts,
            SemSegDatasetMapper(cfg, is_train=True),
            seed=cfg.SEED,
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            aspect_ratio_grouping=False,  # every training image is padded to the crop size
        )

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Iterable:
        return shield_workers(
            build_detection_test_loader(
                cfg, dataset_name, mapper=SemSegDatasetMapper(cfg, is_train=False)
            )
        )

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        check_datasets_match(cfg, [dataset_name])
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return SemanticSegmentationEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def prepare_weights(cls, cfg: CfgNode, output_dir: str) -> list[str]:
        """Convert ``MODEL.WEIGHTS`` to detectron2's layout, then check that it covers the whole
        backbone."""
        overrides = convert_weights_for_detection(cfg, output_dir)
        weights = (
            overrides[overrides.index("MODEL.WEIGHTS") + 1]
            if "MODEL.WEIGHTS" in overrides
            else cfg.MODEL.WEIGHTS
        )
        if weights and not weights.startswith(REMOTE_PREFIXES):
            check_backbone_covered(cfg, weights, overrides)
        return overrides

"""
Contrastive pretraining of a torchvision ResNet (SimCLR, MoCo v2, SupCon, CE+SelfSupCon,
SupCon+SelfSupCon, SCAN; the meta-architectures of ``contrastive_det/modeling/pretrainers``),
monitored by kNN top-1, exporting the trunk in the canonical torchvision layout.
"""
import logging
import os

from detectron2.engine import HookBase

from ..convert.canonical import save_canonical
from ..data.pretraining import build_knn_test_loader, build_pretrain_train_loader, knn_bank_name
from ..engine.hooks import ImagesPerSecond
from ..engine.task import TASK_REGISTRY, Task
from ..evaluation import KNNEvaluator

BACKBONE_FILE = "backbone.pth"


def export_backbone(model, cfg, path, method):
    """
    Write the model's trunk in the canonical torchvision form (DESIGN.md section 3), atomically.

    Args:
        model: a pretraining meta-architecture (DDP-wrapped or not) with ``export_backbone()``.
        cfg: its config (arch, pixel statistics and input format are recorded from it).
        path (str): the file to write.
        method (str): the method recorded in the file's metadata.
    """
    model = getattr(model, "module", model)  # unwrap DDP
    if not hasattr(model, "export_backbone"):
        raise ValueError(f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE} has no backbone to export")
    save_canonical(
        path,
        model.export_backbone(),
        arch=f"resnet{cfg.MODEL.TV_RESNET.DEPTH}",
        method=method,
        pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
        pixel_std=list(cfg.MODEL.PIXEL_STD),
        input_format=cfg.INPUT.FORMAT,
        extra={"width_per_group": cfg.MODEL.TV_RESNET.WIDTH_PER_GROUP},
    )
    return path


class ExportBackbone(HookBase):
    """After the last iteration, export the pretrained trunk to ``OUTPUT_DIR/backbone.pth``."""

    def __init__(self, method):
        self._method = method

    def after_train(self):
        trainer = self.trainer
        if trainer.iter < trainer.max_iter:  # detectron2 sets iter = max_iter after the last iteration
            return  # stopped early (error or interruption): no export of a half-trained trunk
        path = export_backbone(trainer.model, trainer.cfg, os.path.join(trainer.cfg.OUTPUT_DIR, BACKBONE_FILE), self._method)
        logging.getLogger(__name__).info(f"Backbone exported to {path}")


@TASK_REGISTRY.register()
class PretrainTask(Task):
    """
    Contrastive pretraining on class-per-folder datasets (``DATASETS.TRAIN``, after the study axes
    ``DATASETS.PRETRAIN.*``), monitored by kNN top-1 on ``DATASETS.TEST`` against the bank
    ``TEST.KNN.BANK``; records images/s and exports the backbone at the end.
    """

    name = "pretraining"
    headline_metrics = ("knn/top1",)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_pretrain_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_knn_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return KNNEvaluator(cfg.TEST.KNN.K, cfg.TEST.KNN.T)

    @classmethod
    def datasets_to_check(cls, cfg, eval_only):
        names = super().datasets_to_check(cfg, eval_only)
        return names + ([knn_bank_name(cfg)] if cfg.DATASETS.TEST else [])

    @classmethod
    def build_hooks(cls, cfg):
        return [ImagesPerSecond(cfg.SOLVER.IMS_PER_BATCH), ExportBackbone(cls.method(cfg))]

    @classmethod
    def method_name(cls, cfg):
        return cfg.MODEL.META_ARCHITECTURE

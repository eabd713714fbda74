"""
TASK_REGISTRY: what the one :class:`Trainer` needs to know about a task.

A task is a class registered here and selected by ``cfg.TASK`` (its class name). It provides:

* ``name`` (str): the task's name in ``results.json`` (e.g. "detection");
* ``build_train_loader(cfg)`` -> iterable of batches for the meta-architecture;
* ``build_test_loader(cfg, dataset_name)`` -> data loader over one test set;
* ``build_evaluator(cfg, dataset_name, output_folder)`` -> a ``DatasetEvaluator``;
* ``datasets_to_check(cfg, eval_only)`` -> dataset names whose files must exist before a run;
* ``build_hooks(cfg)`` -> extra hooks for the Trainer (run after detectron2's, before the writers);
* ``method_name(cfg)`` -> the method recorded in ``results.json`` when ``RESULTS.METHOD`` is empty.

The model itself comes from ``cfg.MODEL.META_ARCHITECTURE`` as in detectron2; tasks never
own a training loop.
"""
import os

from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.registry import Registry

from ..data import CheckedDatasetMapper
from ..data.pretraining import build_knn_test_loader, build_pretrain_train_loader, knn_bank_name
from ..evaluation import KNNEvaluator, VOCDetectionEvaluator

TASK_REGISTRY = Registry("TASK")
TASK_REGISTRY.__doc__ = __doc__


def get_task(cfg):
    return TASK_REGISTRY.get(cfg.TASK)


@TASK_REGISTRY.register()
class DetectionTask:
    """Object detection (Faster R-CNN transfer) on VOC-layout or COCO-JSON datasets."""

    name = "detection"

    @staticmethod
    def build_train_loader(cfg):
        return build_detection_train_loader(cfg, mapper=CheckedDatasetMapper(cfg, is_train=True))

    @staticmethod
    def build_test_loader(cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=CheckedDatasetMapper(cfg, is_train=False))

    @staticmethod
    def build_evaluator(cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type == "pascal_voc":
            return VOCDetectionEvaluator(dataset_name)
        if evaluator_type == "coco":
            return COCOEvaluator(dataset_name, tasks=("bbox",), output_dir=output_folder)
        raise NotImplementedError(
            f"No detection evaluator for dataset '{dataset_name}' (evaluator_type={evaluator_type!r}); "
            "register it as Pascal VOC or COCO (see DATASETS.CUSTOM)."
        )

    @staticmethod
    def datasets_to_check(cfg, eval_only):
        return list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))

    @staticmethod
    def build_hooks(cfg):
        return []

    @staticmethod
    def method_name(cfg):
        return "unspecified" if cfg.MODEL.WEIGHTS else "random-init"


@TASK_REGISTRY.register()
class PretrainTask:
    """
    Contrastive pretraining of a torchvision ResNet on class-per-folder datasets (DATASETS.TRAIN),
    monitored by kNN top-1 on DATASETS.TEST against the bank TEST.KNN.BANK; exports the backbone.
    """

    name = "pretraining"

    @staticmethod
    def build_train_loader(cfg):
        return build_pretrain_train_loader(cfg)

    @staticmethod
    def build_test_loader(cfg, dataset_name):
        return build_knn_test_loader(cfg, dataset_name)

    @staticmethod
    def build_evaluator(cfg, dataset_name, output_folder=None):
        return KNNEvaluator(cfg.TEST.KNN.K, cfg.TEST.KNN.T)

    @staticmethod
    def datasets_to_check(cfg, eval_only):
        names = list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))
        return names + ([knn_bank_name(cfg)] if cfg.DATASETS.TEST else [])

    @staticmethod
    def build_hooks(cfg):
        from .hooks import ExportBackbone, ImagesPerSecond

        return [ImagesPerSecond(cfg.SOLVER.IMS_PER_BATCH), ExportBackbone()]

    @staticmethod
    def method_name(cfg):
        return cfg.MODEL.META_ARCHITECTURE

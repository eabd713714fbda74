"""
TASK_REGISTRY: what the one :class:`Trainer` needs to know about a task.

A task is a class registered here and selected by ``cfg.TASK`` (its class name). It provides:

* ``name`` (str): the task's name in ``results.json`` (e.g. "detection");
* ``build_train_loader(cfg)`` -> iterable of batches for the meta-architecture;
* ``build_test_loader(cfg, dataset_name)`` -> data loader over one test set;
* ``build_evaluator(cfg, dataset_name, output_folder)`` -> a ``DatasetEvaluator``;
* ``datasets_to_check(cfg, eval_only)`` -> dataset names whose files must exist before a run.

The model itself comes from ``cfg.MODEL.META_ARCHITECTURE`` as in detectron2; tasks never
own a training loop.
"""
import os

from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.registry import Registry

from ..data import CheckedDatasetMapper
from ..evaluation import VOCDetectionEvaluator

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

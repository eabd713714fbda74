"""
The tasks the one Trainer runs, one file each, registered in ``TASK_REGISTRY`` on import and
selected by ``cfg.TASK`` (see :class:`contrastive_det.engine.task.Task` for the contract):

* ``DetectionTask`` (detection.py): Faster/Mask R-CNN transfer on VOC-layout or COCO-JSON data;
* ``PretrainTask`` (pretrain.py): contrastive pretraining of a torchvision ResNet, kNN-monitored;
* ``ClassificationTask`` (classification.py): linear probes (SGD, L-BFGS, layer-wise), fine-tuning,
  few-shot episodes and Core-tuning on classification sets.
"""
from .classification import ClassificationTask
from .detection import DetectionTask
from .pretrain import PretrainTask

__all__ = ["ClassificationTask", "DetectionTask", "PretrainTask"]

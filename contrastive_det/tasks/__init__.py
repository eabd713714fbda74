"""
The tasks the one Trainer runs, one file each, registered in ``TASK_REGISTRY`` on import and
selected by ``cfg.TASK`` (see :class:`contrastive_det.engine.task.Task` for the contract):

* ``DetectionTask`` (detection.py): Faster/Mask R-CNN transfer on VOC-layout or COCO-JSON data;
* ``PretrainTask`` (pretrain.py): contrastive pretraining of a torchvision ResNet, kNN-monitored.
"""
from .detection import DetectionTask
from .pretrain import PretrainTask

__all__ = ["DetectionTask", "PretrainTask"]

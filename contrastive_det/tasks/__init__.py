"""
The tasks the one Trainer runs, one file each, registered in ``TASK_REGISTRY`` on import and
selected by ``cfg.TASK`` (see :class:`contrastive_det.engine.task.Task` for the contract):

* ``DetectionTask`` (detection.py): Faster/Mask R-CNN transfer on VOC-layout or COCO-JSON data;
* ``PretrainTask`` (pretrain.py): contrastive pretraining of a torchvision ResNet, kNN-monitored;
* ``ClassificationTask`` (classification.py): linear probes (SGD, L-BFGS, layer-wise), fine-tuning,
  few-shot episodes and Core-tuning on classification sets;
* ``SegmentationTask`` (segmentation.py): semantic segmentation transfer (FCN heads on a dilated
  ResNet; MoCo's and mmseg's protocols).
"""

from .classification import ClassificationTask
from .detection import DetectionTask
from .pretrain import PretrainTask
from .segmentation import SegmentationTask

__all__ = ["ClassificationTask", "DetectionTask", "PretrainTask", "SegmentationTask"]

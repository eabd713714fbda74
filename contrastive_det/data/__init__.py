"""
Datasets, layout checks and mappers.

Importing this package registers, lazily (no file is read; a missing folder is reported when a
name is used):

* the toy datasets (``toy_digits_*``) whose folders exist under ``$DETECTRON2_DATASETS``
  (default ``datasets``);
* ``imagenet_train`` / ``imagenet_val``;
* Cole et al.'s other pretraining sets, read from their official layouts
  (:mod:`contrastive_det.data.datasets.pretraining_sets`): ``inat2021_{train,train_mini,val}`` and
  ``places365_{train,val}``;
* the downstream classification sets, ``<key>_{train,val,trainval,test}`` for every key of
  :data:`contrastive_det.data.datasets.downstream.DOWNSTREAM_SETS` (``eurosat``, ``cifar10``,
  ``voc2007_cls``, ...; datasets/README.md, "Downstream classification sets");
* the semantic segmentation sets (:mod:`contrastive_det.data.datasets.sem_seg_sets`):
  ``voc_2012_sem_seg_{train,val,trainval,train_aug}``, ``cityscapes_sem_seg_{train,val}`` and
  ``ade20k_2016_sem_seg_{train,val}`` (datasets/README.md, "Semantic segmentation sets").

detectron2 itself registers VOC and COCO under their standard names (``voc_2007_trainval``,
``coco_2017_train``, ...).
"""

from .datasets.catalog import (
    register_classification,
    register_classification_csv,
    register_datasets_from_config,
    register_imagenet,
    register_sem_seg,
    register_toy_digits,
)
from .checks import DatasetLayoutError, check_dataset_layout
from .classification import read_classification_image
from .datasets.downstream import DOWNSTREAM_SETS, register_all_downstream, register_downstream
from .mapper import CheckedDatasetMapper, ImageReadError
from .datasets.pretraining_sets import (
    register_inat2021,
    register_places365,
    register_pretraining_sets,
    write_inat2021_label_map,
)
from .datasets.sem_seg_sets import register_sem_seg_sets

register_toy_digits()
register_imagenet()
register_pretraining_sets()
register_all_downstream()
register_sem_seg_sets()

__all__ = [
    "register_datasets_from_config",
    "register_toy_digits",
    "register_imagenet",
    "register_inat2021",
    "register_places365",
    "register_pretraining_sets",
    "write_inat2021_label_map",
    "register_classification",
    "register_classification_csv",
    "register_downstream",
    "register_all_downstream",
    "DOWNSTREAM_SETS",
    "register_sem_seg",
    "register_sem_seg_sets",
    "read_classification_image",
    "DatasetLayoutError",
    "check_dataset_layout",
    "CheckedDatasetMapper",
    "ImageReadError",
]

"""
Datasets, layout checks and mappers.

Importing this package registers the built-in toy datasets (``toy_digits_*``) whose folders exist
under ``$DETECTRON2_DATASETS`` (default ``datasets``); detectron2 itself registers VOC and COCO
under their standard names (``voc_2007_trainval``, ``coco_2017_train``, ...).
"""
from .catalog import register_datasets_from_config, register_imagenet, register_toy_digits
from .checks import DatasetLayoutError, check_dataset_layout
from .mapper import CheckedDatasetMapper, ImageReadError

register_toy_digits()
register_imagenet()

__all__ = [
    "register_datasets_from_config",
    "register_toy_digits",
    "register_imagenet",
    "DatasetLayoutError",
    "check_dataset_layout",
    "CheckedDatasetMapper",
    "ImageReadError",
]

"""
The downstream classification sets of the transfer studies (Islam et al. 2021, Kornblith et al.
2019), registered by name from their real on-disk layouts under ``$DETECTRON2_DATASETS``.

For every key ``K`` of :data:`DOWNSTREAM_SETS` (``eurosat``, ``cifar10``, ``voc2007_cls``, ...) the
names ``K_train``, ``K_val``, ``K_trainval`` and ``K_test`` are registered when
:mod:`contrastive_det.data` is imported. Layouts, splits and metrics: datasets/README.md,
"Downstream classification sets".
"""

from .builtin import (
    DOWNSTREAM_SETS,
    SPLITS,
    DownstreamSet,
    register_all_downstream,
    register_downstream,
    split_rule,
)
from .splits import (
    SPLIT_SEED,
    TEST_FRACTION,
    VAL_FRACTION,
    fraction_held_out,
    keep_per_class_held_out,
    stratified_holdout,
)

__all__ = [
    "DOWNSTREAM_SETS",
    "SPLITS",
    "DownstreamSet",
    "register_all_downstream",
    "register_downstream",
    "split_rule",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "VAL_FRACTION",
    "fraction_held_out",
    "keep_per_class_held_out",
    "stratified_holdout",
]

"""
Pretraining meta-architectures (the contrastive methods and the supervised baseline), one file per
method family (mirroring ``contrastive_det.losses``), each registered in detectron2's
``META_ARCH_REGISTRY`` on import:

- ``base.py``: :class:`ContrastivePretrainer` (the contract every pretrainer implements) and the
  in-batch base;
- ``simclr.py``: SimCLR; ``supcon.py``: SupCon (in-batch negatives, global batch gathered with
  gradients);
- ``moco.py``: the momentum-encoder base (key encoder, shuffled BN, queues) and MoCo v2;
- ``joint.py``: CE+SelfSupCon and SupCon+SelfSupCon (Islam et al.);
- ``scan.py``: SCAN;
- ``supervised.py``: the supervised baseline (cross-entropy, one view per image).

A new method = one file here + one loss in ``contrastive_det/losses/`` + a recipe + tests.
"""

from .base import ContrastivePretrainer, InBatchPretrainer
from .joint import CESelfSupCon, SupConSelfSupCon
from .moco import MoCoV2, MomentumPretrainer
from .scan import SCAN
from .simclr import SimCLR
from .supcon import SupCon
from .supervised import Supervised

__all__ = [
    "ContrastivePretrainer",
    "InBatchPretrainer",
    "MomentumPretrainer",
    "SimCLR",
    "SupCon",
    "MoCoV2",
    "CESelfSupCon",
    "SupConSelfSupCon",
    "SCAN",
    "Supervised",
]

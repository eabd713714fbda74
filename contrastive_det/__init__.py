"""
contrastive-det: contrastive pretraining and detection/classification transfer on Detectron2.

Importing this package registers everything it adds to detectron2's registries
(e.g. ``Res5ROIHeadsExtraNorm``) and the built-in datasets whose folders exist.
"""
from .version import __version__  # noqa: E402

from . import modeling  # noqa: F401,E402  (registers ROI heads / meta-archs)
from . import data  # noqa: F401,E402  (registers built-in datasets)
from . import tasks  # noqa: F401,E402  (registers the tasks in TASK_REGISTRY)

"""
contrastive-det: contrastive pretraining and detection/classification transfer on Detectron2.

Importing this package registers everything it adds to detectron2's registries
(e.g. ``Res5ROIHeadsExtraNorm``) and the built-in datasets whose folders exist.
"""

import warnings

# detectron2 calls torch.jit.script at import time, which recent torch answers with a FutureWarning
# on every command line: not the user's concern. The one place it is filtered (tools import this
# package first).
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)

from .version import __version__  # noqa: E402,F401  (the package's version)

from . import modeling  # noqa: F401,E402  (registers ROI heads / meta-archs)
from . import data  # noqa: F401,E402  (registers built-in datasets)
from . import tasks  # noqa: F401,E402  (registers the tasks in TASK_REGISTRY)

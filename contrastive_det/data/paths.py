"""Where datasets live."""

import os


def datasets_root():
    """detectron2's dataset root: ``$DETECTRON2_DATASETS``, default ``datasets`` (relative to the
    cwd)."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))

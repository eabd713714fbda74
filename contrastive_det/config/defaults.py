"""Every config key contrastive-det adds to detectron2's defaults, one comment per key."""
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg


def add_contrastive_det_config(cfg):
    """Add contrastive-det's keys to a detectron2 config (in place). Safe to call twice."""
    if hasattr(cfg, "TASK"):
        return cfg
    # The task the one Trainer runs: a class name in TASK_REGISTRY (contrastive_det/engine/tasks.py)
    # that supplies data loaders and evaluators. "DetectionTask": Faster R-CNN detection transfer.
    cfg.TASK = "DetectionTask"

    # User datasets registered from the config, without writing Python. A list of dicts, each:
    #   {NAME: str, FORMAT: "voc" | "coco", CLASSES: [str, ...],
    #    voc:  ROOT (folder with JPEGImages/ Annotations/ ImageSets/Main/), SPLIT (e.g. "trainval"),
    #          YEAR (2007 -> 11-point VOC metric, the default; anything else -> area metric)
    #    coco: JSON (instances file), IMAGE_ROOT (folder the file names are relative to)}
    # CLASSES is required for voc and optional for coco (the JSON's categories are used).
    cfg.DATASETS.CUSTOM = []

    cfg.RESULTS = CN()
    # Name of the pretraining method behind MODEL.WEIGHTS (e.g. "mocov2", "supcon"), recorded in
    # OUTPUT_DIR/results.json so studies can group runs. "" records "random-init" when
    # MODEL.WEIGHTS is empty and "unspecified" otherwise.
    cfg.RESULTS.METHOD = ""
    return cfg


def get_cfg():
    """detectron2's default config with contrastive-det's keys added."""
    return add_contrastive_det_config(_d2_get_cfg())

"""Export the backbone of a saved pretraining checkpoint (``tools/pretrain_net.py --export-from``)."""
import os

from .checkpoint import AtomicDetectionCheckpointer
from .hooks import BACKBONE_FILE, export_backbone
from .setup import setup
from .trainer import Trainer


def export_from_checkpoint(args, checkpoint, export_to=None):
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"Checkpoint {checkpoint} does not exist")
    cfg = setup(args)
    model = Trainer.build_model(cfg)
    if not hasattr(model, "export_backbone"):
        raise ValueError(f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE} has no backbone to export")
    AtomicDetectionCheckpointer(model).load(checkpoint, checkpointables=[])
    return export_backbone(model, cfg, export_to or os.path.join(cfg.OUTPUT_DIR, BACKBONE_FILE))

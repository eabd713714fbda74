#!/usr/bin/env python
"""
Contrastive pretraining of a torchvision ResNet (SimCLR, MoCo v2, SupCon, CE+SelfSupCon,
SupCon+SelfSupCon, SCAN) on detectron2's trainer, monitored by kNN top-1, exporting the backbone
to OUTPUT_DIR/backbone.pth (torchvision layout + metadata). The run itself is train_net.py's
``main`` (the config's TASK is PretrainTask); this tool adds ``--export-from``.
"""

import glob
import os

from train_net import main  # tools/ is on sys.path when a tool runs as a script

from contrastive_det.engine import Trainer, argument_parser, get_task, launch_runs, setup
from contrastive_det.engine.checkpoint import load_checkpoint
from contrastive_det.tasks.pretrain import (
    BACKBONE_FILE,
    check_pretraining_checkpoint,
    export_backbone,
)

EPILOG = """
Examples:

SimCLR ResNet-18 on the toy digit crops, CPU (make data first):
    tools/pretrain_net.py --config-file configs/toy/pretrain_simclr_R18.yaml

MoCo v2 ResNet-50, ImageNet, 8 GPUs (200 epochs):
    tools/pretrain_net.py --config-file configs/pretrain/mocov2_R50_200ep.yaml --num-gpus 8

Resume after a crash (bit-exact, with the checkpoint's seed):  add --resume

Export the backbone of any checkpoint:
    tools/pretrain_net.py --config-file CONFIG --export-from output/x/model_0004999.pth \
[--export-to out.pth]
"""


def export_from_checkpoint(args, checkpoint, export_to=None):
    """Export the trunk of a saved pretraining checkpoint; returns the written path."""
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"Checkpoint {checkpoint} does not exist")
    cfg = setup(args)
    model = Trainer.build_model(cfg)
    model.load_state_dict(
        check_pretraining_checkpoint(model, load_checkpoint(checkpoint), checkpoint)
    )
    path = export_to or os.path.join(cfg.OUTPUT_DIR, BACKBONE_FILE)
    return export_backbone(model, cfg, path, get_task(cfg).method(cfg))


if __name__ == "__main__":
    parser = argument_parser(EPILOG)
    parser.add_argument(
        "--export-from",
        metavar="CHECKPOINT",
        help="export the backbone of this checkpoint and exit",
    )
    parser.add_argument(
        "--export-to",
        metavar="PATH",
        help=f"where --export-from writes (default OUTPUT_DIR/{BACKBONE_FILE})",
    )
    args = parser.parse_args()
    print("Command Line Args:", args)
    if args.export_from:
        print(f"backbone: {export_from_checkpoint(args, args.export_from, args.export_to)}")
    else:
        path = launch_runs(main, args)
        if path:
            print(f"results: {path}")
            out = os.path.dirname(path)
            candidates = [os.path.join(out, BACKBONE_FILE)] + sorted(
                glob.glob(os.path.join(out, "seed*", BACKBONE_FILE))
            )
            for backbone in filter(os.path.isfile, candidates):  # none after --eval-only
                print(f"backbone: {backbone}")

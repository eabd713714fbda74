#!/usr/bin/env python
"""
Contrastive pretraining of a torchvision ResNet (SimCLR, MoCo v2, SupCon, CE+SelfSupCon,
SupCon+SelfSupCon, SCAN) on detectron2's trainer, monitored by kNN top-1, exporting the backbone
to OUTPUT_DIR/backbone.pth (torchvision layout + metadata).
"""
import glob
import os

from contrastive_det.engine import argument_parser, launch_runs, run_task
from contrastive_det.engine.hooks import BACKBONE_FILE
from contrastive_det.engine.export import export_from_checkpoint

EPILOG = """
Examples:

SimCLR ResNet-18 on the toy digit crops, CPU (make data first):
    tools/pretrain_net.py --config-file configs/toy/pretrain_simclr_R18.yaml

MoCo v2 ResNet-50, ImageNet, 8 GPUs (200 epochs):
    tools/pretrain_net.py --config-file configs/pretrain/mocov2_R50_200ep.yaml --num-gpus 8

Export the backbone of any checkpoint:
    tools/pretrain_net.py --config-file CONFIG --export-from output/x/model_0004999.pth [--export-to out.pth]
"""


def main():
    parser = argument_parser(EPILOG)
    parser.add_argument("--export-from", metavar="CHECKPOINT", help="export the backbone of this checkpoint and exit")
    parser.add_argument("--export-to", metavar="PATH", help=f"where --export-from writes (default OUTPUT_DIR/{BACKBONE_FILE})")
    args = parser.parse_args()
    print("Command Line Args:", args)
    if args.export_from:
        path = export_from_checkpoint(args, args.export_from, args.export_to)
        print(f"backbone: {path}")
        return
    path = launch_runs(run_task, args)
    if path:
        print(f"results: {path}")
        out = os.path.dirname(path)
        candidates = [os.path.join(out, BACKBONE_FILE)] + sorted(glob.glob(os.path.join(out, "seed*", BACKBONE_FILE)))
        for backbone in filter(os.path.isfile, candidates):  # none after --eval-only
            print(f"backbone: {backbone}")


if __name__ == "__main__":
    main()

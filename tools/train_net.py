#!/usr/bin/env python
"""
Detection transfer: train and evaluate Faster R-CNN with detectron2 on VOC0712, COCO, the toy
digit scenes or your own VOC/COCO dataset.
"""
from contrastive_det.engine import argument_parser, launch_runs, run_task

EPILOG = """
Examples:

Toy digit scenes on CPU (run `make data` first):
    tools/train_net.py --config-file configs/toy/digits_R_50_C4.yaml

VOC0712, 8 GPUs, weights converted from a contrastive checkpoint (torchvision layout):
    tools/train_net.py --config-file configs/detection/voc0712_R_50_C4_24k_torchvision.yaml \\
        --num-gpus 8 MODEL.WEIGHTS converted.pkl OUTPUT_DIR out/voc_mocov2

Mean and std over 5 seeds:  add --num-seeds 5
4 GPUs instead of 8:         add --num-gpus 4 --fewer-gpus
Resume / evaluate only:      add --resume / --eval-only MODEL.WEIGHTS out/model_final.pth
Two machines of 8 GPUs:
    (machine0)$ tools/train_net.py --machine-rank 0 --num-machines 2 --num-gpus 8 --dist-url tcp://IP0:PORT [--config-file ...]
    (machine1)$ tools/train_net.py --machine-rank 1 --num-machines 2 --num-gpus 8 --dist-url tcp://IP0:PORT [--config-file ...]
"""


def main():
    args = argument_parser(EPILOG).parse_args()
    print("Command Line Args:", args)
    path = launch_runs(run_task, args)
    if path:
        print(f"results: {path}")


if __name__ == "__main__":
    main()

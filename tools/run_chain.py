#!/usr/bin/env python
"""
One chain on the toy data without a study file (the main job, `make demo`, is the study
configs/studies/islam_toy.yaml): pretrain (SimCLR and SupCon, CPU-sized) -> export ->
convert with verification -> Faster R-CNN transfer on the digit scenes -> a table of AP50/AP/AP75
against random init, written to OUTPUT/summary.{md,json} and printed.

    tools/run_chain.py [--methods simclr,supcon] [--pretrain-iters 100] [--detect-iters 80] [--output output/chain]
"""
import argparse

from contrastive_det.apps.chain import run_chain


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="simclr,supcon",
                        help="comma-separated toy pretraining configs (configs/toy/pretrain_<method>_R18.yaml)")
    parser.add_argument("--pretrain-iters", type=int, default=100, help="iterations of each pretraining run")
    parser.add_argument("--detect-iters", type=int, default=80, help="iterations of each detection run")
    parser.add_argument("--output", default="output/chain")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for the detection runs")
    args = parser.parse_args()
    run_chain([m for m in args.methods.split(",") if m], args.output, args.pretrain_iters, args.detect_iters,
              extra_detect=args.opts)


if __name__ == "__main__":
    main()

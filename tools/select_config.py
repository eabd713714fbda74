#!/usr/bin/env python
"""
Choose a grid point on validation: read each point's runs (their results.json), pick the best by
--metric, and write OUT/chosen.yaml (_BASE_ = --base, then the point's keys) and OUT/selection.json.
A study's select step runs this (contrastive_det/studies/selection.py); by hand:

    tools/select_config.py --base configs/toy/cls_finetune_R18.yaml --metric classification/score \\
        --out output/select/finetune \\
        --point '{"SOLVER.BASE_LR": 0.1}' output/grid/lr0.1/seed0 \\
        --point '{"SOLVER.BASE_LR": 0.01}' output/grid/lr0.01/seed0
"""

import argparse
import json
import sys

from contrastive_det.studies.selection import write_selection


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base", required=True, help="the config the chosen point is written over (_BASE_)"
    )
    parser.add_argument(
        "--metric",
        required=True,
        help="a metric of the runs' results.json, e.g. classification/score",
    )
    parser.add_argument(
        "--mode", default="max", choices=("max", "min"), help="the best score is the largest (max)"
    )
    parser.add_argument("--out", required=True, help="folder of chosen.yaml and selection.json")
    parser.add_argument(
        "--point",
        nargs="+",
        action="append",
        required=True,
        metavar=("JSON", "RUN_DIR"),
        help="a grid point: its keys as a JSON object, then the folders of its runs (one per seed)",
    )
    args = parser.parse_args(argv)
    points = []
    for item in args.point:
        try:
            point = json.loads(item[0])
        except ValueError as e:
            parser.error(f"--point {item[0]!r}: not a JSON object ({e})")
        if not isinstance(point, dict) or not point or len(item) < 2:
            parser.error(
                f"--point {' '.join(item)}: expected a non-empty JSON object of keys, then run "
                "folders"
            )
        points.append((point, item[1:]))
    try:
        write_selection(
            args.out, args.base, points, args.metric, args.mode, log=lambda m: print(m, flush=True)
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

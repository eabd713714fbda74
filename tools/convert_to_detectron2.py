#!/usr/bin/env python
"""
Convert a ResNet checkpoint (this suite's canonical export, torchvision, MoCo v1/v2/v3,
SupContrast, VISSL, solo-learn / Lightning, mmselfsup, timm, lightly-style nn.Sequential trunks,
backbone./encoder. prefixes, raw dicts) into detectron2's .pkl for MODEL.WEIGHTS, with a coverage
report and a numeric check; or a detectron2 ResNet back to the canonical torchvision form
(--to torchvision).
"""

import argparse
import os
import signal
import sys
import warnings

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DEFAULT_BASES = {
    "bottleneck": "configs/detection/voc0712_R_50_C4_24k.yaml",
    "basic": "configs/detection/voc0712_R_50_FPN_24k.yaml",
}

EPILOG = """
Examples:
  # MoCo v2 checkpoint -> detectron2 weights (format auto-detected; verified numerically)
  tools/convert_to_detectron2.py moco_v2_800ep_pretrain.pth.tar moco_v2.pkl
  tools/train_net.py --config-file configs/detection/voc0712_R_50_C4_24k_torchvision.yaml \\
      MODEL.WEIGHTS moco_v2.pkl

  # also write a config that inherits a protocol and sets everything these weights need
  tools/convert_to_detectron2.py r18.pth r18.pkl --write-config r18_voc.yaml \\
      --base configs/detection/voc0712_R_50_FPN_24k.yaml
  tools/train_net.py --config-file r18_voc.yaml

  # detectron2 weights -> canonical torchvision backbone
  tools/convert_to_detectron2.py r50.pkl r50_backbone.pth --to torchvision

Exit status: 0 converted (and verified); 1 not converted (the reason is printed; no output file
is created); 2 bad arguments.
"""


def build_parser():
    from contrastive_det.convert.readers import format_names
    from contrastive_det.convert.writers import WRITERS

    p = argparse.ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", help="checkpoint to convert")
    p.add_argument("output", help="output file: .pkl for detectron2, .pth for --to torchvision")
    p.add_argument(
        "--to",
        choices=list(WRITERS),
        default="detectron2",
        help="output kind (default: detectron2): "
        + "; ".join(f"{name}: {w.help}" for name, w in WRITERS.items()),
    )
    p.add_argument(
        "--format",
        dest="fmt",
        metavar="NAME",
        help=f"input format instead of auto-detection: {', '.join(format_names())}",
    )
    p.add_argument(
        "--prefix",
        metavar="[CONTAINER:]PREFIX",
        help="take the ResNet under this key prefix: 'student.' (nested dicts read as dotted "
        "keys) or CONTAINER:PREFIX, e.g. 'state_dict:module.encoder_q.'",
    )
    p.add_argument(
        "--depth",
        type=int,
        choices=(18, 34, 50, 101, 152),
        help="expected ResNet depth (checked against the keys; inferred when omitted)",
    )
    p.add_argument(
        "--verify",
        dest="verify",
        action="store_true",
        default=True,
        help="check numerically that detectron2 reproduces torchvision's outputs (default)",
    )
    p.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip the numeric check"
    )
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="max abs difference allowed (default 1e-4)"
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="load files that need arbitrary Python objects (torch.load weights_only=False): "
        "only for files you trust",
    )
    p.add_argument("--method", help="pretraining method recorded in --to torchvision output")
    p.add_argument(
        "--write-config",
        metavar="CFG.yaml",
        help="also write a detectron2 config inheriting --base with MODEL.WEIGHTS and the keys "
        "these weights need",
    )
    p.add_argument(
        "--base",
        metavar="PROTOCOL.yaml",
        help="the protocol --write-config inherits; alone, a protocol to check the backbone fits "
        f"(default: {DEFAULT_BASES['bottleneck']} for R50+, {DEFAULT_BASES['basic']} for R18/34)",
    )
    p.add_argument("--verbose", action="store_true", help="list every dropped key")
    return p


def main(argv=None):
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
    args = build_parser().parse_args(argv)
    # SIGTERM (kill, a scheduler's stop) as an exit, so that temporary files are removed on the way
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))

    from contrastive_det.convert import ConversionError, convert_checkpoint

    base = args.base
    if base is None:
        # the default protocol depends on the block type, known once the checkpoint is read
        def base(depth):
            from contrastive_det.convert.resnet_keys import BOTTLENECK_DEPTHS

            kind = "bottleneck" if depth in BOTTLENECK_DEPTHS else "basic"
            return os.path.relpath(os.path.join(REPO, DEFAULT_BASES[kind]))

    try:
        convert_checkpoint(
            args.input,
            args.output,
            to=args.to,
            fmt=args.fmt,
            prefix=args.prefix,
            depth=args.depth,
            verify=args.verify,
            tolerance=args.tolerance,
            trust=args.trust,
            method=args.method,
            write_config=args.write_config,
            base=base,
            verbose=args.verbose,
            log=print,
        )
    except ConversionError as e:
        sys.stdout.flush()
        print(f"ERROR: {e}", file=sys.stderr)
        print("not converted: no output written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

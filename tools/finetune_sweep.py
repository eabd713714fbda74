#!/usr/bin/env python
"""
Fine-tuning with the learning rate and weight decay chosen on the validation split (Kornblith et
al. 2019, with ssl-transfer's finetune.py grid): runs tools/train_net.py once per point of
CLASSIFICATION.FINETUNE_GRID (trained on the training split, scored on the validation split; weight
decay WEIGHT_DECAYS / BASE_LR with WD_OVER_LR), then the best point on train+val, tested once.

    tools/finetune_sweep.py --config-file configs/toy/cls_finetune_R18.yaml \\
        MODEL.WEIGHTS output/pretrain_simclr_R18/backbone.pth OUTPUT_DIR output/sweep_simclr

Output: OUTPUT_DIR/grid/lr<lr>_wd<wd>/ per point, OUTPUT_DIR/final/ (results.json of the test),
OUTPUT_DIR/sweep.json (every validation score, the choice, the test score). Re-running the same
command skips the points already done. --num-gpus/--num-machines/--seeds/--num-seeds pass through
to every run.
"""
import os

from contrastive_det.apps.finetune_sweep import run_sweep
from contrastive_det.engine.defaults import argument_parser, load_config


def launch_args(args):
    """The launch options of this command line, for every train_net.py run."""
    out = ["--num-gpus", str(args.num_gpus), "--num-machines", str(args.num_machines),
           "--machine-rank", str(args.machine_rank), "--dist-url", args.dist_url]
    if args.seeds:
        out += ["--seeds", ",".join(str(s) for s in args.seeds)]
    if args.num_seeds:
        out += ["--num-seeds", str(args.num_seeds)]
    if args.fewer_gpus:
        out.append("--fewer-gpus")
    return out


def main():
    args = argument_parser(__doc__).parse_args()
    cfg = load_config(args)
    grid = cfg.CLASSIFICATION.FINETUNE_GRID
    opts = [x for i in range(0, len(args.opts), 2) if args.opts[i] != "OUTPUT_DIR" for x in args.opts[i:i + 2]]
    train_net = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net.py")
    record = run_sweep(train_net, args.config_file, cfg.OUTPUT_DIR, list(grid.BASE_LRS), list(grid.WEIGHT_DECAYS),
                       launch_args=launch_args(args), opts=opts, wd_over_lr=bool(grid.WD_OVER_LR))
    print(f"sweep: {os.path.join(cfg.OUTPUT_DIR, 'sweep.json')}")
    return record


if __name__ == "__main__":
    main()

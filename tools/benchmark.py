#!/usr/bin/env python
"""
Training-step benchmark, sized for a 2-core CPU by default. Detection: seconds per iteration of the
toy config and of the VOC0712 R50-C4 protocol at a reduced input size (on the toy images: VOC itself
is not needed), and the ratio of our train_net step (Trainer with all hooks) to detectron2's bare
SimpleTrainer; segmentation (``seg_ratio``): our train_net step on the toy FCN-16s config against a
bare PyTorch loop (forward, backward, step) over the same SemanticSegmentor, optimizer and batches.
Pretraining (SimCLR on the toy digit crops): images per second of ResNet-18 at 32 px
and ResNet-50 at 64 px, the ratio of the engine's step to a bare PyTorch loop doing the same
forward, backward and step, and (``--only lightly``) images per second of tools/pretrain_net.py's
run of configs/toy/pretrain_simclr_R18.yaml against lightly's documented SimCLR loop on the same
data and settings. Ratios are measured side by side in alternating blocks; a Trainer step includes
every hook's before_step/after_step and the periodic writes. Classification transfer
(contrastive_det/benchmarks/classification.py, configs/toy/cls_linear_lbfgs_R18.yaml on the textured
toy crops): ``probe_speed`` (the cached L-BFGS probe against an SGD-trained linear layer on the same
frozen features), ``extraction`` (feature extraction through the task's loader, inference_on_dataset
and the probe evaluator against a bare no_grad loop) and ``probe_cache`` (a second L-BFGS probe run
on cached features against the first, extracting run).

    tools/benchmark.py                                  # everything (lightly's row needs lightly)
    tools/benchmark.py --only ratio --only pretrain_ratio --trials 10
    tools/benchmark.py --only lightly --lightly-trials 4   # ours against lightly 1.6.0
    # trailing KEY VALUE overrides apply to every config
    tools/benchmark.py MODEL.DEVICE cuda
    # classification; MODEL.WEIGHTS "" (default) = random init
    tools/benchmark.py --only probe_speed --only extraction --only probe_cache \\
        MODEL.WEIGHTS output/pretrain_simclr_R18/backbone.pth
"""

import argparse
import logging
import os
import sys
import tempfile

from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from contrastive_det.benchmarks import classification as cls_benchmark
from contrastive_det.benchmarks.engine_step import StepBench, seconds_per_iter, trainer_overhead
from contrastive_det.benchmarks.lightly_compare import compare as lightly_compare
from contrastive_det.benchmarks.lightly_compare import lightly_missing
from contrastive_det.engine.defaults import build_run_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(REPO, "configs", "toy", "digits_R_50_C4.yaml")
VOC = os.path.join(REPO, "configs", "detection", "voc0712_R_50_C4_24k.yaml")
# The VOC protocol's model and RoI/proposal counts, at a reduced input size, one image per step,
# trained on the toy images (VOC itself may be absent). Everything else is the protocol's.
VOC_REDUCED = [
    "INPUT.MIN_SIZE_TRAIN",
    "(320,)",
    "INPUT.MAX_SIZE_TRAIN",
    "480",
    "SOLVER.IMS_PER_BATCH",
    "1",
    "DATASETS.TRAIN",
    "('toy_digits_trainval',)",
    "DATASETS.TEST",
    "()",
]
# The VOC protocol at its own input sizes (480-800 px short side, up to 1333), 2 images per step:
# the per-GPU work of detectron2's published 0.537 s/iter (8 V100s, 16 images per step), on the toy
# images upscaled to those sizes. For a GPU (scripts/gpu_check.sh).
VOC_FULL = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATASETS.TRAIN",
    "('toy_digits_trainval',)",
    "DATASETS.TEST",
    "()",
]
# Push checkpointing and evaluation past the benchmark: their cost is set by the user's periods.
NO_PERIODIC = ["SOLVER.CHECKPOINT_PERIOD", "1000000", "TEST.EVAL_PERIOD", "0"]
SIMCLR = os.path.join(REPO, "configs", "toy", "pretrain_simclr_R18.yaml")
CLS_LBFGS = os.path.join(REPO, "configs", "toy", "cls_linear_lbfgs_R18.yaml")
CLS_SGD = os.path.join(REPO, "configs", "toy", "cls_linear_sgd_R18.yaml")
PRETRAIN = {  # name: (overrides, description)
    "pretrain_r18": (
        [
            "INPUT.TWO_VIEW.CROP_SIZE",
            "32",
            "INPUT.TWO_VIEW.TEST_RESIZE",
            "32",
            "SOLVER.IMS_PER_BATCH",
            "64",
        ],
        "SimCLR ResNet-18 at 32 px",
    ),
    "pretrain_r50": (
        [
            "MODEL.TV_RESNET.DEPTH",
            "50",
            "MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM",
            "2048",
            "INPUT.TWO_VIEW.CROP_SIZE",
            "64",
            "INPUT.TWO_VIEW.TEST_RESIZE",
            "64",
            "SOLVER.IMS_PER_BATCH",
            "16",
        ],
        "SimCLR ResNet-50 at 64 px",
    ),
}
CLS_PARTS = ["probe_speed", "extraction", "probe_cache"]
TOY_SEG = os.path.join(REPO, "configs", "toy", "seg_digits_R_50_FCN16s.yaml")
PARTS = [
    "toy",
    "voc",
    "ratio",
    "seg_ratio",
    "pretrain_r18",
    "pretrain_r50",
    "pretrain_ratio",
    "lightly",
] + CLS_PARTS
GPU_PARTS = ["voc_full"]  # not in the default run: minutes per iteration on a 2-core CPU


def build_cfg(config_file, opts, output_dir):
    args = argparse.Namespace(config_file=config_file, opts=list(opts) + NO_PERIODIC)
    cfg, _ = build_run_config(args, seed=0, output_dir=output_dir)
    seed_all_rng(0)
    return cfg


def _ratio_text(r):
    return (
        f"ratio {r['ratio_total']:.3f} over all timed iterations; per block pair min "
        f"{min(r['ratios']):.3f} median {r['ratio_median']:.3f} max {max(r['ratios']):.3f}"
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", choices=PARTS + GPU_PARTS, action="append", help="run only these parts"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed iterations first (each side)"
    )
    parser.add_argument(
        "--iters", type=int, default=5, help="timed iterations for seconds/iter (toy)"
    )
    parser.add_argument(
        "--voc-iters", type=int, default=3, help="timed iterations for the VOC config"
    )
    parser.add_argument(
        "--block",
        type=int,
        default=4,
        help="iterations per block in the ratio measurement "
        f"(block x trials a multiple of {StepBench.WRITER_PERIOD}: the writer's period)",
    )
    parser.add_argument(
        "--trials", type=int, default=5, help="Trainer/bare block pairs in the ratio measurement"
    )
    parser.add_argument(
        "--lightly-iters",
        type=int,
        default=20,
        help="timed iterations per block, lightly comparison",
    )
    parser.add_argument(
        "--lightly-warmup",
        type=int,
        default=4,
        help="untimed iterations per block, lightly comparison",
    )
    parser.add_argument(
        "--lightly-trials", type=int, default=4, help="block pairs (ABBA order), lightly comparison"
    )
    parser.add_argument(
        "--cls-trials",
        type=int,
        default=3,
        help="probe_speed: alternating L-BFGS/SGD trials; extraction: alternating pass pairs",
    )
    parser.add_argument(
        "--cls-sgd-epochs",
        type=int,
        default=100,
        help="probe_speed: epochs of the SGD probe (cosine over them; timed to its best epoch)",
    )
    parser.add_argument(
        "--cls-cache-trials", type=int, default=1, help="probe_cache: (first, second) run pairs"
    )
    parser.add_argument(
        "--cls-cli",
        action="store_true",
        help="probe_cache: time tools/train_net.py commands instead of the same calls in-process",
    )
    parser.add_argument(
        "--cls-workdir",
        help="probe_*/extraction: folder for weights, caches and runs "
        "(default: a temporary folder, removed at the end)",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every config"
    )
    args = parser.parse_args()
    parts = args.only or PARTS
    setup_logger()  # detectron2's logger, set up once, then quiet: the output is the figures
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    out = {}
    with tempfile.TemporaryDirectory(prefix="cdet_bench_") as tmp:
        if "toy" in parts:
            cfg = build_cfg(TOY, args.opts, os.path.join(tmp, "toy"))
            out["toy_s_per_iter"], _ = seconds_per_iter(cfg, args.warmup, args.iters)
            print(
                f"toy R50-C4 ({cfg.SOLVER.IMS_PER_BATCH} img/iter, {cfg.MODEL.DEVICE}): "
                f"{out['toy_s_per_iter']:.3f} s/iter",
                flush=True,
            )
        if "voc_full" in parts:
            cfg = build_cfg(VOC, VOC_FULL + list(args.opts), os.path.join(tmp, "voc_full"))
            out["voc_full_s_per_iter"], _ = seconds_per_iter(cfg, args.warmup, args.voc_iters)
            print(
                f"VOC R50-C4 at the protocol's sizes ({cfg.SOLVER.IMS_PER_BATCH} img/iter, "
                f"{cfg.MODEL.DEVICE}): {out['voc_full_s_per_iter']:.3f} s/iter; detectron2's "
                f"published 0.537 s/iter on 8 V100s (2 img/GPU): ratio "
                f"{out['voc_full_s_per_iter'] / 0.537:.2f}",
                flush=True,
            )
        if "voc" in parts:
            cfg = build_cfg(VOC, VOC_REDUCED + list(args.opts), os.path.join(tmp, "voc"))
            out["voc_reduced_s_per_iter"], _ = seconds_per_iter(cfg, 1, args.voc_iters)
            print(
                f"VOC R50-C4 at 320px ({cfg.SOLVER.IMS_PER_BATCH} img/iter, "
                f"{cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE} RoIs/img, {cfg.MODEL.DEVICE}): "
                f"{out['voc_reduced_s_per_iter']:.3f} s/iter",
                flush=True,
            )
        if "ratio" in parts:
            cfg = build_cfg(TOY, args.opts, os.path.join(tmp, "ratio"))
            r = trainer_overhead(cfg, args.warmup, args.block, args.trials)
            out["ratio"] = r
            print(
                f"train_net step / bare SimpleTrainer step (toy, {args.trials} x {args.block} "
                f"iters each, alternating): {_ratio_text(r)}; "
                f"{r['trainer_s_per_iter']:.3f} vs {r['bare_s_per_iter']:.3f} s/iter",
                flush=True,
            )
        if "seg_ratio" in parts:
            cfg = build_cfg(TOY_SEG, args.opts, os.path.join(tmp, "seg_ratio"))
            r = trainer_overhead(cfg, args.warmup, args.block, args.trials, baseline="torch")
            out["seg_ratio"] = r
            print(
                f"train_net segmentation step / bare SemanticSegmentor loop (toy FCN-16s, "
                f"{cfg.SOLVER.IMS_PER_BATCH} img/iter, {args.trials} x {args.block} iters each, "
                f"alternating): {_ratio_text(r)}; {r['trainer_s_per_iter']:.3f} vs "
                f"{r['bare_s_per_iter']:.3f} s/iter",
                flush=True,
            )
        for name, (opts, what) in PRETRAIN.items():
            if name in parts:
                cfg = build_cfg(SIMCLR, opts + list(args.opts), os.path.join(tmp, name))
                s_per_iter, _ = seconds_per_iter(cfg, args.warmup, args.iters)
                out[f"{name}_images_per_s"] = cfg.SOLVER.IMS_PER_BATCH / s_per_iter
                print(
                    f"{what} ({cfg.SOLVER.IMS_PER_BATCH} img/iter, {cfg.MODEL.DEVICE}): "
                    f"{out[f'{name}_images_per_s']:.1f} images/s ({s_per_iter:.3f} s/iter)",
                    flush=True,
                )
        if "pretrain_ratio" in parts:
            cfg = build_cfg(
                SIMCLR, PRETRAIN["pretrain_r18"][0] + list(args.opts), os.path.join(tmp, "pratio")
            )
            r = trainer_overhead(cfg, args.warmup, args.block, args.trials, baseline="torch")
            out["pretrain_ratio"] = r
            print(
                f"pretrain_net step / bare PyTorch loop (SimCLR R18 32 px, {args.trials} x "
                f"{args.block} iters each, alternating): {_ratio_text(r)}; "
                f"{r['trainer_s_per_iter']:.3f} vs {r['bare_s_per_iter']:.3f} s/iter",
                flush=True,
            )
        if "lightly" in parts:
            missing = lightly_missing()
            if missing:
                print(f"pretrain_net vs lightly: skipped. {missing}", flush=True)
            else:
                r = lightly_compare(
                    SIMCLR,
                    list(args.opts),
                    args.lightly_warmup,
                    args.lightly_iters,
                    args.lightly_trials,
                    log=lambda m: print(m, flush=True),
                )
                out["lightly"] = r
                ratios = r["ratios"]
                print(
                    f"pretrain_net vs lightly {r['lightly_version']} SimCLR loop (R18 64 px, "
                    f"{args.lightly_trials} x 2 blocks of {args.lightly_iters} iters, ABBA order): "
                    f"{r['ours_images_per_s']:.1f} vs {r['lightly_images_per_s']:.1f} images/s, "
                    f"ratio ours/lightly median {r['ratio_median']:.3f} "
                    f"[min {min(ratios):.3f}, max {max(ratios):.3f}]",
                    flush=True,
                )
        cls_parts = [p for p in CLS_PARTS if p in parts]
        if cls_parts:
            out.update(
                cls_benchmark.run(
                    cls_parts,
                    args.cls_workdir or os.path.join(tmp, "cls"),
                    args.opts,
                    lbfgs_config=CLS_LBFGS,
                    sgd_config=CLS_SGD,
                    train_net=os.path.join(REPO, "tools", "train_net.py"),
                    trials=args.cls_trials,
                    sgd_epochs=args.cls_sgd_epochs,
                    cache_trials=args.cls_cache_trials,
                    cli=args.cls_cli,
                    log=lambda m: print(m, flush=True),
                )
            )
    if args.json:
        from contrastive_det.utils.atomic import atomic_write_json

        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

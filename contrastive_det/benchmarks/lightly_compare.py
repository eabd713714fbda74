"""
Our SimCLR pretraining against the library a user would pick instead: lightly's documented SimCLR
loop (torchvision ``ImageFolder`` + ``lightly.transforms.SimCLRTransform`` +
``SimCLRProjectionHead`` + ``NTXentLoss``), both built from one config (same images, crop size,
augmentation strengths, batch, loader workers, network depth and head, temperature, optimizer).

Each side runs in its own process, one block of iterations per process, and
:func:`compare` alternates the sides block after block (ABBA order), so that the idle side's loader
workers never compete with the timed side and slow drift of a shared machine hits both alike.

* Ours: the real engine, as ``tools/pretrain_net.py`` runs it (``setup`` -> :class:`Trainer` ->
  ``resume_or_load`` -> ``train()``), with every hook and writer; one extra hook, registered last,
  stamps the end of every iteration, so an iteration's time covers the wait for its batch, all
  hooks' ``before_step``/``after_step`` and the periodic writes.
* lightly: the loop of lightly's SimCLR example, timed per step from the top of the loop (the wait
  for the batch included) to the end of ``optimizer.zero_grad()``.

lightly is optional (``pip install -e .[bench]``): :func:`lightly_missing` says how to install it.

    python -m contrastive_det.benchmarks.lightly_compare --side ours --config-file CONFIG --iters 20
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version

from detectron2.data import DatasetCatalog
from detectron2.engine import HookBase

from ..engine import Trainer
from ..engine.defaults import build_run_config, setup

LIGHTLY_VERSION = "1.6.0"
INSTALL_HINT = (
    f"lightly is not installed: pip install --no-deps lightly=={LIGHTLY_VERSION} "
    f"lightning-utilities "
    "(keeps the pinned torch/torchvision; or pip install -e '.[bench]')"
)
# Checkpointing, evaluation and the final kNN evaluation are pushed out of the benchmark: their
# cost is set by the user's periods and datasets, and lightly's loop has neither.
OURS_OPTS = ["SOLVER.CHECKPOINT_PERIOD", "1000000", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()"]


def lightly_missing():
    """None when lightly (and what its SimCLR pieces import) is importable; else how to install
    it."""
    try:
        import lightly.loss  # noqa: F401
        import lightly.models.modules  # noqa: F401
        import lightly.transforms  # noqa: F401
    except ImportError as e:
        return f"{INSTALL_HINT} ({e})"
    return None


def _block_result(side, cfg, times):
    return {
        "side": side,
        "images_per_batch": int(cfg.SOLVER.IMS_PER_BATCH),
        "s_per_iter": list(times),
        "images_per_s": cfg.SOLVER.IMS_PER_BATCH * len(times) / sum(times),
    }


def time_ours(config_file, opts, warmup, iters, output_dir):
    """
    ``warmup + iters`` iterations of the real engine; returns the wall seconds of the last
    ``iters`` (each from the end of the previous iteration to the end of its last hook).
    """

    class EndStamps(HookBase):
        def __init__(self):
            self.stamps = []

        def after_step(self):
            self.stamps.append(time.perf_counter())

    warmup = max(1, warmup)  # the first timed iteration starts at the end of the last warm-up one
    opts = list(opts) + OURS_OPTS + ["SOLVER.MAX_ITER", str(warmup + iters)]
    args = argparse.Namespace(
        config_file=config_file,
        opts=opts,
        eval_only=False,
        resume=False,
        num_gpus=1,
        num_machines=1,
        machine_rank=0,
        fewer_gpus=False,
    )
    cfg = setup(args, seed=0, output_dir=output_dir)  # the seed tools/benchmark.py uses
    trainer = Trainer(cfg, config_file=config_file)
    trainer.resume_or_load(resume=False)
    stamps = EndStamps()
    trainer.register_hooks([stamps])  # after every other hook, the PeriodicWriter included
    trainer.train()
    times = [b - a for a, b in zip(stamps.stamps[warmup - 1 :], stamps.stamps[warmup:])]
    return cfg, times


def image_folder_root(cfg):
    """The class-per-folder root of the first training dataset (``root/<class>/<image>``)."""
    dicts = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])
    roots = {os.path.dirname(os.path.dirname(d["file_name"])) for d in dicts}
    if len(roots) != 1:
        raise ValueError(
            f"{cfg.DATASETS.TRAIN[0]} is not one class-per-folder tree (roots {sorted(roots)[:3]})"
        )
    return roots.pop()


def time_lightly(cfg, warmup, iters):
    """lightly's documented SimCLR loop on the same data and settings; per-step wall seconds."""
    import torch
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from torch import nn

    c, m, s = cfg.INPUT.TWO_VIEW, cfg.MODEL, cfg.SOLVER
    if tuple(c.CROP_SCALE)[1] != 1.0:
        raise ValueError(
            "lightly's SimCLRTransform crops up to the whole image: INPUT.TWO_VIEW.CROP_SCALE must "
            "end at 1.0"
        )
    torch.manual_seed(cfg.SEED)
    brightness, contrast, saturation, hue = c.JITTER
    transform = SimCLRTransform(
        input_size=c.CROP_SIZE,
        cj_prob=c.JITTER_PROB,
        cj_strength=1.0,
        cj_bright=brightness,
        cj_contrast=contrast,
        cj_sat=saturation,
        cj_hue=hue,
        min_scale=c.CROP_SCALE[0],
        random_gray_scale=c.GRAYSCALE_PROB,
        gaussian_blur=c.BLUR_PROB,
        sigmas=tuple(c.BLUR_SIGMA),
        hf_prob=c.FLIP_PROB,
    )
    dataset = torchvision.datasets.ImageFolder(image_folder_root(cfg), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=s.IMS_PER_BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )

    class SimCLR(nn.Module):
        def __init__(self, backbone, out_dim):
            super().__init__()
            self.backbone = backbone
            self.projection_head = SimCLRProjectionHead(
                out_dim, m.CONTRASTIVE.PROJ_HIDDEN_DIM, m.CONTRASTIVE.PROJ_DIM
            )

        def forward(self, x):
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

    resnet = getattr(torchvision.models, f"resnet{m.TV_RESNET.DEPTH}")()
    out_dim = resnet.fc.in_features
    device = m.DEVICE
    model = SimCLR(nn.Sequential(*list(resnet.children())[:-1]), out_dim).to(device)
    criterion = NTXentLoss(temperature=m.CONTRASTIVE.TEMPERATURE)
    if s.OPTIMIZER == "AdamW":
        optimizer = torch.optim.AdamW(model.parameters(), lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY)
    elif s.OPTIMIZER == "SGD":
        optimizer = torch.optim.SGD(
            model.parameters(), lr=s.BASE_LR, momentum=s.MOMENTUM, weight_decay=s.WEIGHT_DECAY
        )
    else:
        raise ValueError(
            f"the lightly comparison supports SOLVER.OPTIMIZER AdamW and SGD, got {s.OPTIMIZER}"
        )

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times, total_loss = [], 0.0
    while len(times) < warmup + iters:
        t0 = time.perf_counter()
        for batch in loader:  # one epoch, as in lightly's example
            x0, x1 = batch[0]
            x0, x1 = x0.to(device), x1.to(device)
            loss = criterion(model(x0), model(x1))
            total_loss += loss.detach()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            sync()
            t1 = time.perf_counter()
            times.append(t1 - t0)
            t0 = t1
            if len(times) == warmup + iters:
                break
    return times[warmup:]


def _cfg(config_file, opts, output_dir):
    args = argparse.Namespace(config_file=config_file, opts=list(opts) + OURS_OPTS)
    cfg, _ = build_run_config(args, seed=0, output_dir=output_dir)
    return cfg


def run_block(side, config_file, opts, warmup, iters):
    """One block of one side in a fresh process; returns :func:`_block_result`'s dict."""
    with tempfile.TemporaryDirectory(prefix=f"cdet_{side}_") as tmp:
        out = os.path.join(tmp, "block.json")
        cmd = [
            sys.executable,
            "-m",
            "contrastive_det.benchmarks.lightly_compare",
            "--side",
            side,
            "--config-file",
            config_file,
            "--warmup",
            str(warmup),
            "--iters",
            str(iters),
            "--json",
            out,
            "--output-dir",
            os.path.join(tmp, "out"),
        ] + list(opts)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{side} block failed "
                f"({' '.join(cmd)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        with open(out) as f:
            return json.load(f)


def compare(config_file, opts, warmup, iters, trials, log=None):
    """
    ``trials`` pairs of blocks (ours, lightly), in ABBA order, each block ``warmup`` untimed and
    ``iters`` timed iterations in a fresh process. Returns images/s per block, the medians, and
    the per-pair ratios ours/lightly (images/s; > 1: ours is faster).
    """
    ours, theirs, ratios = [], [], []
    for trial in range(trials):
        order = ("ours", "lightly") if trial % 2 == 0 else ("lightly", "ours")
        got = {}
        for side in order:
            got[side] = run_block(side, config_file, opts, warmup, iters)["images_per_s"]
            if log:
                log(f"  trial {trial + 1}/{trials} {side}: {got[side]:.1f} images/s")
        ours.append(got["ours"])
        theirs.append(got["lightly"])
        ratios.append(got["ours"] / got["lightly"])
    return {
        "lightly_version": version("lightly"),
        "ours_images_per_s": statistics.median(ours),
        "lightly_images_per_s": statistics.median(theirs),
        "ours_blocks": ours,
        "lightly_blocks": theirs,
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=("ours", "lightly"), required=True)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", help="write the block's figures here")
    parser.add_argument("--output-dir", help="OUTPUT_DIR of our run (default: a temporary folder)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)

    logging.getLogger("detectron2").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cdet_block_") as tmp:
        output_dir = args.output_dir or tmp
        if args.side == "ours":
            cfg, times = time_ours(args.config_file, args.opts, args.warmup, args.iters, output_dir)
        else:
            missing = lightly_missing()
            if missing:
                print(missing, file=sys.stderr)
                return 2
            cfg = _cfg(args.config_file, args.opts, output_dir)
            times = time_lightly(cfg, args.warmup, args.iters)
    result = _block_result(args.side, cfg, times)
    print(json.dumps({k: v for k, v in result.items() if k != "s_per_iter"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

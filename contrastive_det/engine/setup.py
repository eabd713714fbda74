"""Turn command-line arguments into a frozen config adapted to the machine it runs on."""
import logging
import os

import torch

from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import get_cfg
from ..data import register_datasets_from_config

logger = logging.getLogger(__name__)

SYNC_NORMS = ("SyncBN", "naiveSyncBN", "naiveSyncBN_N", "nnSyncBN")


def _norm_keys(node, prefix=""):
    """Yield (full key, parent node, key) for every ``NORM`` entry in the config tree."""
    for key, value in node.items():
        if hasattr(value, "items"):
            yield from _norm_keys(value, f"{prefix}{key}.")
        elif key == "NORM":
            yield f"{prefix}{key}", node, key


def adapt_norms(cfg, world_size, device):
    """
    Cross-GPU BatchNorm needs a process group: in one process, every SyncBN flavour becomes
    plain BN (identical statistics with one process); on CPU with several processes, the
    CUDA-only ``SyncBN``/``nnSyncBN`` become ``naiveSyncBN`` (all-reduce over gloo).
    Returns a message describing the change, or None.
    """
    if world_size == 1:
        rule = {n: "BN" for n in SYNC_NORMS}
    elif device == "cpu":
        rule = {"SyncBN": "naiveSyncBN", "nnSyncBN": "naiveSyncBN"}
    else:
        return None
    changed = []
    for full_key, node, key in _norm_keys(cfg):
        if node[key] in rule:
            changed.append(f"{full_key} {node[key]} -> {rule[node[key]]}")
            node[key] = rule[node[key]]
    if not changed:
        return None
    why = "Single process" if world_size == 1 else f"{world_size} CPU processes"
    return f"{why}: synchronized BN replaced ({'; '.join(changed)})"


def apply_fewer_gpus_rule(cfg, factor=2):
    """
    MoCo's rule for fewer GPUs: ``factor`` times fewer images per batch and a ``factor`` times
    smaller LR, with every iteration count (MAX_ITER, STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD,
    EVAL_PERIOD) ``factor`` times larger, so the run sees the same number of epochs.
    """
    s = cfg.SOLVER
    if s.IMS_PER_BATCH % factor:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={s.IMS_PER_BATCH} is not divisible by {factor}")
    s.IMS_PER_BATCH //= factor
    s.BASE_LR /= factor
    s.MAX_ITER *= factor
    s.STEPS = tuple(step * factor for step in s.STEPS)
    s.WARMUP_ITERS *= factor
    s.CHECKPOINT_PERIOD *= factor
    cfg.TEST.EVAL_PERIOD *= factor
    return (
        f"Fewer-GPU rule: IMS_PER_BATCH {s.IMS_PER_BATCH}, BASE_LR {s.BASE_LR:g}, "
        f"MAX_ITER {s.MAX_ITER}, STEPS {tuple(s.STEPS)}, WARMUP_ITERS {s.WARMUP_ITERS}"
    )


def load_config(args):
    """Default config + contrastive-det keys + the config file + trailing KEY VALUE overrides."""
    cfg = get_cfg()
    if args.config_file:
        if not os.path.isfile(args.config_file):
            raise FileNotFoundError(f"Config file {args.config_file} does not exist")
        try:
            cfg.merge_from_file(args.config_file)
        except KeyError as e:  # yacs: "Non-existent config key: A.B"
            raise KeyError(f"{args.config_file}: {e.args[0]}") from None
    if len(args.opts) % 2:
        raise ValueError(f"Command-line overrides must be KEY VALUE pairs, got an odd list: {args.opts}")
    try:
        cfg.merge_from_list(args.opts)
    except (KeyError, AssertionError) as e:  # yacs: AssertionError("Non-existent key: A.B")
        raise KeyError(f"command-line override: {e.args[0]}") from None
    return cfg


def build_run_config(args, seed=None, output_dir=None):
    """
    The frozen config of one run: :func:`load_config`, then the seed and output folder of this run,
    the machine's device and BN flavour, the fewer-GPU rule (``--fewer-gpus``) and the datasets
    declared in DATASETS.CUSTOM. Returns (cfg, messages describing each adaptation).
    """
    cfg = load_config(args)
    if cfg.SOLVER.MAX_ITER < 1 and not getattr(args, "eval_only", False):
        raise ValueError(f"SOLVER.MAX_ITER must be >= 1 for training, got {cfg.SOLVER.MAX_ITER}")
    if seed is not None:
        cfg.SEED = seed
    if output_dir is not None:
        cfg.OUTPUT_DIR = output_dir
    messages = []
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        messages.append("CUDA is not available: running on CPU (MODEL.DEVICE cpu)")
    messages.append(adapt_norms(cfg, comm.get_world_size(), cfg.MODEL.DEVICE))
    if getattr(args, "fewer_gpus", False):
        messages.append(apply_fewer_gpus_rule(cfg))
    registered = register_datasets_from_config(cfg)
    if registered:
        messages.append(f"Registered from DATASETS.CUSTOM: {', '.join(registered)}")
    cfg.freeze()
    return cfg, [m for m in messages if m]


def setup(args, seed=None, output_dir=None):
    """
    :func:`build_run_config`, then detectron2's ``default_setup`` (logging, OUTPUT_DIR/config.yaml,
    seeding); every adaptation is logged once.
    """
    cfg, messages = build_run_config(args, seed, output_dir)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="contrastive_det", abbrev_name="cdet")
    for message in messages:
        logger.info(message)
    return cfg

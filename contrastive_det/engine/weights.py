"""MODEL.WEIGHTS in any supported checkpoint layout: converted (and verified) once, before a run."""
import os

from ..convert import ConversionError, convert_checkpoint, load_checkpoint_file, read_checkpoint

CONVERTED_FILE = "converted_weights.pkl"
# What torchvision-layout weights need from a detection config (see configs/detection/*_torchvision.yaml).
TORCHVISION_INPUT = {"INPUT.FORMAT": "RGB", "MODEL.RESNETS.STRIDE_IN_1X1": False}


def needs_conversion(path):
    """
    True when ``path`` is a local checkpoint whose backbone is not in detectron2's layout (torchvision,
    this suite's export, MoCo, SupContrast, VISSL, ...). detectron2 ``.pkl`` files and detectron2
    training checkpoints are loaded as they are; files no reader recognises are left to detectron2.
    """
    if not path or not os.path.isfile(path) or path.endswith(".pkl"):
        return False
    try:
        return read_checkpoint(load_checkpoint_file(path)).format != "detectron2"
    except ConversionError:
        return False


def convert_weights_for_detection(cfg, output_dir, log=print):
    """
    Convert ``cfg.MODEL.WEIGHTS`` into ``output_dir/converted_weights.pkl`` when it needs it, with the
    converter's coverage report and numeric verification in the log. Returns the overrides to apply
    (``MODEL.WEIGHTS``, ``RESULTS.WEIGHTS_SOURCE`` and, when the checkpoint names it, ``RESULTS.METHOD``),
    or [] when nothing was converted. A checkpoint that is recognised but does not convert cleanly raises.
    """
    source = cfg.MODEL.WEIGHTS
    if not needs_conversion(source):
        return []
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, CONVERTED_FILE)
    log(f"MODEL.WEIGHTS {source} is not in detectron2's layout: converting it to {target}")
    result = convert_checkpoint(source, target, log=lambda line: log(f"  {line}"))
    mismatched = {k: v for k, v in TORCHVISION_INPUT.items() if _get(cfg, k) != v}
    if mismatched:
        log(
            "WARNING: these weights are in torchvision layout but the config has "
            + ", ".join(f"{k}={_get(cfg, k)!r}" for k in mismatched)
            + "; use a *_torchvision.yaml config or set "
            + " ".join(f"{k} {v}" for k, v in mismatched.items())
        )
    overrides = ["MODEL.WEIGHTS", target, "RESULTS.WEIGHTS_SOURCE", os.path.abspath(source)]
    method = result.meta.get("method")
    if not cfg.RESULTS.METHOD and method and method != "unspecified":
        overrides += ["RESULTS.METHOD", method]
    return overrides


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node

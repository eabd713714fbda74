"""
One conversion, end to end: read -> coverage -> (verify) -> write, never leaving a partial or
unverified output behind.
"""
import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import torch

from .canonical import (
    CANONICAL_FORMAT,
    TORCHVISION_PIXEL_MEAN,
    TORCHVISION_PIXEL_STD,
    load_canonical,
)
from .checkpoint_io import load_checkpoint_file
from .d2config import (
    check_base,
    config_overrides,
    detectron2_config,
    render_config_yaml,
    validate_config_text,
)
from .errors import ConversionError
from .readers import read_checkpoint
from .resnet_keys import describe_depth, torchvision_to_detectron2
from .verify import DEFAULT_TOLERANCE, CoverageReport, VerificationResult, check_coverage, verify_conversion
from .writers import check_output_path, dumps_detectron2, dumps_torchvision, write_bytes_atomic

_META_KEYS = ("arch", "depth", "method", "pixel_mean", "pixel_std", "input_format")


@dataclass
class ConversionResult:
    input_path: str
    output_path: str
    to: str  # "detectron2" | "torchvision"
    format: str  # reader that found the backbone
    source: str  # where in the file
    depth: int
    meta: dict  # method, pixel_mean, pixel_std, input_format (+ canonical extras)
    coverage: CoverageReport
    verification: Optional[VerificationResult]
    bytes_written: int
    config: "OrderedDict" = field(default_factory=OrderedDict)  # dotted key -> value (detectron2 output)
    config_path: Optional[str] = None

    @property
    def state_dict_size(self):
        return len(self.coverage.matched)


def _source_meta(ext):
    meta = {
        "method": "unspecified",
        "pixel_mean": list(TORCHVISION_PIXEL_MEAN),
        "pixel_std": list(TORCHVISION_PIXEL_STD),
        "input_format": "RGB",
    }
    for k, v in ext.meta.items():
        if v is not None:
            meta[k] = v
    return meta


def _normalise(tensor):
    t = tensor.detach().to("cpu")
    return t.float() if t.dtype == torch.bfloat16 else t.contiguous()


def convert_checkpoint(input_path, output_path, *, to="detectron2", fmt=None, prefix=None, depth=None,
                       verify=True, tolerance=DEFAULT_TOLERANCE, trust=False, method=None,
                       write_config=None, base=None, verbose=False, log=None):
    """
    Convert ``input_path`` (any supported format) to ``output_path``.

    Args:
        to: ``"detectron2"`` (a ``.pkl`` for ``MODEL.WEIGHTS``) or ``"torchvision"`` (canonical).
        fmt: format name (auto-detected when None); prefix: ``"CONTAINER:PREFIX"`` override.
        depth: expected ResNet depth (checked; inferred from the keys when None).
        verify: numeric verification before anything is written (raises VerificationError).
        trust: allow files that need arbitrary unpickling (``weights_only=False``).
        method: the pretraining method recorded in canonical outputs (default: from the source).
        write_config, base: write a detectron2 YAML inheriting ``base`` (detectron2 output only);
            ``base`` is a path or a callable ``depth -> path``.
        log: callable taking one string (e.g. ``print``) for the report; silent when None.
    Returns a :class:`ConversionResult`. Raises :class:`ConversionError` (incl. unsafe files,
    failed coverage or verification); the output is then not created (nor replaced).
    """
    say = log or (lambda s: None)
    input_path, output_path = os.fspath(input_path), os.fspath(output_path)
    check_output_path(output_path, to)
    if write_config is not None:
        if to != "detectron2":
            raise ConversionError("--write-config goes with detectron2 output (--to detectron2)")
        if base is None:
            raise ConversionError("--write-config needs --base (the detection protocol to inherit)")
    if os.path.abspath(input_path) == os.path.abspath(output_path):
        raise ConversionError(f"{output_path}: output would overwrite the input")

    ckpt = load_checkpoint_file(input_path, trust=trust)
    ext = read_checkpoint(ckpt, fmt=fmt, prefix=prefix, where=input_path)
    del ckpt
    say(f"{input_path} -> {output_path} ({to})")
    say(f"source: format {ext.format}, backbone at {ext.source}")
    if ext.ignored:
        say(f"  other top-level entries (not weights, ignored): {', '.join(ext.ignored[:12])}"
            + (" ..." if len(ext.ignored) > 12 else ""))

    coverage, tv_state = check_coverage(ext, depth=depth)
    d = coverage.depth
    say(f"architecture: {describe_depth(d)}")
    say(coverage.format(verbose=verbose))
    if not coverage.ok:
        raise ConversionError(f"{input_path}: the backbone does not match detectron2's ResNet-{d}:\n  "
                              + coverage.problems())

    tv_state = OrderedDict((k, _normalise(v)) for k, v in tv_state.items())
    meta = _source_meta(ext)
    if method is not None:
        meta["method"] = method
    d2_state = torchvision_to_detectron2(tv_state)

    cfg, config_text = OrderedDict(), None
    if to == "detectron2":
        cfg = detectron2_config(d, meta, weights=output_path)
        if write_config is not None:
            if callable(base):
                base = base(d)
            check_base(base, d)
            cfg_file = detectron2_config(d, meta, weights=os.path.abspath(output_path))
            config_text = render_config_yaml(
                cfg_file, base,
                header=(
                    f"Written by tools/convert_to_detectron2.py for {os.path.basename(output_path)} "
                    f"({describe_depth(d)}, source format {ext.format}, method {meta['method']}).",
                    f"Train: tools/train_net.py --config-file {write_config} [KEY VALUE ...]",
                ),
            )
            validate_config_text(config_text, write_config, cfg_file)

    if to == "detectron2":
        payload = dumps_detectron2(d2_state)
        suffix = ".pkl"
    else:
        extra = {k: v for k, v in meta.items() if k not in _META_KEYS}
        extra.setdefault("source_format", ext.format)
        payload = dumps_torchvision(
            tv_state, arch=f"resnet{d}", method=meta["method"], pixel_mean=meta["pixel_mean"],
            pixel_std=meta["pixel_std"], input_format=meta["input_format"], extra=extra,
        )
        suffix = ".pth"

    verification = None
    if verify:
        tmpdir = tempfile.mkdtemp(prefix="contrastive_det_convert_")
        try:
            tmp = os.path.join(tmpdir, "converted" + suffix)
            with open(tmp, "wb") as f:
                f.write(payload)
            if to == "detectron2":
                verification = verify_conversion(d, tv_state, detectron2_file=tmp, tolerance=tolerance)
            else:
                tv_loaded, _ = load_canonical(tmp)
                verification = verify_conversion(d, tv_loaded, detectron2_state=d2_state, tolerance=tolerance,
                                                 torchvision_label="the output (load_canonical)")
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        say(verification.format())
    else:
        say("verify: skipped (--no-verify)")

    written = write_bytes_atomic(output_path, payload)
    config_path = None
    if config_text is not None:
        write_bytes_atomic(write_config, config_text.encode())
        config_path = write_config
    say(f"wrote {output_path}: {len(d2_state)} tensors, {written / 2**20:.1f} MiB"
        + (f" ({CANONICAL_FORMAT}, method {meta['method']})" if to == "torchvision" else ""))
    if to == "detectron2":
        say("detectron2 config for these weights (torchvision layout):")
        for k, v in cfg.items():
            say(f"  {k}: {v}")
        say("  as overrides: " + config_overrides(cfg))
        if config_path:
            say(f"wrote {config_path} (_BASE_: {base}); train with: "
                f"tools/train_net.py --config-file {config_path}")
    return ConversionResult(
        input_path=input_path, output_path=output_path, to=to, format=ext.format, source=ext.source,
        depth=d, meta=meta, coverage=coverage, verification=verification, bytes_written=written,
        config=cfg, config_path=config_path,
    )

"""
One conversion, end to end, as named steps::

    check_request -> load -> read (extract) -> canonicalise -> plan_config
        -> serialise -> verify -> commit

never leaving a partial or unverified output behind: nothing is written before ``commit``.
A new layout plugs in as a reader (:mod:`~contrastive_det.convert.readers`) or a writer
(:mod:`~contrastive_det.convert.writers`); the steps do not change.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import torch

from detectron2.config import CfgNode

from .canonical import (
    TORCHVISION_PIXEL_MEAN,
    TORCHVISION_PIXEL_STD,
    UNSPECIFIED_METHOD,
    named_method,
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
from .resnet_keys import describe_depth
from .verify import DEFAULT_TOLERANCE, CoverageReport, VerificationResult, check_coverage
from .writers import (
    WRITERS,
    ConvertedBackbone,
    Writer,
    check_output_path,
    check_writable_file,
    get_writer,
    write_bytes_atomic,
)

if TYPE_CHECKING:
    from .extraction import Extraction


@dataclass
class ConversionResult:
    input_path: str
    output_path: str
    to: str  # the writer's name: "detectron2" | "torchvision" | ...
    format: str  # reader that found the backbone
    source: str  # where in the file
    depth: int
    meta: dict  # method, pixel_mean, pixel_std, input_format (+ canonical extras)
    coverage: CoverageReport
    verification: Optional[VerificationResult]
    bytes_written: int
    # dotted key -> value (detectron2 output)
    config: "OrderedDict" = field(default_factory=OrderedDict)
    config_path: Optional[str] = None


def check_request(
    input_path: str,
    output_path: str,
    to: str,
    write_config: str | None,
    base: str | Callable[[int], str] | None,
) -> Writer:
    """
    Refuse a conversion that cannot succeed, before reading anything.

    Returns:
        Writer: the output layout ``to``.

    Raises:
        ConversionError: bad output name for the layout, an output or config path that cannot
            be written, ``--write-config`` without a detectron2 output or without ``base``, or
            equal to the input or the output, output == input.
    """
    writer = get_writer(to)
    check_output_path(output_path, to)
    if write_config is not None:
        if not writer.for_detectron2:
            kinds = [w.name for w in WRITERS.values() if w.for_detectron2]
            raise ConversionError(
                f"--write-config goes with detectron2 output (--to {' or '.join(kinds)})"
            )
        if base is None:
            raise ConversionError("--write-config needs --base (the detection protocol to inherit)")
        check_writable_file(write_config, "--write-config file")
        for other, what in ((input_path, "the input"), (output_path, "the output weights")):
            if os.path.abspath(write_config) == os.path.abspath(other):
                raise ConversionError(f"--write-config {write_config} would overwrite {what}")
    if os.path.abspath(input_path) == os.path.abspath(output_path):
        raise ConversionError(f"{output_path}: output would overwrite the input")
    return writer


def read(
    input_path: str, *, fmt: str | None = None, prefix: str | None = None, trust: bool = False
) -> Extraction:
    """Load ``input_path`` safely and extract its backbone: an :class:`Extraction` (see readers)."""
    ckpt = load_checkpoint_file(input_path, trust=trust)
    return read_checkpoint(ckpt, fmt=fmt, prefix=prefix, where=input_path)


def method_override(cfg: CfgNode, method: object) -> list[str]:
    """``["RESULTS.METHOD", method]`` when the weights name their pretraining method
    (:func:`~.canonical.named_method`) and ``cfg.RESULTS.METHOD`` names none; else ``[]``."""
    named = named_method(method)
    return ["RESULTS.METHOD", named] if named and not cfg.RESULTS.METHOD else []


def _source_meta(ext, method):
    meta = {
        "method": UNSPECIFIED_METHOD,
        "pixel_mean": list(TORCHVISION_PIXEL_MEAN),
        "pixel_std": list(TORCHVISION_PIXEL_STD),
        "input_format": "RGB",
    }
    meta.update((k, v) for k, v in ext.meta.items() if v is not None)
    if method is not None:
        meta["method"] = method
    return meta


def _normalise(tensor):
    t = tensor.detach().to("cpu")
    return t.float() if t.dtype == torch.bfloat16 else t.contiguous()


def canonicalise(
    ext: Extraction,
    *,
    depth: int | None = None,
    method: str | None = None,
    verbose: bool = False,
    where: str = "checkpoint",
    say: Callable[[str], Any] = print,
) -> tuple[ConvertedBackbone, CoverageReport]:
    """
    Check the extraction's coverage of a standard ResNet and normalise its tensors.

    Returns:
        (ConvertedBackbone, CoverageReport)

    Raises:
        ConversionError: missing, mis-shaped or unexpected backbone tensors, a depth mismatch, or
            tensors holding NaN or inf (named).
    """
    coverage, tv_state = check_coverage(ext, depth=depth)
    say(f"architecture: {describe_depth(coverage.depth)}")
    say(coverage.format(verbose=verbose))
    if not coverage.ok:
        raise ConversionError(
            f"{where}: the backbone does not match detectron2's ResNet-{coverage.depth}:\n  "
            + coverage.problems()
        )
    broken = [
        f"{ext.original_names.get(k, k)} ({int((~torch.isfinite(v)).sum())} of {v.numel()})"
        for k, v in tv_state.items()
        if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if broken:
        raise ConversionError(
            f"{where}: {len(broken)} backbone tensor(s) hold NaN or inf values: "
            + ", ".join(broken[:8])
            + (" ..." if len(broken) > 8 else "")
            + " (a diverged or damaged run?)"
        )
    backbone = ConvertedBackbone(
        depth=coverage.depth,
        state_dict=OrderedDict((k, _normalise(v)) for k, v in tv_state.items()),
        meta=_source_meta(ext, method),
        source_format=ext.format,
    )
    return backbone, coverage


def plan_config(
    writer: Writer,
    backbone: ConvertedBackbone,
    output_path: str,
    write_config: str | None,
    base: str | Callable[[int], str] | None,
) -> tuple[OrderedDict[str, Any], str | None, str | Callable[[int], str] | None]:
    """
    The detectron2 config the output needs, and the text of ``write_config`` (validated).

    Returns:
        (OrderedDict dotted key -> value, str or None, str or None): the keys (empty when the
        writer's output is not for detectron2), the YAML text and the resolved base path.
    """
    if not writer.for_detectron2:
        return OrderedDict(), None, base
    d, meta = backbone.depth, backbone.meta
    cfg = detectron2_config(d, meta, weights=output_path)
    if write_config is None:
        if isinstance(base, str):  # --base alone: check that the protocol can hold this backbone
            check_base(base, d)
        return cfg, None, base
    if callable(base):
        base = base(d)
    check_base(base, d)
    cfg_file = detectron2_config(d, meta, weights=os.path.abspath(output_path))
    text = render_config_yaml(
        cfg_file,
        base,
        header=(
            f"Written by tools/convert_to_detectron2.py for {os.path.basename(output_path)} "
            f"({describe_depth(d)}, source format {backbone.source_format}, method "
            f"{meta['method']}).",
            f"Train: tools/train_net.py --config-file {write_config} [KEY VALUE ...]",
        ),
    )
    validate_config_text(text, write_config, cfg_file)
    return cfg, text, base


def verify_payload(
    writer: Writer, backbone: ConvertedBackbone, payload: bytes, tolerance: float
) -> VerificationResult:
    """Write ``payload`` to a temporary file and run the writer's check on it; see
    :class:`Writer`."""
    tmpdir = tempfile.mkdtemp(prefix="contrastive_det_convert_")
    try:
        tmp = os.path.join(tmpdir, "converted" + writer.suffix)
        with open(tmp, "wb") as f:
            f.write(payload)
        return writer.verify(backbone, tmp, tolerance)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def commit(
    writer: Writer,
    backbone: ConvertedBackbone,
    payload: bytes,
    output_path: str,
    cfg: Mapping[str, Any],
    config_text: str | None,
    write_config: str | None,
    base: str | Callable[[int], str] | None,
    say: Callable[[str], Any] = print,
) -> tuple[int, str | None]:
    """Write the output (and the config) atomically and report. Returns ``(bytes, config path)``.
    The config is written first and removed again if the weights cannot be written (disk full,
    permissions), so a config never names weights that are not there; either failure is a
    :class:`ConversionError` naming the path."""
    config_path = None
    if config_text is not None:
        try:
            write_bytes_atomic(write_config, config_text.encode())
        except OSError as e:
            raise ConversionError(f"{write_config}: cannot write the config: {e}") from e
        config_path = write_config
    try:
        written = write_bytes_atomic(output_path, payload)
    except OSError as e:
        if config_path is not None:
            os.remove(config_path)
        raise ConversionError(f"{output_path}: cannot write the output: {e}") from e
    say(
        f"wrote {output_path}: {len(backbone.state_dict)} tensors, {written / 2**20:.1f} MiB"
        + writer.describe(backbone)
    )
    if writer.for_detectron2:
        say("detectron2 config for these weights (torchvision layout):")
        for k, v in cfg.items():
            say(f"  {k}: {v}")
        say("  as overrides: " + config_overrides(cfg))
        if config_path:
            say(
                f"wrote {config_path} (_BASE_: {base}); train with: "
                f"tools/train_net.py --config-file {config_path}"
            )
    return written, config_path


def convert_checkpoint(
    input_path: str,
    output_path: str,
    *,
    to: str = "detectron2",
    fmt: str | None = None,
    prefix: str | None = None,
    depth: int | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    trust: bool = False,
    method: str | None = None,
    write_config: str | None = None,
    base: str | Callable[[int], str] | None = None,
    verbose: bool = False,
    log: Callable[[str], Any] | None = None,
) -> ConversionResult:
    """
    Convert ``input_path`` (any supported layout) to ``output_path``.

    Args:
        to (str): the output layout, a name of ``WRITERS``: ``"detectron2"`` (a ``.pkl`` for
            ``MODEL.WEIGHTS``) or ``"torchvision"`` (canonical).
        fmt (str or None): input format name (auto-detected when None).
        prefix (str or None): ``"CONTAINER:PREFIX"`` or ``"PREFIX"`` of the backbone's keys.
        depth (int or None): expected ResNet depth (checked; inferred from the keys when None).
        verify (bool): numeric verification before anything is written.
        tolerance (float): largest absolute difference of the outputs that verification accepts.
        trust (bool): allow files that need arbitrary unpickling (``weights_only=False``).
        method (str or None): the pretraining method recorded in canonical outputs (default: from
            the source).
        write_config, base: write a detectron2 YAML inheriting ``base`` (detectron2 output only);
            ``base`` is a path or a callable ``depth -> path``.
        verbose (bool): list every dropped key.
        log (callable or None): takes one string (e.g. ``print``) for the report; silent when None.

    Returns:
        ConversionResult

    Raises:
        ConversionError: unsafe or unreadable files, unknown layouts, failed coverage;
            VerificationError (a ConversionError) when the output does not reproduce the source.
            The output is then not created (nor replaced).
    """
    say = log or (lambda s: None)
    input_path, output_path = os.fspath(input_path), os.fspath(output_path)
    writer = check_request(input_path, output_path, to, write_config, base)

    ext = read(input_path, fmt=fmt, prefix=prefix, trust=trust)
    say(f"{input_path} -> {output_path} ({to})")
    say(f"source: format {ext.format}, backbone at {ext.source}")
    if ext.ignored:
        say(
            f"  other top-level entries (not weights, ignored): {', '.join(ext.ignored[:12])}"
            + (" ..." if len(ext.ignored) > 12 else "")
        )

    backbone, coverage = canonicalise(
        ext, depth=depth, method=method, verbose=verbose, where=input_path, say=say
    )
    cfg, config_text, base = plan_config(writer, backbone, output_path, write_config, base)
    payload = writer.dumps(backbone)

    verification = None
    if verify:
        verification = verify_payload(writer, backbone, payload, tolerance)
        say(verification.format())
    else:
        say("verify: skipped (--no-verify)")

    written, config_path = commit(
        writer, backbone, payload, output_path, cfg, config_text, write_config, base, say
    )
    return ConversionResult(
        input_path=input_path,
        output_path=output_path,
        to=to,
        format=backbone.source_format,
        source=ext.source,
        depth=backbone.depth,
        meta=backbone.meta,
        coverage=coverage,
        verification=verification,
        bytes_written=written,
        config=cfg,
        config_path=config_path,
    )

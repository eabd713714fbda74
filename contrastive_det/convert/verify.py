"""
Proof that a conversion is right: a coverage report (every backbone tensor of the target
detectron2 ResNet found with the right shape) and a numeric check (torchvision's ResNet with the
source weights and detectron2's ResNet with the converted weights give the same res2..res5).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

import torch

from .errors import VerificationError
from .extraction import Extraction
from .resnet_keys import (
    build_detectron2_resnet,
    build_torchvision_resnet,
    d2_to_tv_key,
    describe_depth,
    detectron2_backbone_shapes,
    infer_depth,
    is_bn_counter,
    is_classifier_key,
    tv_to_d2_key,
)

STAGES = ("res2", "res3", "res4", "res5")
DEFAULT_TOLERANCE = 1e-4


# ----------------------------------------------------------------------------------------------
# coverage


@dataclass
class CoverageReport:
    """Which backbone tensors of the target detectron2 ResNet a checkpoint provides."""

    depth: int
    expected: int  # number of detectron2 backbone tensors (parameters + BN statistics)
    matched: List[Tuple[str, str, tuple]] = field(default_factory=list)  # (file key, d2 key, shape)
    missing: List[str] = field(default_factory=list)  # "d2 key (torchvision key)"
    mis_shaped: List[str] = field(default_factory=list)  # "file key -> d2 key: got S, expected T"
    # backbone-scope file keys with no ResNet name
    unexpected: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)  # file key -> group label

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mis_shaped or self.unexpected)

    def problems(self) -> str:
        out = []
        if self.missing:
            out.append(
                f"{len(self.missing)} missing backbone tensors:\n    " + "\n    ".join(self.missing)
            )
        if self.mis_shaped:
            out.append(
                f"{len(self.mis_shaped)} mis-shaped backbone tensors:\n    "
                + "\n    ".join(self.mis_shaped)
            )
        if self.unexpected:
            out.append(
                f"{len(self.unexpected)} backbone keys that are not standard ResNet weights "
                "(a modified architecture?):\n    " + "\n    ".join(self.unexpected)
            )
        return "\n  ".join(out)

    def format(self, verbose: bool = False) -> str:
        per_stage = OrderedDict((s, 0) for s in ("stem",) + STAGES)
        for _, d2_key, _ in self.matched:
            per_stage[d2_key.split(".", 1)[0]] += 1
        lines = [
            f"coverage: {len(self.matched)}/{self.expected} detectron2 backbone tensors matched "
            f"with the right shape ({', '.join(f'{k} {v}' for k, v in per_stage.items())}); "
            f"{len(self.missing)} missing, {len(self.mis_shaped)} mis-shaped, "
            f"{len(self.unexpected)} unexpected"
        ]
        if not self.ok:
            lines.append("  " + self.problems())
        groups = OrderedDict()
        for key, label in self.dropped.items():
            groups.setdefault(label, []).append(key)
        lines.append(
            f"dropped: {len(self.dropped)} tensors that are not backbone weights"
            + (":" if groups else "")
        )
        width = max((len(label) for label in groups), default=0)
        for label, keys in groups.items():
            if verbose or len(keys) == 1:
                shown = (
                    ", ".join(keys) if len(keys) <= 8 or verbose else ", ".join(keys[:3]) + ", ..."
                )
            else:
                shown = ", ".join(keys[:2]) + (", ..." if len(keys) > 2 else "")
            lines.append(f"  {label:<{width}} {len(keys):>5}  {shown}")
        return "\n".join(lines)


def check_coverage(extraction: Extraction, depth: int | None = None) -> tuple[CoverageReport, dict]:
    """
    Match an :class:`~contrastive_det.convert.readers.Extraction` against detectron2's ResNet of
    the inferred depth (checked against ``depth`` when given).

    Returns ``(report, state_dict)``: the torchvision-named backbone tensors in canonical order
    (complete only when ``report.ok``). ``fc.*`` and BN counters are added to ``report.dropped``.
    """
    state = extraction.state_dict
    names = extraction.original_names
    dropped = dict(extraction.dropped)
    candidates = OrderedDict()
    unexpected = []
    for tv_key, value in state.items():
        original = names.get(tv_key, tv_key)
        if is_bn_counter(tv_key):
            dropped[original] = "*.num_batches_tracked (BN counters)"
        elif is_classifier_key(tv_key):
            head = (
                original[: len(original) - len(tv_key)] + "fc"
                if original.endswith(tv_key)
                else original.rsplit(".", 1)[0]
            )
            dropped[original] = f"{head}.* (classifier / projection)"
        elif tv_to_d2_key(tv_key) is None:
            unexpected.append(original if original == tv_key else f"{original} (read as {tv_key})")
        else:
            candidates[tv_key] = value
    depth = infer_depth(candidates.keys(), expected=depth)
    expected = detectron2_backbone_shapes(depth)
    report = CoverageReport(
        depth=depth, expected=len(expected), unexpected=unexpected, dropped=dropped
    )
    by_d2 = {tv_to_d2_key(k): k for k in candidates}
    out = OrderedDict()
    for d2_key, shape in expected.items():
        tv_key = by_d2.pop(d2_key, None)
        if tv_key is None:
            report.missing.append(f"{d2_key} (torchvision {d2_to_tv_key(d2_key)})")
            continue
        value = candidates[tv_key]
        original = names.get(tv_key, tv_key)
        if tuple(value.shape) != tuple(shape):
            report.mis_shaped.append(
                f"{original} -> {d2_key}: shape {tuple(value.shape)}, expected {tuple(shape)}"
            )
            continue
        if not value.is_floating_point():
            report.mis_shaped.append(
                f"{original} -> {d2_key}: dtype {value.dtype} is not floating point"
            )
            continue
        report.matched.append((original, d2_key, tuple(shape)))
        out[tv_key] = value
    for tv_key in by_d2.values():  # e.g. layer1.5.* in a ResNet with 3 blocks in layer1
        report.unexpected.append(names.get(tv_key, tv_key))
    return report, out


# ----------------------------------------------------------------------------------------------
# numeric verification


@dataclass
class VerificationResult:
    depth: int
    input_shape: tuple
    seed: int
    tolerance: float
    max_abs_diff: Dict[str, float]
    max_abs_output: Dict[str, float]
    loader: str  # how detectron2's weights were loaded

    @property
    def max_diff(self) -> float:
        values = list(self.max_abs_diff.values())
        return math.nan if any(math.isnan(v) for v in values) else max(values)

    @property
    def passed(self) -> bool:
        return all(math.isfinite(v) and v <= self.tolerance for v in self.max_abs_diff.values())

    def format(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_diff.items())
        mags = ", ".join(f"{k} {v:.3g}" for k, v in self.max_abs_output.items())
        shape = "x".join(map(str, self.input_shape))
        status = "OK" if self.passed else "FAILED"
        return (
            f"verify: {self.loader}\n"
            f"  torchvision layer1..4 vs detectron2 res2..res5 on a random {shape} input (seed "
            f"{self.seed}), eval mode:\n"
            f"  max |diff| = {self.max_diff:.3e} ({diffs}); max |output| ({mags}); "
            f"tolerance {self.tolerance:g}: {status}"
        )


def _recording_checkpointer(model):
    """detectron2's DetectionCheckpointer that keeps the incompatible keys instead of logging
    them."""
    from detectron2.checkpoint import DetectionCheckpointer

    class RecordingCheckpointer(DetectionCheckpointer):
        incompatible = None

        def _log_incompatible_keys(self, incompatible):
            self.incompatible = incompatible

    return RecordingCheckpointer(model, save_dir="", save_to_disk=False)


@contextlib.contextmanager
def _quiet(*names):
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def load_detectron2_file(
    model: torch.nn.Module, path: str | os.PathLike[str]
) -> tuple[list[str], list[str], list[str]]:
    """
    Load a detectron2 weights file into ``model`` with detectron2's own ``DetectionCheckpointer``
    (name-matching heuristics for ``.pkl``). Returns ``(missing, unexpected, mis_shaped)`` as
    reported by the loader, BN counters excluded.
    """
    checkpointer = _recording_checkpointer(model)
    with _quiet(
        "fvcore.common.checkpoint",
        "detectron2.checkpoint.c2_model_loading",
        "detectron2.checkpoint.detection_checkpoint",
        "detectron2",
    ):
        checkpointer.load(str(path))
    inc = checkpointer.incompatible
    if inc is None:
        return [], [], []
    missing = [k for k in inc.missing_keys if not is_bn_counter(k)]
    unexpected = [k for k in inc.unexpected_keys if not is_bn_counter(k)]
    mis_shaped = [f"{k}: {a} vs {b}" for k, a, b in inc.incorrect_shapes]
    return missing, unexpected, mis_shaped


def _torchvision_stages(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = OrderedDict()
    for stage, layer in zip(STAGES, (model.layer1, model.layer2, model.layer3, model.layer4)):
        x = layer(x)
        out[stage] = x
    return out


def verify_conversion(
    depth: int,
    torchvision_state: Mapping[str, torch.Tensor],
    *,
    detectron2_state: Mapping[str, Any] | None = None,
    detectron2_file: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    input_size: int = 64,
    batch_size: int = 2,
    seed: int = 0,
    torchvision_label: str = "the source weights",
) -> VerificationResult:
    """
    Run torchvision's ResNet-``depth`` loaded with ``torchvision_state`` and detectron2's ResNet
    backbone (real BN, eval mode, STRIDE_IN_1X1 False) loaded with ``detectron2_state`` or, through
    ``DetectionCheckpointer``, from ``detectron2_file``; compare res2..res5 on the same random
    input. Raises :class:`VerificationError` when a weight does not load or an output differs by
    more than ``tolerance``; returns a :class:`VerificationResult`.
    """
    if (detectron2_state is None) == (detectron2_file is None):
        raise ValueError("give exactly one of detectron2_state and detectron2_file")
    # Small tensors: one thread is faster, and immune to oversubscribed cores (OpenMP spinning).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = _verify(
            depth,
            torchvision_state,
            detectron2_state,
            detectron2_file,
            tolerance,
            input_size,
            batch_size,
            seed,
        )
    finally:
        torch.set_num_threads(threads)
    result.loader = f"torchvision resnet{depth} loaded from {torchvision_label}; " + result.loader
    if not result.passed:
        raise VerificationError("numeric verification failed:\n" + result.format())
    return result


def _verify(
    depth,
    torchvision_state,
    detectron2_state,
    detectron2_file,
    tolerance,
    input_size,
    batch_size,
    seed,
):
    with torch.random.fork_rng(devices=[]):
        tv_model = build_torchvision_resnet(depth)
        d2_model = build_detectron2_resnet(depth)
    inc = tv_model.load_state_dict(torchvision_state, strict=False)
    tv_missing = [k for k in inc.missing_keys if not (is_classifier_key(k) or is_bn_counter(k))]
    if tv_missing or inc.unexpected_keys:
        raise VerificationError(
            f"torchvision resnet{depth} did not take the source weights: missing {tv_missing}, "
            f"unexpected {list(inc.unexpected_keys)}"
        )
    if detectron2_file is not None:
        missing, unexpected, mis_shaped = load_detectron2_file(d2_model, detectron2_file)
        loader = (
            f"detectron2 {describe_depth(depth)} (BN, eval) loaded from the output by "
            f"DetectionCheckpointer: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mis_shaped)} mis-shaped"
        )
    else:
        inc = d2_model.load_state_dict(detectron2_state, strict=False)
        missing = [k for k in inc.missing_keys if not is_bn_counter(k)]
        unexpected, mis_shaped = list(inc.unexpected_keys), []
        loader = (
            f"detectron2 {describe_depth(depth)} (BN, eval) loaded from the source weights: "
            f"{len(missing)} missing, {len(unexpected)} unexpected"
        )
    if missing or unexpected or mis_shaped:
        raise VerificationError(
            "detectron2's ResNet did not take every weight:"
            + (f"\n  missing: {missing}" if missing else "")
            + (f"\n  unexpected: {unexpected}" if unexpected else "")
            + (f"\n  mis-shaped: {mis_shaped}" if mis_shaped else "")
        )
    tv_model.eval()
    d2_model.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, input_size, input_size, generator=gen)
    with torch.no_grad():
        ref = _torchvision_stages(tv_model, x.clone())
        got = d2_model(x.clone())
    diffs, mags = OrderedDict(), OrderedDict()
    for stage in STAGES:
        if ref[stage].shape != got[stage].shape:
            raise VerificationError(
                f"{stage}: torchvision output {tuple(ref[stage].shape)} vs detectron2 "
                f"{tuple(got[stage].shape)}"
            )
        diffs[stage] = float((ref[stage].double() - got[stage].double()).abs().max())
        mags[stage] = float(ref[stage].abs().max())
    return VerificationResult(
        depth=depth,
        input_shape=tuple(x.shape),
        seed=seed,
        tolerance=tolerance,
        max_abs_diff=diffs,
        max_abs_output=mags,
        loader=loader,
    )


__all__ = [
    "CoverageReport",
    "VerificationResult",
    "check_coverage",
    "verify_conversion",
    "load_detectron2_file",
]

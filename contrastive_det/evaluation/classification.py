"""Classification metrics as the transfer papers report them, and a detectron2 evaluator.

- top-1 accuracy: most downstream sets (Kornblith et al., "Do Better ImageNet Models Transfer
  Better?", CVPR 2019; Islam et al., "A Broad Study on the Transferability of Visual
  Representations with Contrastive Learning", ICCV 2021).
- mean per-class accuracy: Aircraft, Pets, Caltech101, Flowers in Kornblith et al. / SimCLR.
- 11-point interpolated mAP: VOC2007 classification (the VOC2007 devkit's ``VOCevalcls``).

All metrics are returned in percent, as plain Python floats.
"""

from __future__ import annotations

import itertools
import numbers
from collections import OrderedDict
from typing import Any, Iterable

import numpy as np
import torch

from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

__all__ = [
    "METRICS",
    "top1_accuracy",
    "mean_per_class_accuracy",
    "voc11_map",
    "classification_scores",
    "ClassificationEvaluator",
]

# metric name -> whether its targets are multi-label (NxC with 1 / 0 / -1) rather than N class ids
METRICS = OrderedDict([("top1", False), ("mean_per_class", False), ("map11", True)])


def _check_metric(metric):
    if metric not in METRICS:
        raise ValueError(
            f"unknown classification metric {metric!r}; known metrics: {', '.join(METRICS)}"
        )
    return METRICS[metric]


def _check_single_label(scores, labels, num_classes=None):
    """Validate NxC scores and N labels in [0, C); returns labels as a long tensor on scores'
    device."""
    if not torch.is_tensor(scores) or scores.dim() != 2:
        raise ValueError(
            f"scores must be an NxC tensor, got {type(scores).__name__} of shape "
            f"{tuple(getattr(scores, 'shape', ()))}"
        )
    labels = torch.as_tensor(labels, device=scores.device)
    if labels.dim() != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(
            f"labels must be a vector of N={scores.shape[0]} class ids, got shape "
            f"{tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    if scores.shape[0] == 0:
        raise ValueError("cannot compute an accuracy over 0 images")
    c = scores.shape[1] if num_classes is None else num_classes
    if num_classes is not None and scores.shape[1] != num_classes:
        raise ValueError(
            f"scores have {scores.shape[1]} columns, expected num_classes={num_classes}"
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= c:
        raise ValueError(f"labels must lie in [0, {c}), got values in [{lo}, {hi}]")
    return labels.long()


def top1_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent: the fraction of rows whose highest score is at the label.

    Ties between classes go to the lowest class id (``argmax``).

    Shape:
        - scores: NxC (logits or probabilities; only the argmax matters).
        - labels: N, integer class ids in [0, C).
        - Output: Python float in [0, 100].

    Raises:
        ValueError: shapes do not match, N is 0, or a label is outside [0, C).
    """
    labels = _check_single_label(scores, labels)
    pred = scores.argmax(dim=1)  # pred: N
    return (pred == labels).double().mean().item() * 100.0


def mean_per_class_accuracy(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean per-class accuracy in percent (Kornblith et al. 2019 for Aircraft, Pets, Caltech101,
    Flowers): the top-1 accuracy within each class, averaged over the classes that occur in
    ``labels`` (a class without test images has no accuracy and is not counted as 0).

    Shape:
        - scores: NxC with C = num_classes.
        - labels: N, integer class ids in [0, num_classes).
        - Output: Python float in [0, 100].

    Raises:
        ValueError: shapes do not match, N is 0, or a label is outside [0, num_classes).
    """
    labels = _check_single_label(scores, labels, num_classes)
    correct = (scores.argmax(dim=1) == labels).double()  # correct: N
    hits = torch.zeros(num_classes, dtype=torch.float64, device=scores.device).index_add_(
        0, labels, correct
    )  # C
    counts = torch.bincount(labels, minlength=num_classes).double()  # C
    present = counts > 0
    return (hits[present] / counts[present]).mean().item() * 100.0


def _check_multi_label(scores, targets):
    if not torch.is_tensor(scores) or scores.dim() != 2:
        raise ValueError(
            f"scores must be an NxC tensor, got {type(scores).__name__} of shape "
            f"{tuple(getattr(scores, 'shape', ()))}"
        )
    targets = torch.as_tensor(targets, device=scores.device)
    if targets.shape != scores.shape:
        raise ValueError(
            f"multi-label targets must have the shape of the scores {tuple(scores.shape)}, got "
            f"{tuple(targets.shape)}"
        )
    bad = ~((targets == 1) | (targets == 0) | (targets == -1))
    if bad.any():
        raise ValueError(
            f"multi-label targets must be 1 (positive), 0 (negative) or -1 (ignore), got "
            f"{targets[bad][0].item()!r}"
        )
    return targets.long()


_VOC11_THRESHOLDS = [float(t) for t in np.arange(0.0, 1.1, 0.1)]


def _ap11(scores, targets):
    """11-point interpolated AP of one class (scores N, targets N with 1 / 0 / -1); None without
    positives."""
    keep = targets != -1  # "difficult": neither a true nor a false positive (VOCevalcls)
    scores, positive = scores[keep], targets[keep] == 1  # N'
    npos = int(positive.sum())
    if npos == 0:
        return None
    order = torch.sort(
        scores, descending=True, stable=True
    ).indices  # N': ties keep the input order
    tp = positive[order].long().cumsum(0)  # N': true positives among the top k+1
    ranks = torch.arange(1, tp.shape[0] + 1, device=tp.device)  # N'
    precision = tp.double() / ranks.double()  # N'
    recall = tp.double() / npos  # N'
    ap = 0.0
    # the devkit's thresholds (VOCevalcls; detectron2's VOC detection AP too), floating point as
    # they
    # are: np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004, so a recall of exactly 3/10 does not
    # reach it, as it does not in the references' numbers
    for t in _VOC11_THRESHOLDS:
        reached = recall >= t
        ap += precision[reached].max().item() if reached.any() else 0.0
    return ap / 11.0


def voc11_map(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """VOC2007 classification mAP in percent: per class the 11-point interpolated average
    precision (the mean over t = 0, 0.1, ..., 1 of the highest precision at recall >= t; the
    VOC2007 devkit's ``VOCevalcls``), averaged over the classes with at least one positive.

    Entries marked -1 ("difficult" in VOC) count neither as positives nor as negatives: they
    are dropped from the ranking of their class. Equal scores are ranked in input order.

    Shape:
        - scores: NxC.
        - targets: NxC, 1 = positive, 0 = negative, -1 = ignore.
        - Output: Python float in [0, 100].

    Raises:
        ValueError: shapes differ, a target is not 1 / 0 / -1, or no class has a positive.
    """
    targets = _check_multi_label(scores, targets)
    aps = [_ap11(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    aps = [ap for ap in aps if ap is not None]
    if not aps:
        raise ValueError("voc11_map needs at least one class with a positive target, got none")
    return sum(aps) / len(aps) * 100.0


def classification_scores(
    metric: str, scores: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> dict[str, float]:
    """The named metric as ``"score"`` plus the other metrics of the same kind.

    Args:
        metric: "top1", "mean_per_class" (single-label) or "map11" (multi-label).
        scores: logits.
        targets: class ids (single-label) or 1 / 0 / -1 indicators (multi-label).
        num_classes: C.

    Shape:
        - scores: NxC.
        - targets: N for "top1" / "mean_per_class"; NxC for "map11".
        - Output: ``{"score", "top1", "mean_per_class"}`` or ``{"score", "map11"}``, Python floats
          in percent.

    Raises:
        ValueError: unknown metric (the message lists the known ones), or targets that do not fit.
    """
    multi_label = _check_metric(metric)
    if scores.dim() == 2 and scores.shape[1] != num_classes:
        raise ValueError(
            f"scores have {scores.shape[1]} columns, expected num_classes={num_classes}"
        )
    if multi_label:
        out = {"map11": voc11_map(scores, targets)}
    else:
        out = {
            "top1": top1_accuracy(scores, targets),
            "mean_per_class": mean_per_class_accuracy(scores, targets, num_classes),
        }
    return {"score": out[metric], **out}


def target_from_input(inp: dict[str, Any], multi_label: bool, num_classes: int) -> int | list[int]:
    """The classification target of one dataset dict: an int class id (single-label), or a list
    of C ints 1 / 0 / -1 built from ``labels`` (positives) and ``ignore_labels`` (multi-label; a
    class in both is positive, as VOC marks a class "difficult" only when all its objects are).
    A single-label dict (``label``) used with a multi-label metric has one positive.

    Raises:
        ValueError: the dict has no label, or a class id is outside [0, num_classes); the
            message names the ``image_id``.
    """
    image_id = inp.get("image_id", "<no image_id>")

    def check(c):
        value = (
            c.item() if torch.is_tensor(c) and c.numel() == 1 and not c.is_floating_point() else c
        )
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"image {image_id!r}: class ids must be integers, got {c!r}")
        if not 0 <= value < num_classes:
            raise ValueError(
                f"image {image_id!r}: class id {int(value)} is outside the range [0, {num_classes})"
            )
        return int(value)

    if not multi_label:
        if "label" not in inp:
            raise ValueError(
                f"image {image_id!r}: a single-label metric needs the key 'label', got keys "
                f"{sorted(inp)}"
            )
        return check(inp["label"])
    if "labels" in inp:
        positives, ignored = inp["labels"], inp.get("ignore_labels", [])
    elif "label" in inp:
        positives, ignored = [inp["label"]], []
    else:
        raise ValueError(
            f"image {image_id!r}: a multi-label metric needs the key 'labels' (or 'label'), got "
            f"keys {sorted(inp)}"
        )
    target = [0] * num_classes
    for c in ignored:
        target[check(c)] = -1
    for c in positives:
        target[check(c)] = 1
    return target


def sort_by_image_id(items: Iterable[tuple[Any, ...]], what: str) -> list[tuple[Any, ...]]:
    """Sort ``(image_id, ...)`` tuples by image id, so that results do not depend on how the
    images were split across processes."""
    try:
        return sorted(items, key=lambda item: item[0])
    except TypeError as e:
        raise ValueError(
            f"{what}: image_ids must be mutually comparable (all int or all str): {e}"
        ) from None


class ClassificationEvaluator(DatasetEvaluator):
    """Scores ``logits`` outputs against the inputs' labels with one of :data:`METRICS`.

    ``process`` takes input dicts with ``image_id`` and ``label`` (int) or, for "map11",
    ``labels`` (positive class ids) and ``ignore_labels`` (class ids to ignore), and output dicts
    with ``logits`` (a tensor of C). ``evaluate`` gathers all processes' items to the main
    process, orders them by image_id, and returns ``{"classification": classification_scores(...)}``
    there (None elsewhere).

    Raises:
        ValueError: unknown metric; a label outside [0, num_classes) (naming the image_id);
            logits that are not a vector of num_classes; no images to evaluate.
    """

    def __init__(self, metric: str, num_classes: int):
        self._multi_label = _check_metric(metric)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.metric, self.num_classes = metric, num_classes
        self.reset()

    def reset(self) -> None:
        self._items = []

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            target = target_from_input(inp, self._multi_label, self.num_classes)
            # logits: C (a copy, not a view of the batch)
            logits = out["logits"].detach().to("cpu", torch.float32).clone()
            if logits.shape != (self.num_classes,):
                raise ValueError(
                    f"image {inp.get('image_id')!r}: logits must have shape ({self.num_classes},), "
                    f"got {tuple(logits.shape)}"
                )
            self._items.append((inp.get("image_id"), logits, target))

    def evaluate(self) -> dict[str, dict[str, float]] | None:
        gathered = comm.gather(self._items, dst=0)
        if not comm.is_main_process():
            return None
        items = sort_by_image_id(list(itertools.chain(*gathered)), "ClassificationEvaluator")
        if not items:
            raise ValueError("ClassificationEvaluator received no images")
        scores = torch.stack([logits for _, logits, _ in items])  # scores: NxC
        targets = torch.tensor([t for _, _, t in items], dtype=torch.long)  # targets: N or NxC
        result = classification_scores(self.metric, scores, targets, self.num_classes)
        return OrderedDict(classification=result)

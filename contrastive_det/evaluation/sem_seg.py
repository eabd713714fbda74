"""
Semantic segmentation scores: detectron2's :class:`SemSegEvaluator` (one confusion matrix over the
whole dataset, ignore label excluded; mIoU, fwIoU, mACC, pACC and per-class IoU/accuracy), reading
label maps with the suite's reader, plus mmseg's mIoU as the extra key ``mIoU_mmseg``.

The two mIoU rules differ on a class that is predicted but absent from the ground truth of the
whole dataset: detectron2 leaves it out of the mean (its IoU is undefined), mmseg counts it with
IoU 0. detectron2's is the headline ``mIoU``; they agree whenever every class occurs in the ground
truth (VOC val, Cityscapes val, ADE20K val). See docs/segmentation.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectron2.data import DatasetCatalog
from detectron2.evaluation import SemSegEvaluator

from ..data.sem_seg_labels import LabelMapError, read_sem_seg_label

__all__ = ["SemanticSegmentationEvaluator", "mmseg_miou"]


def mmseg_miou(conf_matrix: np.ndarray) -> float:
    """
    mmseg's mIoU (percent) of a detectron2 confusion matrix ((K+1)x(K+1), rows = prediction,
    columns = ground truth, last = ignored): the mean IoU over the classes with a non-empty union
    of prediction and ground truth.
    """
    cm = conf_matrix[:-1, :-1].astype(float)  # KxK
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    valid = union > 0
    return 100.0 * float(np.mean(tp[valid] / union[valid])) if valid.any() else float("nan")


class SemanticSegmentationEvaluator(SemSegEvaluator):
    """
    detectron2's evaluator whose ground truth is read by
    :func:`contrastive_det.data.sem_seg_labels.read_sem_seg_label` (palette PNGs as indices, SBD
    ``.mat`` files, ADE20K's reduce-zero-label; RGB label images refused with the file named), and
    whose results add ``mIoU_mmseg``.
    """

    def __init__(self, dataset_name: str, distributed: bool = True, output_dir: str | None = None):
        self._records = {d["sem_seg_file_name"]: d for d in DatasetCatalog.get(dataset_name)}
        self._last = (
            None,
            None,
        )  # (path, label): process() checks a label, then detectron2 reads it again
        super().__init__(
            dataset_name,
            distributed=distributed,
            output_dir=output_dir,
            sem_seg_loading_fn=self._load,
        )

    def _load(self, path, dtype=int):
        if self._last[0] != path:
            self._last = (path, read_sem_seg_label(self._records[path]))
        return self._last[1].astype(dtype)  # a copy: detectron2 writes into it

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            gt_file = self.input_file_to_gt_file[inp["file_name"]]
            pred_hw = tuple(out["sem_seg"].shape[-2:])
            gt = self.sem_seg_loading_fn(gt_file, dtype=int)
            if gt.shape != pred_hw:
                raise LabelMapError(
                    f"Label map {gt_file} is {gt.shape[1]}x{gt.shape[0]} (WxH) but the prediction "
                    f"for {inp['file_name']} is {pred_hw[1]}x{pred_hw[0]}: image and label differ "
                    "in size"
                )
            bad = (gt != self._ignore_label) & ((gt < 0) | (gt >= self._num_classes))
            if bad.any():
                raise LabelMapError(
                    f"Label map {gt_file} holds value(s) {sorted(set(gt[bad].tolist()))[:10]} "
                    f"outside the {self._num_classes} classes and the ignore label "
                    f"{self._ignore_label}"
                )
        super().process(inputs, outputs)

    def evaluate(self) -> dict[str, dict[str, float]] | None:
        results = super().evaluate()
        if results is None:  # not the main process
            return None
        results["sem_seg"]["mIoU_mmseg"] = mmseg_miou(self._conf_matrix)
        return results

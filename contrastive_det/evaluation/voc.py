"""Pascal VOC detection evaluation (AP over IoU .50:.95, AP50, AP75; 11-point metric for 2007)."""

from __future__ import annotations

import functools
import os
import tempfile
from unittest import mock
from collections import OrderedDict, defaultdict
from typing import Callable, Sequence

import numpy as np

from detectron2.evaluation import PascalVOCDetectionEvaluator, pascal_voc_evaluation
from detectron2.evaluation.pascal_voc_evaluation import voc_eval
from detectron2.utils import comm

from ..data.datasets.voc_detection import parse_voc_record

IOU_THRESHOLDS = tuple(range(50, 100, 5))  # percent


def count_positives(
    anno_file_template: str,
    image_set_path: str,
    class_names: Sequence[str],
    parse: Callable[[str], list] = parse_voc_record,
) -> dict[str, int]:
    """Number of non-difficult ground-truth boxes per class name in an image set (``parse``: the
    annotation reader)."""
    with open(image_set_path) as f:
        image_ids = [line.strip() for line in f if line.strip()]
    counts = dict.fromkeys(class_names, 0)
    for image_id in image_ids:
        for obj in parse(anno_file_template.format(image_id)):
            if obj["name"] in counts and not obj["difficult"]:
                counts[obj["name"]] += 1
    return counts


class VOCDetectionEvaluator(PascalVOCDetectionEvaluator):
    """
    detectron2's :class:`PascalVOCDetectionEvaluator` (same matching code, ``voc_eval``), except:

    * a class with no non-difficult ground truth in the evaluated split is left out of the means
      (detectron2 averages in a NaN and reports NaN AP), with a log line naming it;
    * per-class AP50 is reported as ``AP50-<class>``;
    * annotations are read with ``parse_voc_record`` (``data/datasets/voc_detection.py``:
      float coordinates, optional pose/truncated/difficult tags, read afresh: detectron2's
      ``parse_rec`` wants integers and every tag, and caches each file for the process's life).
    """

    def evaluate(self) -> dict[str, dict[str, float]] | None:
        all_predictions = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return
        predictions = defaultdict(list)
        for predictions_per_rank in all_predictions:
            for cls_id, lines in predictions_per_rank.items():
                predictions[cls_id].extend(lines)

        metric = 2007 if self._is_2007 else 2012
        self._logger.info(f"Evaluating {self._dataset_name} with the VOC{metric} metric.")
        # each file read once per evaluation (voc_eval reads every file for each class and IoU),
        # and afresh in the next one
        parse = functools.lru_cache(maxsize=None)(parse_voc_record)
        npos = count_positives(
            self._anno_file_template, self._image_set_path, self._class_names, parse
        )
        absent = [c for c in self._class_names if npos[c] == 0]
        if absent:
            self._logger.warning(
                f"{self._dataset_name}: no non-difficult ground truth for class(es) {absent}; "
                "they are left out of the mean AP."
            )
        if len(absent) == len(self._class_names):
            raise ValueError(
                f"{self._dataset_name} has no non-difficult ground truth at all; nothing to "
                "evaluate."
            )

        aps = defaultdict(dict)  # iou -> {class name: AP in percent}
        with tempfile.TemporaryDirectory(prefix="pascal_voc_eval_") as dirname:
            res_file_template = os.path.join(dirname, "{}.txt")
            for cls_id, cls_name in enumerate(self._class_names):
                if npos[cls_name] == 0:
                    continue
                with open(res_file_template.format(cls_name), "w") as f:
                    f.write("\n".join(predictions.get(cls_id, [])))
                for thresh in IOU_THRESHOLDS:
                    # voc_eval's matching, on our reading of the annotations
                    with mock.patch.object(pascal_voc_evaluation, "parse_rec", parse):
                        _, _, ap = voc_eval(
                            res_file_template,
                            self._anno_file_template,
                            self._image_set_path,
                            cls_name,
                            ovthresh=thresh / 100.0,
                            use_07_metric=self._is_2007,
                        )
                    aps[thresh][cls_name] = ap * 100

        mean_ap = {iou: float(np.mean(list(per_class.values()))) for iou, per_class in aps.items()}
        bbox = {
            "AP": float(np.mean(list(mean_ap.values()))),
            "AP50": mean_ap[50],
            "AP75": mean_ap[75],
        }
        bbox.update({f"AP50-{cls}": float(ap) for cls, ap in aps[50].items()})
        return OrderedDict(bbox=bbox)

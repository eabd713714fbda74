"""
The report's pictures of segmentation transfers: for each transfer and pretraining row, the
prediction of one finished run's ``model_final.pth`` (rebuilt as :mod:`.pictures` rebuilds every
model) on the first test images, next to the ground truth, both drawn by detectron2's
``Visualizer.draw_sem_seg`` in the VOC colours (void pixels undrawn).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

import torch

from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import Visualizer

from ..data.datasets.voc_sem_seg import voc_palette
from ..data.sem_seg_labels import read_sem_seg_label
from ..data.sem_seg_mapper import SemSegDatasetMapper
from .figures import safe_name
from .pictures import (
    FINAL_MODEL,
    draw_rows,
    finished_runs,
    first_test_images,
    missing_files,
    save_pair_grid,
    seeds_text,
)

if TYPE_CHECKING:
    import numpy as np

    from detectron2.config import CfgNode

__all__ = ["segmentation_pictures", "draw_label_map"]


@torch.no_grad()
def predict_label_maps(
    cfg: CfgNode, model: torch.nn.Module, dicts: Iterable[dict[str, Any]]
) -> list[torch.Tensor]:
    """HxW int64 arg-max label maps (original size, on the CPU) of each dict, through the task's
    test mapper."""
    mapper = SemSegDatasetMapper(cfg, is_train=False)
    return [model([mapper(copy.deepcopy(d))])[0]["sem_seg"].argmax(dim=0).cpu() for d in dicts]


def draw_label_map(image: np.ndarray, class_names: Sequence[str], label: np.ndarray) -> np.ndarray:
    """RGB HxWx3 ``image`` with the HxW ``label`` map drawn over it (classes named, 255 and unknown
    values undrawn)."""
    palette = voc_palette(len(class_names))
    colours = [palette[3 * i : 3 * i + 3] for i in range(len(class_names))]
    meta = Metadata(stuff_classes=list(class_names), stuff_colors=colours)
    return Visualizer(image, meta).draw_sem_seg(label, alpha=0.6).get_image()


def segmentation_pictures(
    study_dir: str,
    plan: Mapping[str, Any],
    out_dir: str,
    *,
    num_images: int = 3,
    log: Callable[[str], Any] = print,
) -> list[tuple[str, str]]:
    """
    Prediction | ground-truth grids of the segmentation transfers of a study, one PNG per (transfer,
    test dataset), one grid row per pretraining row. Returns ``[(file name, caption)]``.
    """
    made = []
    chosen = finished_runs(
        plan,
        "SegmentationTask",
        lambda run, cfg: missing_files(run["out_dir"], [FINAL_MODEL]),
        log,
        "segmentations",
    )
    for transfer, rows in chosen.items():
        if not rows:
            log(f"segmentations: {transfer}: no finished run; no picture")
            continue
        datasets = list(next(iter(rows.values()))[1].DATASETS.TEST)

        def draw(cfg, model, name):
            classes = list(MetadataCatalog.get(name).stuff_classes)
            dicts = first_test_images(name, num_images)
            drawn = []
            for d, pred in zip(dicts, predict_label_maps(cfg, model, dicts)):
                image = read_image(d["file_name"], format="RGB")
                drawn.append(
                    (
                        draw_label_map(image, classes, pred.numpy()),
                        draw_label_map(image, classes, read_sem_seg_label(d)),
                        d.get("image_id"),
                    )
                )
            return drawn

        # name -> [(row, [(prediction, truth, id)])]
        cells = draw_rows(rows, datasets, draw, log, "segmentations")
        for name in datasets:
            grid = cells[name]
            if not grid or not grid[0][1]:
                continue
            pairs = [
                (
                    row,
                    [
                        (pred, f"{row}\n{image_id}: prediction", truth, f"{image_id}: ground truth")
                        for pred, truth, image_id in drawn
                    ],
                )
                for row, drawn in grid
            ]
            file = safe_name(f"segmentations__{transfer}__{name}") + ".png"
            save_pair_grid(
                pairs,
                f"{transfer} on {name}: prediction | ground truth",
                os.path.join(out_dir, file),
            )
            k = len(grid[0][1])
            made.append(
                (
                    file,
                    (
                        f"Segmentations of {transfer} on the first {k} images of {name} "
                        f"(sorted by image id): one row per "
                        f"pretraining row ({', '.join(r for r, _ in grid)}), "
                        f"each image's arg-max prediction (left) next to "
                        f"its ground truth (right; void undrawn); model_final.pth of "
                        f"{seeds_text({r: rows[r] for r, _ in grid})}."
                    ),
                )
            )
            log(f"segmentations: wrote {file}")
    return made

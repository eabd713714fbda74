"""
The study report's pictures of models (not of numbers): for each transfer and each pretraining
row, the model of one finished run (the smallest seed) is rebuilt from its ``OUTPUT_DIR`` exactly
as the run built it, and

* :func:`embedding_pictures` (classification transfers): a 2-D UMAP of the pooled res5 features of
  the test images, one panel per row, points coloured by class;
* :func:`detection_pictures` (detection transfers): the predictions of ``model_final.pth`` on the
  first test images next to their ground truth (detectron2's ``Visualizer``), one grid row per row.

Each function writes one PNG per (transfer, test dataset) into ``out_dir`` (atomically) and
returns ``[(file name relative to out_dir, caption)]``. Runs that did not finish are left out with
a log line; a transfer without any finished run gets no picture.

How a run's model is rebuilt (``tools/train_net.py``): its ``OUTPUT_DIR/config.yaml`` through
:func:`~contrastive_det.engine.defaults.build_run_config` (the project's loader; the device falls
back to CPU, and the sets of ``DATASETS.CUSTOM`` are registered), the RNG seeded with ``SEED`` as
``default_setup`` does (a random-init trunk is then the run's), ``Trainer.build_model``, then the
weights the run evaluated: ``model_final.pth`` when the run trained, else ``MODEL.WEIGHTS`` (for
classification the prepared ``classifier_weights.pth`` that config.yaml records) loaded as the
``--eval-only`` path loads it.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import Visualizer

from ..data import CheckedDatasetMapper
from ..data.classification import dataset_dicts
from ..data.classification_loader import build_classification_test_loader
from ..engine.defaults import build_run_config
from ..engine.results import RESULTS_FILE
from ..engine.task import get_task
from ..engine.trainer import FINAL_MODEL, Trainer
from ..modeling.classifier import pooled_stage_features
from .figures import pyplot, safe_name, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

    from detectron2.config import CfgNode
    from detectron2.data.catalog import Metadata
    from detectron2.structures import Instances

__all__ = [
    "embedding_pictures",
    "detection_pictures",
    "embed_2d",
    "pooled_test_features",
    "load_run_config",
    "UMAP_PARAMS",
]

#: the UMAP of every embedding picture (random_state fixed: the same features give the same picture)
UMAP_PARAMS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "random_state": 0}
#: a dataset's test images are subsampled (without replacement) with this seed above ``max_images``
SUBSET_SEED = 0
#: at most this many classes get a legend entry (the colours repeat beyond 20 anyway)
MAX_LEGEND = 40
CONFIG_FILE = "config.yaml"


# ---------------------------------------------------------------------------------------------
# runs and models
# ---------------------------------------------------------------------------------------------
def load_run_config(out_dir: str) -> CfgNode:
    """The frozen config of the run in ``out_dir`` (its config.yaml), adapted to this machine as
    ``build_run_config`` adapts a run's: CPU without CUDA, BN flavour, DATASETS.CUSTOM
    registered."""
    args = argparse.Namespace(
        config_file=os.path.join(out_dir, CONFIG_FILE),
        opts=[],
        eval_only=True,
        fewer_gpus=False,
        resume=False,
    )
    cfg, _ = build_run_config(args)
    return cfg


def missing_files(out_dir: str, names: Iterable[str]) -> list[str]:
    return [n for n in names if not os.path.isfile(os.path.join(out_dir, n))]


def finished_runs(
    plan: Mapping[str, Any],
    task: str,
    needs: Callable[[dict[str, Any], CfgNode], list[str]],
    log: Callable[[str], Any],
    what: str,
) -> dict[str, dict[str, tuple[dict[str, Any], CfgNode]]]:
    """
    ``{transfer: {row: (run, cfg)}}`` in plan order: per (transfer, row) the finished run with the
    smallest (seed, pretraining seed). ``needs(run, cfg)`` returns the missing file names of a run
    whose config loads (empty: usable). Unfinished runs looked at are logged and skipped.
    """
    groups = OrderedDict()
    for run in plan["runs"]:
        meta = run.get("meta", {})
        if run.get("kind") != "transfer" or meta.get("task") != task:
            continue
        groups.setdefault(meta["transfer"], OrderedDict()).setdefault(meta["row"], []).append(run)
    chosen = OrderedDict()
    for transfer, rows in groups.items():
        chosen[transfer] = OrderedDict()
        for row, runs in rows.items():
            runs = sorted(
                runs, key=lambda r: (r["meta"].get("seed", 0), r["meta"].get("pretrain_seed") or 0)
            )
            for run in runs:
                missing = missing_files(run["out_dir"], [CONFIG_FILE, RESULTS_FILE])
                cfg = None
                if not missing:
                    try:
                        cfg = load_run_config(run["out_dir"])
                    except (
                        Exception
                    ) as e:  # a config this code base cannot load any more: say so, go on
                        log(
                            f"{what}: skipped {run['id']}: its {CONFIG_FILE} does not load "
                            f"({type(e).__name__}: {e})"
                        )
                        continue
                    missing = needs(run, cfg)
                if missing:
                    log(
                        f"{what}: skipped {run['id']}: not finished (no {', '.join(missing)} in "
                        f"{run['out_dir']})"
                    )
                    continue
                chosen[transfer][row] = (run, cfg)
                break
            else:
                log(
                    f"{what}: {transfer}: row {row} left out: none of its {len(runs)} run(s) "
                    "finished"
                )
    return chosen


def build_run_model(cfg: CfgNode, out_dir: str) -> torch.nn.Module:
    """The model the run in ``out_dir`` evaluated, in eval mode (the engine's
    :meth:`~contrastive_det.engine.trainer.Trainer.load_run_model`)."""
    return Trainer.load_run_model(cfg, out_dir)


def seeds_text(chosen_rows: Mapping[str, tuple[dict[str, Any], CfgNode]]) -> str:
    seeds = sorted({run["meta"].get("seed") for run, _ in chosen_rows.values()})
    return ("transfer seed " if len(seeds) == 1 else "transfer seeds ") + "/".join(
        str(s) for s in seeds
    )


# ---------------------------------------------------------------------------------------------
# embeddings (classification transfers)
# ---------------------------------------------------------------------------------------------
def _label_of(d):
    """A dict's class: ``label``; for multi-label sets the first positive class (-1 when none)."""
    label = int(d.get("label", -1))
    if label < 0 and d.get("labels"):
        label = int(sorted(d["labels"])[0])
    return label


def pictured_dicts(dataset_name: str, max_images: int | None) -> tuple[list[dict[str, Any]], int]:
    """
    The dicts of the test set pictured: all of them, or ``max_images`` drawn without replacement
    with seed SUBSET_SEED (kept in dataset order). Returns (dicts, the set's number of images).
    """
    dicts = dataset_dicts(dataset_name)
    total = len(dicts)
    if max_images and total > max_images:
        keep = np.sort(np.random.RandomState(SUBSET_SEED).choice(total, max_images, replace=False))
        dicts = [dicts[i] for i in keep]
    return dicts, total


@torch.no_grad()
def pooled_test_features(
    cfg: CfgNode, model: torch.nn.Module, dicts: Iterable[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """
    Pooled res5 features of ``dicts`` through the classification test loader (the run's test
    transform). Returns (features NxD float32 array, labels N int array, image ids list of N).
    """
    feats, labels, ids = [], [], []
    for batch in build_classification_test_loader(cfg, list(dicts)):
        images = model.preprocess(batch)  # Nx3xHxW, normalised as in the run
        feats.append(
            pooled_stage_features(model.trunk.resnet, images, ["res5"])["res5"].float().cpu()
        )
        labels += [_label_of(x) for x in batch]  # the mapper passes label / labels through
        ids += [x.get("image_id") for x in batch]
    return torch.cat(feats).numpy(), np.asarray(labels, dtype=np.int64), ids


def embed_2d(features: ArrayLike, *, random_state: int = UMAP_PARAMS["random_state"]) -> np.ndarray:
    """
    2-D UMAP (umap-learn) of ``features`` (NxD): rows L2-normalised, cosine metric, n_neighbors 15
    (fewer when N <= 15), min_dist 0.1, fixed ``random_state``. Returns an Nx2 float array.
    """
    import umap

    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"embed_2d needs an NxD array with N >= 3, got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    params = dict(
        UMAP_PARAMS,
        random_state=random_state,
        n_neighbors=min(UMAP_PARAMS["n_neighbors"], x.shape[0] - 1),
    )
    with warnings.catch_warnings():
        # a fixed random_state runs one thread
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        return umap.UMAP(n_components=2, **params).fit_transform(x).astype(np.float64)


def _class_colours(num):
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if num <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(num)]


def draw_embedding_panels(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]], class_names: Sequence[str], title: str
) -> Figure:
    """
    One scatter panel per ``(row, embedding Nx2, labels N)``; one scatter (artist labelled with the
    class name) per class present, colours fixed per class across panels; one legend of classes.
    Returns the figure.
    """
    plt = pyplot()
    present = sorted({int(c) for _, _, labels in panels for c in np.unique(labels)})
    num = max([len(class_names)] + [c + 1 for c in present])
    colours = _class_colours(num)
    names = {
        c: (str(class_names[c]) if 0 <= c < len(class_names) else ("no class" if c < 0 else str(c)))
        for c in present
    }
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    legend_w = 0.0 if len(present) > MAX_LEGEND else (1.4 if len(present) <= 20 else 2.6)  # inches
    width = 4.2 * ncols + legend_w
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 4.0 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (row, emb, labels) in zip(axes.flat, panels):
        for c in present:
            sel = labels == c
            if sel.any():
                ax.scatter(
                    emb[sel, 0],
                    emb[sel, 1],
                    s=8 if len(labels) > 500 else 16,
                    alpha=0.8,
                    linewidths=0,
                    color=colours[c] if c >= 0 else (0.5, 0.5, 0.5, 1.0),
                    label=names[c],
                )
        ax.set_title(f"{row} (n = {len(labels)})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(present) <= MAX_LEGEND:
        handles = [
            plt.Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                color=colours[c] if c >= 0 else (0.5, 0.5, 0.5, 1.0),
                label=names[c],
            )
            for c in present
        ]
        fig.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1 - legend_w / width, 0.5),
            fontsize=7,
            title="class",
            title_fontsize=8,
            ncol=1 if len(present) <= 20 else 2,
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - legend_w / width, 0.95))
    return fig


def embedding_pictures(
    study_dir: str,
    plan: Mapping[str, Any],
    out_dir: str,
    *,
    max_images: int | None = 2000,
    log: Callable[[str], Any] = print,
) -> list[tuple[str, str]]:
    """
    UMAP pictures of the classification transfers of a study (see the module docstring).

    Args:
        study_dir: the study folder (runs' folders are read from ``plan``).
        plan: the study's ``plan.json`` (dict).
        out_dir: where the PNGs go (the report folder).
        max_images: at most this many test images per dataset (a fixed random subset beyond).
        log: takes one line.
    Returns:
        list of (PNG file name relative to ``out_dir``, caption), one per (transfer, test dataset).
    """
    made = []
    try:
        import umap  # noqa: F401
    except ImportError as e:
        log(
            f"embedding: umap-learn does not import ({e}); no embedding pictures (pip install "
            "umap-learn)"
        )
        return made
    chosen = finished_runs(
        plan, "ClassificationTask", lambda run, cfg: _classifier_needs(run, cfg), log, "embedding"
    )
    for transfer, rows in chosen.items():
        if not rows:
            log(f"embedding: {transfer}: no finished run; no picture")
            continue
        datasets = list(next(iter(rows.values()))[1].DATASETS.TEST)
        panels = {name: [] for name in datasets}
        totals = {}
        for row, (run, cfg) in tqdm(rows.items(), desc=f"embedding {transfer}", unit="row"):
            try:
                model = build_run_model(cfg, run["out_dir"])
                for name in datasets:
                    if name not in cfg.DATASETS.TEST:
                        log(
                            f"embedding: {run['id']} does not test on {name}; row {row} left out "
                            f"of its picture"
                        )
                        continue
                    dicts, totals[name] = pictured_dicts(name, max_images)
                    feats, labels, _ = pooled_test_features(cfg, model, dicts)
                    if len(feats) < 3:
                        log(
                            f"embedding: {transfer} on {name}: {len(feats)} test image(s); too few "
                            "for a UMAP"
                        )
                        continue
                    panels[name].append((row, embed_2d(feats), labels))
            except Exception as e:  # one broken run costs its panel, not the report
                log(f"embedding: {run['id']}: failed ({type(e).__name__}: {e}); row {row} left out")
            model = None
            gc.collect()
        for name in datasets:
            if not panels[name]:
                continue
            classes = list(MetadataCatalog.get(name).get("classes", None) or [])
            n = len(panels[name][0][2])
            fig = draw_embedding_panels(
                panels[name], classes, f"{transfer} on {name}: UMAP of pooled res5 test features"
            )
            file = safe_name(f"embedding__{transfer}__{name}") + ".png"
            save_png(fig, os.path.join(out_dir, file))
            pyplot().close(fig)
            subset = (
                f"a fixed random subset (seed {SUBSET_SEED}) of {totals[name]} test images"
                if n < totals[name]
                else "all test images"
            )
            made.append(
                (
                    file,
                    (
                        f"UMAP (2-D; cosine metric on L2-normalised features, "
                        f"n_neighbors {UMAP_PARAMS['n_neighbors']}, min_dist "
                        f"{UMAP_PARAMS['min_dist']}, random_state {UMAP_PARAMS['random_state']}) "
                        f"of the pooled res5 features of {name} test images after {transfer}: one "
                        f"panel per pretraining row ({', '.join(r for r, _, _ in panels[name])}), "
                        f"points coloured by class; n = {n} images per panel "
                        f"({subset}); the model of "
                        f"{seeds_text({r: rows[r] for r, _, _ in panels[name]})}."
                    ),
                )
            )
            log(f"embedding: wrote {file}")
    return made


def _classifier_needs(run, cfg):
    return missing_files(run["out_dir"], [FINAL_MODEL]) if get_task(cfg).trains(cfg) else []


# ---------------------------------------------------------------------------------------------
# detections (detection transfers)
# ---------------------------------------------------------------------------------------------
def first_test_images(dataset_name: str, num_images: int) -> list[dict[str, Any]]:
    """The first ``num_images`` dicts of a registered detection set, sorted by image id."""
    dicts = DatasetCatalog.get(dataset_name)
    return sorted(dicts, key=lambda d: (str(type(d.get("image_id"))), d.get("image_id")))[
        :num_images
    ]


@torch.no_grad()
def predict(
    cfg: CfgNode, model: torch.nn.Module, dicts: Iterable[dict[str, Any]]
) -> list[Instances]:
    """The model's ``Instances`` (on the CPU, in original image coordinates) for each dict."""
    mapper = CheckedDatasetMapper(cfg, is_train=False)  # the task's test mapper
    return [model([mapper(copy.deepcopy(d))])[0]["instances"].to("cpu") for d in dicts]


def draw_detections(
    image: np.ndarray,
    metadata: Metadata,
    instances: Instances,
    score_threshold: float,
    max_count: int | None = None,
) -> tuple[np.ndarray, int]:
    """RGB HxWx3 image with the ``instances`` of score >= ``score_threshold`` drawn (class and score
    on each box), at most ``max_count`` of them, the highest-scoring (None: all); returns (image,
    count)."""
    keep = instances[instances.scores >= score_threshold]
    if max_count is not None and len(keep) > max_count:
        keep = keep[keep.scores.argsort(descending=True)[:max_count]]
    return Visualizer(image, metadata).draw_instance_predictions(keep).get_image(), len(keep)


def draw_ground_truth(
    image: np.ndarray, metadata: Metadata, dataset_dict: dict[str, Any]
) -> np.ndarray:
    """RGB HxWx3 image with the dict's annotations drawn (``Visualizer.draw_dataset_dict``)."""
    return Visualizer(image, metadata).draw_dataset_dict(dataset_dict).get_image()


def draw_rows(
    rows: Mapping[str, tuple[dict[str, Any], CfgNode]],
    datasets: Iterable[str],
    draw: Callable[[CfgNode, torch.nn.Module, str], Any],
    log: Callable[[str], Any],
    what: str,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it,
) -> dict[str, list[tuple[str, Any]]]:
    """
    ``{dataset: [(row, cells)]}``: for each ``row: (run, cfg)`` of ``rows``, the run's model rebuilt
    once (:func:`build_run_model`) and ``draw(cfg, model, dataset)`` -> cells for each of
    ``datasets`` it tests on. A run that fails loses its row (logged), not the picture; each model
    is freed after its row.
    """
    cells = {name: [] for name in datasets}
    for row, (run, cfg) in progress(rows.items()):
        model = None
        try:
            model = build_run_model(cfg, run["out_dir"])
            for name in datasets:
                if name not in cfg.DATASETS.TEST:
                    log(
                        f"{what}: {run['id']} does not test on {name}; row {row} left out of its "
                        "picture"
                    )
                    continue
                cells[name].append((row, draw(cfg, model, name)))
        except Exception as e:  # one broken run costs its grid row, not the report
            log(f"{what}: {run['id']}: failed ({type(e).__name__}: {e}); row {row} left out")
        model = None
        gc.collect()
    return cells


def save_pair_grid(
    rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str, np.ndarray, str]]]],
    title: str,
    path: str,
) -> None:
    """
    One PNG at ``path``: a grid with one line per ``(row, [(left image, left title, right image,
    right title), ...])`` of ``rows`` (e.g. prediction | ground truth per test image), axes off,
    ``title`` on top.
    """
    plt = pyplot()
    ncols = 2 * max(len(cells) for _, cells in rows)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(2.3 * ncols, 2.6 * len(rows)), squeeze=False
    )
    for r, (_, cells) in enumerate(rows):
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        for i, (left, left_title, right, right_title) in enumerate(cells):
            axes[r, 2 * i].imshow(left)
            axes[r, 2 * i].set_title(left_title, fontsize=7)
            axes[r, 2 * i + 1].imshow(right)
            axes[r, 2 * i + 1].set_title(right_title, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_png(fig, path)
    plt.close(fig)


def detection_pictures(
    study_dir: str,
    plan: Mapping[str, Any],
    out_dir: str,
    *,
    num_images: int = 3,
    score_threshold: float = 0.05,
    as_many_as_truth: bool = True,
    log: Callable[[str], Any] = print,
) -> list[tuple[str, str]]:
    """
    Prediction | ground-truth grids of the detection transfers of a study (see the module
    docstring).

    Args:
        study_dir: the study folder (runs' folders are read from ``plan``).
        plan: the study's ``plan.json`` (dict).
        out_dir: where the PNGs go (the report folder).
        num_images: the first this many test images (sorted by image id).
        score_threshold: predictions below this score are not drawn (default: detectron2's test
            threshold, the lowest score the AP counts).
        as_many_as_truth: draw at most as many predictions per image as it has ground-truth objects,
            the highest-scoring: a weakly trained detector (a toy study) scores its best boxes low,
            and a fixed high threshold would show it as blank; each box shows its class and score.
        log: takes one line.
    Returns:
        list of (PNG file name relative to ``out_dir``, caption), one per (transfer, test dataset).
    """
    made = []
    chosen = finished_runs(
        plan,
        "DetectionTask",
        lambda run, cfg: missing_files(run["out_dir"], [FINAL_MODEL]),
        log,
        "detections",
    )
    for transfer, rows in chosen.items():
        if not rows:
            log(f"detections: {transfer}: no finished run; no picture")
            continue
        datasets = list(next(iter(rows.values()))[1].DATASETS.TEST)
        meta = {name: MetadataCatalog.get(name) for name in datasets}

        def draw(cfg, model, name, meta=meta):
            drawn = []
            dicts = first_test_images(name, num_images)
            for d, inst in zip(dicts, predict(cfg, model, dicts)):
                image = read_image(d["file_name"], format="RGB")
                gt_count = len(d.get("annotations", []))
                pred, count = draw_detections(
                    image, meta[name], inst, score_threshold, gt_count if as_many_as_truth else None
                )
                drawn.append(
                    (
                        pred,
                        count,
                        draw_ground_truth(image, meta[name], d),
                        gt_count,
                        d.get("image_id"),
                    )
                )
            return drawn

        # name -> [(row, [(pred image, count, gt image, gt count, id)])]
        cells = draw_rows(
            rows,
            datasets,
            draw,
            log,
            "detections",
            progress=lambda it, transfer=transfer: tqdm(
                it, desc=f"detections {transfer}", unit="row"
            ),
        )
        for name in datasets:
            grid = cells[name]
            if not grid or not grid[0][1]:
                continue
            shown = (
                f"highest-scoring predictions, at most as many as the ground truth, score >= "
                f"{score_threshold:g}"
                if as_many_as_truth
                else f"predictions (score >= {score_threshold:g})"
            )
            pairs = [
                (
                    row,
                    [
                        (
                            pred,
                            f"{row}\n{image_id}: predictions ({count})",
                            gt,
                            f"{image_id}: ground truth ({gt_count})",
                        )
                        for pred, count, gt, gt_count, image_id in drawn
                    ],
                )
                for row, drawn in grid
            ]
            file = safe_name(f"detections__{transfer}__{name}") + ".png"
            save_pair_grid(
                pairs, f"{transfer} on {name}: {shown} | ground truth", os.path.join(out_dir, file)
            )
            k = len(grid[0][1])
            made.append(
                (
                    file,
                    (
                        f"Detections of {transfer} on the first {k} images of {name} (sorted by "
                        f"image id): one row per pretraining row "
                        f"({', '.join(r for r, _ in grid)}), each image's {shown} (left, class and "
                        f"score on each box) next to its ground truth (right); model_final.pth of "
                        f"{seeds_text({r: rows[r] for r, _ in grid})}."
                    ),
                )
            )
            log(f"detections: wrote {file}")
    return made

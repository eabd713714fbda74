"""The report's pictures (contrastive_det/studies/pictures.py, seg_pictures.py): UMAP embeddings of
classification transfers and prediction | ground-truth grids of detection and segmentation
transfers, on a tiny real study."""

import copy
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive_det.studies import load_study, run_study
from contrastive_det.studies import pictures
from contrastive_det.studies.seg_pictures import segmentation_pictures
from contrastive_det.studies.executors import LocalExecutor

from conftest import REPO, copy_crops
from test_study_runner import real_study

TEST_IMAGES = 4  # textured crops per class in the study's classification test set (10 classes)


@pytest.fixture(scope="module")
def study(toy_root, tmp_path_factory):
    """One SimCLR pretraining (2 iterations), an L-BFGS probe and 1-iteration detection and
    segmentation transfers, seed 0, run for real; returns (study folder, plan)."""
    sets = tmp_path_factory.mktemp("pictures_sets")
    copy_crops(toy_root, sets / "plain", {"train": 6, "test": 3})
    copy_crops(toy_root, sets / "textured", {"train": 6, "test": TEST_IMAGES}, "crops_textured")
    tmp = tmp_path_factory.mktemp("pictures_study")
    spec = load_study(
        real_study(tmp, sets, detection=True, name="pics", seeds=(0,), segmentation=True)
    )
    env = dict(os.environ, DETECTRON2_DATASETS=str(toy_root), PYTHONWARNINGS="ignore")
    lines = []
    status = run_study(spec, LocalExecutor(jobs=2, cwd=REPO, env=env), log=lines.append)
    assert set(status.values()) == {"done"}, "\n".join(lines)
    with open(os.path.join(spec.output_dir, "plan.json")) as f:
        plan = json.load(f)
    return spec.output_dir, plan


@pytest.fixture(scope="module")
def made(study, tmp_path_factory):
    """Both kinds of pictures of the tiny study, with the log lines."""
    study_dir, plan = study
    out = tmp_path_factory.mktemp("pictures_report")
    lines = []
    emb = pictures.embedding_pictures(study_dir, plan, str(out), log=lines.append)
    det = pictures.detection_pictures(study_dir, plan, str(out), log=lines.append)
    return out, emb, det, lines


def _png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image


def _runs(plan, transfer, row):
    return [
        r
        for r in plan["runs"]
        if r["kind"] == "transfer" and r["meta"]["transfer"] == transfer and r["meta"]["row"] == row
    ]


# ---------------------------------------------------------------------------------------------
# the tiny study
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_one_embedding_picture_per_classification_transfer_and_dataset(made):
    out, emb, _, lines = made
    assert [f for f, _ in emb] == ["embedding__lbfgs__st_tex_test.png"]
    file, caption = emb[0]
    image = _png(out / file)
    assert image.width >= 700 and image.height >= 350  # two panels and a legend
    n = 10 * TEST_IMAGES
    assert f"n = {n} images" in caption and "all test images" in caption
    assert "UMAP" in caption and "pooled res5" in caption and "st_tex_test" in caption
    assert "(simclr, random-init)" in caption and "transfer seed 0" in caption
    assert not [line for line in lines if "skipped" in line or "left out" in line]
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # written atomically


def test_one_detection_picture_per_detection_transfer_and_dataset(made):
    out, _, det, _ = made
    assert [f for f, _ in det] == ["detections__det__toy_digits_test.png"]
    file, caption = det[0]
    image = _png(out / file)
    # 2 pretraining rows x (3 images x prediction | ground truth)
    assert image.width >= 6 * 150 and image.height >= 2 * 150
    assert "first 3 images of toy_digits_test" in caption and "score >= 0.05" in caption
    assert "at most as many as the ground truth" in caption
    assert (
        "(simclr, random-init)" in caption
        and "transfer seed 0" in caption
        and "ground truth" in caption
    )


def test_one_segmentation_picture_per_segmentation_transfer_and_dataset(study, tmp_path):
    study_dir, plan = study
    seg_run = _runs(plan, "seg", "simclr")[0]
    assert seg_run["deps"] == ["convert/simclr/seed0/seg"]  # converted like a detection transfer
    lines = []
    made = segmentation_pictures(study_dir, plan, str(tmp_path), num_images=2, log=lines.append)
    assert [f for f, _ in made] == ["segmentations__seg__toy_digits_sem_seg_test.png"]
    file, caption = made[0]
    image = _png(tmp_path / file)
    # 2 rows x (2 images x prediction | truth)
    assert image.width >= 4 * 150 and image.height >= 2 * 150
    assert (
        "first 2 images of toy_digits_sem_seg_test" in caption
        and "(simclr, random-init)" in caption
    )
    assert not [line for line in lines if "left out" in line or "failed" in line], lines


def test_features_are_those_the_run_computed(study):
    """The rebuilt model (weights, random init, test transform) gives the features the probe
    cached."""
    from contrastive_det.evaluation import FeatureCache
    from contrastive_det.tasks.classification import cache_keys

    _, plan = study
    for row in ("simclr", "random-init"):
        run = _runs(plan, "lbfgs", row)[0]
        cfg = pictures.load_run_config(run["out_dir"])
        name = cfg.DATASETS.TEST[0]
        model = pictures.build_run_model(cfg, run["out_dir"])
        dicts, total = pictures.pictured_dicts(name, 2000)
        feats, labels, ids = pictures.pooled_test_features(cfg, model, dicts)
        assert feats.shape == (total, 512) and total == 10 * TEST_IMAGES
        cached = FeatureCache(cfg.CLASSIFICATION.FEATURE_CACHE).load(
            cache_keys(cfg, name)[("test", "res5")]
        )
        assert cached is not None, "the run's test features are not in its cache"
        order = {i: k for k, i in enumerate(cached["image_ids"])}
        idx = [order[i] for i in ids]
        np.testing.assert_allclose(
            feats, cached["features"][idx].numpy(), rtol=1e-4, atol=1e-4, err_msg=row
        )
        np.testing.assert_array_equal(labels, cached["targets"][idx].numpy())
        np.testing.assert_array_equal(labels, [d["label"] for d in dicts])


def test_a_trained_run_is_rebuilt_with_its_final_weights(study):
    """A detection transfer trained: the engine rebuilds it from model_final.pth, not
    MODEL.WEIGHTS."""
    _, plan = study
    run = _runs(plan, "det", "simclr")[0]
    cfg = pictures.load_run_config(run["out_dir"])
    model = pictures.build_run_model(cfg, run["out_dir"])
    assert not model.training
    final = torch.load(
        os.path.join(run["out_dir"], "model_final.pth"), map_location="cpu", weights_only=True
    )["model"]
    state = model.state_dict()
    assert final.keys() == state.keys()
    for k, v in final.items():
        assert torch.equal(state[k], v), k


def test_max_images_draws_a_fixed_subset(study):
    _, plan = study
    cfg = pictures.load_run_config(_runs(plan, "lbfgs", "simclr")[0]["out_dir"])
    a, total = pictures.pictured_dicts(cfg.DATASETS.TEST[0], 7)
    b, _ = pictures.pictured_dicts(cfg.DATASETS.TEST[0], 7)
    assert (
        len(a) == 7
        and total == 10 * TEST_IMAGES
        and [d["image_id"] for d in a] == [d["image_id"] for d in b]
    )


def test_the_grid_shows_each_rows_predictions_next_to_the_ground_truth(
    study, tmp_path, monkeypatch
):
    """Every cell pair: the predictions of that row's model at the threshold, then the image's
    ground truth."""
    study_dir, plan = study
    calls = {"pred": [], "gt": []}
    cyan, magenta = np.array([0, 255, 255], np.uint8), np.array([255, 0, 255], np.uint8)

    def fake_pred(image, metadata, instances, score_threshold, max_count):
        calls["pred"].append((max_count, score_threshold))
        return np.broadcast_to(cyan, image.shape).copy(), 0

    def fake_gt(image, metadata, dataset_dict):
        calls["gt"].append(dataset_dict["image_id"])
        return np.broadcast_to(magenta, image.shape).copy()

    monkeypatch.setattr(pictures, "draw_detections", fake_pred)
    monkeypatch.setattr(pictures, "draw_ground_truth", fake_gt)
    made = pictures.detection_pictures(
        study_dir, plan, str(tmp_path), num_images=2, score_threshold=0.25, log=lambda line: None
    )
    assert len(made) == 1 and "first 2 images" in made[0][1] and "score >= 0.25" in made[0][1]
    first_ids = sorted(d["image_id"] for d in pictures.first_test_images("toy_digits_test", 100))[
        :2
    ]
    assert calls["gt"] == first_ids * 2  # 2 rows
    assert [t for _, t in calls["pred"]] == [0.25] * 4
    gt_counts = {
        d["image_id"]: len(d["annotations"])
        for d in pictures.first_test_images("toy_digits_test", 100)
    }
    assert [m for m, _ in calls["pred"]] == [
        gt_counts[i] for i in first_ids
    ] * 2  # at most as many as the truth
    pixels = np.asarray(Image.open(tmp_path / made[0][0]).convert("RGB")).reshape(-1, 3).astype(int)
    n_cyan = int((np.abs(pixels - cyan).sum(1) < 30).sum())
    n_magenta = int((np.abs(pixels - magenta).sum(1) < 30).sum())
    assert n_cyan > 1000 and n_magenta > 1000 and 0.8 < n_cyan / n_magenta < 1.25
    # left cells predictions, right cells ground truth
    image = np.asarray(Image.open(tmp_path / made[0][0]).convert("RGB")).astype(int)
    mid_row = image[image.shape[0] // 4]
    is_cyan = np.abs(mid_row - cyan).sum(1) < 30
    is_magenta = np.abs(mid_row - magenta).sum(1) < 30
    assert np.flatnonzero(is_cyan).min() < np.flatnonzero(is_magenta).min()


def test_unfinished_runs_are_skipped_with_a_log_line(study, tmp_path):
    study_dir, plan = study
    plan = copy.deepcopy(plan)
    empty = tmp_path / "never_ran"
    empty.mkdir()
    for run in plan[
        "runs"
    ]:  # the random-init runs were killed before the end: config.yaml (+ a model), no results
        if run["kind"] == "transfer" and run["meta"]["row"] == "random-init":
            killed = tmp_path / "killed" / run["meta"]["transfer"]
            killed.mkdir(parents=True)
            for name in ("config.yaml", "model_final.pth"):
                if os.path.isfile(os.path.join(run["out_dir"], name)):
                    shutil.copy(os.path.join(run["out_dir"], name), killed / name)
            run["out_dir"] = str(killed)
    lines = []
    det = pictures.detection_pictures(
        study_dir, plan, str(tmp_path / "r"), num_images=1, log=lines.append
    )
    emb = pictures.embedding_pictures(study_dir, plan, str(tmp_path / "r"), log=lines.append)
    assert len(det) == 1 and len(emb) == 1
    assert "(simclr)" in det[0][1] and "(simclr)" in emb[0][1]  # the unfinished row is left out
    for t in ("det", "lbfgs"):
        assert any(
            line.startswith(
                f"{'detections' if t == 'det' else 'embedding'}: skipped "
                f"transfer/{t}/random-init/seed0: "
                "not finished (no results.json in"
            )
            for line in lines
        ), lines
        assert any(f"{t}: row random-init left out" in line for line in lines), lines
    # a transfer without any finished run: no picture, a log line
    for run in plan["runs"]:
        if run["kind"] == "transfer":
            run["out_dir"] = str(empty)
    lines = []
    assert (
        pictures.detection_pictures(study_dir, plan, str(tmp_path / "r2"), log=lines.append) == []
    )
    assert (
        pictures.embedding_pictures(study_dir, plan, str(tmp_path / "r2"), log=lines.append) == []
    )
    assert "detections: det: no finished run; no picture" in lines
    assert "embedding: lbfgs: no finished run; no picture" in lines
    assert not (tmp_path / "r2").exists() or not os.listdir(tmp_path / "r2")


# ---------------------------------------------------------------------------------------------
# the embedding and drawing steps alone
# ---------------------------------------------------------------------------------------------
def test_embed_2d_keeps_separated_clusters_apart():
    rng = np.random.RandomState(0)
    dim, n = 32, 60
    centres = np.zeros((2, dim))
    centres[0, 0] = centres[1, 1] = 5.0  # different directions: apart under the cosine metric
    x = np.concatenate([centres[k] + 0.5 * rng.randn(n, dim) for k in (0, 1)])
    y = np.repeat([0, 1], n)
    emb = pictures.embed_2d(x)
    assert emb.shape == (2 * n, 2) and np.isfinite(emb).all()
    centroids = np.stack([emb[y == k].mean(0) for k in (0, 1)])
    nearest = np.argmin(((emb[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).all()
    np.testing.assert_allclose(pictures.embed_2d(x), emb)  # fixed random_state
    with pytest.raises(ValueError, match="N >= 3"):
        pictures.embed_2d(x[:2])


def test_points_are_coloured_by_their_class():
    rng = np.random.RandomState(1)
    classes = ["zero", "one", "two"]
    panels = []
    for row in ("a", "b"):
        labels = rng.randint(0, 3, size=30)
        panels.append((row, rng.randn(30, 2), labels))
    fig = pictures.draw_embedding_panels(panels, classes, "title")
    try:
        axes = [ax for ax in fig.axes if ax.get_visible()][:2]
        for ax, (row, emb, labels) in zip(axes, panels):
            assert ax.get_title() == f"{row} (n = 30)"
            seen = 0
            for coll in ax.collections:
                k = classes.index(coll.get_label())
                np.testing.assert_allclose(coll.get_offsets(), emb[labels == k])
                seen += len(coll.get_offsets())
            assert seen == 30
        legend = fig.legends[0]
        assert [t.get_text() for t in legend.get_texts()] == classes
        colours = {
            c.get_label(): tuple(c.get_facecolor()[0]) for ax in axes for c in ax.collections
        }
        assert len(set(colours.values())) == 3  # one colour per class, the same in both panels
    finally:
        pictures.pyplot().close(fig)


def test_detection_drawing_helpers(toy_root):
    from detectron2.data import MetadataCatalog
    from detectron2.data.detection_utils import read_image
    from detectron2.structures import Boxes, Instances

    d = pictures.first_test_images("toy_digits_test", 1)[0]
    image = read_image(d["file_name"], format="RGB")
    meta = MetadataCatalog.get("toy_digits_test")
    gt = pictures.draw_ground_truth(image, meta, d)
    assert gt.shape == image.shape and (gt != image).any()
    h, w = image.shape[:2]
    inst = Instances(
        (h, w),
        pred_boxes=Boxes(
            torch.tensor([[2.0, 2.0, w / 2, h / 2], [w / 2, h / 2, w - 2.0, h - 2.0]])
        ),
        scores=torch.tensor([0.9, 0.3]),
        pred_classes=torch.tensor([1, 2]),
    )
    drawn, count = pictures.draw_detections(image, meta, inst, 0.5)
    assert count == 1 and drawn.shape == image.shape and (drawn != image).any()
    none, count = pictures.draw_detections(image, meta, inst, 0.95)
    assert count == 0


def test_at_most_max_count_detections_are_drawn_the_highest_scoring(monkeypatch):
    from detectron2.structures import Boxes, Instances

    drawn = []

    class FakeVisualizer:
        def __init__(self, image, metadata):
            self.image = image

        def draw_instance_predictions(self, instances):
            drawn.append(instances.scores.tolist())
            return self

        def get_image(self):
            return self.image

    monkeypatch.setattr(pictures, "Visualizer", FakeVisualizer)
    inst = Instances(
        (8, 8),
        pred_boxes=Boxes(torch.zeros(4, 4)),
        scores=torch.tensor([0.2, 0.9, 0.01, 0.5]),
        pred_classes=torch.tensor([1, 2, 3, 4]),
    )
    image = np.zeros((8, 8, 3), np.uint8)
    assert pictures.draw_detections(image, None, inst, 0.05, max_count=2)[1] == 2
    # 0.01 is under the threshold
    assert pictures.draw_detections(image, None, inst, 0.05, max_count=5)[1] == 3
    assert pictures.draw_detections(image, None, inst, 0.05)[1] == 3
    assert drawn[0] == pytest.approx([0.9, 0.5]) and sorted(drawn[1]) == pytest.approx(
        [0.2, 0.5, 0.9]
    )

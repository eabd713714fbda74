import json
import math
import os

import pytest
import torch

from contrastive_det.engine.results import (
    aggregate_seed_results,
    headline_keys,
    normalize_metrics,
    read_results,
    summarize_values,
)
from contrastive_det.engine.task import TASK_REGISTRY, Task, headline_patterns
from contrastive_det.utils.atomic import atomic_open, atomic_write_json


def record(seed, ap, ap50):
    return {"seed": seed, "metrics": {"voc": {"bbox/AP": ap, "bbox/AP50": ap50}}}


def test_aggregate_mean_and_sample_std_by_hand():
    summary = aggregate_seed_results(
        [record(0, 50.0, 80.0), record(1, 52.0, 81.0), record(2, 54.0, 82.5)]
    )
    ap = summary["voc"]["bbox/AP"]
    assert ap["mean"] == pytest.approx(52.0) and ap["n"] == 3
    assert ap["std"] == pytest.approx(2.0)  # sqrt(((-2)^2 + 0 + 2^2) / (3 - 1))
    ap50 = summary["voc"]["bbox/AP50"]
    assert ap50["mean"] == pytest.approx(81.1666666667)
    assert ap50["std"] == pytest.approx(
        math.sqrt(((80 - 81.16667) ** 2 + (81 - 81.16667) ** 2 + (82.5 - 81.16667) ** 2) / 2)
    )


def test_aggregate_refuses_missing_metrics():
    incomplete = {"seed": 1, "metrics": {"voc": {"bbox/AP": 1.0}}}
    with pytest.raises(KeyError, match="seed 1 has no metric voc/bbox/AP50"):
        aggregate_seed_results([record(0, 1.0, 2.0), incomplete])


def test_normalize_metrics_single_and_multiple_datasets():
    single = {"bbox": {"AP": 1.0, "AP50": 2.0}}
    assert normalize_metrics(single, ["voc"]) == {"voc": {"bbox/AP": 1.0, "bbox/AP50": 2.0}}
    multi = {"a": {"bbox": {"AP": 1.0}}, "b": {"bbox": {"AP": 3.0}}}
    assert normalize_metrics(multi, ["a", "b"]) == {"a": {"bbox/AP": 1.0}, "b": {"bbox/AP": 3.0}}


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(str(path), {"v": 1})

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(str(path), {"v": Unserializable()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["results.json"]


def test_interrupted_checkpoint_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from contrastive_det.engine.checkpoint import AtomicDetectionCheckpointer

    model = torch.nn.Linear(2, 2)
    ckpt = AtomicDetectionCheckpointer(model, save_dir=str(tmp_path))
    ckpt.save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save("model_final", iteration=2)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]


def test_atomic_open_rejects_append():
    with pytest.raises(ValueError, match="modes"):
        with atomic_open("/tmp/x", "a"):
            pass


def test_summarize_values_by_hand_one_value_and_nan():
    s = summarize_values([50.0, 52.0, 54.0])
    assert (s["mean"], s["std"], s["n"], s["values"]) == (
        52.0,
        pytest.approx(2.0),
        3,
        [50.0, 52.0, 54.0],
    )
    # n-1, not n (0.5)
    assert summarize_values([80.0, 81.0])["std"] == pytest.approx(math.sqrt(0.5))
    one = summarize_values([7.0])
    assert one["mean"] == 7.0 and one["std"] is None and one["n"] == 1  # no spread to show
    bad = summarize_values([1.0, float("nan")])
    assert math.isnan(bad["mean"]) and bad["std"] is None and bad["n"] == 2
    with pytest.raises(ValueError):
        summarize_values([])


def test_one_seed_sweep_keeps_the_files_std_of_zero():
    assert aggregate_seed_results([record(0, 50.0, 80.0)])["voc"]["bbox/AP"]["std"] == 0.0


def test_read_results_names_the_file(tmp_path):
    atomic_write_json(str(tmp_path / "results.json"), {"task": "t", "metrics": {"d": {"m": 1.0}}})
    assert read_results(str(tmp_path))["metrics"] == {"d": {"m": 1.0}}
    assert read_results(str(tmp_path / "results.json"))["task"] == "t"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing" / "results.json")):
        read_results(str(tmp_path / "missing"))
    # cut off mid-write by another tool
    (tmp_path / "results.json").write_text('{"metrics": {"d": ')
    with pytest.raises(ValueError, match=r"results\.json: not a readable results file"):
        read_results(str(tmp_path))
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object with a 'metrics' mapping"):
        read_results(str(tmp_path))


def test_headline_keys_follow_the_patterns_order():
    names = [
        "few_shot/5way_5shot_ci95",
        "few_shot/5way_5shot",
        "few_shot/5way_1shot",
        "linear/score",
        "top1",
    ]
    assert headline_keys([r"linear/score", r"few_shot/\d+way_\d+shot"], names) == [
        "linear/score",
        "few_shot/5way_1shot",
        "few_shot/5way_5shot",
    ]
    assert headline_keys([r"bbox/AP"], ["bbox/AP50", "bbox/AP"]) == ["bbox/AP"]  # matched in full


def test_every_registered_tasks_headline_metrics_reach_the_report_without_an_edit():
    assert headline_patterns()[:2] == [
        r"classification/score",
        r"linear/score",
    ]  # registration order
    assert "knn/top1" in headline_patterns() and "sem_seg/mIoU" in headline_patterns()

    @TASK_REGISTRY.register()
    class DepthEstimationTask(Task):  # a task the suite has never heard of
        headline_metrics = ("depth/delta1",)

    try:
        assert headline_patterns()[-1] == "depth/delta1"
    finally:
        TASK_REGISTRY._obj_map.pop("DepthEstimationTask")

import json
import math
import os

import pytest
import torch

from contrastive_det.engine.results import aggregate_seed_results, normalize_metrics
from contrastive_det.utils.atomic import atomic_open, atomic_write_json


def record(seed, ap, ap50):
    return {"seed": seed, "metrics": {"voc": {"bbox/AP": ap, "bbox/AP50": ap50}}}


def test_aggregate_mean_and_sample_std_by_hand():
    summary = aggregate_seed_results([record(0, 50.0, 80.0), record(1, 52.0, 81.0), record(2, 54.0, 82.5)])
    ap = summary["voc"]["bbox/AP"]
    assert ap["mean"] == pytest.approx(52.0) and ap["n"] == 3
    assert ap["std"] == pytest.approx(2.0)  # sqrt(((-2)^2 + 0 + 2^2) / (3 - 1))
    ap50 = summary["voc"]["bbox/AP50"]
    assert ap50["mean"] == pytest.approx(81.1666666667)
    assert ap50["std"] == pytest.approx(math.sqrt(((80 - 81.16667) ** 2 + (81 - 81.16667) ** 2 + (82.5 - 81.16667) ** 2) / 2))


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

"""End to end: the supervised baseline through tools/pretrain_net.py (toy config, 3 iterations),
then its backbone.pth through tools/convert_to_detectron2.py."""

import json
import math
import re

import pytest
import torch

from conftest import copy_crops, run_cli
from test_pretrain_net import config, fast_opts, torchvision_resnet18_keys


@pytest.fixture(scope="module")
def supervised_run(toy_root, tmp_path_factory):
    """3 iterations of configs/toy/pretrain_supervised_R18.yaml on 8 train / 4 test crops per
    class."""
    crops = copy_crops(toy_root, tmp_path_factory.mktemp("sup_crops"), {"train": 8, "test": 4})
    out = tmp_path_factory.mktemp("supervised")
    run_cli(
        "pretrain_net.py", ["--config-file", config("supervised"), *fast_opts(crops, out)], toy_root
    )
    return out


def test_supervised_trains_one_view_evaluates_knn_and_exports(supervised_run):
    out = supervised_run
    res = json.load(open(out / "results.json"))
    assert res["task"] == "pretraining" and res["method"] == "supervised" and res["iteration"] == 3
    top1 = res["metrics"]["mini_test"]["knn/top1"]
    assert math.isfinite(top1) and 0.0 <= top1 <= 100.0
    rows = [json.loads(line) for line in open(out / "metrics.json") if line.strip()]
    trained = [r for r in rows if "total_loss" in r]
    # = loss_ce
    assert trained and all(math.isfinite(r["total_loss"]) and r["lr"] > 0 for r in trained)
    exported = torch.load(out / "backbone.pth", weights_only=True)
    state, meta = exported["state_dict"], exported["meta"]
    assert set(state) == torchvision_resnet18_keys()
    assert (
        meta["method"] == "supervised"
        and meta["arch"] == "resnet18"
        and meta["input_format"] == "RGB"
    )
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert final["classifier.weight"].shape == (10, 512)  # NUM_CLASSES from the toy config
    torch.testing.assert_close(
        state["layer4.1.conv2.weight"], final["encoder.resnet.layer4.1.conv2.weight"]
    )


def test_supervised_backbone_converts_to_detectron2_and_names_its_method(supervised_run, tmp_path):
    pkl = tmp_path / "supervised.pkl"
    proc = run_cli(
        "convert_to_detectron2.py", [str(supervised_run / "backbone.pth"), str(pkl)], tmp_path
    )
    text = proc.stdout
    assert "source: format canonical" in text
    assert "coverage: 100/100 detectron2 backbone tensors matched" in text
    assert (
        float(re.search(r"max \|diff\| = (\S+) ", text).group(1)) < 1e-4
        and "tolerance 0.0001: OK" in text
    )
    assert pkl.is_file()
    # a detection run given backbone.pth converts it on the fly and records the method "supervised"
    from contrastive_det.config import get_cfg
    from contrastive_det.convert.detection_weights import convert_weights_for_detection

    cfg = get_cfg()
    cfg.MODEL.WEIGHTS = str(supervised_run / "backbone.pth")
    overrides = convert_weights_for_detection(cfg, str(tmp_path / "detect"), log=lambda line: None)
    assert overrides[-2:] == ["RESULTS.METHOD", "supervised"]

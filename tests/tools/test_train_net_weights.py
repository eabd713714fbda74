"""
tools/train_net.py converts a torchvision-layout checkpoint in MODEL.WEIGHTS on the fly, with the
report, and refuses weights it can neither load nor convert before training starts.
"""

import json
import os
import pickle

import torch
import torchvision

from contrastive_det.convert import save_canonical

from conftest import FAST, TOY_CONFIG, run_cli


def test_canonical_export_as_model_weights(toy_root, tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    weights = tmp_path / "backbone.pth"
    save_canonical(str(weights), state, arch="resnet50", method="simclr")

    out = tmp_path / "out"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            "--eval-only",
            *FAST,
            "MODEL.WEIGHTS",
            str(weights),
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
    )
    log = proc.stdout + proc.stderr
    assert f"MODEL.WEIGHTS {weights} is not in detectron2's layout" in log
    assert "265/265 detectron2 backbone tensors matched" in log and "tolerance 0.0001: OK" in log
    # the toy config is the caffe2-layout protocol: the run adopts the converted weights' keys,
    # listed
    assert (
        f"Keys adopted from {weights} (config -> weights):" in log
        and "INPUT.FORMAT 'BGR' -> 'RGB'" in log
    )
    saved = open(out / "config.yaml").read()
    assert "FORMAT: RGB" in saved and "STRIDE_IN_1X1: false" in saved
    res = json.load(open(out / "results.json"))
    assert res["weights"] == str(out / "converted_weights.pkl") and res["weights_source"] == str(
        weights
    )
    assert res["method"] == "simclr"
    converted = pickle.load(open(out / "converted_weights.pkl", "rb"))["model"]
    assert (
        converted["res4.5.conv3.norm.running_var"] == state["layer3.5.bn3.running_var"].numpy()
    ).all()


def test_unrecognised_weights_stop_the_run_before_training(toy_root, tmp_path):
    weights = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    out = tmp_path / "out"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_CONFIG,
            *FAST,
            "SOLVER.MAX_ITER",
            "2",
            "MODEL.WEIGHTS",
            str(weights),
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert (
        f"MODEL.WEIGHTS {weights} is neither a detectron2 model nor a ResNet checkpoint" in log
    ), log[-3000:]
    assert "features.* (" in log and "tools/convert_to_detectron2.py" in log
    written = [
        f
        for f in (os.listdir(out) if out.exists() else [])
        if f.endswith((".pth", ".pkl", ".json"))
    ]
    assert written == [], written


def test_converted_r18_trains_under_an_r50_protocol_by_adopting_its_keys(toy_root, tmp_path):
    """The README's quick start: convert with --base (fit checked), then train the protocol's own
    config with MODEL.WEIGHTS r18.pkl; the run adopts the keys the .pkl records and loads every
    backbone tensor."""
    torch.manual_seed(0)
    state = {
        k: v
        for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
        if not k.startswith("fc.")
    }
    save_canonical(str(tmp_path / "backbone.pth"), state, arch="resnet18", method="simclr")
    fpn = os.path.join("configs", "toy", "digits_R_50_FPN.yaml")
    run_cli(
        "convert_to_detectron2.py",
        [str(tmp_path / "backbone.pth"), str(tmp_path / "r18.pkl"), "--base", fpn],
        toy_root,
    )
    out = tmp_path / "out"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            fpn,
            "--eval-only",
            *FAST,
            "MODEL.WEIGHTS",
            str(tmp_path / "r18.pkl"),
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
    )
    log = proc.stdout + proc.stderr
    assert f"Keys adopted from {tmp_path / 'r18.pkl'} (config -> weights):" in log
    assert (
        "MODEL.RESNETS.DEPTH 50 -> 18" in log and "MODEL.RESNETS.RES2_OUT_CHANNELS 256 -> 64" in log
    )
    # nothing left at random init
    assert "backbone.bottom_up.res" not in log and "backbone.bottom_up.stem" not in log
    saved = open(out / "config.yaml").read()
    assert "DEPTH: 18" in saved and "RES2_OUT_CHANNELS: 64" in saved
    assert (out / "results.json").is_file()

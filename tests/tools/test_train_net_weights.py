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
    proc = run_cli("train_net.py", ["--config-file", TOY_CONFIG, "--eval-only", *FAST, "MODEL.WEIGHTS", str(weights),
                                    "OUTPUT_DIR", str(out)], toy_root)
    log = proc.stdout + proc.stderr
    assert f"MODEL.WEIGHTS {weights} is not in detectron2's layout" in log
    assert "265/265 detectron2 backbone tensors matched" in log and "tolerance 0.0001: OK" in log
    # the toy config is the caffe2-layout protocol: the mismatch is named, with the fix
    assert "WARNING: these weights are in torchvision layout but the config has INPUT.FORMAT='BGR'" in log
    res = json.load(open(out / "results.json"))
    assert res["weights"] == str(out / "converted_weights.pkl") and res["weights_source"] == str(weights)
    assert res["method"] == "simclr"
    converted = pickle.load(open(out / "converted_weights.pkl", "rb"))["model"]
    assert (converted["res4.5.conv3.norm.running_var"] == state["layer3.5.bn3.running_var"].numpy()).all()


def test_unrecognised_weights_stop_the_run_before_training(toy_root, tmp_path):
    weights = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    out = tmp_path / "out"
    proc = run_cli("train_net.py", ["--config-file", TOY_CONFIG, *FAST, "SOLVER.MAX_ITER", "2",
                                    "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(out)], toy_root, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert f"MODEL.WEIGHTS {weights} is neither a detectron2 model nor a ResNet checkpoint" in log, log[-3000:]
    assert "features.* (" in log and "tools/convert_to_detectron2.py" in log
    written = [f for f in (os.listdir(out) if out.exists() else []) if f.endswith((".pth", ".pkl", ".json"))]
    assert written == [], written

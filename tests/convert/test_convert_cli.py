"""tools/convert_to_detectron2.py in a subprocess: report, config file, exit codes, no partial
outputs."""

import argparse
import os
import re

import pytest
import torch

from conftest import REPO, run_cli
from resnet_checkpoints import random_resnet

FPN_BASE = os.path.join(REPO, "configs", "detection", "voc0712_R_50_FPN_24k.yaml")


def sololearn(sd):
    state = {"backbone." + k: v for k, v in sd.items() if not k.startswith("fc.")}
    state.update(
        {"momentum_backbone." + k: v.clone() for k, v in sd.items() if not k.startswith("fc.")}
    )
    state["projector.0.weight"] = torch.randn(32, 512)
    state["classifier.weight"] = torch.randn(10, 512)
    return {
        "pytorch-lightning_version": "2.1.0",
        "epoch": 9,
        "global_step": 90,
        "state_dict": state,
        "hyper_parameters": {"method": "simclr"},
    }


def files(folder):
    return sorted(os.listdir(folder))


def test_cli_converts_reports_verifies_and_writes_config(tmp_path):
    sd = random_resnet(18)
    torch.save(sololearn(sd), tmp_path / "solo.ckpt")
    out, cfg_path = tmp_path / "r18.pkl", tmp_path / "cfg" / "r18_voc.yaml"
    proc = run_cli(
        "convert_to_detectron2.py",
        [
            str(tmp_path / "solo.ckpt"),
            str(out),
            "--write-config",
            str(cfg_path),
            "--base",
            FPN_BASE,
        ],
        tmp_path,
    )
    print(proc.stdout)
    text = proc.stdout
    assert "source: format lightning, backbone at state_dict: backbone.*" in text
    assert "architecture: ResNet-18 (basic blocks 2-2-2-2)" in text
    assert "coverage: 100/100 detectron2 backbone tensors matched" in text
    assert "0 missing, 0 mis-shaped, 0 unexpected" in text
    assert re.search(r"momentum_backbone\.\*\s+120 ", text)  # 100 tensors + 20 BN counters
    assert (
        "loaded from the output by DetectionCheckpointer: 0 missing, 0 unexpected, 0 mis-shaped"
        in text
    )
    diff = float(re.search(r"max \|diff\| = (\S+) ", text).group(1))
    assert 0 <= diff < 1e-4
    assert "tolerance 0.0001: OK" in text
    for line in [
        "MODEL.RESNETS.DEPTH: 18",
        "MODEL.RESNETS.RES2_OUT_CHANNELS: 64",
        "MODEL.RESNETS.STRIDE_IN_1X1: False",
        "INPUT.FORMAT: RGB",
        "MODEL.PIXEL_MEAN: [123.675, 116.28, 103.53]",
        "MODEL.PIXEL_STD: [58.395, 57.12, 57.375]",
    ]:
        assert line in text, line
    assert out.is_file() and cfg_path.is_file()

    # the written YAML inherits the protocol and sets everything the weights need
    from contrastive_det.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(cfg_path))
    assert cfg.MODEL.WEIGHTS == str(out)
    assert cfg.MODEL.RESNETS.DEPTH == 18 and cfg.MODEL.RESNETS.RES2_OUT_CHANNELS == 64
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False and cfg.INPUT.FORMAT == "RGB"
    assert list(cfg.MODEL.PIXEL_STD) == [58.395, 57.12, 57.375]
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"  # from the base protocol
    assert cfg.SOLVER.MAX_ITER == 24000
    assert f'_BASE_: "{FPN_BASE}"' in cfg_path.read_text()  # no shared folder: absolute

    # and back to the canonical torchvision form, losslessly
    back = tmp_path / "back.pth"
    proc = run_cli(
        "convert_to_detectron2.py",
        [str(out), str(back), "--to", "torchvision", "--method", "simclr"],
        tmp_path,
    )
    assert "source: format detectron2" in proc.stdout
    from contrastive_det.convert import load_canonical

    state, meta = load_canonical(back)
    ref = {
        k: v
        for k, v in sd.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    assert set(state) == set(ref) and all(torch.equal(state[k], ref[k]) for k in ref)
    assert meta["method"] == "simclr" and meta["depth"] == 18


@pytest.mark.slow
def test_cli_failures_exit_nonzero_and_write_nothing(tmp_path):
    sd = random_resnet(18)
    bad = dict(sd)
    bad["layer3.0.downsample.0.weight"] = torch.zeros(256, 128, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    out = tmp_path / "out.pkl"
    proc = run_cli(
        "convert_to_detectron2.py", [str(tmp_path / "bad.pth"), str(out)], tmp_path, check=False
    )
    assert proc.returncode == 1
    assert "layer3.0.downsample.0.weight -> res4.0.shortcut.weight" in proc.stderr
    assert "expected (256, 128, 1, 1)" in proc.stderr
    assert "1 mis-shaped" in proc.stdout  # the report is printed too
    assert files(tmp_path) == ["bad.pth"]

    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1)}, tmp_path / "timm.pth")
    proc = run_cli(
        "convert_to_detectron2.py",
        [str(tmp_path / "timm.pth"), str(out), "--depth", "18"],
        tmp_path,
        check=False,
    )
    assert proc.returncode == 1 and "--trust" in proc.stderr and "argparse.Namespace" in proc.stderr
    assert files(tmp_path) == ["bad.pth", "timm.pth"]

    proc = run_cli(
        "convert_to_detectron2.py",
        [str(tmp_path / "timm.pth"), str(out), "--trust", "--depth", "50"],
        tmp_path,
        check=False,
    )
    assert (
        proc.returncode == 1
        and "--depth 50 does not match" in proc.stderr
        and "ResNet-18" in proc.stderr
    )
    assert files(tmp_path) == ["bad.pth", "timm.pth"]

"""
Every supported checkpoint layout, built from a randomly initialised torchvision ResNet (random BN
statistics too), converted by the library, verified numerically and loaded back by detectron2's
own DetectionCheckpointer with every backbone tensor equal to its source.
"""

import os
import shutil
from collections import OrderedDict

import pytest
import torch

from contrastive_det.convert import (
    CANONICAL_FORMAT,
    convert_checkpoint,
    load_canonical,
    save_canonical,
    torchvision_to_detectron2,
    write_detectron2,
)
from resnet_checkpoints import d2_name, random_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

# ------------------------------------------------------------------------------------------------
# helpers (independent of the library's key mapping, so the tests check it)


def backbone(sd):
    return OrderedDict(
        (k, v)
        for k, v in sd.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    )


def prefixed(sd, prefix, skip_fc=False):
    return {prefix + k: v.clone() for k, v in sd.items() if not (skip_fc and k.startswith("fc."))}


def load_into_detectron2_backbone(pkl, depth):
    """detectron2 ResNet (BN) loaded by DetectionCheckpointer; returns (state_dict,
    incompatible)."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 256 if depth >= 50 else 64
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))

    class Recording(DetectionCheckpointer):
        def _load_model(self, checkpoint):
            self.incompatible = super()._load_model(checkpoint)
            return self.incompatible

    ckp = Recording(model)
    ckp.load(str(pkl))
    return model.state_dict(), ckp.incompatible


def assert_detectron2_matches_source(pkl, source_sd, depth):
    loaded, inc = load_into_detectron2_backbone(pkl, depth)
    missing = [k for k in inc.missing_keys if not k.endswith("num_batches_tracked")]
    assert missing == [], missing
    assert inc.unexpected_keys == [] and inc.incorrect_shapes == []
    expected = {d2_name(k): v for k, v in backbone(source_sd).items()}
    model_keys = {k for k in loaded if not k.endswith("num_batches_tracked")}
    assert model_keys == set(expected)
    for name, value in expected.items():
        assert torch.equal(loaded[name], value), name


# ------------------------------------------------------------------------------------------------
# checkpoint layouts, as the libraries write them


def fmt_torchvision(sd, depth):
    return dict(sd)


def fmt_torchvision_reference(sd, depth):  # torchvision's references/classification/train.py
    return {
        "model": dict(sd),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
        "lr_scheduler": {"last_epoch": 3},
        "epoch": 3,
    }


def fmt_timm(sd, depth):  # timm train.py (without its argparse.Namespace "args")
    return {
        "epoch": 10,
        "arch": f"resnet{depth}",
        "state_dict": dict(sd),
        "state_dict_ema": {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()},
        "version": 2,
        "metric": 71.3,
    }


def _mlp(dim_in, hidden, out):
    return {
        "0.weight": torch.randn(hidden, dim_in),
        "0.bias": torch.randn(hidden),
        "2.weight": torch.randn(out, hidden),
        "2.bias": torch.randn(out),
    }


def feat_dim(sd):
    return sd["fc.weight"].shape[1]


def fmt_mocov2(sd, depth):
    c = feat_dim(sd)
    state = {}
    for enc in ("encoder_q", "encoder_k"):
        state.update(prefixed(sd, f"module.{enc}.", skip_fc=True))
        state.update({f"module.{enc}.fc.{k}": v for k, v in _mlp(c, c, 128).items()})
    state["module.queue"] = torch.randn(128, 256)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {
        "epoch": 200,
        "arch": f"resnet{depth}",
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.03}]},
    }


def fmt_mocov1(sd, depth):
    state = {}
    for enc in ("encoder_q", "encoder_k"):
        state.update(prefixed(sd, f"module.{enc}.", skip_fc=True))
        state[f"module.{enc}.fc.weight"] = torch.randn(128, feat_dim(sd))
        state[f"module.{enc}.fc.bias"] = torch.randn(128)
    state["module.queue"] = torch.randn(128, 64)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"epoch": 200, "arch": f"resnet{depth}", "state_dict": state}


def fmt_mocov3(sd, depth):
    c = feat_dim(sd)
    state = {}
    for enc in ("base_encoder", "momentum_encoder"):
        state.update(prefixed(sd, f"module.{enc}.", skip_fc=True))
        state[f"module.{enc}.fc.0.weight"] = torch.randn(64, c)
        for bn in ("fc.1", "fc.4"):
            state.update(
                {
                    f"module.{enc}.{bn}.{f}": torch.randn(64)
                    for f in ("weight", "bias", "running_mean", "running_var")
                }
            )
            state[f"module.{enc}.{bn}.num_batches_tracked"] = torch.tensor(5)
        state[f"module.{enc}.fc.3.weight"] = torch.randn(64, 64)
    state.update({f"module.predictor.{k}": v for k, v in _mlp(64, 64, 64).items()})
    return {
        "epoch": 100,
        "arch": f"resnet{depth}",
        "state_dict": state,
        "optimizer": {},
        "scaler": {},
    }


def _supcon_encoder(sd, prefix):
    out = {}
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        out[prefix + k.replace(".downsample.", ".shortcut.")] = v.clone()
    return out


def fmt_supcon(sd, depth):
    model = _supcon_encoder(sd, "encoder.")
    model.update({f"head.{k}": v for k, v in _mlp(feat_dim(sd), feat_dim(sd), 128).items()})
    return {"model": model, "optimizer": {"state": {}, "param_groups": []}, "epoch": 1000}


def fmt_supcon_dp(sd, depth):  # model trained with nn.DataParallel around the whole model
    model = _supcon_encoder(sd, "module.encoder.")
    model.update({f"module.head.{k}": v for k, v in _mlp(feat_dim(sd), 32, 16).items()})
    return {"model": model, "epoch": 1000}


def fmt_vissl(sd, depth):
    trunk = {"_feature_blocks." + k: v.clone() for k, v in sd.items() if not k.startswith("fc.")}
    heads = {"0.clf.0.weight": torch.randn(128, feat_dim(sd)), "0.clf.0.bias": torch.randn(128)}
    return {
        "phase_idx": 9,
        "iteration": 1000,
        "loss": {"state": 1.0},
        "iteration_num": 1000,
        "train_phase_idx": 9,
        "classy_state_dict": {
            "train_phase_idx": 9,
            "base_model": {"model": {"trunk": trunk, "heads": heads}, "meta": {"model_version": 1}},
            "optimizer": {"state": {}},
        },
    }


def fmt_sololearn(sd, depth):
    state = prefixed(sd, "backbone.", skip_fc=True)  # solo-learn replaces fc by nn.Identity
    state.update(prefixed(sd, "momentum_backbone.", skip_fc=True))
    state.update({f"projector.{k}": v for k, v in _mlp(feat_dim(sd), 64, 32).items()})
    state.update({f"momentum_projector.{k}": v for k, v in _mlp(feat_dim(sd), 64, 32).items()})
    state["classifier.weight"] = torch.randn(10, feat_dim(sd))
    state["classifier.bias"] = torch.randn(10)
    return {
        "epoch": 399,
        "global_step": 12345,
        "pytorch-lightning_version": "2.0.2",
        "state_dict": state,
        "hyper_parameters": {"method": "byol", "max_epochs": 400},
        "optimizer_states": [],
        "lr_schedulers": [],
        "loops": {},
    }


def fmt_mmselfsup(sd, depth):
    state = prefixed(sd, "backbone.", skip_fc=True)
    state.update(prefixed(sd, "encoder_k.0.", skip_fc=True))
    state.update({f"neck.mlp.{k}": v for k, v in _mlp(feat_dim(sd), 64, 32).items()})
    state["queue"] = torch.randn(32, 64)
    state["queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {
        "meta": {"epoch": 200, "iter": 5000, "mmselfsup_version": "0.9.1"},
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": []},
    }


def fmt_backbone_prefix(sd, depth):
    state = prefixed(sd, "backbone.", skip_fc=True)
    state["head.weight"] = torch.randn(8, feat_dim(sd))
    return state


def fmt_encoder_prefix(sd, depth):
    state = prefixed(sd, "module.encoder.")
    state.update({f"module.projection.{k}": v for k, v in _mlp(feat_dim(sd), 32, 16).items()})
    return {"state_dict": state, "epoch": 5}


def fmt_raw(sd, depth):  # a raw dict of tensors under an arbitrary prefix
    state = prefixed(sd, "net.trunk.")
    state["net.head.weight"] = torch.randn(4, 4)
    return state


def fmt_detectron2_fpn_model(sd, depth):  # a detectron2 FPN training checkpoint
    model = {"backbone.bottom_up." + d2_name(k): v.clone() for k, v in backbone(sd).items()}
    model["backbone.fpn_lateral2.weight"] = torch.randn(256, 64 if depth < 50 else 256, 1, 1)
    model["roi_heads.box_predictor.cls_score.weight"] = torch.randn(21, 1024)
    return {"model": model, "iteration": 100, "optimizer": {}, "scheduler": {}}


def fmt_detectron2_c4_model(sd, depth):  # a detectron2 C4 training checkpoint: res5 in the ROI head
    model = {}
    for k, v in backbone(sd).items():
        name = d2_name(k)
        model[("roi_heads." if name.startswith("res5.") else "backbone.") + name] = v.clone()
    model["roi_heads.res5.norm.weight"] = torch.randn(2048)
    model["roi_heads.res5.norm.bias"] = torch.randn(2048)
    model["proposal_generator.rpn_head.conv.weight"] = torch.randn(8, 8, 3, 3)
    return {"model": model, "iteration": 100}


FORMATS = {
    # name: (builder, reader that must auto-detect it, a group label that must be dropped)
    "torchvision": (fmt_torchvision, "torchvision", "fc.* (classifier / projection)"),
    "torchvision_reference": (
        fmt_torchvision_reference,
        "torchvision",
        "fc.* (classifier / projection)",
    ),
    "timm": (fmt_timm, "timm", "state_dict_ema.*"),
    "mocov1": (fmt_mocov1, "moco", "module.encoder_k.*"),
    "mocov2": (fmt_mocov2, "moco", "module.queue"),
    "mocov3": (fmt_mocov3, "mocov3", "module.momentum_encoder.*"),
    "supcon": (fmt_supcon, "supcon", "head.*"),
    "supcon_dp": (fmt_supcon_dp, "supcon", "module.head.*"),
    "vissl": (fmt_vissl, "vissl", "heads.*"),
    "solo-learn": (fmt_sololearn, "lightning", "momentum_backbone.*"),
    "mmselfsup": (fmt_mmselfsup, "mmselfsup", "neck.*"),
    "backbone_prefix": (fmt_backbone_prefix, "prefixed", "head.*"),
    "encoder_prefix": (fmt_encoder_prefix, "prefixed", "module.projection.*"),
    "raw": (fmt_raw, "raw", "net.*"),
    "detectron2_fpn_model": (fmt_detectron2_fpn_model, "detectron2", "backbone.*"),
}
DEPTH50 = ["mocov2", "supcon_dp", "vissl", "solo-learn"]
CASES = [(name, 18) for name in FORMATS] + [(name, 50) for name in DEPTH50]


@pytest.mark.parametrize("name,depth", CASES, ids=[f"{n}-R{d}" for n, d in CASES])
def test_format_converts_verifies_and_loads(name, depth, tmp_path, capsys):
    builder, reader, dropped_label = FORMATS[name]
    sd = random_resnet(depth, seed=depth + len(name))
    src = tmp_path / "in.pth"
    torch.save(builder(sd, depth), src)
    out = tmp_path / "out.pkl"

    result = convert_checkpoint(src, out, log=print)
    printed = capsys.readouterr().out
    print(printed)

    assert result.format == reader
    assert result.depth == depth
    n = len(backbone(sd))
    assert result.coverage.ok and len(result.coverage.matched) == result.coverage.expected == n
    assert f"coverage: {n}/{n}" in printed
    assert dropped_label in set(result.coverage.dropped.values()), result.coverage.dropped
    diff = result.verification.max_diff
    print(f"{name} R{depth}: max abs diff {diff:.3e}")
    assert 0 <= diff < 1e-4
    assert max(result.verification.max_abs_output.values()) > 1e-2  # a real signal was compared
    assert "max |diff|" in printed
    assert_detectron2_matches_source(out, sd, depth)
    assert sorted(os.listdir(tmp_path)) == ["in.pth", "out.pkl"]  # no temporary left behind


def test_detectron2_c4_training_checkpoint_reads_res5_from_roi_heads(tmp_path):
    sd = random_resnet(50, seed=7)
    src = tmp_path / "model_final.pth"
    torch.save(fmt_detectron2_c4_model(sd, 50), src)
    out = tmp_path / "backbone.pth"
    result = convert_checkpoint(src, out, to="torchvision")
    assert result.format == "detectron2" and result.verification.passed
    assert "roi_heads.res5.norm.weight" in result.coverage.dropped
    state, meta = load_canonical(out)
    ref = backbone(sd)
    assert list(state) == list(ref)
    assert all(torch.equal(state[k], ref[k]) for k in ref)


@pytest.mark.parametrize("depth", [18, 50])
def test_canonical_save_load_and_convert(depth, tmp_path):
    sd = random_resnet(depth, seed=3)
    path = tmp_path / "export.pth"
    meta = save_canonical(
        path,
        sd,
        arch=f"resnet{depth}",
        method="simclr",
        extra={"epochs": 200, "dataset": "toy", "notes": None, "lr": [0.1, 0.01]},
    )
    assert meta["depth"] == depth and meta["method"] == "simclr" and meta["epochs"] == 200
    raw = torch.load(path, weights_only=True)  # only plain types inside
    assert raw["format"] == CANONICAL_FORMAT == "contrastive_det.backbone/v1"
    assert not any(
        k.startswith("fc.") or k.endswith("num_batches_tracked") for k in raw["state_dict"]
    )
    assert raw["meta"] == {
        "arch": f"resnet{depth}",
        "depth": depth,
        "method": "simclr",
        "pixel_mean": [123.675, 116.28, 103.53],
        "pixel_std": [58.395, 57.12, 57.375],
        "input_format": "RGB",
        "epochs": 200,
        "dataset": "toy",
        "notes": None,
        "lr": [0.1, 0.01],
    }
    state, meta2 = load_canonical(path)
    assert meta2 == raw["meta"]
    ref = backbone(sd)
    assert list(state) == list(ref) and all(torch.equal(state[k], ref[k]) for k in ref)

    result = convert_checkpoint(path, tmp_path / "export.pkl")
    assert result.format == "canonical" and result.meta["method"] == "simclr"
    assert result.verification.max_diff < 1e-4
    assert_detectron2_matches_source(tmp_path / "export.pkl", sd, depth)


def test_write_config_for_a_c4_protocol(tmp_path):
    from conftest import REPO
    from contrastive_det.config import get_cfg

    sd = random_resnet(50, seed=5)
    save_canonical(tmp_path / "r50.pth", sd, arch="resnet50", method="supcon")
    shutil.copytree(os.path.join(REPO, "configs"), tmp_path / "configs")
    base = str(tmp_path / "configs" / "detection" / "coco_R_50_C4_1x.yaml")
    cfg_path = tmp_path / "experiments" / "coco_supcon.yaml"
    result = convert_checkpoint(
        tmp_path / "r50.pth",
        tmp_path / "r50.pkl",
        verify=False,
        write_config=str(cfg_path),
        base=base,
    )
    assert result.config_path == str(cfg_path)
    text = cfg_path.read_text()
    assert f'_BASE_: "{base}"' in text  # absolute, like MODEL.WEIGHTS
    assert text.count("_BASE_:") == 1 and "method supcon" in text
    cfg = get_cfg()
    cfg.merge_from_file(str(cfg_path))
    assert cfg.MODEL.WEIGHTS == str(tmp_path / "r50.pkl")
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.RESNETS.RES2_OUT_CHANNELS == 256
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False and cfg.INPUT.FORMAT == "RGB"
    assert list(cfg.MODEL.PIXEL_MEAN) == [123.675, 116.28, 103.53]
    assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm" and cfg.SOLVER.MAX_ITER == 90000
    assert sorted(os.listdir(tmp_path)) == ["configs", "experiments", "r50.pkl", "r50.pth"]
    assert os.listdir(tmp_path / "experiments") == ["coco_supcon.yaml"]  # no check file left


def test_canonical_pixel_statistics_reach_the_config(tmp_path):
    sd = random_resnet(18, seed=4)
    path = tmp_path / "bgr.pth"
    save_canonical(
        path,
        sd,
        arch="resnet18",
        pixel_mean=(103.5, 116.3, 123.7),
        pixel_std=(1, 1, 1),
        input_format="BGR",
    )
    result = convert_checkpoint(path, tmp_path / "bgr.pkl", verify=False)
    assert result.verification is None
    assert result.config["MODEL.PIXEL_MEAN"] == [103.5, 116.3, 123.7]
    assert result.config["MODEL.PIXEL_STD"] == [1.0, 1.0, 1.0]
    assert result.config["INPUT.FORMAT"] == "BGR"
    assert result.config["MODEL.RESNETS.RES2_OUT_CHANNELS"] == 64
    assert result.config["MODEL.RESNETS.STRIDE_IN_1X1"] is False


@pytest.mark.parametrize("depth", [18, 50])
def test_roundtrip_torchvision_detectron2_torchvision_is_lossless(depth, tmp_path):
    sd = random_resnet(depth, seed=11)
    ref = backbone(sd)
    d2 = torchvision_to_detectron2(ref)
    assert set(d2) == {d2_name(k) for k in ref}
    pkl = tmp_path / "w.pkl"
    write_detectron2(pkl, d2)
    result = convert_checkpoint(pkl, tmp_path / "back.pth", to="torchvision")
    assert result.format == "detectron2" and result.verification.max_diff < 1e-4
    state, meta = load_canonical(tmp_path / "back.pth")
    assert set(state) == set(ref)
    for k in ref:
        assert state[k].dtype == ref[k].dtype and torch.equal(state[k], ref[k]), k
    # and forward again: detectron2 -> torchvision -> detectron2 gives the same pickle content
    convert_checkpoint(tmp_path / "back.pth", tmp_path / "again.pkl")
    loaded, _ = load_into_detectron2_backbone(tmp_path / "again.pkl", depth)
    for k, v in d2.items():
        assert torch.equal(loaded[k], v), k


def test_mapping_agrees_with_both_libraries():
    """Key sets of torchvision's and detectron2's ResNets correspond one to one, shapes equal."""
    from contrastive_det.convert.resnet_keys import (
        detectron2_backbone_shapes,
        detectron2_to_torchvision,
        torchvision_backbone_shapes,
    )

    for depth in (18, 34, 50, 101, 152):
        tv = torchvision_backbone_shapes(depth)
        d2 = detectron2_backbone_shapes(depth)
        mapped = torchvision_to_detectron2(OrderedDict((k, torch.empty(s)) for k, s in tv.items()))
        assert {k: tuple(v.shape) for k, v in mapped.items()} == dict(d2)
        assert set(detectron2_to_torchvision(mapped)) == set(tv)
        assert all(d2_name(k) in d2 for k in tv)

"""build_dilated_resnet_backbone: detectron2's dilated ResNet-50 exactly, and for every depth the
"a trous" identity (the dilated network's features at every s-th position are the undilated
network's features)."""

import re

import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from detectron2.projects.deeplab import build_resnet_deeplab_backbone

from contrastive_det.config import get_cfg
from contrastive_det.modeling.dilated_resnet import build_dilated_resnet_backbone

INPUT = ShapeSpec(channels=3)


def _cfg(depth, res4=1, res5=1, contract=False, stride_in_1x1=True, grid=(1, 1, 1)):
    cfg = get_cfg()
    r = cfg.MODEL.RESNETS
    r.DEPTH = depth
    r.NORM = "BN"
    r.RES2_OUT_CHANNELS = 64 if depth < 50 else 256
    r.OUT_FEATURES = ["res4", "res5"]
    r.RES4_DILATION = res4
    r.RES5_DILATION = res5
    r.RES5_MULTI_GRID = list(grid)
    r.CONTRACT_DILATION = contract
    r.STRIDE_IN_1X1 = stride_in_1x1
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return cfg


def _features(backbone, x):
    """Eval-mode features in float64 (the identity is exact; float32 sums differ in order) with
    non-trivial BN statistics (seeded)."""
    torch.manual_seed(1)
    for m in backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    backbone.double().eval()
    with torch.no_grad():
        return backbone(x.double())


def _build(builder, cfg, seed=0):
    torch.manual_seed(seed)
    return builder(cfg, INPUT)


def test_res5_dilation_is_detectron2s_own_for_resnet50():
    cfg = _cfg(50, res5=2)
    ours, theirs = _build(build_dilated_resnet_backbone, cfg), _build(build_resnet_backbone, cfg)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 64, 96)
    a, b = _features(ours, x), _features(theirs, x)
    assert a["res5"].shape == (1, 2048, 4, 6)  # output stride 16
    torch.testing.assert_close(a["res5"], b["res5"], rtol=0, atol=0)
    assert ours.output_shape()["res5"].stride == 16 == theirs.output_shape()["res5"].stride


def test_output_stride_8_with_multi_grid_is_deeplabs_own():
    cfg = _cfg(50, res4=2, res5=4, grid=(1, 2, 4))
    ours = _build(build_dilated_resnet_backbone, cfg)
    theirs = _build(build_resnet_deeplab_backbone, cfg)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 64, 64)
    a, b = _features(ours, x), _features(theirs, x)
    assert a["res5"].shape == (1, 2048, 8, 8)
    torch.testing.assert_close(a["res5"], b["res5"], rtol=0, atol=0)
    torch.testing.assert_close(a["res4"], b["res4"], rtol=0, atol=0)
    shapes = ours.output_shape()
    assert (shapes["res4"].stride, shapes["res5"].stride) == (8, 8)


@pytest.mark.parametrize(
    "depth,stride_in_1x1", [(18, True), (34, True), (50, False)], ids=["R18", "R34", "R50-tv"]
)
@pytest.mark.parametrize("res4,res5,step", [(1, 2, 2), (2, 4, 4)], ids=["OS16", "OS8"])
def test_contracted_dilation_samples_the_undilated_features(depth, stride_in_1x1, res4, res5, step):
    # the a-trous identity: removing a stride of s and dilating every later 3x3 conv by s computes
    # the same features at every s-th position; mmseg's contract_dilation is that placement for
    # basic blocks and torchvision-layout bottlenecks (detectron2's is not: see below)
    plain = _build(build_resnet_backbone, _cfg(depth, stride_in_1x1=stride_in_1x1))
    dilated = _build(
        build_dilated_resnet_backbone,
        _cfg(depth, res4, res5, contract=True, stride_in_1x1=stride_in_1x1),
    )
    dilated.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    p, d = _features(plain, x), _features(dilated, x)
    assert d["res5"].shape[-2:] == (64 // (32 // step), 96 // (32 // step))
    torch.testing.assert_close(d["res5"][..., ::step, ::step], p["res5"], rtol=1e-9, atol=1e-9)
    res4_step = 2 if res4 == 2 else 1
    torch.testing.assert_close(
        d["res4"][..., ::res4_step, ::res4_step], p["res4"], rtol=1e-9, atol=1e-9
    )


def test_detectron2s_placement_differs_from_the_contracted_one_on_basic_blocks():
    # the two conventions are told apart: every block at the stage's dilation (detectron2) does not
    # sample the undilated ResNet-18
    plain = _build(build_resnet_backbone, _cfg(18))
    dilated = _build(build_dilated_resnet_backbone, _cfg(18, res5=2, contract=False))
    dilated.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    p, d = _features(plain, x), _features(dilated, x)
    assert not torch.allclose(d["res5"][..., ::2, ::2], p["res5"], atol=1e-2)


def test_a_resnet18_checkpoint_loads_whole():
    plain = _build(build_resnet_backbone, _cfg(18))
    dilated = _build(build_dilated_resnet_backbone, _cfg(18, res5=2))
    assert dilated.load_state_dict(plain.state_dict(), strict=True)  # no key missing or extra
    assert dilated.output_shape()["res5"] == ShapeSpec(channels=512, stride=16)


@pytest.mark.parametrize(
    "res4,res5,grid,stem,depth,message",
    [
        (1, 4, (1, 1, 1), "basic", 50, "needs RES4_DILATION 2"),
        (2, 2, (1, 1, 1), "basic", 50, "expected (1, 1), (1, 2)"),
        (1, 3, (1, 1, 1), "basic", 50, "RES5_DILATION 3"),
        (
            1,
            2,
            (1, 2),
            "basic",
            50,
            "RES5_MULTI_GRID [1, 2]: expected one multiplier per res5 block (3",
        ),
        (1, 2, (1, 1, 1), "deeplab", 18, "STEM_TYPE deeplab needs a bottleneck"),
        (1, 2, (1, 1, 1), "other", 50, "STEM_TYPE 'other'"),
    ],
)
def test_bad_settings_name_the_key(res4, res5, grid, stem, depth, message):
    cfg = _cfg(depth, res4, res5, grid=grid)
    cfg.MODEL.RESNETS.STEM_TYPE = stem
    with pytest.raises(ValueError, match=re.escape(message)):
        build_dilated_resnet_backbone(cfg, INPUT)

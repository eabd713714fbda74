import pickle

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY

import contrastive_det  # noqa: F401  (registers the head)
from contrastive_det.config import get_cfg
from contrastive_det.engine.checkpoint import AtomicDetectionCheckpointer

from conftest import TOY_CONFIG


def toy_model_cfg():
    cfg = get_cfg()
    cfg.merge_from_file(TOY_CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.NORM = "BN"
    return cfg


def test_registered_on_import():
    assert ROI_HEADS_REGISTRY.get("Res5ROIHeadsExtraNorm").__name__ == "Res5ROIHeadsExtraNorm"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(toy_model_cfg()).eval()


def test_res5_head_ends_with_one_norm_of_the_config_type(model):
    res5 = model.roi_heads.res5
    assert isinstance(res5[-1], torch.nn.BatchNorm2d) and res5[-1].num_features == 2048
    assert len(res5) == 4  # three bottleneck blocks + the extra norm
    x = torch.randn(3, 1024, 14, 14)  # pooled RoIs: R x C x 14 x 14
    y = res5(x)
    assert y.shape == (3, 2048, 7, 7)
    # the extra norm normalizes the block output: in eval mode it applies the running stats
    norm = res5[-1]
    expected = (res5[:-1](x) - norm.running_mean[None, :, None, None]) / torch.sqrt(
        norm.running_var[None, :, None, None] + norm.eps
    ) * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


def test_detectron2_pkl_with_matching_heuristics_loads_backbone(model, tmp_path):
    """MODEL.WEIGHTS takes a .pkl in the layout MoCo's converter writes (short names, numpy arrays)."""
    torch.manual_seed(1)
    source = build_model(toy_model_cfg())
    state = {}
    for k, v in source.backbone.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        state[k] = v.numpy().copy()  # "stem.conv1.weight", "res2.0.conv1.norm.running_mean", ...
    for k, v in source.roi_heads.res5.state_dict().items():
        if k.startswith(("0.", "1.", "2.")) and not k.endswith("num_batches_tracked"):
            state["res5." + k] = v.numpy().copy()
    path = tmp_path / "converted.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "test", "matching_heuristics": True}, f)

    assert not torch.equal(model.backbone.stem.conv1.weight, source.backbone.stem.conv1.weight)
    AtomicDetectionCheckpointer(model).load(str(path))
    torch.testing.assert_close(model.backbone.stem.conv1.weight, source.backbone.stem.conv1.weight)
    torch.testing.assert_close(
        model.backbone.res4[5].conv3.norm.running_var, source.backbone.res4[5].conv3.norm.running_var
    )
    torch.testing.assert_close(model.roi_heads.res5[2].conv2.weight, source.roi_heads.res5[2].conv2.weight)
    assert np.isfinite(model.roi_heads.res5[-1].running_var.numpy()).all()

import os
import pickle

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

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


@pytest.mark.parametrize("depth, blocks", [(18, 2), (34, 3)])
def test_basic_block_resnets_get_a_basic_res5_head(depth, blocks):
    """ResNet-18/34 under the C4 protocol: res5 of BasicBlocks (512 channels), as the backbone names
    it."""
    from detectron2.modeling.backbone.resnet import BasicBlock

    cfg = toy_model_cfg()
    (
        cfg.MODEL.RESNETS.DEPTH,
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS,
        cfg.MODEL.RESNETS.STRIDE_IN_1X1,
    ) = depth, 64, False
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    res5 = model.roi_heads.res5
    assert [type(b) for b in res5[:-1]] == [BasicBlock] * blocks and len(res5) == blocks + 1
    assert res5[0].conv1.stride == (2, 2) and all(b.conv1.stride == (1, 1) for b in res5[1:-1])
    assert isinstance(res5[-1], torch.nn.BatchNorm2d) and res5[-1].num_features == 512
    assert model.backbone.output_shape()["res4"].channels == 256
    assert res5(torch.randn(2, 256, 14, 14)).shape == (
        2,
        512,
        7,
        7,
    )  # pooled RoIs -> R x 512 x 7 x 7
    assert model.roi_heads.box_predictor.cls_score.in_features == 512


def test_converted_resnet18_fills_the_c4_backbone_and_res5_head(tmp_path):
    """convert_to_detectron2 --base <C4 toy config> on a torchvision ResNet-18: every backbone
    tensor and the res5 head (layer4) load from the written .pkl; only the extra norm and the heads
    stay fresh."""
    import torchvision

    from contrastive_det.convert import convert_checkpoint
    from contrastive_det.engine.defaults import load_config
    import argparse

    torch.manual_seed(3)
    source = torchvision.models.resnet18()
    for m in source.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            set_nontrivial_norm_stats(m, seed=int(m.num_features))
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    convert_checkpoint(
        tmp_path / "r18.pth",
        tmp_path / "r18.pkl",
        write_config=str(tmp_path / "det.yaml"),
        base=TOY_CONFIG,
        log=lambda *a: None,
    )
    cfg = load_config(
        argparse.Namespace(
            config_file=str(tmp_path / "det.yaml"), opts=["MODEL.RESNETS.NORM", "BN"]
        )
    )
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).eval()
    AtomicDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    torch.testing.assert_close(model.backbone.stem.conv1.weight, source.conv1.weight)
    torch.testing.assert_close(
        model.backbone.res4[1].conv2.norm.running_var, source.layer3[1].bn2.running_var
    )
    torch.testing.assert_close(model.roi_heads.res5[0].conv1.weight, source.layer4[0].conv1.weight)
    torch.testing.assert_close(
        model.roi_heads.res5[0].shortcut.weight, source.layer4[0].downsample[0].weight
    )
    torch.testing.assert_close(
        model.roi_heads.res5[1].conv2.norm.running_mean, source.layer4[1].bn2.running_mean
    )


def test_detectron2_pkl_with_matching_heuristics_loads_backbone(model, tmp_path):
    """MODEL.WEIGHTS takes a .pkl in the layout MoCo's converter writes (short names, numpy
    arrays)."""
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
        model.backbone.res4[5].conv3.norm.running_var,
        source.backbone.res4[5].conv3.norm.running_var,
    )
    torch.testing.assert_close(
        model.roi_heads.res5[2].conv2.weight, source.roi_heads.res5[2].conv2.weight
    )
    assert np.isfinite(model.roi_heads.res5[-1].running_var.numpy()).all()


# ------------------------------------------------------------------------------------------------
# The extra norm with non-trivial statistics (the defaults, mean 0 / var 1 / weight 1 / bias 0, are
# close to the identity and would hide a skipped norm)
# ------------------------------------------------------------------------------------------------
TOY_MASK_CONFIG = os.path.join(os.path.dirname(TOY_CONFIG), "digits_mask_R_50_C4.yaml")


def set_nontrivial_norm_stats(norm, seed=0):
    """Running stats, weight (some channels negative) and bias far from the identity."""
    g = torch.Generator().manual_seed(seed)
    c = norm.num_features
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(c, generator=g) * 2.0)
        norm.running_var.copy_(torch.rand(c, generator=g) * 4.0 + 0.25)
        norm.weight.copy_(torch.randn(c, generator=g) * 1.5)
        norm.bias.copy_(torch.randn(c, generator=g))


def bn_eval(z, mean, var, weight, bias, eps):
    """y[n, c, h, w] = (z - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]."""
    per_channel = lambda v: v[None, :, None, None]  # noqa: E731
    return (z - per_channel(mean)) / torch.sqrt(per_channel(var) + eps) * per_channel(
        weight
    ) + per_channel(bias)


def pooled_rois(head, seed=0):
    """Features of one 128x128 image (res4: 1024 x 8 x 8) and the 14x14 ROI crops of 3 boxes."""
    g = torch.Generator().manual_seed(seed)
    feature = torch.randn(1, 1024, 8, 8, generator=g)
    boxes = [
        Boxes(
            torch.tensor(
                [[0.0, 0.0, 64.0, 64.0], [32.0, 16.0, 120.0, 100.0], [8.0, 40.0, 50.0, 127.0]]
            )
        )
    ]
    return [feature], boxes, head.pooler([feature], boxes)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_extra_norm_applied_once_with_its_statistics(training):
    torch.manual_seed(0)
    head = build_model(toy_model_cfg()).roi_heads
    norm = head.res5[-1]
    set_nontrivial_norm_stats(norm)
    mean0, var0 = norm.running_mean.clone(), norm.running_var.clone()
    head.train(training)
    features, boxes, pooled = pooled_rois(head)
    with torch.no_grad():
        z = head.res5[:-1](pooled)  # res5 blocks: R x 2048 x 7 x 7
        y = head._shared_roi_transform(features, boxes)  # the path the box and mask heads use
    if training:  # batch statistics over (R, H, W); running stats move by the momentum
        batch_mean = z.mean(dim=(0, 2, 3))
        batch_var = z.var(dim=(0, 2, 3), unbiased=False)
        expected = bn_eval(z, batch_mean, batch_var, norm.weight, norm.bias, norm.eps)
        n = z.numel() / z.shape[1]
        m = norm.momentum
        torch.testing.assert_close(
            norm.running_mean, (1 - m) * mean0 + m * batch_mean, rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(
            norm.running_var, (1 - m) * var0 + m * batch_var * n / (n - 1), rtol=1e-4, atol=1e-5
        )
    else:
        expected = bn_eval(z, mean0, var0, norm.weight, norm.bias, norm.eps)
        torch.testing.assert_close(norm.running_mean, mean0)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Mask R-CNN C4 (MODEL.MASK_ON): the mask head runs on the same normalized res5 features
# ------------------------------------------------------------------------------------------------
def toy_mask_cfg():
    cfg = get_cfg()
    cfg.merge_from_file(TOY_MASK_CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 20
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 10
    return cfg


def tiny_batch():
    """One 3 x 128 x 128 image with two boxes and their bitmask instance masks."""
    image = torch.rand(3, 128, 128) * 255
    inst = Instances((128, 128))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 60.0, 70.0], [70.0, 40.0, 120.0, 110.0]]))
    inst.gt_classes = torch.tensor([3, 7])
    masks = torch.zeros(2, 128, 128, dtype=torch.bool)
    masks[0, 20:60, 15:50] = True
    masks[1, 50:100, 80:110] = True
    inst.gt_masks = BitMasks(masks)
    return [{"image": image, "height": 128, "width": 128, "instances": inst}]


def record_mask_head_inputs(model):
    """Hooks: what the mask head receives, what res5 (with its norm) outputs, how often the norm
    runs."""
    seen = {"mask_in": [], "res5_out": [], "norm_calls": 0}
    heads = model.roi_heads

    def on_norm(module, args, out):
        seen["norm_calls"] += 1

    hooks = [
        heads.mask_head.register_forward_pre_hook(
            lambda m, args: seen["mask_in"].append(args[0].detach())
        ),
        heads.res5.register_forward_hook(
            lambda m, args, out: seen["res5_out"].append(out.detach())
        ),
        heads.res5[-1].register_forward_hook(on_norm),
    ]
    return seen, hooks


def test_mask_rcnn_c4_builds_with_the_extra_norm_head():
    model = build_model(toy_mask_cfg())
    heads = model.roi_heads
    assert type(heads).__name__ == "Res5ROIHeadsExtraNorm" and heads.mask_on
    assert type(heads.mask_head).__name__ == "MaskRCNNConvUpsampleHead"
    assert isinstance(heads.res5[-1], torch.nn.BatchNorm2d) and len(heads.res5) == 4
    assert heads.mask_head.deconv.in_channels == 2048  # fed by res5 + norm, no conv layers before


def test_mask_rcnn_c4_training_step_uses_normalized_res5_features():
    torch.manual_seed(0)
    model = build_model(toy_mask_cfg()).train()
    set_nontrivial_norm_stats(model.roi_heads.res5[-1])
    seen, hooks = record_mask_head_inputs(model)
    with EventStorage():
        losses = model(tiny_batch())
    for h in hooks:
        h.remove()
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"] > 0
    sum(losses.values()).backward()
    assert model.roi_heads.mask_head.predictor.weight.grad.abs().sum() > 0
    # one res5 pass, one norm pass; the mask head gets the foreground rows of that normalized output
    assert len(seen["res5_out"]) == 1 and seen["norm_calls"] == 1
    (res5_out,), (mask_in,) = seen["res5_out"], seen["mask_in"]
    assert 0 < mask_in.shape[0] < res5_out.shape[0]
    # dist: fg x R
    dist = (mask_in.flatten(1)[:, None, :] - res5_out.flatten(1)[None, :, :]).abs().amax(dim=2)
    assert (dist.amin(dim=1) == 0).all()


def test_mask_rcnn_c4_inference_masks_from_the_normalized_features():
    torch.manual_seed(0)
    model = build_model(toy_mask_cfg()).eval()
    norm = model.roi_heads.res5[-1]
    set_nontrivial_norm_stats(norm)
    # a random model's outputs are arbitrary: every RoI is class 3, box = proposal
    with torch.no_grad():
        model.roi_heads.box_predictor.bbox_pred.weight.zero_()
        model.roi_heads.box_predictor.bbox_pred.bias.zero_()
        model.roi_heads.box_predictor.cls_score.weight.zero_()
        model.roi_heads.box_predictor.cls_score.bias[:] = torch.tensor(
            [0.0] * 3 + [10.0] + [0.0] * 7
        )
    seen, hooks = record_mask_head_inputs(model)
    batch = tiny_batch()
    with torch.no_grad():
        (out,) = model([{k: v for k, v in batch[0].items() if k != "instances"}])
    for h in hooks:
        h.remove()
    inst = out["instances"]
    assert len(inst) > 0 and inst.pred_masks.shape == (len(inst), 128, 128)
    assert set(inst.pred_classes.tolist()) == {3}
    # boxes pass: res5 + norm once; mask pass on the final boxes: res5 + norm once more
    assert len(seen["res5_out"]) == 2 and seen["norm_calls"] == 2
    mask_in = seen["mask_in"][0]
    torch.testing.assert_close(mask_in, seen["res5_out"][1])
    # ... and that is the BN formula with the running statistics on the res5 blocks' output
    # (the model does not resize: output boxes are in the 128 x 128 input's coordinates)
    with torch.no_grad():
        features = model.backbone(model.preprocess_image(batch).tensor)
        pooled = model.roi_heads.pooler([features["res4"]], [inst.pred_boxes])
        z = model.roi_heads.res5[:-1](pooled)
    expected = bn_eval(z, norm.running_mean, norm.running_var, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(mask_in, expected, rtol=1e-4, atol=1e-4)

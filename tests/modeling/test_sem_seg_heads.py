"""FCN heads and the segmentor: the loss over valid pixels, output sizes, sliding windows, both
protocols' shapes."""

import math

import pytest
import torch

from detectron2.modeling import build_model

from contrastive_det.config import get_cfg
from contrastive_det.modeling.sem_seg_heads import sem_seg_cross_entropy

REPO_CONFIGS = "configs/segmentation"


def test_cross_entropy_averages_over_valid_pixels_only():
    logits = torch.zeros(1, 4, 1, 2)  # uniform over 4 classes at 2 pixels
    targets = torch.tensor([[[1, 255]]])  # one pixel ignored
    # 1.386294, not 0.693147
    assert sem_seg_cross_entropy(logits, targets, 255).item() == pytest.approx(math.log(4))
    assert sem_seg_cross_entropy(logits, torch.full((1, 1, 2), 255), 255).item() == 0.0


def _model(config, **overrides):
    cfg = get_cfg()
    cfg.merge_from_file(f"{REPO_CONFIGS}/{config}")
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    cfg.MODEL.RESNETS.DEPTH = 18 if overrides.pop("r18", True) else 50
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    for k, v in overrides.items():
        node, key = cfg, k.split(".")
        for part in key[:-1]:
            node = getattr(node, part)
        setattr(node, key[-1], v)
    torch.manual_seed(0)
    return build_model(cfg), cfg


@pytest.mark.parametrize("r18", [False, True], ids=["R50", "R18"])
@pytest.mark.parametrize(
    "config,stride", [("voc12aug_R_50_FCN16s_30k.yaml", 16), ("voc12aug_R_50_FCN_D8_20k.yaml", 8)]
)
def test_output_stride_and_prediction_size(config, stride, r18):
    # both protocols dilate a ResNet-18 too (build_dilated_resnet_backbone)
    model, _ = _model(config, r18=r18)
    shapes = model.backbone.output_shape()
    head_in = model.sem_seg_head.in_feature
    assert shapes[head_in].stride == stride
    model.eval()
    image = torch.randint(0, 255, (3, 37, 50), dtype=torch.uint8)  # not a multiple of the stride
    with torch.no_grad():
        out = model([{"image": image, "height": 37, "width": 50}])[0]["sem_seg"]
    assert out.shape == (21, 37, 50)


def test_training_losses_of_both_protocols():
    model, _ = _model("voc12aug_R_50_FCN_D8_20k.yaml", r18=False)
    model.train()
    batch = [
        {
            "image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8),
            "sem_seg": torch.randint(0, 21, (64, 64)),
        }
        for _ in range(2)
    ]
    losses = model(batch)
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_aux"}
    assert all(torch.isfinite(v) for v in losses.values())
    model, _ = _model("voc12aug_R_50_FCN16s_30k.yaml", r18=False)
    model.train()
    assert set(model(batch)) == {"loss_sem_seg"}


def test_mocos_head_has_the_published_shape():
    model, _ = _model("voc12aug_R_50_FCN16s_30k.yaml", r18=False)
    convs = model.sem_seg_head.head.convs
    assert len(convs) == 2
    assert all(
        c.dilation == (6, 6) and c.out_channels == 256 and c.kernel_size == (3, 3) for c in convs
    )
    assert model.sem_seg_head.head.predictor.kernel_size == (1, 1)
    assert model.sem_seg_head.aux_head is None


def test_sliding_windows_covering_the_image_once_equal_the_whole_image():
    model, cfg = _model("voc12aug_R_50_FCN16s_30k.yaml", r18=False)
    model.eval()
    image = torch.randint(0, 255, (3, 48, 64), dtype=torch.uint8)
    with torch.no_grad():
        whole = model([{"image": image}])[0]["sem_seg"]
        model.test_crop_size, model.test_stride = (48, 64), (32, 32)
        slid = model([{"image": image}])[0]["sem_seg"]
        model.test_crop_size, model.test_stride = (48, 40), (48, 24)  # two overlapping windows
        two = model([{"image": image}])[0]["sem_seg"]
    torch.testing.assert_close(slid, whole)
    assert two.shape == whole.shape and not torch.allclose(two, whole)

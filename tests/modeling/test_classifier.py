"""The Classifier meta-architecture: stage features, frozen trunk, heads, losses."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from contrastive_det.config import get_cfg
from contrastive_det.modeling.classifier import Classifier, pooled_stage_features


def make_cfg(head="linear", freeze=False, layers=("res5",), classes=4):
    cfg = get_cfg()
    cfg.MODEL.TV_RESNET.DEPTH = 18
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = classes
    cfg.MODEL.CLASSIFIER.HEAD = head
    cfg.MODEL.CLASSIFIER.FREEZE_TRUNK = freeze
    cfg.CLASSIFICATION.LAYERS = layers
    cfg.CLASSIFICATION.CORE_TUNING.HIDDEN_DIM = 32
    cfg.CLASSIFICATION.CORE_TUNING.PROJ_DIM = 16
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
    cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    return cfg


def batch(n=4, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8),
            "label": i % 4,
        }
        for i in range(n)
    ]


def test_stage_features_match_torchvision_pooling():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    feats = pooled_stage_features(net, x, ("res2", "res3", "res4", "res5"))
    net.fc = torch.nn.Identity()
    assert torch.allclose(feats["res5"], net(x), atol=1e-5)
    assert [f.shape[1] for f in feats.values()] == [64, 128, 256, 512]
    # res3 by hand: the stem, layer1, layer2, global average pool
    y = net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))
    assert torch.allclose(feats["res3"], y.mean(dim=(2, 3)), atol=1e-6)
    with pytest.raises(ValueError, match="res6"):
        pooled_stage_features(net, x, ("res6",))


def test_frozen_trunk_stays_in_eval_and_gets_no_gradient():
    torch.manual_seed(0)
    model = Classifier(make_cfg("bn_linear", freeze=True))
    model.train()
    assert model.training and not model.trunk.training and model.head.training
    bn = model.trunk.resnet.bn1
    before = bn.running_mean.clone()
    loss = model(batch())["loss_cls"]
    loss.backward()
    assert torch.equal(bn.running_mean, before)
    assert all(p.grad is None for p in model.trunk.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert not model.head[0].affine and model.head[0].running_mean.abs().sum() > 0


def test_finetuning_trains_the_trunk_and_loss_is_cross_entropy():
    torch.manual_seed(0)
    model = Classifier(make_cfg("linear"))
    inputs = batch()
    loss = model(inputs)["loss_cls"]
    model.eval()
    with torch.no_grad():
        logits = torch.stack([o["logits"] for o in model(inputs)])
    model.train()
    assert loss.requires_grad
    loss.backward()
    assert model.trunk.resnet.conv1.weight.grad is not None
    # the same batch in eval mode uses running BN statistics: compare with a fresh train-mode pass
    # instead
    torch.manual_seed(0)
    again = Classifier(make_cfg("linear"))
    feats = again.trunk(
        (torch.stack([x["image"] for x in inputs]).float() - again.pixel_mean) / again.pixel_std
    )
    expected = F.cross_entropy(again.head(feats), torch.tensor([x["label"] for x in inputs]))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert logits.shape == (4, 4)


def test_inference_outputs_logits_and_requested_layers():
    torch.manual_seed(0)
    model = Classifier(make_cfg("linear", layers=("res2", "res4"))).eval()
    with torch.no_grad():
        out = model(batch(2))
    assert set(out[0]["features"]) == {"res2", "res4"} and out[0]["logits"].shape == (4,)
    assert out[0]["features"]["res2"].shape == (64,) and out[0]["features"]["res4"].shape == (256,)


def test_multi_label_loss_ignores_difficult_entries():
    torch.manual_seed(0)
    model = Classifier(make_cfg("linear"))
    model.multi_label = True
    inputs = [dict(x, labels=[0, 2], ignore_labels=[1]) for x in batch(2)]
    loss = model(inputs)["loss_cls"]
    torch.manual_seed(0)
    ref = Classifier(make_cfg("linear"))
    logits = ref.head(
        ref.trunk(
            (torch.stack([x["image"] for x in inputs]).float() - ref.pixel_mean) / ref.pixel_std
        )
    )
    keep = [0, 2, 3]  # class 1 is ignored
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 2)[:, keep]
    expected = F.binary_cross_entropy_with_logits(logits[:, keep], targets)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_core_tuning_head_returns_both_losses():
    from contrastive_det.modeling.core_tuning import CoreTuningHead

    torch.manual_seed(0)
    model = Classifier(make_cfg("core_tuning"))
    # bias-free, as the authors'
    assert isinstance(model.head, CoreTuningHead) and model.head.classifier.bias is None
    torch.manual_seed(1)
    losses = model(batch(8))
    assert set(losses) == {"loss_cls", "loss_con"} and all(
        torch.isfinite(v) for v in losses.values()
    )
    # loss_con is ETA (0.1) x the focal SupCon term: the same draws with ETA 1 give 10x
    model.head.eta = 1.0
    torch.manual_seed(1)
    unscaled = model(batch(8))
    torch.testing.assert_close(losses["loss_con"] * 10, unscaled["loss_con"])
    torch.testing.assert_close(losses["loss_cls"], unscaled["loss_cls"])
    assert losses["loss_cls"] > 0 and unscaled["loss_con"] > 0


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="MODEL.CLASSIFIER.HEAD"):
        Classifier(make_cfg("mlp"))

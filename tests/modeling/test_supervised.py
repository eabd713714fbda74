"""The supervised (cross-entropy) baseline pretrainer: golden loss, one view per image, labels,
export."""

import os

import pytest
import torch
from torch.nn import functional as F

from detectron2.modeling import META_ARCH_REGISTRY, build_model

import contrastive_det  # noqa: F401
from contrastive_det.config import get_cfg
from contrastive_det.data.transforms import TwoViewMapper

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TORCHVISION_MEAN = torch.tensor([123.675, 116.280, 103.530]).view(1, 3, 1, 1)
TORCHVISION_STD = torch.tensor([58.395, 57.120, 57.375]).view(1, 3, 1, 1)


def tiny_cfg(**overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/toy/pretrain_supervised_R18.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.CONTRASTIVE.NUM_CLASSES = 5
    for key, value in overrides.items():
        node, *path, leaf = key.split(".")
        target = getattr(cfg, node)
        for p in path:
            target = getattr(target, p)
        setattr(target, leaf, value)
    return cfg


def batch(labels=(3, 0, 4, 1, 3, 2), size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "views": [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)],
            "label": label,
        }
        for label in labels
    ]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_is_cross_entropy_of_its_own_trunk_and_classifier(smoothing):
    """Golden: the loss equals F.cross_entropy of logits computed by hand (torchvision
    normalisation, torchvision trunk, the linear classifier) on the one view, against the dicts'
    labels."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{"MODEL.CONTRASTIVE.LABEL_SMOOTHING": smoothing})).train()
    inputs = batch()
    losses = model(inputs)
    assert set(losses) == {"loss_ce"}

    x = (
        torch.stack([d["views"][0] for d in inputs]).float() - TORCHVISION_MEAN
    ) / TORCHVISION_STD  # Nx3xHxW
    trunk = model.encoder.resnet  # torchvision ResNet-18 with fc = Identity
    feats = trunk.avgpool(
        trunk.layer4(
            trunk.layer3(
                trunk.layer2(trunk.layer1(trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))))
            )
        )
    ).flatten(1)  # Nx512, batch statistics (train)
    logits = feats @ model.classifier.weight.T + model.classifier.bias  # Nx5
    labels = torch.tensor([3, 0, 4, 1, 3, 2])
    expected = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    torch.testing.assert_close(losses["loss_ce"], expected, rtol=1e-5, atol=1e-6)
    if smoothing == 0.0:  # and it is the mean negative log-likelihood of the true classes, by hand
        nll = -(logits.log_softmax(dim=1)[torch.arange(6), labels]).mean()
        torch.testing.assert_close(losses["loss_ce"], nll, rtol=1e-5, atol=1e-6)

    losses["loss_ce"].backward()
    assert (
        model.encoder.resnet.conv1.weight.grad.abs().sum() > 0
        and model.classifier.weight.grad.abs().sum() > 0
    )


def test_label_smoothing_changes_the_loss():
    torch.manual_seed(0)
    plain = build_model(tiny_cfg()).train()
    smooth = build_model(tiny_cfg(**{"MODEL.CONTRASTIVE.LABEL_SMOOTHING": 0.3})).train()
    smooth.load_state_dict(plain.state_dict())
    assert not torch.allclose(plain(batch())["loss_ce"], smooth(batch())["loss_ce"])


def test_one_view_per_image_from_the_mapper_and_the_model_checks_the_count(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8).numpy()).save(path)
    out = TwoViewMapper(tiny_cfg(), is_train=True)({"file_name": str(path), "label": 2})
    assert len(out["views"]) == 1 and out["views"][0].shape == (3, 64, 64) and out["label"] == 2
    two = TwoViewMapper(tiny_cfg(**{"INPUT.TWO_VIEW.NUM_VIEWS": 2}), is_train=True)(
        {"file_name": str(path)}
    )
    assert len(two["views"]) == 2
    with pytest.raises(ValueError, match="INPUT.TWO_VIEW.NUM_VIEWS must be 1 or 2"):
        TwoViewMapper(tiny_cfg(**{"INPUT.TWO_VIEW.NUM_VIEWS": 3}), is_train=True)
    with pytest.raises(ValueError, match="Supervised takes 1 view.*INPUT.TWO_VIEW.NUM_VIEWS 1"):
        build_model(tiny_cfg(**{"INPUT.TWO_VIEW.NUM_VIEWS": 2}))
    with pytest.raises(ValueError, match="SimCLR takes 2 view.*INPUT.TWO_VIEW.NUM_VIEWS 2"):
        build_model(tiny_cfg(**{"MODEL.META_ARCHITECTURE": "SimCLR"}))


def test_refuses_unlabelled_images_and_labels_beyond_num_classes():
    model = build_model(tiny_cfg()).train()
    with pytest.raises(ValueError, match="Supervised needs labelled images"):
        model(batch(labels=(0, -1, 2)))
    with pytest.raises(
        ValueError, match=r"label 5 is outside \[0, 5\).*MODEL.CONTRASTIVE.NUM_CLASSES"
    ):
        model(batch(labels=(0, 5, 2)))


def test_registered_and_exports_the_trunk_without_the_classifier():
    import torchvision

    import contrastive_det.modeling.pretrainers as pretrainers

    cls = META_ARCH_REGISTRY.get("Supervised")
    assert (
        cls is pretrainers.Supervised
        and cls.__module__ == "contrastive_det.modeling.pretrainers.supervised"
    )
    model = build_model(tiny_cfg())
    assert model.classifier.in_features == 512 and model.classifier.out_features == 5
    exported = model.export_backbone()
    reference = torchvision.models.resnet18(weights=None).state_dict()
    assert set(exported) == {k for k in reference if not k.startswith("fc.")}
    torch.testing.assert_close(
        exported["layer4.1.conv2.weight"], model.encoder.resnet.layer4[1].conv2.weight
    )
    # kNN monitor: L2-normalised pooled trunk features of the "image" of each dict
    out = model.eval()(
        [
            {"image": torch.zeros(3, 32, 32, dtype=torch.uint8)},
            {"image": torch.full((3, 32, 32), 200, dtype=torch.uint8)},
        ]
    )
    torch.testing.assert_close(
        torch.stack([o["embedding"] for o in out]).norm(dim=1), torch.ones(2)
    )

"""MODEL.WEIGHTS of a classification run: any ResNet layout the readers know -> the classifier's trunk, or refused."""
import os

import pytest
import torch

from contrastive_det.config import get_cfg
from contrastive_det.convert import ConversionError
from contrastive_det.convert.classifier_weights import CLASSIFIER_WEIGHTS_FILE, prepare_classifier_weights
from contrastive_det.convert.resnet_keys import torchvision_to_detectron2
from resnet_checkpoints import one_thread, random_resnet  # noqa: F401  (autouse fixture)


def cfg_with(weights, depth=18, prefix=""):
    cfg = get_cfg()
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.MODEL.TV_RESNET.DEPTH = depth
    cfg.MODEL.WEIGHTS_PREFIX = prefix
    return cfg


LAYOUTS = {
    "torchvision": lambda sd: sd,
    "moco": lambda sd: {"state_dict": {f"module.encoder_q.{k}": v for k, v in sd.items()}, "arch": "resnet18"},
    "supcon": lambda sd: {"model": {f"encoder.{k}": v for k, v in sd.items()}},
    "vissl": lambda sd: {"classy_state_dict": {"base_model": {"model": {"trunk": {
        f"_feature_blocks.{k}": v for k, v in sd.items()}}}}},
    "detectron2": lambda sd: {"model": {f"backbone.{k}": v for k, v in torchvision_to_detectron2(
        {k: v for k, v in sd.items() if not k.startswith("fc.") and "num_batches" not in k}).items()}},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_lands_in_the_trunk_exactly(layout, tmp_path):
    state = random_resnet(18, seed=3)
    path = tmp_path / f"{layout}.pth"
    torch.save(LAYOUTS[layout](state), path)
    out = tmp_path / "run"
    overrides = prepare_classifier_weights(cfg_with(path), str(out), log=lambda s: None)
    target = str(out / CLASSIFIER_WEIGHTS_FILE)
    assert overrides[:4] == ["MODEL.WEIGHTS", target, "RESULTS.WEIGHTS_SOURCE", str(path)]
    loaded = torch.load(target, weights_only=True)["model"]
    tv = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert set(loaded) == {f"trunk.resnet.{k}" for k in tv}
    for k, v in tv.items():
        if "num_batches" in k:
            continue  # BN batch counters are not converted (written as 0): only momentum=None BN reads them
        assert torch.equal(loaded[f"trunk.resnet.{k}"], v.float() if v.is_floating_point() else v), k

    # and the Classifier loads it through detectron2's checkpointer with only the head missing
    from detectron2.checkpoint import DetectionCheckpointer

    from contrastive_det.modeling.classifier import Classifier

    cfg = cfg_with(path)
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = 4
    model = Classifier(cfg)
    incompatible = DetectionCheckpointer(model)._load_model(torch.load(target, weights_only=True))
    assert all(k.startswith("head.") for k in incompatible.missing_keys) and not incompatible.unexpected_keys
    assert torch.equal(model.trunk.resnet.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"])


def test_random_init_and_classifier_checkpoints_pass_through(tmp_path):
    assert prepare_classifier_weights(cfg_with(""), str(tmp_path / "a")) == []
    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": {"trunk.resnet.conv1.weight": torch.zeros(64, 3, 7, 7), "head.weight": torch.zeros(3, 512)},
                "iteration": 9}, ckpt)
    assert prepare_classifier_weights(cfg_with(ckpt), str(tmp_path / "b")) == []
    assert not (tmp_path / "b").exists()


def test_method_recorded_from_our_export(tmp_path):
    from contrastive_det.convert.canonical import save_canonical

    path = tmp_path / "backbone.pth"
    save_canonical(str(path), {k: v for k, v in random_resnet(18).items() if not k.startswith("fc.")},
                   arch="resnet18", method="SupCon")
    overrides = prepare_classifier_weights(cfg_with(path), str(tmp_path / "r"), log=lambda s: None)
    assert overrides[-2:] == ["RESULTS.METHOD", "SupCon"]


def test_partial_match_is_refused_and_nothing_written(tmp_path):
    state = random_resnet(18)
    del state["layer4.1.conv2.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ConversionError, match="layer4.1.conv2.weight"):
        prepare_classifier_weights(cfg_with(path), str(tmp_path / "r"), log=lambda s: None)
    assert not (tmp_path / "r" / CLASSIFIER_WEIGHTS_FILE).exists()


def test_depth_mismatch_is_refused(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(random_resnet(18), path)
    with pytest.raises(ConversionError, match="ResNet-50"):
        prepare_classifier_weights(cfg_with(path, depth=50), str(tmp_path / "r"), log=lambda s: None)
    assert not os.path.exists(tmp_path / "r" / CLASSIFIER_WEIGHTS_FILE)


def test_two_resnets_need_a_prefix(tmp_path):
    path = tmp_path / "distill.pth"
    torch.save({"student": random_resnet(18, seed=1), "teacher": random_resnet(18, seed=2)}, path)
    with pytest.raises(ConversionError, match="student"):
        prepare_classifier_weights(cfg_with(path), str(tmp_path / "r"), log=lambda s: None)
    overrides = prepare_classifier_weights(cfg_with(path, prefix="teacher."), str(tmp_path / "r"), log=lambda s: None)
    loaded = torch.load(overrides[1], weights_only=True)["model"]
    assert torch.equal(loaded["trunk.resnet.conv1.weight"], random_resnet(18, seed=2)["conv1.weight"])

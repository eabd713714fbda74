"""MODEL.WEIGHTS of a classification run: any ResNet layout the readers know -> the classifier's
trunk, or refused."""

import os

import pytest
import torch

from contrastive_det.config import get_cfg
from contrastive_det.convert import ConversionError
from contrastive_det.convert.classifier_weights import (
    CLASSIFIER_WEIGHTS_FILE,
    prepare_classifier_weights,
)
from contrastive_det.convert.resnet_keys import torchvision_to_detectron2
from resnet_checkpoints import random_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def write_run_config(folder, fmt, mean, std, stride):
    """The input keys of the config.yaml detectron2 writes into a run's OUTPUT_DIR."""
    (folder / "config.yaml").write_text(
        f"INPUT:\n  FORMAT: {fmt}\nMODEL:\n  PIXEL_MEAN: {mean}\n  PIXEL_STD: {std}\n"
        f"  RESNETS:\n    STRIDE_IN_1X1: {str(stride).lower()}\n"
    )


def d2_model(state):
    return LAYOUTS["detectron2"](state)


def cfg_with(weights, depth=18, prefix=""):
    cfg = get_cfg()
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = (
        [123.675, 116.28, 103.53],
        [58.395, 57.12, 57.375],
    )  # the base config's
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.MODEL.TV_RESNET.DEPTH = depth
    cfg.MODEL.WEIGHTS_PREFIX = prefix
    return cfg


LAYOUTS = {
    "torchvision": lambda sd: sd,
    "moco": lambda sd: {
        "state_dict": {f"module.encoder_q.{k}": v for k, v in sd.items()},
        "arch": "resnet18",
    },
    "supcon": lambda sd: {"model": {f"encoder.{k}": v for k, v in sd.items()}},
    "vissl": lambda sd: {
        "classy_state_dict": {
            "base_model": {"model": {"trunk": {f"_feature_blocks.{k}": v for k, v in sd.items()}}}
        }
    },
    "detectron2": lambda sd: {
        "model": {
            f"backbone.{k}": v
            for k, v in torchvision_to_detectron2(
                {k: v for k, v in sd.items() if not k.startswith("fc.") and "num_batches" not in k}
            ).items()
        }
    },
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_lands_in_the_trunk_exactly(layout, tmp_path):
    state = random_resnet(18, seed=3)
    path = tmp_path / f"{layout}.pth"
    torch.save(LAYOUTS[layout](state), path)
    if layout == "detectron2":  # a detectron2 run's folder: its config.yaml says how it was trained
        write_run_config(
            tmp_path,
            fmt="RGB",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            stride=False,
        )
    out = tmp_path / "run"
    overrides = prepare_classifier_weights(cfg_with(path), str(out), log=lambda s: None)
    target = str(out / CLASSIFIER_WEIGHTS_FILE)
    assert overrides[:4] == ["MODEL.WEIGHTS", target, "RESULTS.WEIGHTS_SOURCE", str(path)]
    loaded = torch.load(target, weights_only=True)["model"]
    tv = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert set(loaded) == {f"trunk.resnet.{k}" for k in tv}
    for k, v in tv.items():
        if "num_batches" in k:
            # BN batch counters are not converted (written as 0): only momentum=None BN reads them
            continue
        assert torch.equal(
            loaded[f"trunk.resnet.{k}"], v.float() if v.is_floating_point() else v
        ), k

    # and the Classifier loads it through detectron2's checkpointer with only the head missing
    from detectron2.checkpoint import DetectionCheckpointer

    from contrastive_det.modeling.classifier import Classifier

    cfg = cfg_with(path)
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = 4
    model = Classifier(cfg)
    incompatible = DetectionCheckpointer(model)._load_model(torch.load(target, weights_only=True))
    assert (
        all(k.startswith("head.") for k in incompatible.missing_keys)
        and not incompatible.unexpected_keys
    )
    assert torch.equal(
        model.trunk.resnet.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"]
    )


def test_random_init_and_classifier_checkpoints_pass_through(tmp_path):
    assert prepare_classifier_weights(cfg_with(""), str(tmp_path / "a")) == []
    ckpt = tmp_path / "model_final.pth"
    torch.save(
        {
            "model": {
                "trunk.resnet.conv1.weight": torch.zeros(64, 3, 7, 7),
                "head.weight": torch.zeros(3, 512),
            },
            "iteration": 9,
        },
        ckpt,
    )
    assert prepare_classifier_weights(cfg_with(ckpt), str(tmp_path / "b")) == []
    assert not (tmp_path / "b").exists()


def test_method_recorded_from_our_export(tmp_path):
    from contrastive_det.convert.canonical import save_canonical

    path = tmp_path / "backbone.pth"
    save_canonical(
        str(path),
        {k: v for k, v in random_resnet(18).items() if not k.startswith("fc.")},
        arch="resnet18",
        method="SupCon",
    )
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
        prepare_classifier_weights(
            cfg_with(path, depth=50), str(tmp_path / "r"), log=lambda s: None
        )
    assert not os.path.exists(tmp_path / "r" / CLASSIFIER_WEIGHTS_FILE)


def test_two_resnets_need_a_prefix(tmp_path):
    path = tmp_path / "distill.pth"
    torch.save({"student": random_resnet(18, seed=1), "teacher": random_resnet(18, seed=2)}, path)
    with pytest.raises(ConversionError, match="student"):
        prepare_classifier_weights(cfg_with(path), str(tmp_path / "r"), log=lambda s: None)
    overrides = prepare_classifier_weights(
        cfg_with(path, prefix="teacher."), str(tmp_path / "r"), log=lambda s: None
    )
    loaded = torch.load(overrides[1], weights_only=True)["model"]
    assert torch.equal(
        loaded["trunk.resnet.conv1.weight"], random_resnet(18, seed=2)["conv1.weight"]
    )


def test_a_detectron2_model_of_unknown_conventions_is_refused_unless_declared(tmp_path):
    path = tmp_path / "alone" / "model_final.pth"
    path.parent.mkdir()
    torch.save(d2_model(random_resnet(18)), path)
    with pytest.raises(ConversionError, match="input conventions cannot be told"):
        prepare_classifier_weights(cfg_with(path), str(tmp_path / "run"), log=lambda s: None)
    assert not (tmp_path / "run" / CLASSIFIER_WEIGHTS_FILE).exists()
    cfg = cfg_with(path)
    cfg.MODEL.CLASSIFIER.WEIGHTS_CONVENTIONS = "torchvision"
    overrides = prepare_classifier_weights(cfg, str(tmp_path / "run"), log=lambda s: None)
    # torchvision's conventions: nothing to change
    assert overrides[0] == "MODEL.WEIGHTS" and len(overrides) == 4


def test_msra_style_stride_in_the_1x1_conv_is_refused(tmp_path):
    torch.save(d2_model(random_resnet(50)), tmp_path / "model_final.pth")
    write_run_config(
        tmp_path, fmt="BGR", mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], stride=True
    )
    with pytest.raises(
        ConversionError,
        match=r"stride in the first 1x1 conv.*STRIDE_IN_1X1 True, from .*config.yaml",
    ):
        prepare_classifier_weights(
            cfg_with(tmp_path / "model_final.pth", depth=50),
            str(tmp_path / "run"),
            log=lambda s: None,
        )
    assert not (tmp_path / "run").exists()


def test_bgr_weights_are_honoured_exactly_on_rgb_input(tmp_path):
    """A BGR, Caffe2-normalised detectron2 model (stride in the 3x3): conv1 takes RGB once its input
    channels are reversed, and the run normalises with the weights' own statistics."""
    import torchvision

    state = random_resnet(18, seed=5)
    torch.save(d2_model(state), tmp_path / "model_final.pth")
    bgr_mean, bgr_std = [103.53, 116.28, 123.675], [1.0, 1.0, 1.0]
    write_run_config(tmp_path, fmt="BGR", mean=bgr_mean, std=bgr_std, stride=False)
    lines = []
    overrides = prepare_classifier_weights(
        cfg_with(tmp_path / "model_final.pth"), str(tmp_path / "run"), log=lines.append
    )
    opts = dict(zip(overrides[4::2], overrides[5::2]))
    assert opts == {
        "MODEL.PIXEL_STD": "[1.0, 1.0, 1.0]"
    }  # the mean reversed is torchvision's: unchanged
    assert any("conv1's input channels reversed" in line for line in lines)
    converted = torch.load(tmp_path / "run" / CLASSIFIER_WEIGHTS_FILE, weights_only=True)["model"]

    def net(sd):
        m = torchvision.models.resnet18(weights=None)
        m.fc = torch.nn.Identity()
        m.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")}, strict=False)
        return m.eval()

    rgb = torch.rand(2, 3, 40, 40) * 255
    view = lambda v: torch.tensor(v).view(1, 3, 1, 1)  # noqa: E731
    with torch.no_grad():
        # as trained: BGR input
        reference = net(state)((rgb.flip(1) - view(bgr_mean)) / view(bgr_std))
        ours = net({k[len("trunk.resnet.") :]: v for k, v in converted.items()})(
            (rgb - view(bgr_mean[::-1])) / view(bgr_std[::-1])
        )
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)

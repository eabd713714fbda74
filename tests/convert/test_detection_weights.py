"""MODEL.WEIGHTS of a detection run: loaded as it is, converted, or refused (never silently
ignored)."""

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

from contrastive_det.config import get_cfg
from contrastive_det.convert import ConversionError, convert_checkpoint
from contrastive_det.convert.detection_weights import CONVERTED_FILE, convert_weights_for_detection
from resnet_checkpoints import random_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def cfg_with(weights, prefix=None):
    cfg = get_cfg()
    cfg.MODEL.WEIGHTS = str(weights)
    if prefix is not None:
        if "WEIGHTS_PREFIX" not in cfg.MODEL:  # until config/defaults.py declares it
            cfg.MODEL.set_new_allowed(True)
        cfg.MODEL.WEIGHTS_PREFIX = prefix
    return cfg


def refused(tmp_path, weights, *patterns, prefix=None):
    out = tmp_path / "run"
    with pytest.raises(ConversionError) as info:
        convert_weights_for_detection(cfg_with(weights, prefix), str(out), log=lambda s: None)
    message = str(info.value)
    for p in patterns:
        assert p in message, message
    assert not out.exists() or os.listdir(out) == []
    return message


def test_mobilenet_v2_state_dict_is_refused_with_what_was_found(tmp_path):
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    msg = refused(
        tmp_path,
        path,
        f"MODEL.WEIGHTS {path} is neither a detectron2 model nor a ResNet checkpoint",
        "random weights",
        "features.* (",
        "classifier.* (",
        "tools/convert_to_detectron2.py",
        '"" to train from random initialisation',
    )
    assert "no ResNet backbone found" in msg


def test_two_resnets_are_refused_naming_both_and_the_prefix(tmp_path):
    path = tmp_path / "distill.pth"
    torch.save({"student": random_resnet(18, seed=1), "teacher": random_resnet(18, seed=2)}, path)
    msg = refused(
        tmp_path,
        path,
        "several ResNets",
        "student., teacher.",
        f"tools/convert_to_detectron2.py {path} converted.pkl --prefix student.",
    )
    assert "MODEL.WEIGHTS_PREFIX" not in msg or "WEIGHTS_PREFIX" in get_cfg().MODEL
    # with the config key declared, the message names it too
    refused(tmp_path, path, "set MODEL.WEIGHTS_PREFIX student., or convert it first", prefix="")


def test_weights_prefix_picks_one_of_two_resnets(tmp_path):
    path = tmp_path / "distill.pth"
    teacher = random_resnet(18, seed=2)
    torch.save({"student": random_resnet(18, seed=1), "teacher": teacher}, path)
    out = tmp_path / "run"
    lines = []
    overrides = convert_weights_for_detection(
        cfg_with(path, prefix="teacher."), str(out), log=lines.append
    )
    target = str(out / CONVERTED_FILE)
    assert overrides[:4] == [
        "MODEL.PIXEL_MEAN",
        "(123.675, 116.28, 103.53, )",
        "MODEL.PIXEL_STD",
        "(58.395, 57.12, 57.375, )",
    ]
    i = overrides.index("MODEL.WEIGHTS")
    assert overrides[i : i + 4] == ["MODEL.WEIGHTS", target, "RESULTS.WEIGHTS_SOURCE", str(path)]
    converted = pickle.load(open(target, "rb"))["model"]
    assert np.array_equal(
        converted["res5.1.conv2.weight"], teacher["layer4.1.conv2.weight"].numpy()
    )
    assert any("tolerance 0.0001: OK" in line for line in lines)


def test_missing_file_names_the_path(tmp_path):
    refused(tmp_path, tmp_path / "nope.pth", f"MODEL.WEIGHTS {tmp_path / 'nope.pth'}: no such file")


def test_unrecognised_pkl_is_refused(tmp_path):
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump({"features.0.weight": np.zeros((4, 3, 3, 3), dtype=np.float32)}, f)
    refused(tmp_path, path, "is neither a detectron2 model", "features.*")


@pytest.mark.parametrize(
    "weights",
    [
        "",
        "detectron2://ImageNetPretrained/MSRA/R-50.pkl",
        "https://dl.fbaipublicfiles.com/detectron2/x/model_final.pkl",
    ],
)
def test_empty_and_remote_weights_are_left_to_detectron2(weights, tmp_path):
    assert convert_weights_for_detection(cfg_with(weights), str(tmp_path / "run")) == []
    assert not (tmp_path / "run").exists()


def detectron2_files(tmp_path):
    """What detectron2 loads as it is: its .pkl layouts and a detector training checkpoint."""
    sd = random_resnet(18)
    torch.save(sd, tmp_path / "tv.pth")
    # {"model", "__author__"}
    convert_checkpoint(tmp_path / "tv.pth", tmp_path / "converted.pkl", verify=False)
    with open(tmp_path / "caffe2.pkl", "wb") as f:  # detectron2's ImageNet R-50.pkl: Caffe2 names
        pickle.dump(
            {
                "conv1_w": np.zeros((64, 3, 7, 7), np.float32),
                "res2_0_branch2a_w": np.zeros((64, 64, 1, 1), np.float32),
            },
            f,
        )
    model = {
        "backbone.res2.0.conv1.weight": torch.zeros(64, 64, 1, 1),
        "roi_heads.box_predictor.cls_score.weight": torch.zeros(3, 8),
        "proposal_generator.rpn_head.conv.weight": torch.zeros(8, 8, 3, 3),
    }
    torch.save(
        {"model": model, "iteration": 3, "trainer": {"iteration": 3}}, tmp_path / "model_final.pth"
    )
    return ["converted.pkl", "caffe2.pkl", "model_final.pth"]


# what a converted ResNet-18 needs from detectron2's default config (BGR, caffe2 mean/std, R50,
# stride_in_1x1)
R18_KEYS = [
    "MODEL.PIXEL_MEAN",
    "(123.675, 116.28, 103.53, )",
    "MODEL.PIXEL_STD",
    "(58.395, 57.12, 57.375, )",
    "INPUT.FORMAT",
    "RGB",
    "MODEL.RESNETS.DEPTH",
    "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "64",
    "MODEL.RESNETS.STRIDE_IN_1X1",
    "False",
]


def test_detectron2_files_are_loaded_as_they_are(tmp_path):
    for name in detectron2_files(tmp_path):
        # a converted .pkl records the keys it needs
        expected = R18_KEYS if name == "converted.pkl" else []
        assert (
            convert_weights_for_detection(cfg_with(tmp_path / name), str(tmp_path / "run"))
            == expected
        ), name
    assert not (tmp_path / "run").exists()


def test_recorded_keys_are_adopted_and_round_trip(tmp_path):
    """The adopted overrides, merged as train_net merges them, give exactly the recorded values;
    a config that already has them gets no override; ADOPT_WEIGHTS_KEYS False only warns."""
    detectron2_files(tmp_path)
    pkl = tmp_path / "converted.pkl"
    recorded = pickle.load(open(pkl, "rb"))["config"]
    lines = []
    cfg = cfg_with(pkl)
    overrides = convert_weights_for_detection(cfg, str(tmp_path / "run"), log=lines.append)
    assert (
        f"Keys adopted from {pkl} (config -> weights): MODEL.PIXEL_MEAN [103.53, 116.28, 123.675] "
        f"-> " in lines[0]
    )
    cfg.merge_from_list(overrides)
    for key, value in recorded.items():
        node, *path = key.split(".")
        got = cfg[node]
        for p in path:
            got = got[p]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value, key
    assert convert_weights_for_detection(cfg, str(tmp_path / "run")) == []  # nothing left to change
    keep = cfg_with(pkl)
    keep.MODEL.ADOPT_WEIGHTS_KEYS = False
    lines = []
    assert convert_weights_for_detection(keep, str(tmp_path / "run"), log=lines.append) == []
    assert (
        "kept the config's because MODEL.ADOPT_WEIGHTS_KEYS is False" in lines[0]
        and "INPUT.FORMAT 'BGR' -> 'RGB'" in lines[0]
    )


def test_a_converted_pkl_names_its_method_for_results_json(tmp_path):
    sd = random_resnet(18)
    torch.save(
        {"state_dict": {"module.encoder_q." + k: v for k, v in sd.items()}}, tmp_path / "moco.pth"
    )
    convert_checkpoint(tmp_path / "moco.pth", tmp_path / "moco.pkl", verify=False)
    assert pickle.load(open(tmp_path / "moco.pkl", "rb"))["method"] == "mocov1"
    overrides = convert_weights_for_detection(
        cfg_with(tmp_path / "moco.pkl"), str(tmp_path / "run"), log=lambda s: None
    )
    assert overrides == R18_KEYS + ["RESULTS.METHOD", "mocov1"]
    named = cfg_with(tmp_path / "moco.pkl")
    named.RESULTS.METHOD = "my_label"  # the config's (a study row's) name wins
    assert "RESULTS.METHOD" not in convert_weights_for_detection(
        named, str(tmp_path / "run"), log=lambda s: None
    )
    # a state dict that names no method: no "method" entry, no override (results.json says
    # "unspecified")
    detectron2_files(tmp_path)
    assert "method" not in pickle.load(open(tmp_path / "converted.pkl", "rb"))


def test_keys_from_weights_shapes_a_random_init_run(tmp_path):
    detectron2_files(tmp_path)
    cfg = cfg_with("")
    cfg.MODEL.KEYS_FROM_WEIGHTS = str(tmp_path / "converted.pkl")
    assert convert_weights_for_detection(cfg, str(tmp_path / "run"), log=lambda s: None) == R18_KEYS
    cfg.MODEL.WEIGHTS = str(tmp_path / "converted.pkl")
    with pytest.raises(
        ConversionError, match="MODEL.KEYS_FROM_WEIGHTS .* is for random initialisation"
    ):
        convert_weights_for_detection(cfg, str(tmp_path / "run"))
    cfg = cfg_with("")
    cfg.MODEL.KEYS_FROM_WEIGHTS = str(tmp_path / "caffe2.pkl")
    with pytest.raises(
        ConversionError, match="caffe2.pkl: not a .pkl written by tools/convert_to_detectron2.py"
    ):
        convert_weights_for_detection(cfg, str(tmp_path / "run"))


def test_torchvision_checkpoint_is_converted_and_its_keys_adopted(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(
        {"state_dict": {"module.encoder_q." + k: v for k, v in random_resnet(18).items()}}, path
    )
    cfg = cfg_with(path)
    lines = []
    overrides = convert_weights_for_detection(cfg, str(tmp_path / "run"), log=lines.append)
    assert overrides == R18_KEYS + [
        "MODEL.WEIGHTS",
        str(tmp_path / "run" / CONVERTED_FILE),
        "RESULTS.WEIGHTS_SOURCE",
        str(path),
        "RESULTS.METHOD",
        "mocov1",
    ]
    text = "\n".join(lines)
    assert f"MODEL.WEIGHTS {path} is not in detectron2's layout" in text and "format moco" in text
    assert (
        f"Keys adopted from {path} (config -> weights):" in text
        and "INPUT.FORMAT 'BGR' -> 'RGB'" in text
    )

"""Wrong inputs fail loudly, name what is wrong, and never leave an output file behind."""

import argparse
import os
import pickle
from collections import OrderedDict

import pytest
import torch

from conftest import REPO
from contrastive_det.convert import (
    ConversionError,
    UnsafeCheckpointError,
    VerificationError,
    convert_checkpoint,
    load_canonical,
    load_checkpoint_file,
    save_canonical,
    torchvision_to_detectron2,
    verify_conversion,
)
from resnet_checkpoints import random_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def backbone(sd):
    return OrderedDict(
        (k, v)
        for k, v in sd.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    )


class StateDict(OrderedDict):
    """An OrderedDict subclass: unpickling it needs this module's code."""


def fails(tmp_path, ckpt, match, *, save=True, error=ConversionError, **kwargs):
    """Convert ``ckpt``; assert ``error`` whose message matches every regex; no output left."""
    src = tmp_path / "in.pth"
    if save:
        torch.save(ckpt, src)
    out = tmp_path / "out.pkl"
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error) as info:
        convert_checkpoint(src, out, **kwargs)
    message = str(info.value)
    for pattern in [match] if isinstance(match, str) else match:
        assert pattern in message, message
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == before  # no temporary file either
    return message


def test_non_resnet_mlp_lists_top_level_keys_and_prefixes(tmp_path):
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    msg = fails(
        tmp_path,
        {"state_dict": mlp.state_dict(), "epoch": 3},
        [
            "no ResNet backbone found",
            "top-level keys: ['state_dict', 'epoch']",
            "0.* (2)",
            "2.* (2)",
        ],
    )
    assert "--format" in msg and "--prefix" in msg


def test_vit_like_checkpoint_lists_its_prefixes(tmp_path):
    vit = {
        "cls_token": torch.zeros(1, 1, 8),
        "pos_embed": torch.zeros(1, 5, 8),
        "patch_embed.proj.weight": torch.zeros(8, 3, 4, 4),
        "patch_embed.proj.bias": torch.zeros(8),
    }
    for i in range(3):
        vit[f"blocks.{i}.attn.qkv.weight"] = torch.zeros(24, 8)
        vit[f"blocks.{i}.mlp.fc1.weight"] = torch.zeros(16, 8)
    vit["head.weight"] = torch.zeros(10, 8)
    fails(
        tmp_path,
        {"model": vit, "args": "x"},
        [
            "top-level keys: ['model', 'args']",
            "prefixes in model:",
            "blocks.* (6)",
            "cls_token (1)",
            "patch_embed.* (2)",
        ],
    )


def test_forced_format_that_does_not_match(tmp_path):
    sd = random_resnet(18)
    fails(tmp_path, sd, ["is not a vissl checkpoint", "_feature_blocks"], fmt="vissl")


def test_truncated_torch_file_names_the_file(tmp_path):
    src = tmp_path / "in.pth"
    torch.save(random_resnet(18), src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    fails(tmp_path, None, [str(src), "truncated or corrupt"], save=False)


def test_truncated_pickle_names_the_file(tmp_path):
    src = tmp_path / "in.pth"  # a detectron2-style plain pickle, cut short
    payload = {
        "model": {
            k: v.numpy() for k, v in torchvision_to_detectron2(backbone(random_resnet(18))).items()
        },
        "__author__": "x",
    }
    data = pickle.dumps(payload, protocol=4)
    src.write_bytes(data[: len(data) // 3])
    fails(tmp_path, None, [str(src), "truncated or corrupt"], save=False)


def test_garbage_and_empty_files(tmp_path):
    src = tmp_path / "in.pth"
    src.write_bytes(b"")
    fails(tmp_path, None, [str(src), "empty file"], save=False)
    src.write_bytes(b"PK\x03\x04 this is not a zip archive")
    fails(tmp_path, None, [str(src), "truncated or corrupt"], save=False)
    src.write_bytes(b"\x00\x01 definitely not a pickle")
    fails(tmp_path, None, [str(src), "truncated or corrupt"], save=False)
    with pytest.raises(ConversionError, match="no such file"):
        convert_checkpoint(tmp_path / "missing.pth", tmp_path / "out.pkl")


def test_depth_mismatch(tmp_path):
    msg = fails(tmp_path, random_resnet(18), ["--depth 50", "ResNet-18"], depth=50)
    assert "basic" in msg and "bottleneck" in msg
    fails(tmp_path, random_resnet(18), ["--depth 34", "ResNet-18"], depth=34)


def test_namespace_inside_is_refused_then_accepted_with_trust(tmp_path):
    ckpt = {
        "model": {"encoder." + k: v for k, v in random_resnet(18).items()},
        "opt": argparse.Namespace(lr=0.5, temp=0.1),
        "epoch": 100,
    }  # SupContrast saves its opt
    fails(
        tmp_path,
        ckpt,
        ["--trust", "argparse.Namespace", str(tmp_path / "in.pth")],
        error=UnsafeCheckpointError,
    )
    result = convert_checkpoint(tmp_path / "in.pth", tmp_path / "out.pkl", trust=True)
    assert result.format == "supcon" and result.verification.max_diff < 1e-4


def test_ordereddict_subclass_is_refused(tmp_path):
    sd = StateDict(random_resnet(18))
    fails(tmp_path, sd, ["--trust", "StateDict"], error=UnsafeCheckpointError)


def test_pickle_with_custom_object_is_refused(tmp_path):
    src = tmp_path / "in.pth"
    payload = {
        "model": {"stem.conv1.weight": torch.zeros(1).numpy()},
        "cfg": argparse.Namespace(a=1),
    }
    src.write_bytes(pickle.dumps(payload, protocol=4))
    fails(
        tmp_path, None, ["--trust", "argparse.Namespace"], save=False, error=UnsafeCheckpointError
    )
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(src)
    loaded = load_checkpoint_file(src, trust=True)
    assert isinstance(loaded["cfg"], argparse.Namespace) and torch.is_tensor(
        loaded["model"]["stem.conv1.weight"]
    )


def test_misshaped_backbone_tensor(tmp_path):
    sd = random_resnet(18)
    sd["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    fails(
        tmp_path,
        sd,
        [
            "1 mis-shaped",
            "layer2.0.conv1.weight -> res3.0.conv1.weight",
            "(128, 64, 1, 1), expected (128, 64, 3, 3)",
        ],
    )


def test_missing_backbone_tensor(tmp_path):
    sd = random_resnet(50)
    del sd["layer3.1.bn2.running_var"]
    fails(
        tmp_path,
        {"state_dict": {"backbone." + k: v for k, v in sd.items()}},
        ["1 missing", "res4.1.conv2.norm.running_var (torchvision layer3.1.bn2.running_var)"],
    )


def test_modified_architecture_keys_are_not_dropped_silently(tmp_path):
    sd = random_resnet(18)
    sd["layer1.0.se.fc1.weight"] = torch.zeros(4, 64)  # e.g. a squeeze-excitation ResNet
    fails(tmp_path, sd, ["not standard ResNet weights", "layer1.0.se.fc1.weight"])


def test_cifar_stem_is_reported_as_misshaped(tmp_path):
    sd = random_resnet(18)
    sd["conv1.weight"] = torch.zeros(64, 3, 3, 3)  # SupContrast / CIFAR 3x3 stem
    fails(
        tmp_path,
        {"model": {"encoder." + k: v for k, v in sd.items()}},
        ["conv1.weight -> stem.conv1.weight", "expected (64, 3, 7, 7)"],
    )


def test_two_candidate_backbones_are_ambiguous(tmp_path):
    sd = random_resnet(18)
    teacher = {"teacher." + k: v for k, v in sd.items()}
    teacher.update({"student." + k: v for k, v in sd.items()})
    fails(tmp_path, teacher, ["several ResNets", "teacher., student.", "--prefix teacher."])
    result = convert_checkpoint(
        tmp_path / "in.pth", tmp_path / "out.pkl", prefix="teacher.", verify=False
    )
    assert result.format == "raw" and "student.*" in result.coverage.dropped.values()


def test_output_name_and_overwrite_guards(tmp_path):
    src = tmp_path / "in.pth"
    torch.save(random_resnet(18), src)
    with pytest.raises(ConversionError, match=r"must end with \.pkl"):
        convert_checkpoint(src, tmp_path / "out.pth")
    with pytest.raises(ConversionError, match="use .pth, not .pkl"):
        convert_checkpoint(src, tmp_path / "out.pkl", to="torchvision")
    assert sorted(os.listdir(tmp_path)) == ["in.pth"]


def test_existing_output_is_untouched_on_failure(tmp_path):
    out = tmp_path / "out.pkl"
    out.write_bytes(b"previous")
    sd = random_resnet(18)
    sd["layer4.1.bn2.weight"] = torch.zeros(7)
    torch.save(sd, tmp_path / "in.pth")
    with pytest.raises(ConversionError, match="layer4.1.bn2.weight"):
        convert_checkpoint(tmp_path / "in.pth", out)
    assert out.read_bytes() == b"previous"


def test_verification_detects_swapped_statistics():
    """Coverage cannot see swapped same-shape tensors; the numeric check does."""
    ref = backbone(random_resnet(18))
    d2 = torchvision_to_detectron2(ref)
    ok = verify_conversion(18, ref, detectron2_state=d2)
    assert ok.passed and ok.max_diff < 1e-4
    bad = OrderedDict(d2)
    bad["res3.1.conv2.norm.running_mean"], bad["res3.1.conv2.norm.running_var"] = (
        d2["res3.1.conv2.norm.running_var"],
        d2["res3.1.conv2.norm.running_mean"],
    )
    with pytest.raises(VerificationError, match="FAILED"):
        verify_conversion(18, ref, detectron2_state=bad)
    bad = OrderedDict(d2)
    bad["res5.0.conv1.weight"] = d2["res5.0.conv1.weight"] * (1 + 1e-3)
    with pytest.raises(VerificationError, match="numeric verification failed"):
        verify_conversion(18, ref, detectron2_state=bad)
    del bad["res2.1.conv1.norm.bias"]
    with pytest.raises(VerificationError, match="res2.1.conv1.norm.bias"):
        verify_conversion(18, ref, detectron2_state=bad)


def test_save_canonical_validates(tmp_path):
    sd = random_resnet(18)
    with pytest.raises(ConversionError, match="arch resnet50 does not match"):
        save_canonical(tmp_path / "a.pth", sd, arch="resnet50")
    with pytest.raises(ConversionError, match="not supported"):
        save_canonical(tmp_path / "a.pth", sd, arch="vit_b_16")
    bad = dict(sd)
    bad["layer1.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"unknown 1: \['layer1.0.extra.weight'\]"):
        save_canonical(tmp_path / "a.pth", bad, arch="resnet18")
    bad = {("module." + k): v for k, v in sd.items()}
    with pytest.raises(ConversionError):
        save_canonical(tmp_path / "a.pth", bad, arch="resnet18")
    with pytest.raises(ConversionError, match="Namespace is not allowed"):
        save_canonical(
            tmp_path / "a.pth", sd, arch="resnet18", extra={"args": argparse.Namespace()}
        )
    with pytest.raises(ConversionError, match="may not redefine"):
        save_canonical(tmp_path / "a.pth", sd, arch="resnet18", extra={"depth": 3})
    assert os.listdir(tmp_path) == []


def test_load_canonical_errors(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"state_dict": random_resnet(18)}, path)
    with pytest.raises(ConversionError, match="not a canonical backbone checkpoint"):
        load_canonical(path)
    torch.save({"format": "contrastive_det.backbone/v9", "state_dict": {}, "meta": {}}, path)
    with pytest.raises(ConversionError, match="v9"):
        load_canonical(path)
    with pytest.raises(ConversionError, match="no such file"):
        load_canonical(tmp_path / "nope.pth")


def test_write_config_refuses_a_bottleneck_only_c4_head_for_basic_blocks(tmp_path):
    """detectron2's own Res5ROIHeads builds bottlenecks only; the protocols' Res5ROIHeadsExtraNorm
    builds basic-block res5 for ResNet-18/34 (tests/modeling/test_roi_heads.py), so only the former
    is refused."""
    c4 = tmp_path / "plain_c4.yaml"
    c4.write_text(
        '_BASE_: "%s"\nMODEL:\n  ROI_HEADS:\n    NAME: "Res5ROIHeads"\n'
        % os.path.join(REPO, "configs", "detection", "voc0712_R_50_C4_24k.yaml")
    )
    fails(
        tmp_path,
        random_resnet(18),
        ["C4 protocol", "Res5ROIHeads builds a bottleneck", "FPN"],
        write_config=str(tmp_path / "cfg.yaml"),
        base=str(c4),
    )
    os.remove(c4)
    fails(
        tmp_path,
        random_resnet(18),
        ["--base", "no such config file"],
        write_config=str(tmp_path / "cfg.yaml"),
        base=str(tmp_path / "nope.yaml"),
    )
    with pytest.raises(ConversionError, match="needs --base"):
        convert_checkpoint(
            tmp_path / "in.pth", tmp_path / "out.pkl", write_config=str(tmp_path / "c.yaml")
        )
    assert sorted(os.listdir(tmp_path)) == ["in.pth"]

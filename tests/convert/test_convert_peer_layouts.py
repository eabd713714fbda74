"""Peer libraries' files as they save them, and the ways a conversion must refuse before it writes
(found by an audit with real layouts: SwAV, detectron2's own converter, DINO, safetensors, damaged
and broken files)."""

import argparse
import json
import os
import struct
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from contrastive_det.convert import ConversionError, convert_checkpoint
from resnet_checkpoints import d2_name, random_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _convert(src, out, **kwargs):
    return convert_checkpoint(str(src), str(out), **kwargs)


def _r18():
    return random_resnet(18)


def test_swav_files_drop_projection_head_and_prototypes(tmp_path):
    """swav_800ep_pretrain.pth.tar: module.* of the ResNet beside module.projection_head.* and
    module.prototypes.weight; the training checkpoint holds the same under "state_dict"."""
    sd = {f"module.{k}": v for k, v in _r18().items() if not k.startswith("fc.")}
    sd["module.projection_head.0.weight"] = torch.randn(32, 512)
    sd["module.projection_head.1.running_mean"] = torch.zeros(32)
    sd["module.prototypes.weight"] = torch.randn(30, 16)
    for i, ckpt in enumerate((sd, {"state_dict": sd, "epoch": 800})):
        torch.save(ckpt, tmp_path / f"swav{i}.pth")
        res = _convert(tmp_path / f"swav{i}.pth", tmp_path / f"swav{i}.pkl")
        assert res.depth == 18 and res.verification.passed
    # an unknown module beside the trunk is not a head: the coverage check still refuses it
    sd["module.attention.weight"] = torch.randn(4)
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(ConversionError, match="attention"):
        _convert(tmp_path / "odd.pth", tmp_path / "odd.pkl")
    assert not (tmp_path / "odd.pkl").exists()


def test_detectron2s_own_torchvision_converter_output_reads(tmp_path):
    """detectron2's tools/convert-torchvision-to-d2.py keeps fc.* as stem.fc.*."""
    import pickle

    model = {}
    for k, v in _r18().items():
        if k.endswith("num_batches_tracked"):
            continue
        name = "stem.fc." + k[3:] if k.startswith("fc.") else d2_name(k)
        model[name] = v.numpy()
    with open(tmp_path / "r18_d2.pkl", "wb") as f:
        pickle.dump({"model": model, "__author__": "torchvision", "matching_heuristics": True}, f)
    res = _convert(tmp_path / "r18_d2.pkl", tmp_path / "out.pkl")
    assert res.format == "detectron2" and res.verification.passed


def test_dino_teacher_prefix_takes_the_resnet_under_it_and_ambiguity_names_the_file(tmp_path):
    teacher = {f"module.backbone.{k}": v for k, v in random_resnet(18, seed=1).items()}
    teacher["module.head.mlp.0.weight"] = torch.randn(8, 512)
    student = {f"module.backbone.{k}": v for k, v in random_resnet(18, seed=2).items()}
    torch.save({"teacher": teacher, "student": student, "epoch": 3}, tmp_path / "dino.pth")
    res = _convert(tmp_path / "dino.pth", tmp_path / "t.pkl", prefix="teacher.")
    assert "teacher" in res.source and res.verification.passed
    with pytest.raises(ConversionError) as info:
        _convert(tmp_path / "dino.pth", tmp_path / "x.pkl")
    message = str(info.value)
    assert str(tmp_path / "dino.pth") in message and "e.g. --prefix teacher" in message
    with pytest.raises(ConversionError, match="ResNets in the file: .*teacher"):
        _convert(tmp_path / "dino.pth", tmp_path / "x.pkl", prefix="momentum.")


def _save_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    names = {torch.float32: "F32", torch.int64: "I64"}
    for name, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        header[name] = {
            "dtype": names[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_a_safetensors_file_reads_without_pickle(tmp_path):
    """timm and Hugging Face ship ResNet weights as safetensors (model.safetensors)."""
    sd = _r18()
    _save_safetensors(tmp_path / "model.safetensors", sd)
    res = _convert(tmp_path / "model.safetensors", tmp_path / "out.pkl")
    assert res.depth == 18 and res.verification.passed
    # truncated: the header names data past the end
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="cut.safetensors.*truncated or corrupt"):
        _convert(tmp_path / "cut.safetensors", tmp_path / "cut.pkl")


def test_a_damaged_zip_member_is_refused_naming_it(tmp_path):
    """torch.load does not check the zip CRCs: a flipped block inside a tensor loads silently."""
    torch.save(_r18(), tmp_path / "r18.pth")
    data = bytearray((tmp_path / "r18.pth").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    (tmp_path / "bad.pth").write_bytes(bytes(data))
    with pytest.raises(
        ConversionError, match=r"bad.pth: corrupt torch checkpoint: member .*/data/"
    ):
        _convert(tmp_path / "bad.pth", tmp_path / "bad.pkl")
    assert not (tmp_path / "bad.pkl").exists()


def test_nan_weights_are_refused_naming_the_tensor(tmp_path):
    sd = _r18()
    sd["layer4.1.bn2.running_var"][7] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(ConversionError, match=r"layer4\.1\.bn2\.running_var \(1 of 512\)"):
        _convert(tmp_path / "nan.pth", tmp_path / "nan.pkl")


def test_a_legacy_file_needing_trust_names_the_object(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save(
        {"state_dict": _r18(), "opt": argparse.Namespace(lr=0.1)},
        path,
        _use_new_zipfile_serialization=False,
    )
    with pytest.raises(ConversionError, match="argparse.Namespace"):
        _convert(path, tmp_path / "out.pkl")


def test_a_deep_stem_resnet_is_named_as_such(tmp_path):
    sd = {k: v for k, v in _r18().items() if not k.startswith(("conv1.", "bn1."))}
    sd.update({f"stem.{i}.weight": torch.randn(32, 3, 3, 3) for i in (0, 3, 6)})
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in sd.items()}}, tmp_path / "v1c.pth")
    with pytest.raises(ConversionError, match="deep-stem ResNet"):
        _convert(tmp_path / "v1c.pth", tmp_path / "out.pkl")


def test_write_config_never_overwrites_the_input_or_the_output(tmp_path):
    src = tmp_path / "in.pth"
    torch.save(_r18(), src)
    size = src.stat().st_size
    base = os.path.join(REPO, "configs", "toy", "digits_R_50_FPN.yaml")
    for target, what in ((src, "the input"), (tmp_path / "out.pkl", "the output weights")):
        with pytest.raises(ConversionError, match=f"would overwrite {what}"):
            _convert(src, tmp_path / "out.pkl", write_config=str(target), base=base)
    (tmp_path / "cfgdir").mkdir()
    with pytest.raises(ConversionError, match="is a directory"):
        _convert(src, tmp_path / "out.pkl", write_config=str(tmp_path / "cfgdir"), base=base)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConversionError, match="afile is a file, not a folder"):
        _convert(src, tmp_path / "afile" / "out.pkl")
    assert src.stat().st_size == size and not (tmp_path / "out.pkl").exists()


def test_the_cli_refuses_a_config_path_that_is_a_folder_with_exit_1_and_no_output(tmp_path):
    src = tmp_path / "in.pth"
    torch.save(_r18(), src)
    (tmp_path / "cfgdir").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "convert_to_detectron2.py"),
            str(src),
            str(tmp_path / "out.pkl"),
            "--write-config",
            str(tmp_path / "cfgdir"),
            "--base",
            os.path.join(REPO, "configs", "toy", "digits_R_50_FPN.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "is a directory" in proc.stderr and not (tmp_path / "out.pkl").exists()

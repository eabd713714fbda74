"""The converter's structure: writers are a table, the pipeline is named steps, one dotted-key
lookup."""

from collections import OrderedDict

import pytest
import torch
import torchvision

import contrastive_det.convert as convert
from contrastive_det.config import get_cfg
from contrastive_det.convert import (
    WRITERS,
    ConversionError,
    Writer,
    convert_checkpoint,
    register_writer,
)
from contrastive_det.convert import pipeline, resnet_keys
from contrastive_det.convert.verify import verify_conversion
from contrastive_det.utils.config_keys import get_key
from resnet_checkpoints import random_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _check_pt(path):
    if not path.endswith(".pt"):
        raise ConversionError(f"{path}: plain output must end with .pt")


def _dumps_plain(backbone):
    import io

    buf = io.BytesIO()
    torch.save(dict(backbone.state_dict), buf)
    return buf.getvalue()


def _verify_plain(backbone, path, tolerance):
    loaded = torch.load(path, weights_only=True)
    return verify_conversion(
        backbone.depth,
        loaded,
        detectron2_state=backbone.detectron2_state,
        tolerance=tolerance,
        torchvision_label="the plain output",
    )


@pytest.fixture
def plain_writer():
    writer = register_writer(
        Writer(
            name="plain",
            help="bare torchvision state_dict",
            suffix=".pt",
            check_path=_check_pt,
            dumps=_dumps_plain,
            verify=_verify_plain,
            describe=lambda b: " (plain)",
        )
    )
    yield writer
    WRITERS.pop("plain")


def test_a_new_output_layout_is_one_writer_entry(plain_writer, tmp_path, capsys):
    sd = random_resnet(18)
    torch.save(
        {"state_dict": {"module.encoder_q." + k: v for k, v in sd.items()}}, tmp_path / "moco.pth"
    )
    with pytest.raises(ConversionError, match="must end with .pt"):
        convert_checkpoint(tmp_path / "moco.pth", tmp_path / "out.pkl", to="plain")
    with pytest.raises(ConversionError, match="--write-config goes with detectron2 output"):
        convert_checkpoint(
            tmp_path / "moco.pth", tmp_path / "out.pt", to="plain", write_config="x.yaml", base="b"
        )

    result = convert_checkpoint(tmp_path / "moco.pth", tmp_path / "out.pt", to="plain", log=print)
    printed = capsys.readouterr().out
    assert result.to == "plain" and result.verification.passed
    assert "torchvision resnet18 loaded from the plain output" in printed
    assert f"wrote {tmp_path / 'out.pt'}: 100 tensors" in printed and "(plain)" in printed
    assert "detectron2 config for these weights" not in printed and result.config == OrderedDict()
    net = torchvision.models.resnet18()
    missing = net.load_state_dict(
        torch.load(tmp_path / "out.pt", weights_only=True), strict=False
    ).missing_keys
    assert sorted(missing) == ["fc.bias", "fc.weight"]


def test_unknown_output_kind_lists_the_writers(tmp_path):
    with pytest.raises(
        ConversionError, match="unknown output kind 'onnx': detectron2 or torchvision"
    ):
        convert_checkpoint(tmp_path / "in.pth", tmp_path / "out.onnx", to="onnx")


def test_cli_offers_every_writer(plain_writer):
    import importlib.util
    import os

    from conftest import REPO

    spec = importlib.util.spec_from_file_location(
        "convert_cli", os.path.join(REPO, "tools", "convert_to_detectron2.py")
    )
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    to = next(a for a in cli.build_parser()._actions if a.dest == "to")
    assert to.choices == ["detectron2", "torchvision", "plain"]


def test_named_steps_compose_to_convert_checkpoint(tmp_path):
    sd = random_resnet(18, seed=4)
    torch.save(sd, tmp_path / "tv.pth")
    result = convert_checkpoint(tmp_path / "tv.pth", tmp_path / "a.pkl", verify=False)

    writer = pipeline.check_request(
        str(tmp_path / "tv.pth"), str(tmp_path / "b.pkl"), "detectron2", None, None
    )
    ext = pipeline.read(str(tmp_path / "tv.pth"))
    backbone, coverage = pipeline.canonicalise(ext, say=lambda s: None)
    payload = writer.dumps(backbone)
    assert pipeline.verify_payload(writer, backbone, payload, 1e-4).passed
    assert coverage.ok and backbone.depth == 18 and backbone.source_format == "torchvision"
    assert payload == (tmp_path / "a.pkl").read_bytes() and result.bytes_written == len(payload)


def test_get_key_walks_configs_and_checkpoints():
    cfg = get_cfg()
    assert get_key(cfg, "MODEL.RESNETS.DEPTH") == cfg.MODEL.RESNETS.DEPTH
    assert get_key(cfg, "MODEL.NOPE", default=None) is None
    with pytest.raises(KeyError, match="MODEL.NOPE.X: no 'NOPE'"):
        get_key(cfg, "MODEL.NOPE.X")
    ckpt = {"state_dict": {"module.conv1.weight": 1}}
    assert get_key(ckpt, ("state_dict", "module.conv1.weight")) == 1  # parts may hold dots
    assert get_key(ckpt, ()) is ckpt
    assert get_key(ckpt, ("state_dict", "module.conv1.weight", "deeper"), default="d") == "d"


def test_dead_helpers_are_gone():
    for module, name in [
        (resnet_keys, "is_backbone_scope"),
        (resnet_keys, "BN_FIELDS"),
        (convert, "write_torchvision"),
        (convert.canonical, "is_canonical"),
    ]:
        assert not hasattr(module, name), name
    assert not hasattr(pipeline.ConversionResult, "state_dict_size")

"""Study rows from checkpoints users bring: expansion, digests, duplicates, the command line's
--checkpoint/--no-pretrain, and classification transfer taking a checkpoint's depth."""

import os
import shutil
from collections import OrderedDict

import pytest
import torch
import torchvision
import yaml

from contrastive_det.studies import StudyError, expand, load_study
from contrastive_det.studies.runner import plan
from contrastive_det.studies.state import is_done, mark_done, run_digest


def tv_checkpoint(path, depth=18, seed=0):
    """A real torchvision ResNet state dict, as torchvision's model zoo stores it."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    torch.save(model.state_dict(), path)
    return path


def moco_checkpoint(path, seed=1):
    """MoCo v2's layout: {"state_dict": {"module.encoder_q.<resnet key>", MLP head fc.0/fc.2},
    "epoch", ...}."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    sd = OrderedDict(
        (f"module.encoder_q.{k}", v)
        for k, v in model.state_dict().items()
        if not k.startswith("fc.")
    )
    sd["module.encoder_q.fc.0.weight"] = torch.randn(512, 512)
    sd["module.encoder_q.fc.0.bias"] = torch.zeros(512)
    sd["module.encoder_q.fc.2.weight"] = torch.randn(128, 512)
    sd["module.encoder_q.fc.2.bias"] = torch.zeros(128)
    for k, v in model.state_dict().items():  # the key encoder, which the converter must not take
        if not k.startswith("fc."):
            sd[f"module.encoder_k.{k}"] = v.clone()
    torch.save({"epoch": 800, "arch": "resnet18", "state_dict": sd, "optimizer": {}}, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "moco": moco_checkpoint(str(root / "moco_v2.pth.tar")),
        "tv": tv_checkpoint(str(root / "tv_r18.pth")),
    }


def write(tmp_path, study):
    study.setdefault("name", "brought")
    study.setdefault("output_dir", str(tmp_path / "out"))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return str(path)


TRANSFERS = {
    "seeds": [0],
    "runs": {
        "lbfgs": {"config": "configs/toy/cls_linear_lbfgs_R18.yaml"},
        "det": {"config": "configs/toy/digits_R_50_FPN.yaml"},
    },
}


def test_checkpoint_rows_are_converted_once_and_feed_every_transfer(tmp_path, ckpts):
    path = write(
        tmp_path,
        {
            "pretrain": {"methods": {"simclr": {"config": "configs/toy/pretrain_simclr_R18.yaml"}}},
            "checkpoints": {"moco_v2": {"path": ckpts["moco"]}, "sup_tv": ckpts["tv"]},
            "transfer": TRANSFERS,
        },
    )
    study = load_study(path)
    runs = {r.id: r for r in expand(study)}
    conv = runs["checkpoint/moco_v2"]
    assert conv.kind == "convert" and conv.deps == [] and conv.inputs == [ckpts["moco"]]
    assert conv.argv[1:] == [
        ckpts["moco"],
        os.path.join(study.output_dir, "checkpoint/moco_v2/backbone.pth"),
        "--to",
        "torchvision",
        "--method",
        "moco_v2",
    ]
    backbone = conv.outputs[0]
    # classification: the canonical backbone, at the checkpoint's own depth
    lb = runs["transfer/lbfgs/moco_v2/seed0"]
    assert lb.deps == ["checkpoint/moco_v2"]
    assert lb.argv[lb.argv.index("MODEL.WEIGHTS") + 1] == backbone
    assert lb.argv[lb.argv.index("MODEL.TV_RESNET.DEPTH") + 1] == "0"
    # a pretraining row keeps its config
    assert "MODEL.TV_RESNET.DEPTH" not in runs["transfer/lbfgs/simclr/seed0"].argv
    # detection: converted from the canonical backbone (no seed in the folder); the run adopts its
    # keys
    det_conv = runs["convert/moco_v2/det"]
    assert det_conv.deps == ["checkpoint/moco_v2"] and det_conv.argv[1] == backbone
    det = runs["transfer/det/moco_v2/seed0"]
    assert det.deps == ["convert/moco_v2/det"] and det.argv[2] == det.meta["config"]
    assert det.argv[det.argv.index("MODEL.WEIGHTS") + 1] == det_conv.outputs[0]
    # rows: pretraining runs, then the checkpoints in file order, then random init
    rows = list(dict.fromkeys(r.meta["row"] for r in runs.values() if r.kind == "transfer"))
    assert rows == ["simclr", "moco_v2", "sup_tv", "random-init"]


def test_a_study_of_checkpoints_only(tmp_path, ckpts):
    path = write(
        tmp_path, {"checkpoints": {"a": ckpts["moco"]}, "random_init": False, "transfer": TRANSFERS}
    )
    study = load_study(path)
    assert study.methods == {} and not study.random_init
    assert sorted(r.id for r in expand(study)) == [
        "checkpoint/a",
        "convert/a/det",
        "transfer/det/a/seed0",
        "transfer/lbfgs/a/seed0",
    ]


def test_one_file_under_two_labels_is_refused(tmp_path, ckpts):
    twin = str(tmp_path / "copy_of_tv.pth")
    shutil.copy(ckpts["tv"], twin)  # another path, the same network
    path = write(
        tmp_path, {"checkpoints": {"sup": ckpts["tv"], "sup_again": twin}, "transfer": TRANSFERS}
    )
    with pytest.raises(
        StudyError, match=r"checkpoints\.sup_again: .* same content .* as checkpoints\.sup"
    ):
        load_study(path)


@pytest.mark.parametrize(
    "entry,message",
    [
        ({"simclr": "x.pth"}, "already a row of the study"),
        ({"random-init": "x.pth"}, "already a row of the study"),
        ({"a": {"path": "/nonexistent/model.pth"}}, r"checkpoints\.a\.path: no such file"),
        ({"a": {"path": "PLACEHOLDER", "prefx": "x"}}, r"checkpoints\.a: unknown keys \['prefx'\]"),
        (
            {"a": {"path": "PLACEHOLDER", "trust": "yes"}},
            r"checkpoints\.a\.trust: expected true or false",
        ),
    ],
)
def test_bad_checkpoint_entries_name_the_key(tmp_path, ckpts, entry, message):
    entry = {
        k: (
            dict(v, path=ckpts["tv"])
            if isinstance(v, dict) and v.get("path") == "PLACEHOLDER"
            else v
        )
        for k, v in entry.items()
    }
    path = write(
        tmp_path,
        {
            "pretrain": {"methods": {"simclr": {"config": "configs/toy/pretrain_simclr_R18.yaml"}}},
            "checkpoints": entry,
            "transfer": TRANSFERS,
        },
    )
    with pytest.raises(StudyError, match=message):
        load_study(path)


def test_a_checkpoint_changed_on_disk_is_converted_again(tmp_path):
    ckpt = tv_checkpoint(str(tmp_path / "model.pth"), seed=0)
    path = write(tmp_path, {"checkpoints": {"m": ckpt}, "transfer": TRANSFERS})
    study = load_study(path)
    runs, digests = plan(study)
    conv = next(r for r in runs if r.id == "checkpoint/m")
    os.makedirs(conv.out_dir)
    open(conv.outputs[0], "wb").close()
    mark_done(conv, digests[conv.id], 1.0)
    _, again = plan(study)
    # unchanged: done, dependents plan
    assert is_done(conv, again[conv.id]) and again["convert/m/det"] is not None
    before = dict(again)
    # the user retrained it in place: same path, same size, other weights
    tv_checkpoint(ckpt, seed=1)
    _, after = plan(study)
    assert after[conv.id] != before[conv.id] and not is_done(conv, after[conv.id])
    assert after["convert/m/det"] is None  # its dependents wait for the new conversion
    assert run_digest(conv, []) == after[conv.id]


def test_command_line_checkpoints_and_no_pretrain(tmp_path, ckpts):
    path = write(
        tmp_path,
        {
            "pretrain": {"methods": {"simclr": {"config": "configs/toy/pretrain_simclr_R18.yaml"}}},
            "transfer": {
                "seeds": [0],
                "runs": {
                    "lbfgs": {"config": "configs/toy/cls_linear_lbfgs_R18.yaml"},
                    "det": {
                        "config": "configs/toy/digits_R_50_FPN.yaml",
                        "methods": ["simclr", "random-init"],
                    },
                },
            },
        },
    )
    plain = load_study(path)
    study = load_study(
        path, checkpoints={"moco": ckpts["moco"], "sup": ckpts["tv"]}, no_pretrain=True
    )
    assert study.methods == {} and list(study.checkpoints) == ["moco", "sup"]
    assert study.digest() != plain.digest()
    assert study.transfers["det"]["methods"] == ["random-init", "moco", "sup"]
    rows = {r.meta["row"] for r in expand(study) if r.kind == "transfer"}
    assert rows == {"moco", "sup", "random-init"}
    kept = load_study(path, checkpoints={"moco": ckpts["moco"]})  # beside the study's own rows
    assert {r.meta["row"] for r in expand(kept) if r.kind == "transfer"} == {
        "simclr",
        "moco",
        "random-init",
    }


def test_classification_takes_the_checkpoints_depth_with_depth_0(tmp_path):
    from contrastive_det.convert.classifier_weights import prepare_classifier_weights
    from contrastive_det.convert.errors import ConversionError
    from contrastive_det.engine.defaults import load_config
    import argparse

    r34 = tv_checkpoint(str(tmp_path / "r34.pth"), depth=34)
    cfg = load_config(
        argparse.Namespace(
            config_file="configs/toy/cls_linear_lbfgs_R18.yaml",
            opts=["MODEL.TV_RESNET.DEPTH", "0", "MODEL.WEIGHTS", r34],
        )
    )
    overrides = prepare_classifier_weights(cfg, str(tmp_path / "run"), log=lambda line: None)
    assert overrides[overrides.index("MODEL.TV_RESNET.DEPTH") + 1] == "34"
    written = torch.load(overrides[overrides.index("MODEL.WEIGHTS") + 1], weights_only=False)
    # ResNet-34 has 6 blocks in layer3
    assert "trunk.resnet.layer3.5.conv1.weight" in written["model"]
    cfg.defrost()
    cfg.MODEL.TV_RESNET.DEPTH = 18
    # a depth that is set is checked, never replaced
    with pytest.raises(ConversionError, match="depth"):
        prepare_classifier_weights(cfg, str(tmp_path / "run18"), log=lambda line: None)
    cfg.MODEL.TV_RESNET.DEPTH, cfg.MODEL.WEIGHTS = 0, ""
    with pytest.raises(
        ConversionError, match="MODEL.TV_RESNET.DEPTH 0 takes the depth of MODEL.WEIGHTS"
    ):
        prepare_classifier_weights(cfg, str(tmp_path / "run0"), log=lambda line: None)

"""
Keys moved in 0.2.0 (contrastive_det/config/renamed.py) are still read under their old names for one
version: the value reaches the new key (over an inherited value) with a deprecation message naming
    both,
and the saved config holds the new name only.
"""

import argparse
import logging
import os

import pytest

from contrastive_det.config import RENAMED_KEYS
from contrastive_det.engine.defaults import load_config
from contrastive_det.modeling.pretrainers.joint import SupConSelfSupCon
from contrastive_det.modeling.pretrainers.scan import SCAN

from conftest import REPO

SCAN_TOY = os.path.join(REPO, "configs", "toy", "pretrain_scan_R18.yaml")
JOINT_TOY = os.path.join(REPO, "configs", "toy", "pretrain_supcon_selfsupcon_R18.yaml")


def load(config_file, opts=()):
    return load_config(argparse.Namespace(config_file=config_file, opts=list(opts)))


@pytest.mark.parametrize(
    "old, new, value, expected",
    [
        ("MODEL.CONTRASTIVE.SCAN_NUM_NEIGHBORS", "MODEL.SCAN.NUM_NEIGHBORS", "7", 7),
        ("MODEL.CONTRASTIVE.SCAN_NON_NEIGHBOR", "MODEL.SCAN.NON_NEIGHBOR", "negative", "negative"),
        ("MODEL.CONTRASTIVE.INSTANCE_WEIGHT", "MODEL.JOINT.INSTANCE_WEIGHT", "0.25", 0.25),
        (
            "MODEL.CONTRASTIVE.SUPCON_WEIGHT",
            "MODEL.JOINT.SUPCON_WEIGHT",
            "2",
            2.0,
        ),  # an int for a float key
    ],
)
def test_an_old_name_on_the_command_line_sets_the_new_key(old, new, value, expected, caplog):
    assert RENAMED_KEYS[old] == new
    with caplog.at_level(logging.WARNING, logger="contrastive_det"):
        cfg = load(SCAN_TOY, [old, value])
    node, leaf = new.rsplit(".", 1)
    got = cfg
    for part in node.split("."):
        got = got[part]
    assert got[leaf] == expected and type(got[leaf]) is type(expected)
    assert f"{old} is deprecated and will be removed in 0.3.0: it now reads {new}" in caplog.text
    # the saved config.yaml holds the new name only
    assert cfg.MODEL.CONTRASTIVE[old.rsplit(".", 1)[1]] is None


def test_an_old_name_in_a_config_file_reaches_the_model(tmp_path):
    old_style = tmp_path / "old.yaml"
    old_style.write_text(
        f"_BASE_: {SCAN_TOY}\nMODEL:\n  CONTRASTIVE:\n    SCAN_NUM_NEIGHBORS: 12\n"
        "    SCAN_NON_NEIGHBOR: negative\n"
    )
    kwargs = SCAN.from_config(load(str(old_style)))
    assert (kwargs["num_neighbors"], kwargs["non_neighbor"]) == (12, "negative")
    joint = tmp_path / "joint.yaml"
    joint.write_text(
        f"_BASE_: {JOINT_TOY}\nMODEL:\n  CONTRASTIVE:\n    INSTANCE_WEIGHT: 0.1\n    "
        f"SUPCON_WEIGHT: 3.0\n"
    )
    kwargs = SupConSelfSupCon.from_config(load(str(joint)))
    assert (kwargs["instance_weight"], kwargs["supcon_weight"]) == (0.1, 3.0)


def test_the_old_name_wins_over_the_inherited_new_key_and_a_bad_value_is_named(caplog):
    with caplog.at_level(logging.WARNING, logger="contrastive_det"):
        cfg = load(
            SCAN_TOY, ["MODEL.SCAN.NUM_NEIGHBORS", "9", "MODEL.CONTRASTIVE.SCAN_NUM_NEIGHBORS", "5"]
        )
    assert cfg.MODEL.SCAN.NUM_NEIGHBORS == 5 and "(set to 5, replacing 9)" in caplog.text
    with pytest.raises(
        ValueError,
        match=r"SCAN_NUM_NEIGHBORS \(deprecated, now MODEL.SCAN.NUM_NEIGHBORS\): "
        "expected a int, got 'many'",
    ):
        load(SCAN_TOY, ["MODEL.CONTRASTIVE.SCAN_NUM_NEIGHBORS", "many"])


def test_the_shipped_configs_use_the_new_names():
    cfg = load(os.path.join(REPO, "configs", "pretrain", "scan_R50_200ep.yaml"))
    assert (cfg.MODEL.SCAN.NUM_NEIGHBORS, cfg.MODEL.SCAN.NON_NEIGHBOR) == (100, "mask")
    assert all(cfg.MODEL.CONTRASTIVE[old.rsplit(".", 1)[1]] is None for old in RENAMED_KEYS)

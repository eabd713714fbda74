from argparse import Namespace

import pytest

from contrastive_det.config import get_cfg
from contrastive_det.engine.defaults import adapt_norms, apply_fewer_gpus_rule, load_config

from conftest import TOY_CONFIG


def fpn_cfg():
    return load_config(
        Namespace(config_file="configs/detection/voc0712_R_50_FPN_24k.yaml", opts=[])
    )


def test_single_process_turns_every_sync_norm_into_bn():
    cfg = fpn_cfg()
    cfg.MODEL.ROI_BOX_HEAD.NORM = "naiveSyncBN"
    message = adapt_norms(cfg, world_size=1, device="cpu")
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM, cfg.MODEL.ROI_BOX_HEAD.NORM) == (
        "BN",
        "BN",
        "BN",
    )
    assert message.startswith("Single process") and "MODEL.FPN.NORM SyncBN -> BN" in message


def test_cpu_multi_process_uses_naive_sync_bn_and_gpu_keeps_syncbn():
    cfg = fpn_cfg()
    assert "naiveSyncBN" in adapt_norms(cfg, world_size=2, device="cpu")
    assert cfg.MODEL.RESNETS.NORM == "naiveSyncBN"
    cfg = fpn_cfg()
    assert adapt_norms(cfg, world_size=8, device="cuda") is None
    assert cfg.MODEL.RESNETS.NORM == "SyncBN"


def test_plain_bn_and_gn_are_left_alone():
    cfg = get_cfg()
    cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM = "FrozenBN", "GN"
    assert adapt_norms(cfg, world_size=1, device="cpu") is None
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM) == ("FrozenBN", "GN")


def test_fewer_gpus_rule_on_the_voc_protocol():
    cfg = load_config(Namespace(config_file="configs/detection/voc0712_R_50_C4_24k.yaml", opts=[]))
    apply_fewer_gpus_rule(cfg)
    s = cfg.SOLVER
    assert (s.IMS_PER_BATCH, s.BASE_LR, s.MAX_ITER, tuple(s.STEPS), s.WARMUP_ITERS) == (
        8,
        0.01,
        48000,
        (36000, 44000),
        200,
    )
    # the same number of checkpoints over the doubled schedule
    assert s.CHECKPOINT_PERIOD == 2 * 5000


def test_fewer_gpus_rule_doubles_the_eval_period():
    cfg = load_config(
        Namespace(
            config_file="configs/detection/voc0712_R_50_C4_24k.yaml",
            opts=["TEST.EVAL_PERIOD", "3000"],
        )
    )
    apply_fewer_gpus_rule(cfg)
    assert (cfg.SOLVER.CHECKPOINT_PERIOD, cfg.TEST.EVAL_PERIOD) == (10000, 6000)


def test_fewer_gpus_rule_rejects_odd_batches():
    cfg = load_config(Namespace(config_file=TOY_CONFIG, opts=["SOLVER.IMS_PER_BATCH", "3"]))
    with pytest.raises(ValueError, match="IMS_PER_BATCH=3"):
        apply_fewer_gpus_rule(cfg)


def test_missing_base_names_the_file_the_resolved_path_and_the_rule(tmp_path):
    mine = tmp_path / "configs" / "my"
    mine.mkdir(parents=True)
    (mine / "pets.yaml").write_text('_BASE_: "configs/detection/voc0712_R_50_C4_24k.yaml"\n')
    with pytest.raises(FileNotFoundError) as e:
        load_config(Namespace(config_file=str(mine / "pets.yaml"), opts=[]))
    text = str(e.value)
    assert str(mine / "pets.yaml") in text and "configs/detection/voc0712_R_50_C4_24k.yaml" in text
    # where it looked
    assert str(mine / "configs" / "detection" / "voc0712_R_50_C4_24k.yaml") in text
    assert "folder of the file that names it" in text


def test_missing_base_deeper_in_the_chain_names_that_file(tmp_path):
    (tmp_path / "a.yaml").write_text('_BASE_: "b.yaml"\n')
    (tmp_path / "b.yaml").write_text('_BASE_: "nowhere/c.yaml"\n')
    with pytest.raises(FileNotFoundError, match="b.yaml: _BASE_ 'nowhere/c.yaml' resolved to"):
        load_config(Namespace(config_file=str(tmp_path / "a.yaml"), opts=[]))


def test_a_key_given_twice_in_a_config_is_named_anywhere_in_the_chain(tmp_path):
    """YAML keeps the last of two equal keys: a config whose SOLVER says BASE_LR twice must not
    run."""
    (tmp_path / "a.yaml").write_text('_BASE_: "b.yaml"\nSOLVER:\n  MAX_ITER: 5\n')
    (tmp_path / "b.yaml").write_text(
        f'_BASE_: "{TOY_CONFIG}"\nSOLVER:\n  BASE_LR: 0.1\n  STEPS: (3,)\n  BASE_LR: 0.01\n'
    )
    with pytest.raises(
        ValueError,
        match=r"b.yaml:5: key 'BASE_LR' is given twice in the same mapping \(first on line 3\)",
    ):
        load_config(Namespace(config_file=str(tmp_path / "a.yaml"), opts=[]))
    (tmp_path / "b.yaml").write_text(f'_BASE_: "{TOY_CONFIG}"\nSOLVER:\n  BASE_LR: 0.1\n')
    assert (
        load_config(Namespace(config_file=str(tmp_path / "a.yaml"), opts=[])).SOLVER.BASE_LR == 0.1
    )


def test_readme_own_dataset_base_works_from_configs_my():
    # datasets/README.md suggests configs/my/<name>.yaml with a _BASE_ relative to that folder
    import os
    import shutil
    import tempfile

    from conftest import REPO

    mine = tempfile.mkdtemp(prefix="test_", dir=os.path.join(REPO, "configs"))
    try:
        path = os.path.join(mine, "pets.yaml")
        with open(path, "w") as f:
            f.write('_BASE_: "../detection/voc0712_R_50_C4_24k.yaml"\nSOLVER:\n  MAX_ITER: 7\n')
        cfg = load_config(Namespace(config_file=path, opts=[]))
        assert cfg.SOLVER.MAX_ITER == 7 and cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm"
    finally:
        shutil.rmtree(mine)

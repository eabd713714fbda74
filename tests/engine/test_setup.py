from argparse import Namespace

import pytest

from contrastive_det.config import get_cfg
from contrastive_det.engine.setup import adapt_norms, apply_fewer_gpus_rule, load_config

from conftest import TOY_CONFIG


def fpn_cfg():
    return load_config(Namespace(config_file="configs/detection/voc0712_R_50_FPN_24k.yaml", opts=[]))


def test_single_process_turns_every_sync_norm_into_bn():
    cfg = fpn_cfg()
    cfg.MODEL.ROI_BOX_HEAD.NORM = "naiveSyncBN"
    message = adapt_norms(cfg, world_size=1, device="cpu")
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM, cfg.MODEL.ROI_BOX_HEAD.NORM) == ("BN", "BN", "BN")
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
    assert (s.IMS_PER_BATCH, s.BASE_LR, s.MAX_ITER, tuple(s.STEPS), s.WARMUP_ITERS) == (8, 0.01, 48000, (36000, 44000), 200)


def test_fewer_gpus_rule_rejects_odd_batches():
    cfg = load_config(Namespace(config_file=TOY_CONFIG, opts=["SOLVER.IMS_PER_BATCH", "3"]))
    with pytest.raises(ValueError, match="IMS_PER_BATCH=3"):
        apply_fewer_gpus_rule(cfg)

"""The published recipes (configs/pretrain) and their toy twins (configs/toy) follow the papers
where the optimizer and the model differ from detectron2's defaults: MoCo decays BN, SimCLR/SupCon
use global BN, SupCon's base temperature is the reference code's 0.07."""

import os

import pytest
import torch

from detectron2.modeling import build_model

import contrastive_det  # noqa: F401
from contrastive_det.config import get_cfg
from contrastive_det.losses import supcon_loss
from contrastive_det.solver import build_optimizer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOCO_FAMILY = [
    "mocov2_R50_200ep",
    "ce_selfsupcon_R50_200ep",
    "supcon_selfsupcon_R50_200ep",
    "scan_R50_200ep",
]
IN_BATCH = ["simclr_R50_1000ep", "supcon_R50_700ep"]


def toy(recipe):
    return "pretrain_" + recipe.split("_R50")[0] + "_R18"


def load(path):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", path + ".yaml"))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.mark.parametrize(
    "path", [f"pretrain/{r}" for r in MOCO_FAMILY] + [f"toy/{toy(r)}" for r in MOCO_FAMILY]
)
def test_moco_family_decays_every_bn_parameter(path):
    """MoCo's SGD decays all parameters; detectron2's groups give norms WEIGHT_DECAY_NORM (default
    0)."""
    cfg = load(path)
    wd = cfg.SOLVER.WEIGHT_DECAY
    assert wd > 0 and cfg.SOLVER.WEIGHT_DECAY_NORM == wd
    # the recipe's values, on a smaller model (groups do not depend on size)
    if path.startswith("pretrain/"):
        cfg.MODEL.TV_RESNET.DEPTH, cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = 18, 64
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    bn_params = [
        p
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False)
        if p.requires_grad
    ]
    assert len(bn_params) >= 40  # ResNet-18: 20 norms x (weight, bias)
    assert all(decay[id(p)] == wd for p in bn_params)
    # and everything else too (biases: WEIGHT_DECAY_BIAS = WD)
    assert all(v == wd for v in decay.values())


@pytest.mark.parametrize(
    "path", [f"pretrain/{r}" for r in IN_BATCH] + [f"toy/{toy(r)}" for r in IN_BATCH]
)
def test_simclr_and_supcon_use_global_bn_in_trunk_and_head(path):
    cfg = load(path)
    assert cfg.MODEL.TV_RESNET.NORM == "SyncBN" and cfg.MODEL.CONTRASTIVE.PROJ_BN
    cfg.MODEL.TV_RESNET.DEPTH, cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = 18, 64
    model = build_model(cfg)
    assert isinstance(model.encoder.resnet.layer1[0].bn1, torch.nn.SyncBatchNorm)
    assert isinstance(model.projection.mlp[1], torch.nn.SyncBatchNorm)


@pytest.mark.parametrize("path", ["pretrain/supcon_R50_700ep", "toy/pretrain_supcon_R18"])
def test_supcon_base_temperature_is_the_reference_codes(path):
    """SupContrast: SupConLoss(temperature=opt.temp) keeps base_temperature=0.07, so with T 0.1 the
    loss is scaled by 0.1 / 0.07 (a recipe with BASE_TEMPERATURE == TEMPERATURE drops that
    factor)."""
    cfg = load(path)
    assert cfg.MODEL.CONTRASTIVE.BASE_TEMPERATURE == 0.07
    assert cfg.MODEL.CONTRASTIVE.TEMPERATURE == 0.1
    cfg.MODEL.TV_RESNET.NORM, cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = "BN", 16
    model = build_model(cfg)
    assert model.base_temperature == 0.07 and model.temperature == 0.1
    feats = torch.nn.functional.normalize(
        torch.randn(6, 2, 8, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    labels = torch.tensor([0, 1, 0, 2, 1, 1])
    scaled = supcon_loss(feats, labels, temperature=0.1, base_temperature=model.base_temperature)
    unscaled = supcon_loss(feats, labels, temperature=0.1, base_temperature=0.1)
    torch.testing.assert_close(scaled, unscaled * (0.1 / 0.07))


def _google_simclr_loss(z1, z2, temperature):
    """The form of Google's TF SimCLR (objective.py ``add_contrastive_loss``): for each view, a
    cross-entropy over [logits_ab, logits_aa] (self-similarity masked), the two views' means
    added."""
    n = z1.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    labels = torch.arange(n)
    ab, ba = z1 @ z2.t() / temperature, z2 @ z1.t() / temperature
    aa = (z1 @ z1.t() / temperature).masked_fill(eye, -1e9)
    bb = (z2 @ z2.t() / temperature).masked_fill(eye, -1e9)
    ce = torch.nn.functional.cross_entropy
    return ce(torch.cat([ab, aa], 1), labels) + ce(torch.cat([ba, bb], 1), labels)


def test_simclr_recipe_loss_has_googles_scale_and_the_toy_keeps_the_mean():
    cfg = load("pretrain/simclr_R50_1000ep")
    assert cfg.MODEL.SIMCLR.LOSS_SCALE == 2.0
    assert load("toy/pretrain_simclr_R18").MODEL.SIMCLR.LOSS_SCALE == 1.0  # AdamW
    cfg.MODEL.TV_RESNET.DEPTH, cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = 18, 16
    cfg.MODEL.TV_RESNET.NORM = "BN"
    torch.manual_seed(0)
    model = build_model(cfg).double()
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64) for _ in range(2)]
    loss = model.losses(views, torch.full((4,), -1))["loss_ntxent"]
    z1, z2 = model._projections(views)  # train-mode BN: the same batch gives the same output
    torch.testing.assert_close(loss, _google_simclr_loss(z1, z2, 0.1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("recipe", ["ce_selfsupcon_R50_200ep", "supcon_selfsupcon_R50_200ep"])
def test_joint_recipes_take_the_authors_queue_and_temperature(recipe):
    """Islam et al.'s code (transfer_broad: system_base_plus_moco.py, system_moco_mit.py): K 64000,
    T 0.07, instance weight 0.5 for both joint objectives (not MoCo v2's K 65536, T 0.2)."""
    cfg = load(f"pretrain/{recipe}")
    assert cfg.MODEL.CONTRASTIVE.QUEUE_SIZE == 64000
    assert cfg.MODEL.CONTRASTIVE.TEMPERATURE == 0.07
    assert cfg.MODEL.JOINT.INSTANCE_WEIGHT == 0.5
    assert cfg.MODEL.CONTRASTIVE.QUEUE_SIZE % cfg.SOLVER.IMS_PER_BATCH == 0

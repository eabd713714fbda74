"""Layout of the modeling and losses packages: one file per pretraining family, registration on
import, checkpoint keys that do not move, and no private helper imported across files."""

import ast
import importlib
import os

import pytest
import torch

from detectron2.modeling import META_ARCH_REGISTRY, build_model

import contrastive_det  # noqa: F401
from contrastive_det.config import get_cfg

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAMILIES = {  # class name -> module of contrastive_det.modeling.pretrainers
    "SimCLR": "simclr",
    "SupCon": "supcon",
    "MoCoV2": "moco",
    "CESelfSupCon": "joint",
    "SupConSelfSupCon": "joint",
    "SCAN": "scan",
    "Supervised": "supervised",
}


def tiny_cfg(arch, norm="BN", proj_bn=False):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/toy/pretrain_mocov2_R18.yaml"))
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.TV_RESNET.NORM = norm
    cfg.MODEL.CONTRASTIVE.PROJ_BN = proj_bn
    cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = 16
    cfg.MODEL.CONTRASTIVE.PROJ_DIM = 8
    cfg.MODEL.CONTRASTIVE.QUEUE_SIZE = 8
    return cfg


def test_one_module_per_family_registered_and_exported_from_the_package_path():
    import contrastive_det.modeling as modeling
    import contrastive_det.modeling.pretrainers as pretrainers

    assert hasattr(pretrainers, "__path__"), "modeling/pretrainers must be a package"
    for name, family in FAMILIES.items():
        cls = META_ARCH_REGISTRY.get(name)
        assert cls.__module__ == f"contrastive_det.modeling.pretrainers.{family}", name
        assert getattr(pretrainers, name) is cls and getattr(modeling, name) is cls
    assert (
        pretrainers.ContrastivePretrainer.__module__ == "contrastive_det.modeling.pretrainers.base"
    )
    assert modeling.ProjectionMLP.__module__ == "contrastive_det.modeling.heads"
    assert importlib.import_module("contrastive_det.losses.numerics").positive_mean_log_prob


# Checkpoint keys written before the package split (and by every later version): they must not move.
PINNED_KEYS = {
    "SimCLR": [
        "encoder.resnet.conv1.weight",
        "encoder.resnet.layer4.1.bn2.running_var",
        "projection.mlp.0.weight",
        "projection.mlp.1.weight",
        "projection.mlp.1.running_mean",
        "projection.mlp.1.num_batches_tracked",
        "projection.mlp.3.weight",
        "projection.mlp.3.bias",
    ],
    "MoCoV2": [
        "encoder.resnet.bn1.weight",
        "encoder_k.resnet.conv1.weight",
        "heads.projection.mlp.0.weight",
        "heads.projection.mlp.2.bias",
        "heads_k.projection.mlp.2.weight",
        "queues.projection.keys",
        "queues.projection.labels",
        "queues.projection.ptr",
    ],
    "CESelfSupCon": [
        "classifier.weight",
        "classifier.bias",
        "heads.projection.mlp.0.weight",
        "queues.projection.ptr",
    ],
    "SupConSelfSupCon": [
        "heads.instance.mlp.0.weight",
        "heads.supervised.mlp.2.weight",
        "heads_k.supervised.mlp.0.bias",
        "queues.instance.keys",
        "queues.supervised.labels",
    ],
    "SCAN": ["heads_k.projection.mlp.0.weight", "queues.projection.labels"],
}


@pytest.mark.parametrize("arch", sorted(PINNED_KEYS))
def test_checkpoint_keys_are_stable(arch):
    state = build_model(tiny_cfg(arch, proj_bn=(arch == "SimCLR"))).state_dict()
    missing = [k for k in PINNED_KEYS[arch] if k not in state]
    assert not missing, missing
    prefixes = {k.split(".")[0] for k in state}
    expected = {
        "SimCLR": {"encoder", "projection"},
        "CESelfSupCon": {"encoder", "encoder_k", "heads", "heads_k", "queues", "classifier"},
    }
    assert prefixes == expected.get(arch, {"encoder", "encoder_k", "heads", "heads_k", "queues"})


@pytest.mark.parametrize("norm", ["SyncBN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N"])
def test_every_detectron2_batch_norm_builds_with_the_same_keys_and_loads_a_bn_checkpoint(norm):
    torch.manual_seed(0)
    bn = build_model(tiny_cfg("SimCLR", "BN", proj_bn=True))
    synced = build_model(tiny_cfg("SimCLR", norm, proj_bn=True))
    assert list(synced.state_dict()) == list(bn.state_dict())
    synced.load_state_dict(bn.state_dict())  # strict
    kinds = {
        type(m).__name__
        for m in synced.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    }
    # trunk AND head use the synced norm
    assert "BatchNorm2d" not in kinds and "BatchNorm1d" not in kinds, kinds
    # one process, eval and train: every flavour computes what plain BN computes
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    for model in (bn, synced):
        model.eval()
    out_bn, out_sync = bn([{"image": x}]), synced([{"image": x}])
    torch.testing.assert_close(out_sync[0]["embedding"], out_bn[0]["embedding"])
    if norm.startswith("naive"):  # torch's SyncBatchNorm needs a process group in training
        views = [{"views": [x, x.flip(-1)], "label": 0}, {"views": [x.flip(-2), x], "label": 1}]
        for model in (bn, synced):
            model.train()
        torch.testing.assert_close(synced(views)["loss_ntxent"], bn(views)["loss_ntxent"])


@pytest.mark.parametrize("norm", ["GN", "FrozenBN", "bn"])
def test_norms_without_running_statistics_are_refused(norm):
    with pytest.raises(ValueError, match="MODEL.TV_RESNET.NORM must be one of 'BN', 'SyncBN'"):
        build_model(tiny_cfg("SimCLR", norm, proj_bn=True))


def _cross_file_private_imports(package_dir):
    bad = []
    for root, _, files in os.walk(package_dir):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                for node in ast.walk(ast.parse(open(path).read())):
                    if isinstance(node, ast.ImportFrom) and (
                        node.level > 0 or "contrastive_det" in (node.module or "")
                    ):
                        bad += [f"{path}: {a.name}" for a in node.names if a.name.startswith("_")]
    return bad


def test_no_private_helper_is_imported_across_files():
    for package in ("losses", "modeling"):
        assert _cross_file_private_imports(os.path.join(REPO, "contrastive_det", package)) == []

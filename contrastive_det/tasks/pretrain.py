"""
Contrastive pretraining of a torchvision ResNet (SimCLR, MoCo v2, SupCon, CE+SelfSupCon,
SupCon+SelfSupCon, SCAN; the meta-architectures of ``contrastive_det/modeling/pretrainers``),
monitored by kNN top-1, exporting the trunk in the canonical torchvision layout.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable

import torch

from detectron2.config import CfgNode
from detectron2.engine import HookBase
from detectron2.evaluation import DatasetEvaluator
from detectron2.modeling import build_model

from ..convert.canonical import save_canonical
from ..convert.checkpoint_io import load_checkpoint_file
from ..convert.classifier_weights import read_trunk
from ..data.pretraining import build_knn_test_loader, build_pretrain_train_loader, knn_bank_name
from ..engine.hooks import ImagesPerSecond
from ..engine.task import TASK_REGISTRY, Task
from ..evaluation import KNNEvaluator
from ..utils.atomic import atomic_open

BACKBONE_FILE = "backbone.pth"
INIT_WEIGHTS_FILE = "pretrain_init_weights.pth"


def _trunk_prefixes(state_dict):
    """Key prefixes of the torchvision trunks in a model's state dict (query and momentum
    encoders)."""
    return sorted(
        k[: -len("conv1.weight")] for k in state_dict if k.endswith("resnet.conv1.weight")
    )


def _model_state(ckpt):
    sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    return sd if isinstance(sd, dict) else {}


def check_pretraining_checkpoint(model: torch.nn.Module, ckpt: Any, path: str) -> dict[str, Any]:
    """
    The state dict of ``ckpt`` (a pretraining checkpoint: ``model_*.pth``) when it fits ``model``
    exactly: every tensor present with its shape, nothing else. Raises ValueError naming the file
    and the first differences (another method or depth than the config's, or not a checkpoint of
    a pretraining run) instead of loading part of it and exporting a random trunk.
    """
    model = getattr(model, "module", model)
    want, have = model.state_dict(), _model_state(ckpt)
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shapes = [
        f"{k} {tuple(have[k].shape)} vs {tuple(v.shape)}"
        for k, v in want.items()
        if k in have and torch.is_tensor(have[k]) and tuple(have[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"Checkpoint {path} does not fit the config's model ({type(model).__name__}, "
            f"{len(want)} tensors): missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}, shapes "
            f"{shapes[:3]}. Use the config of the "
            "pretraining run that wrote it (the same MODEL.META_ARCHITECTURE and MODEL.TV_RESNET)."
        )
    return have


def prepare_pretraining_weights(
    cfg: CfgNode, output_dir: str, log: Callable[[str], Any] = print
) -> list[str]:
    """
    ``MODEL.WEIGHTS`` of a pretraining run (the initial trunk), decided before any process starts:
    a checkpoint of the same pretraining model is used as it is; any ResNet checkpoint a reader
    recognises fills every trunk of the model (query and momentum encoders; the heads start from
    their initialisation) through ``OUTPUT_DIR/pretrain_init_weights.pth``; anything else (a missing
    or unreadable file, no ResNet, another depth) stops the run with a named error. Returns the
    ``KEY VALUE`` overrides (like :meth:`Task.prepare_weights`).
    """
    source = cfg.MODEL.WEIGHTS
    if not source:
        return []
    on_cpu = cfg.clone()
    on_cpu.defrost()
    on_cpu.MODEL.DEVICE = "cpu"  # only the names and shapes of the model's tensors are needed here
    model = build_model(on_cpu)
    ckpt = load_checkpoint_file(source)
    if set(model.state_dict()) <= set(_model_state(ckpt)):
        check_pretraining_checkpoint(model, ckpt, source)
        return []
    state_dict, backbone = read_trunk(cfg, "pretraining", log)
    prefixes = _trunk_prefixes(model.state_dict())
    payload = {
        "model": {p + k: v for p in prefixes for k, v in state_dict.items()},
        "__author__": "contrastive_det",
        "meta": dict(backbone.meta, source=os.path.abspath(source)),
    }
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, INIT_WEIGHTS_FILE)
    with atomic_open(target, "wb") as f:
        torch.save(payload, f)
    log(f"  wrote {target}: the trunk for {', '.join(p.rstrip('.') for p in prefixes)}")
    return ["MODEL.WEIGHTS", target, "RESULTS.WEIGHTS_SOURCE", os.path.abspath(source)]


def export_backbone(model: torch.nn.Module, cfg: CfgNode, path: str, method: str) -> str:
    """
    Write the model's trunk in the canonical torchvision form (docs/design.md section 3),
    atomically.

    Args:
        model: a pretraining meta-architecture (DDP-wrapped or not) with ``export_backbone()``.
        cfg: its config (arch, pixel statistics and input format are recorded from it).
        path (str): the file to write.
        method (str): the method recorded in the file's metadata.
    """
    model = getattr(model, "module", model)  # unwrap DDP
    if not hasattr(model, "export_backbone"):
        raise ValueError(
            f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE} has no backbone to export"
        )
    save_canonical(
        path,
        model.export_backbone(),
        arch=f"resnet{cfg.MODEL.TV_RESNET.DEPTH}",
        method=method,
        pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
        pixel_std=list(cfg.MODEL.PIXEL_STD),
        input_format=cfg.INPUT.FORMAT,
        extra={"width_per_group": cfg.MODEL.TV_RESNET.WIDTH_PER_GROUP},
    )
    return path


class ExportBackbone(HookBase):
    """After the last iteration, export the pretrained trunk to ``OUTPUT_DIR/backbone.pth``."""

    def __init__(self, method: str):
        self._method = method

    def after_train(self) -> None:
        trainer = self.trainer
        # detectron2 sets iter = max_iter after the last iteration
        if trainer.iter < trainer.max_iter:
            return  # stopped early (error or interruption): no export of a half-trained trunk
        path = export_backbone(
            trainer.model,
            trainer.cfg,
            os.path.join(trainer.cfg.OUTPUT_DIR, BACKBONE_FILE),
            self._method,
        )
        logging.getLogger(__name__).info(f"Backbone exported to {path}")


@TASK_REGISTRY.register()
class PretrainTask(Task):
    """
    Contrastive pretraining on class-per-folder datasets (``DATASETS.TRAIN``, after the study axes
    ``DATASETS.PRETRAIN.*``), monitored by kNN top-1 on ``DATASETS.TEST`` against the bank
    ``TEST.KNN.BANK``; records images/s and exports the backbone at the end.
    """

    name = "pretraining"
    headline_metrics = ("knn/top1",)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Iterable:
        return build_pretrain_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Iterable:
        return build_knn_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        return KNNEvaluator(cfg.TEST.KNN.K, cfg.TEST.KNN.T)

    @classmethod
    def datasets_to_check(cls, cfg: CfgNode, eval_only: bool) -> list[str]:
        names = super().datasets_to_check(cfg, eval_only)
        return names + ([knn_bank_name(cfg)] if cfg.DATASETS.TEST else [])

    @classmethod
    def build_hooks(cls, cfg: CfgNode) -> list[HookBase]:
        return [ImagesPerSecond(cfg.SOLVER.IMS_PER_BATCH), ExportBackbone(cls.method(cfg))]

    @classmethod
    def prepare_weights(cls, cfg: CfgNode, output_dir: str) -> list[str]:
        return prepare_pretraining_weights(cfg, output_dir, log=print)

    @classmethod
    def method_name(cls, cfg: CfgNode) -> str:
        return cfg.MODEL.META_ARCHITECTURE

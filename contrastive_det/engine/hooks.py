"""Hooks added to detectron2's defaults."""
import logging
import os
import time

from detectron2.engine import HookBase

from .results import build_results, method_name, normalize_metrics, write_results


class WriteResults(HookBase):
    """After training, write ``OUTPUT_DIR/results.json`` from the last evaluation (atomically)."""

    def __init__(self, config_file=""):
        self._config_file = config_file

    def after_train(self):
        trainer = self.trainer
        results = getattr(trainer, "_last_eval_results", None)
        if results is None or trainer.iter + 1 < trainer.max_iter:
            return  # no final evaluation (e.g. training stopped early): write nothing
        cfg = trainer.cfg
        metrics = normalize_metrics(results, list(cfg.DATASETS.TEST))
        record = build_results(cfg, metrics, iteration=trainer.max_iter, config_file=self._config_file)
        path = write_results(cfg.OUTPUT_DIR, record)
        logging.getLogger(__name__).info(f"Results written to {path}")


class ImagesPerSecond(HookBase):
    """Record ``images_per_s`` (global batch / wall time of the step) for metrics.json, TensorBoard and the console."""

    def __init__(self, images_per_batch):
        self._images = images_per_batch
        self._start = None

    def before_step(self):
        self._start = time.perf_counter()

    def after_step(self):
        elapsed = time.perf_counter() - self._start
        if elapsed > 0:
            self.trainer.storage.put_scalar("images_per_s", self._images / elapsed, smoothing_hint=True)


BACKBONE_FILE = "backbone.pth"


def export_backbone(model, cfg, path):
    """Write the model's trunk in the canonical torchvision form (DESIGN.md section 3), atomically."""
    from ..convert.canonical import save_canonical

    model = getattr(model, "module", model)  # unwrap DDP
    save_canonical(
        path,
        model.export_backbone(),
        arch=f"resnet{cfg.MODEL.TV_RESNET.DEPTH}",
        method=method_name(cfg),
        pixel_mean=list(cfg.MODEL.PIXEL_MEAN),
        pixel_std=list(cfg.MODEL.PIXEL_STD),
        input_format=cfg.INPUT.FORMAT,
        extra={"width_per_group": cfg.MODEL.TV_RESNET.WIDTH_PER_GROUP},
    )
    return path


class ExportBackbone(HookBase):
    """After training, export the pretrained trunk to ``OUTPUT_DIR/backbone.pth``."""

    def after_train(self):
        trainer = self.trainer
        if trainer.iter + 1 < trainer.max_iter:
            return
        path = export_backbone(trainer.model, trainer.cfg, os.path.join(trainer.cfg.OUTPUT_DIR, BACKBONE_FILE))
        logging.getLogger(__name__).info(f"Backbone exported to {path}")

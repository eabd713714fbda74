"""Hooks added to detectron2's defaults."""
import logging

from detectron2.engine import HookBase

from .results import build_results, normalize_metrics, write_results


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

"""
A task is one class: the engine runs a task it has never heard of (registered here, in the test)
with the same Trainer, hooks, checkpoints, resume and results.json as the built-in ones.
"""

import json

import numpy as np
import torch
from torch import nn

from detectron2.evaluation import DatasetEvaluator
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.env import seed_all_rng

from contrastive_det.config import get_cfg
from contrastive_det.data.samplers import build_resumable_train_loader
from contrastive_det.engine import TASK_REGISTRY, Task, Trainer, get_task


@META_ARCH_REGISTRY.register()
class TinyRegressor(nn.Module):
    """y = w.x: training returns {"loss_mse"}, inference returns predictions."""

    def __init__(self, cfg):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, batch):
        x = torch.stack([b["x"] for b in batch])  # Bx4
        y = torch.stack([b["y"] for b in batch])  # B
        pred = self.linear(x).squeeze(1)  # B
        if self.training:
            return {"loss_mse": ((pred - y) ** 2).mean()}
        return [{"pred": p, "y": t} for p, t in zip(pred, y)]


def _items(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return [{"x": x[i], "y": float(x[i].sum())} for i in range(n)]


class MSEEvaluator(DatasetEvaluator):
    def reset(self):
        self._errors = []

    def process(self, inputs, outputs):
        self._errors += [float((o["pred"] - o["y"]) ** 2) for o in outputs]

    def evaluate(self):
        return {"tiny": {"mse": float(np.mean(self._errors))}}


@TASK_REGISTRY.register()
class TinyRegressionTask(Task):
    name = "tiny-regression"
    headline_metrics = ("tiny/mse",)

    @classmethod
    def build_train_loader(cls, cfg):
        def add_noise(d):  # an augmentation drawing from the global generator
            return {"x": d["x"] + 0.01 * torch.randn(4), "y": torch.tensor(float(d["y"]))}

        return build_resumable_train_loader(
            _items(32, 0), add_noise, seed=cfg.SEED, total_batch_size=4
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        items = [{"x": d["x"], "y": torch.tensor(float(d["y"]))} for d in _items(8, 1)]
        return [items[:4], items[4:]]

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return MSEEvaluator()


def tiny_cfg(out, max_iter=6):
    cfg = get_cfg()
    cfg.TASK = "TinyRegressionTask"
    cfg.MODEL.META_ARCHITECTURE = "TinyRegressor"
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("tiny_train",), ("tiny_test",)
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS = 0.05, max_iter, ()
    cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.SOLVER.IMS_PER_BATCH = 0, 3, 4
    cfg.TEST.EVAL_PERIOD = 0
    cfg.SEED = 5
    cfg.OUTPUT_DIR = str(out)
    return cfg


def train(cfg, resume=False):
    # what default_setup does in the CLI: the initial weights follow the seed
    seed_all_rng(cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def test_the_engine_runs_a_task_it_does_not_name(tmp_path):
    trainer = train(tiny_cfg(tmp_path))
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["task"] == "tiny-regression" and record["method"] == "random-init"
    assert record["iteration"] == 6 and record["seed"] == 5
    assert 0 <= record["metrics"]["tiny_test"]["tiny/mse"] < 100
    assert (tmp_path / "model_0000002.pth").is_file() and (tmp_path / "model_final.pth").is_file()
    assert trainer.task is TinyRegressionTask


def test_task_defaults():
    cfg = tiny_cfg("unused")
    task = get_task(cfg)
    assert task.datasets_to_check(cfg, eval_only=False) == ["tiny_test", "tiny_train"]
    assert task.datasets_to_check(cfg, eval_only=True) == ["tiny_test"]
    assert task.build_hooks(cfg) == [] and task.prepare_weights(cfg, "unused") == []
    assert task.method(cfg) == "random-init"
    cfg.MODEL.WEIGHTS = "w.pth"
    assert task.method(cfg) == "unspecified"
    cfg.RESULTS.METHOD = "mine"
    assert task.method(cfg) == "mine"


def test_unknown_task_lists_the_registered_ones():
    cfg = tiny_cfg("unused")
    cfg.TASK = "NoSuchTask"
    try:
        get_task(cfg)
    except KeyError as e:
        assert "NoSuchTask" in str(e) and "DetectionTask" in str(e) and "PretrainTask" in str(e)
    else:
        raise AssertionError("expected KeyError")


def test_in_process_resume_matches_the_uninterrupted_run(tmp_path):
    # stop after 3 iterations (checkpoint model_0000002), resume in a fresh Trainer
    full = train(tiny_cfg(tmp_path / "full")).model.state_dict()
    train(tiny_cfg(tmp_path / "part", max_iter=3))
    (tmp_path / "part" / "model_final.pth").unlink()
    (tmp_path / "part" / "last_checkpoint").write_text("model_0000002.pth")
    resumed = train(tiny_cfg(tmp_path / "part"), resume=True).model.state_dict()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key

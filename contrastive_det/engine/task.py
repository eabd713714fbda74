"""
The :class:`Task` contract and ``TASK_REGISTRY``: what the one :class:`Trainer` needs to know
about a task, and nothing more.

A task is a subclass of :class:`Task` registered in ``TASK_REGISTRY`` and selected by
``cfg.TASK`` (its class name). The concrete tasks live in ``contrastive_det/tasks/``, one file
each, registered when ``contrastive_det`` is imported (like the meta-architectures of
``contrastive_det/modeling``). Adding a task means adding one file there: the engine never
names a task.

The model itself comes from ``cfg.MODEL.META_ARCHITECTURE`` as in detectron2; a task never owns
a training loop. It provides:

* ``name`` (str): the task's name in ``results.json`` (e.g. "detection");
* ``build_train_loader(cfg)``: iterable of training batches for the meta-architecture;
* ``build_test_loader(cfg, dataset_name)``: data loader over one test set;
* ``build_evaluator(cfg, dataset_name, output_folder)``: a ``DatasetEvaluator``;

and may override the documented defaults below (``check_config``, ``trains``,
``datasets_to_check``, ``build_hooks``, ``headline_metrics``, ``adapt_config``, ``prepare_weights``,
``method_name``, ``results_extra``).
"""

from __future__ import annotations

from typing import Iterable

from detectron2.config import CfgNode
from detectron2.engine import HookBase
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils.registry import Registry

TASK_REGISTRY = Registry("TASK")
TASK_REGISTRY.__doc__ = __doc__


class Task:
    """
    Base class of every task. Subclasses implement the three builders; every other method has a
    default that fits a task which trains on ``DATASETS.TRAIN`` and evaluates on ``DATASETS.TEST``.
    Methods are class methods: a task holds no state, the config carries everything.
    """

    #: the task's name in ``results.json``
    name = ""
    #: the metrics that matter, as regular expressions matched in full against the ``"task/metric"``
    #: keys of the evaluator's flattened results (e.g. ``r"few_shot/\d+way_\d+shot"``), in this
    #: order: printed by a seed sweep and the columns of a study's tables; the others are still in
    #: results.json (and a study's results.csv)
    headline_metrics = ()
    #: how a study gives the task a pretrained trunk: "backbone" = the exported backbone.pth as
    #: MODEL.WEIGHTS; "converted" = a conversion run first (tools/convert_to_detectron2.py --base
    #: <the transfer's config>: detectron2's layout, verified once), whose weights.pkl is
    # MODEL.WEIGHTS : and whose recorded depth and input keys the task adopts (prepare_weights); the
    # random-init row : adopts the first row's keys (MODEL.KEYS_FROM_WEIGHTS), so that the rows
    # differ by their weights only
    study_weights = "backbone"
    #: config overrides of a study row whose weights are a brought checkpoint (e.g. "take the
    #: checkpoint's own depth")
    checkpoint_row_opts: dict = {}

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Iterable:
        raise NotImplementedError(f"{cls.__name__}.build_train_loader")

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Iterable:
        raise NotImplementedError(f"{cls.__name__}.build_test_loader")

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        raise NotImplementedError(f"{cls.__name__}.build_evaluator")

    @classmethod
    def check_config(cls, cfg: CfgNode) -> None:
        """Raise ValueError naming the key when the task's settings cannot work. Default: no
        check."""

    @classmethod
    def trains(cls, cfg: CfgNode) -> bool:
        """
        Whether the run trains by SGD iterations. False for protocols the evaluator fits itself
        (e.g. a logistic regression on frozen features): the run then evaluates ``MODEL.WEIGHTS``
        as ``--eval-only`` does. Default: True.
        """
        return True

    @classmethod
    def datasets_to_check(cls, cfg: CfgNode, eval_only: bool) -> list[str]:
        """
        Names of the registered datasets whose files must exist before a run (checked by
        ``check_dataset_layout``). Default: ``DATASETS.TEST``, plus ``DATASETS.TRAIN`` when
        training.
        """
        return list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))

    @classmethod
    def build_hooks(cls, cfg: CfgNode) -> list[HookBase]:
        """
        Extra hooks of the task, run in the main process after detectron2's evaluation hook and
        before the writers (so what they put in the event storage is written). Default: none.
        """
        return []

    @classmethod
    def adapt_config(cls, cfg: CfgNode) -> list[str]:
        """
        Called on each run's config before it is frozen, once the datasets are registered and before
        ``--resume`` compares it with the checkpoint's: sets keys that follow from the data (e.g. an
        epoch schedule in iterations) and returns one message per change (logged). Default: none.
        """
        return []

    @classmethod
    def prepare_weights(cls, cfg: CfgNode, output_dir: str) -> list[str]:
        """
        Called once in the launching process, before any training process starts, so that every
        process and seed loads the same file. Returns ``KEY VALUE`` overrides to append to the
        command line (e.g. ``["MODEL.WEIGHTS", converted_path]``); raises when ``MODEL.WEIGHTS``
        cannot be used. Default: no change.
        """
        return []

    @classmethod
    def method_name(cls, cfg: CfgNode) -> str:
        """
        The method recorded in ``results.json`` when ``RESULTS.METHOD`` is empty. Default:
        "random-init" without ``MODEL.WEIGHTS``, "unspecified" with it.
        """
        return "unspecified" if cfg.MODEL.WEIGHTS else "random-init"

    @classmethod
    def results_extra(cls, cfg: CfgNode) -> dict:
        """Task-specific fields added to ``results.json`` (JSON-able dict). Default: none."""
        return {}

    @classmethod
    def method(cls, cfg: CfgNode) -> str:
        """``RESULTS.METHOD``, or :meth:`method_name` when it is empty."""
        return cfg.RESULTS.METHOD or cls.method_name(cfg)


def get_task(cfg: CfgNode) -> type[Task]:
    """The :class:`Task` class named by ``cfg.TASK``; an unknown name lists the registered ones."""
    try:
        return TASK_REGISTRY.get(cfg.TASK)
    except KeyError:
        known = ", ".join(sorted(name for name, _ in TASK_REGISTRY))
        raise KeyError(
            f"TASK {cfg.TASK!r} is not a registered task; registered tasks: {known}"
        ) from None


def headline_patterns() -> list[str]:
    """The ``headline_metrics`` of every registered task, in registration order, each once: what a
    study's report puts in its tables (a new task's metrics appear there with no edit elsewhere)."""
    patterns = []
    for _, task in TASK_REGISTRY:
        patterns += [p for p in getattr(task, "headline_metrics", ()) if p not in patterns]
    return patterns

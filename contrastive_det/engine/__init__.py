"""
The one engine every task runs on: the :class:`Task` contract and ``TASK_REGISTRY`` (task.py),
the :class:`Trainer` and its hooks, atomic checkpoints, ``results.json``, and the command-line
plumbing (defaults.py: argument parser, per-run setup, launching seeds and processes).
The engine never imports a task: tasks register themselves (``contrastive_det/tasks``).
"""

from .checkpoint import AtomicDetectionCheckpointer
from .defaults import argument_parser, launch_runs, setup
from .results import RESULTS_FILE, aggregate_seed_results, build_results
from .task import TASK_REGISTRY, Task, get_task
from .trainer import Trainer

__all__ = [
    "AtomicDetectionCheckpointer",
    "argument_parser",
    "launch_runs",
    "setup",
    "RESULTS_FILE",
    "aggregate_seed_results",
    "build_results",
    "TASK_REGISTRY",
    "Task",
    "get_task",
    "Trainer",
]

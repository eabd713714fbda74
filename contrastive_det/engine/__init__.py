from .checkpoint import AtomicDetectionCheckpointer
from .launcher import argument_parser, launch_runs, run_task
from .results import RESULTS_FILE, aggregate_seed_results, build_results
from .setup import setup
from .tasks import TASK_REGISTRY, DetectionTask
from .trainer import Trainer

__all__ = [
    "AtomicDetectionCheckpointer",
    "argument_parser",
    "launch_runs",
    "run_task",
    "RESULTS_FILE",
    "aggregate_seed_results",
    "build_results",
    "setup",
    "TASK_REGISTRY",
    "DetectionTask",
    "Trainer",
]

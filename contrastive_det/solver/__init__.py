from .build import build_optimizer
from .lars import LARS
from .lr_schedule import PolyParamScheduler, build_lr_scheduler

__all__ = ["LARS", "PolyParamScheduler", "build_lr_scheduler", "build_optimizer"]

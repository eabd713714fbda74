from .build import build_optimizer
from .lars import LARS

__all__ = ["LARS", "build_optimizer"]

from .lars import LARS, build_optimizer

__all__ = ["LARS", "build_optimizer"]

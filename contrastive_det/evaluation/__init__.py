from .voc import VOCDetectionEvaluator

__all__ = ["VOCDetectionEvaluator"]

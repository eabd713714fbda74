from .knn import KNNEvaluator, knn_predict
from .voc import VOCDetectionEvaluator

__all__ = ["KNNEvaluator", "knn_predict", "VOCDetectionEvaluator"]

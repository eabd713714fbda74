from .classification import (
    ClassificationEvaluator,
    classification_scores,
    mean_per_class_accuracy,
    top1_accuracy,
    voc11_map,
)
from .feature_cache import FeatureCache, weights_digest
from .few_shot import Episode, episode_accuracies, mean_ci95, sample_episodes
from .knn import KNNEvaluator, knn_predict
from .logistic import fit_logistic, regularisation_grid, select_and_refit
from .probe import FeatureProbeEvaluator
from .sem_seg import SemanticSegmentationEvaluator, mmseg_miou
from .voc import VOCDetectionEvaluator

__all__ = [
    "KNNEvaluator",
    "knn_predict",
    "VOCDetectionEvaluator",
    "SemanticSegmentationEvaluator",
    "mmseg_miou",
    "ClassificationEvaluator",
    "classification_scores",
    "mean_per_class_accuracy",
    "top1_accuracy",
    "voc11_map",
    "FeatureCache",
    "weights_digest",
    "Episode",
    "episode_accuracies",
    "mean_ci95",
    "sample_episodes",
    "fit_logistic",
    "regularisation_grid",
    "select_and_refit",
    "FeatureProbeEvaluator",
]

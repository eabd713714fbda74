"""The few-shot protocol of Islam et al.: N-way K-shot episodes drawn from a labelled set of
frozen features, a classifier fit on each support set, accuracy on its queries, and the mean
with a 95% confidence interval over episodes.

Reference: Islam, Chen, Panda, Karlinsky, Radke, Feris, "A Broad Study on the Transferability of
Visual Representations with Contrastive Learning", ICCV 2021, https://arxiv.org/abs/2103.13517
(5-way 1/5/20-shot, 15 queries, 600 episodes, logistic regression on L2-normalised features).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .logistic import fit_logistic

__all__ = [
    "Episode",
    "sample_episodes",
    "episode_accuracies",
    "mean_ci95",
    "CLASSIFIERS",
    "FEW_SHOT_EPISODES_DIR",
]

# <OUTPUT_DIR>/few_shot_episodes/<test set>.json of a few-shot run: each episode's accuracy per
# setting, so that a study's interval can come from all the episodes of a row's runs
FEW_SHOT_EPISODES_DIR = "few_shot_episodes"

CLASSIFIERS = ("logistic", "centroid", "protonet")


@dataclasses.dataclass
class Episode:
    """One episode: indices into the feature set, and labels renumbered 0..ways-1 (the position
    of the class in the episode's draw). Support and query indices are disjoint.

    Shape:
        - support_idx, support_labels: ways*shots (int64), class-major.
        - query_idx, query_labels: ways*queries (int64), class-major.
    """

    support_idx: np.ndarray
    support_labels: np.ndarray
    query_idx: np.ndarray
    query_labels: np.ndarray


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _labels_array(labels):
    if torch.is_tensor(labels):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(
            f"labels must be a non-empty vector of class ids, got shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    return labels.astype(np.int64)


def sample_episodes(
    labels: Sequence[int] | np.ndarray,
    ways: int,
    shots: int,
    queries: int,
    episodes: int,
    seed: int,
) -> list[Episode]:
    """Draw ``episodes`` episodes of ``ways`` classes with ``shots`` support and ``queries`` query
    images each, deterministically from ``seed`` (a numpy ``default_rng``).

    Per episode: ``ways`` distinct classes uniformly among all classes of ``labels``, then for
    each of them ``shots + queries`` distinct images of that class without replacement, the
    first ``shots`` for the support set and the rest as queries.

    Args:
        labels: the class id of every image (list, numpy array or tensor of N ints).
        ways, shots, queries, episodes: positive ints (ways >= 2).
        seed: int >= 0, the seed of ``numpy.random.default_rng``; the same seed gives the same
            episodes.

    Shape:
        - labels: N.
        - Output: list of ``episodes`` :class:`Episode`.

    Raises:
        ValueError: fewer than ``ways`` classes, or any class with fewer than ``shots + queries``
            images (the message names those classes and their counts; checked before drawing),
            or a non-positive parameter (a negative seed).
    """
    labels = _labels_array(labels)
    ways = _positive_int("ways", ways, minimum=2)
    shots = _positive_int("shots", shots)
    queries = _positive_int("queries", queries)
    episodes = _positive_int("episodes", episodes)
    seed = _positive_int("seed", seed, minimum=0)
    classes, counts = np.unique(labels, return_counts=True)  # sorted class ids: K, K
    if len(classes) < ways:
        raise ValueError(
            f"{ways}-way episodes need at least {ways} classes, the labels have {len(classes)}: "
            f"{classes.tolist()}"
        )
    need = shots + queries
    short = counts < need
    if short.any():
        listed = ", ".join(
            f"{c}: {n}" for c, n in zip(classes[short].tolist(), counts[short].tolist())
        )
        raise ValueError(
            f"{ways}-way {shots}-shot episodes with {queries} queries need shots+queries={need} "
            f"images of every class; {int(short.sum())} classes have fewer (class: count) {listed}"
        )
    members = {
        int(c): np.flatnonzero(labels == c) for c in classes
    }  # class id -> its image indices, ascending
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        chosen = rng.choice(classes, size=ways, replace=False)  # ways
        support_idx, query_idx = [], []
        for c in chosen:
            # shots+queries, distinct
            picked = rng.choice(members[int(c)], size=need, replace=False)
            support_idx.append(picked[:shots])
            query_idx.append(picked[shots:])
        out.append(
            Episode(
                support_idx=np.concatenate(support_idx).astype(np.int64),
                support_labels=np.repeat(np.arange(ways, dtype=np.int64), shots),
                query_idx=np.concatenate(query_idx).astype(np.int64),
                query_labels=np.repeat(np.arange(ways, dtype=np.int64), queries),
            )
        )
    return out


def _centroid_predict(support, support_labels, query, ways):
    """Nearest class mean by cosine similarity (support, query: L2-normalised)."""
    # sums: ways x D
    sums = torch.zeros(ways, support.shape[1], dtype=support.dtype, device=support.device)
    sums.index_add_(0, support_labels, support)
    centroids = F.normalize(sums, dim=1)  # ways x D; normalising the mean or the sum is the same
    return (query @ centroids.t()).argmax(dim=1)  # Q


def _protonet_predict(support, support_labels, query, ways):
    """ProtoNet's rule (Snell et al. 2017; ssl-transfer's few-shot evaluation): the nearest class
    mean of the raw (not normalised) features by squared Euclidean distance."""
    # sums: ways x D
    sums = torch.zeros(ways, support.shape[1], dtype=support.dtype, device=support.device)
    sums.index_add_(0, support_labels, support)
    counts = torch.bincount(support_labels, minlength=ways).to(support.dtype)  # ways
    prototypes = sums / counts[:, None]  # ways x D
    return torch.cdist(query, prototypes).pow(2).argmin(dim=1)  # Q


def episode_accuracies(
    features: torch.Tensor,
    episodes: Sequence[Episode],
    classifier: str = "logistic",
    reg: float = 1.0,
    progress: bool = True,
    device: torch.device | str | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
) -> np.ndarray:
    """Query accuracy of each episode, in percent.

    The features are L2-normalised first (each row; "protonet" takes them as they are). Then per
    episode:

    - "logistic": :func:`fit_logistic` on the support set with ``reg`` (multinomial, L-BFGS,
      float64; scikit-learn's default ``LogisticRegression()``, C=1, is reg=1), the queries
      predicted by the largest logit.
    - "centroid": each query goes to the class whose mean support feature is the most
      cosine-similar (on the normalised features).
    - "protonet": ProtoNet's rule on the raw features: the class mean at the smallest squared
      Euclidean distance (ssl-transfer's few-shot classifier).

    Args:
        features: the features of the whole set the episodes index.
        episodes: from :func:`sample_episodes`.
        classifier: "logistic", "centroid" or "protonet".
        reg: the logistic regularisation (reg = 1 / C).
        tol, max_iter: each logistic fit's gradient tolerance and iteration cap
        (:func:`fit_logistic`;
            ``CLASSIFICATION.LBFGS.TOL`` / ``MAX_ITER`` in a run; 1e-4 is scikit-learn's default).
        progress: show a tqdm bar over the episodes.
        device: where to compute; None = the features' device.

    Shape:
        - features: NxD.
        - Output: numpy float64 array of len(episodes).

    Raises:
        ValueError: unknown classifier, no episodes, or features that are not NxD.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(
            f"unknown few-shot classifier {classifier!r}; known: {', '.join(CLASSIFIERS)}"
        )
    if len(episodes) == 0:
        raise ValueError("episode_accuracies needs at least one episode, got none")
    features = torch.as_tensor(features)
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(
            f"features must be a floating-point NxD tensor, got {features.dtype} of shape "
            f"{tuple(features.shape)}"
        )
    device = features.device if device is None else torch.device(device)
    raw = features.to(device=device, dtype=torch.float64)  # raw: NxD
    feats = F.normalize(raw, dim=1)  # feats: NxD, unit rows
    first = episodes[0]
    ways = int(first.support_labels.max()) + 1
    shots = len(first.support_labels) // ways
    accs = np.empty(len(episodes), dtype=np.float64)
    bar = tqdm(
        episodes, desc=f"few-shot {ways}-way {shots}-shot ({classifier})", disable=not progress
    )
    for e, ep in enumerate(bar):
        s_idx = torch.as_tensor(ep.support_idx, device=device)
        q_idx = torch.as_tensor(ep.query_idx, device=device)
        s_lab = torch.as_tensor(ep.support_labels, device=device, dtype=torch.long)
        q_lab = torch.as_tensor(ep.query_labels, device=device, dtype=torch.long)
        support, query = feats[s_idx], feats[q_idx]  # support: SxD, query: QxD
        n_way = int(s_lab.max()) + 1
        if classifier == "logistic":
            weight, bias = fit_logistic(
                support, s_lab, reg, num_classes=n_way, tol=tol, max_iter=max_iter
            )  # n_way x D, n_way
            pred = (query @ weight.t() + bias).argmax(dim=1)  # Q
        elif classifier == "protonet":
            pred = _protonet_predict(raw[s_idx], s_lab, raw[q_idx], n_way)  # Q
        else:
            pred = _centroid_predict(support, s_lab, query, n_way)  # Q
        accs[e] = (pred == q_lab).double().mean().item() * 100.0
    bar.close()
    return accs


def mean_ci95(accuracies: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95% confidence half-width over episodes: ``1.96 * std / sqrt(n)``, with the
    population standard deviation (ddof=0, ``np.std``'s default, as Islam et al.'s code).

    Shape:
        - accuracies: n (percent per episode).
        - Output: (mean, ci) Python floats.

    Raises:
        ValueError: no accuracies, or non-finite ones.
    """
    acc = np.asarray(accuracies, dtype=np.float64).reshape(-1)
    if acc.size == 0:
        raise ValueError("mean_ci95 needs at least one accuracy, got none")
    if not np.isfinite(acc).all():
        raise ValueError("mean_ci95 got NaN or infinite accuracies")
    return float(acc.mean()), float(1.96 * acc.std() / math.sqrt(acc.size))

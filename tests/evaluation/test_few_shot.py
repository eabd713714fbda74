"""evaluation/few_shot.py: episode sampling, per-episode accuracy, the 95% interval."""

import numpy as np
import pytest
import torch

from contrastive_det.evaluation import (
    Episode,
    episode_accuracies,
    few_shot,
    mean_ci95,
    sample_episodes,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


LABELS = np.repeat(np.arange(8), 10)[
    np.random.default_rng(0).permutation(80)
]  # 8 classes x 10 images, shuffled


def as_tuples(episodes):
    return [
        tuple(a.tolist() for a in (e.support_idx, e.support_labels, e.query_idx, e.query_labels))
        for e in episodes
    ]


def test_same_seed_same_episodes_other_seed_other_episodes():
    a = sample_episodes(LABELS, ways=5, shots=2, queries=3, episodes=20, seed=7)
    # tensor labels too
    b = sample_episodes(torch.tensor(LABELS), ways=5, shots=2, queries=3, episodes=20, seed=7)
    c = sample_episodes(LABELS, ways=5, shots=2, queries=3, episodes=20, seed=8)
    assert as_tuples(a) == as_tuples(b)
    assert as_tuples(a) != as_tuples(c)


def test_episode_structure():
    episodes = sample_episodes(LABELS, ways=5, shots=2, queries=3, episodes=50, seed=0)
    assert len(episodes) == 50 and all(isinstance(e, Episode) for e in episodes)
    drawn = set()
    for e in episodes:
        assert e.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        assert e.query_labels.tolist() == sum(([k] * 3 for k in range(5)), [])
        assert not set(e.support_idx.tolist()) & set(e.query_idx.tolist())  # disjoint
        assert len(set(e.support_idx.tolist()) | set(e.query_idx.tolist())) == 25  # no repeats
        # episode label k is one original class, different for each k
        originals = []
        for k in range(5):
            classes = set(LABELS[e.support_idx[e.support_labels == k]]) | set(
                LABELS[e.query_idx[e.query_labels == k]]
            )
            assert len(classes) == 1
            originals.append(classes.pop())
        assert len(set(originals)) == 5
        drawn.update(originals)
    assert drawn == set(range(8))  # classes come from all classes


def test_too_small_classes_are_named_before_drawing(monkeypatch):
    # classes 5, 6 have 3 and 4 images
    labels = np.concatenate([np.repeat(np.arange(5), 6), [5] * 3, [6] * 4])

    def no_drawing(*args, **kwargs):
        raise AssertionError("episodes drawn before the class sizes were checked")

    monkeypatch.setattr(few_shot.np.random, "default_rng", no_drawing)
    with pytest.raises(ValueError, match=r"shots\+queries=5 .*2 classes have fewer .*5: 3, 6: 4"):
        sample_episodes(labels, ways=5, shots=2, queries=3, episodes=10**9, seed=0)


def test_parameter_errors():
    with pytest.raises(
        ValueError, match="5-way episodes need at least 5 classes, the labels have 3"
    ):
        sample_episodes(np.repeat(np.arange(3), 10), ways=5, shots=1, queries=1, episodes=1, seed=0)
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        sample_episodes(LABELS, ways=5, shots=0, queries=1, episodes=1, seed=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        sample_episodes(LABELS, ways=5, shots=1, queries=1, episodes=1, seed=-1)
    with pytest.raises(ValueError, match="integer class ids"):
        sample_episodes(LABELS.astype(float), ways=5, shots=1, queries=1, episodes=1, seed=0)
    episodes = sample_episodes(LABELS, ways=2, shots=1, queries=1, episodes=1, seed=0)
    with pytest.raises(
        ValueError, match="unknown few-shot classifier 'svm'; known: logistic, centroid, protonet"
    ):
        episode_accuracies(torch.randn(80, 4), episodes, classifier="svm")
    with pytest.raises(ValueError, match="at least one episode"):
        episode_accuracies(torch.randn(80, 4), [])


def separable_features(labels, dim=16, seed=0):
    """Each class near its own axis: nearest centroid and logistic regression are always right."""
    rng = np.random.default_rng(seed)
    x = np.eye(dim)[labels] * 5.0 + 0.1 * rng.normal(size=(len(labels), dim))
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("classifier", ["centroid", "logistic", "protonet"])
def test_separable_case_is_perfect(classifier):
    episodes = sample_episodes(LABELS, ways=5, shots=1, queries=5, episodes=10, seed=0)
    accs = episode_accuracies(
        separable_features(LABELS), episodes, classifier=classifier, progress=False
    )
    assert accs.dtype == np.float64 and accs.shape == (10,)
    assert accs.tolist() == [100.0] * 10


def test_centroid_by_hand():
    # 2-way 2-shot. Normalised support: class 0 (1,0) twice -> mean (1,0); class 1 (.8,.6) and
    # (-.8,.6) -> mean (0,.6), direction (0,1). Query (.6,.8), label 1: cosine .6 with class 0, .8
    # with class 1 -> right (a dot product with the means, .6 vs .48, would say class 0). Query
    # (-1,.1), label 0: cosine -.995 with class 0, .0995 with class 1 -> wrong. 50%.
    feats = torch.tensor([[2.0, 0.0], [5.0, 0.0], [2.4, 1.8], [-0.8, 0.6], [0.6, 0.8], [-1.0, 0.1]])
    ep = Episode(np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]), np.array([4, 5]), np.array([1, 0]))
    assert episode_accuracies(feats, [ep], classifier="centroid", progress=False).tolist() == [50.0]


def test_protonet_by_hand_differs_from_the_cosine_centroid():
    # 2-way 2-shot, raw support means: class 0 ((2,0) + (5,0)) / 2 = (3.5, 0); class 1
    # ((2.4,1.8) + (-.8,.6)) / 2 = (.8, 1.2). Query (.6,.8), label 1: squared distances 9.05 vs .2
    # -> right. Query (.8, 0), label 0: 7.29 vs 1.44 -> class 1, wrong: 50%. The cosine centroid
    # puts (.8, 0) on class 0's direction (1, 0): right, 100%.
    feats = torch.tensor([[2.0, 0.0], [5.0, 0.0], [2.4, 1.8], [-0.8, 0.6], [0.6, 0.8], [0.8, 0.0]])
    ep = Episode(np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]), np.array([4, 5]), np.array([1, 0]))
    assert episode_accuracies(feats, [ep], classifier="protonet", progress=False).tolist() == [50.0]
    assert episode_accuracies(feats, [ep], classifier="centroid", progress=False).tolist() == [
        100.0
    ]


def test_features_are_l2_normalised_first():
    rng = np.random.default_rng(1)
    # overlapping classes: accuracies between 0 and 100
    feats = torch.tensor(rng.normal(size=(80, 6)))
    feats[:, 0] += torch.tensor(LABELS % 3, dtype=torch.float64)
    scaled = feats * torch.tensor(rng.uniform(0.1, 10.0, size=(80, 1)))  # rows rescaled
    episodes = sample_episodes(LABELS, ways=3, shots=2, queries=4, episodes=8, seed=3)
    for classifier in ("logistic", "centroid"):
        a = episode_accuracies(feats, episodes, classifier=classifier, progress=False)
        b = episode_accuracies(scaled, episodes, classifier=classifier, progress=False)
        np.testing.assert_array_equal(a, b)


def test_logistic_regularisation_is_passed_on(monkeypatch):
    seen = []
    real = few_shot.fit_logistic

    def spy(features, labels, reg, **kwargs):
        seen.append((reg, tuple(features.shape), features.dtype))
        torch.testing.assert_close(
            features.norm(dim=1), torch.ones(features.shape[0], dtype=features.dtype)
        )
        return real(features, labels, reg, **kwargs)

    monkeypatch.setattr(few_shot, "fit_logistic", spy)
    episodes = sample_episodes(LABELS, ways=3, shots=2, queries=4, episodes=2, seed=0)
    episode_accuracies(separable_features(LABELS), episodes, reg=0.25, progress=False)
    assert seen == [(0.25, (6, 16), torch.float64)] * 2


def test_mean_ci95_uses_the_population_std():
    # [0, 100]: mean 50, np.std (ddof=0) = 50 -> 1.96 * 50 / sqrt 2 = 69.30;
    # with ddof=1 the std would be 70.71 and the interval 98.0
    mean, ci = mean_ci95([0.0, 100.0])
    assert mean == 50.0 and ci == pytest.approx(1.96 * 50 / np.sqrt(2))
    assert isinstance(mean, float) and isinstance(ci, float)
    # [60, 80, 100]: std = sqrt(800/3) = 16.33 -> ci = 1.96 * 16.33 / sqrt 3 = 18.48
    assert mean_ci95(np.array([60.0, 80.0, 100.0])) == pytest.approx(
        (80.0, 1.96 * np.sqrt(800 / 3) / np.sqrt(3))
    )
    with pytest.raises(ValueError, match="at least one accuracy"):
        mean_ci95([])

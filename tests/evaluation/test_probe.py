"""evaluation/probe.py: the frozen-feature evaluator end to end on synthetic features (no model)."""

import os

import numpy as np
import pytest
import torch

from contrastive_det.evaluation import (
    FeatureCache,
    FeatureProbeEvaluator,
    episode_accuracies,
    mean_ci95,
    probe,
    sample_episodes,
    select_and_refit,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

GRID = [1e-3, 1e-1, 10.0, 1e3]
LAYERS = {"res4": 5, "res5": 6}
SIZES = {"train": 24, "val": 12, "test": 30}
C = 3


def make_data(seed=0):
    """{split: (image_ids, labels, {layer: features NxD float32})}, noisy enough that regs
    differ."""
    rng = np.random.default_rng(seed)
    centers = {layer: rng.normal(size=(C, d)) for layer, d in LAYERS.items()}
    data = {}
    for s, (split, n) in enumerate(SIZES.items()):
        labels = rng.permutation(np.arange(n) % C)
        ids = [1000 * s + int(i) for i in rng.permutation(n) * 7]  # unique, not in label order
        feats = {
            layer: torch.tensor(
                centers[layer][labels] + 0.8 * rng.normal(size=(n, d)), dtype=torch.float32
            )
            for layer, d in LAYERS.items()
        }
        data[split] = (ids, labels, feats)
    return data


def dicts(data, splits=("train", "val", "test"), seed=0):
    """(input, output) pairs of the splits, shuffled across splits as a loader might give them."""
    pairs = []
    for split in splits:
        ids, labels, feats = data[split]
        for i in range(len(ids)):
            inp = {"probe_split": split, "image_id": ids[i], "label": int(labels[i])}
            out = {"features": {layer: f[i] for layer, f in feats.items()}}
            pairs.append((inp, out))
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in order]


def feed(ev, pairs, batch=5):
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        ev.process([i for i, _ in chunk], [o for _, o in chunk])


def sorted_split(data, split, layer):
    """The split's features and labels ordered by image id, as the evaluator orders them."""
    ids, labels, feats = data[split]
    order = np.argsort(ids)
    return feats[layer][torch.tensor(order)], torch.tensor(labels[order])


def direct(data, layer, metric="top1"):
    return select_and_refit(
        *(sorted_split(data, s, layer) for s in ("train", "val", "test")),
        grid=GRID,
        metric=metric,
        num_classes=C,
        progress=False,
    )


def new_evaluator(protocol="linear_lbfgs", **kwargs):
    kwargs = {
        "layers": ["res5"],
        "metric": "top1",
        "num_classes": C,
        "grid": GRID,
        "progress": False,
        **kwargs,
    }
    ev = FeatureProbeEvaluator(protocol, **kwargs)
    ev.reset()
    return ev


def assert_plain_floats(result):
    for group in result.values():
        assert all(type(v) is float for v in group.values()), group


def test_linear_lbfgs_equals_select_and_refit():
    data = make_data()
    ev = new_evaluator()
    feed(ev, dicts(data))
    result = ev.evaluate()
    expected = direct(data, "res5")
    assert set(result) == {"linear"}
    assert result["linear"] == {
        k: expected[k] for k in ("score", "reg", "val_score", "top1", "mean_per_class")
    }
    assert len(set(expected["val_scores"])) > 1  # the regs do differ on this data
    assert_plain_floats(result)


def cache_keys(cache, splits=("train", "val", "test"), layers=("res5",)):
    return {
        (s, layer): cache.key(
            weights="ab" * 32,
            dataset="synthetic",
            split=s,
            transform="none",
            layer=layer,
            content="cd" * 32,
        )
        for s in splits
        for layer in layers
    }


def test_cached_splits_give_identical_results_without_process(tmp_path):
    data = make_data()
    cache = FeatureCache(tmp_path)
    keys = cache_keys(cache)
    first = new_evaluator(cache=cache, cache_keys=keys)
    assert first.splits_to_extract() == ["train", "val", "test"]
    feed(first, dicts(data))
    r1 = first.evaluate()
    assert cache.keys() == sorted(keys.values())
    assert all(os.path.exists(cache.meta_path(k)) for k in keys.values())
    # the cache holds the split's images in image id order
    entry = cache.load(keys[("test", "res5")])
    assert entry["image_ids"] == sorted(data["test"][0])
    assert torch.equal(entry["features"], sorted_split(data, "test", "res5")[0])

    second = new_evaluator(cache=cache, cache_keys=keys)
    assert second.splits_to_extract() == []
    assert second.evaluate() == r1  # no process() call at all

    # one split missing from the cache: only it is extracted, the others come from the cache
    os.remove(cache.path(keys[("val", "res5")]))
    third = new_evaluator(cache=cache, cache_keys=keys)
    assert third.splits_to_extract() == ["val"]
    feed(third, dicts(data, splits=("val",)))
    assert third.evaluate() == r1
    assert cache.load(keys[("val", "res5")]) is not None  # saved again


def test_missing_split_or_keys_are_errors(tmp_path):
    data = make_data()
    ev = new_evaluator()
    feed(ev, dicts(data, splits=("train", "test")))
    with pytest.raises(
        ValueError,
        match="no val features of layer 'res5'.*not in the loader and is not in the feature cache",
    ):
        ev.evaluate()
    cache = FeatureCache(tmp_path)
    keys = cache_keys(cache)
    del keys[("val", "res5")]
    with pytest.raises(ValueError, match=r"missing \[\('val', 'res5'\)\]"):
        new_evaluator(cache=cache, cache_keys=keys)


def test_a_partial_split_is_neither_fitted_nor_cached(tmp_path):
    """A split with fewer images than the dataset (processes that disagreed on what to extract) is
    refused."""
    data = make_data()
    cache = FeatureCache(tmp_path)
    keys = cache_keys(cache)
    ev = new_evaluator(cache=cache, cache_keys=keys, expected_counts=SIZES)
    pairs = dicts(data)
    dropped = next(i for i, (inp, _) in enumerate(pairs) if inp["probe_split"] == "train")
    feed(ev, pairs[:dropped] + pairs[dropped + 1 :])
    with pytest.raises(
        ValueError,
        match=f"train split: {SIZES['train'] - 1} images were extracted, the dataset has "
        f"{SIZES['train']}; a partial split is neither fitted nor cached",
    ):
        ev.evaluate()
    assert cache.load(keys[("train", "res5")]) is None
    complete = new_evaluator(cache=cache, cache_keys=keys, expected_counts=SIZES)
    feed(complete, pairs)
    assert complete.evaluate()["linear"]["score"] >= 0


def test_results_do_not_depend_on_the_number_of_processes(monkeypatch):
    data = make_data()
    few = {"ways": 3, "shots": [2], "queries": 3, "episodes": 6, "classifier": "centroid"}
    one = new_evaluator("few_shot", few_shot=few)
    feed(one, dicts(data, seed=1))
    reference = one.evaluate()
    # two "processes" that got the images in another split and order
    pairs = dicts(data, seed=2)
    a, b = new_evaluator("few_shot", few_shot=few), new_evaluator("few_shot", few_shot=few)
    feed(a, pairs[::2])
    feed(b, pairs[1::2])
    monkeypatch.setattr(probe.comm, "gather", lambda items, dst=0: [b._items, items])
    assert a.evaluate() == reference


def test_few_shot_equals_the_episode_functions():
    data = make_data()
    few = {"ways": 3, "shots": [1, 3], "queries": 4, "episodes": 5, "reg": 0.5}
    ev = new_evaluator("few_shot", few_shot=few, seed=3)
    assert ev.needed == {"test": ("res5",)}
    feed(ev, dicts(data))  # train and val inputs are ignored
    result = ev.evaluate()
    features, labels = sorted_split(data, "test", "res5")
    expected = {}
    for shots in (1, 3):
        accs = episode_accuracies(
            features,
            sample_episodes(labels, 3, shots, 4, 5, seed=3),
            classifier="logistic",
            reg=0.5,
            progress=False,
        )
        expected[f"3way_{shots}shot"], expected[f"3way_{shots}shot_ci95"] = mean_ci95(accs)
    assert result == {"few_shot": expected}
    assert list(result["few_shot"]) == [
        "3way_1shot",
        "3way_1shot_ci95",
        "3way_3shot",
        "3way_3shot_ci95",
    ]
    assert_plain_floats(result)


def test_few_shot_fits_take_the_lbfgs_tolerance_and_cap(monkeypatch):
    """CLASSIFICATION.LBFGS.TOL / MAX_ITER reach every episode's fit (no hidden 1e-6)."""
    from contrastive_det.evaluation import few_shot

    seen = []
    real = few_shot.fit_logistic

    def recording(*args, **kwargs):
        seen.append((kwargs.get("tol"), kwargs.get("max_iter")))
        return real(*args, **kwargs)

    monkeypatch.setattr(few_shot, "fit_logistic", recording)
    ev = new_evaluator(
        "few_shot",
        few_shot={"ways": 3, "shots": [1], "queries": 2, "episodes": 3},
        tol=0.003,
        max_iter=17,
    )
    feed(ev, dicts(make_data(), splits=("test",)))
    ev.evaluate()
    assert seen == [(0.003, 17)] * 3


def test_few_shot_checks_every_setting_before_fitting(monkeypatch):
    data = make_data()  # 10 test images per class
    ev = new_evaluator(
        "few_shot", few_shot={"ways": 3, "shots": [1, 20], "queries": 2, "episodes": 2}
    )
    feed(ev, dicts(data, splits=("test",)))
    monkeypatch.setattr(
        probe, "episode_accuracies", lambda *a, **k: pytest.fail("fitted before the 20-shot check")
    )
    with pytest.raises(ValueError, match="shots\\+queries=22"):
        ev.evaluate()


def test_layerwise_probes_every_layer(tmp_path):
    data = make_data()
    cache = FeatureCache(tmp_path)
    keys = cache_keys(cache, layers=("res4", "res5"))
    ev = new_evaluator("layerwise", layers=["res4", "res5"], cache=cache, cache_keys=keys)
    feed(ev, dicts(data))
    result = ev.evaluate()
    expected = {}
    for layer in ("res4", "res5"):
        r = direct(data, layer)
        expected[f"{layer}/score"], expected[f"{layer}/reg"] = r["score"], r["reg"]
    assert result == {"layerwise": expected}
    assert_plain_floats(result)
    # a split is re-extracted when any of its layers is missing from the cache
    os.remove(cache.path(keys[("val", "res4")]))
    again = new_evaluator("layerwise", layers=["res4", "res5"], cache=cache, cache_keys=keys)
    assert again.splits_to_extract() == ["val"]
    feed(again, dicts(data, splits=("val",)))
    assert again.evaluate() == result


def test_linear_probe_uses_the_first_layer_only():
    data = make_data()
    ev = new_evaluator(layers=["res4", "res5"])
    assert ev.needed == {"train": ("res4",), "val": ("res4",), "test": ("res4",)}
    feed(ev, dicts(data))
    expected = direct(data, "res4")
    assert ev.evaluate()["linear"]["score"] == expected["score"] != direct(data, "res5")["score"]


def test_few_shot_from_the_cache(tmp_path):
    data = make_data()
    cache = FeatureCache(tmp_path)
    keys = cache_keys(cache, splits=("test",))
    few = {"ways": 3, "shots": [2], "queries": 3, "episodes": 6, "classifier": "centroid"}
    first = new_evaluator("few_shot", few_shot=few, cache=cache, cache_keys=keys)
    feed(first, dicts(data, splits=("test",)))
    r1 = first.evaluate()
    # an entry written in another order (e.g. by an older version) is put in image id order
    entry = cache.load(keys[("test", "res5")])
    shuffle = torch.randperm(len(entry["image_ids"]), generator=torch.Generator().manual_seed(0))
    cache.save(
        keys[("test", "res5")],
        entry["features"][shuffle],
        entry["targets"][shuffle],
        [entry["image_ids"][i] for i in shuffle.tolist()],
    )
    second = new_evaluator("few_shot", few_shot=few, cache=cache, cache_keys=keys)
    assert second.splits_to_extract() == []
    assert second.evaluate() == r1


def test_multi_label_linear_probe():
    rng = np.random.default_rng(5)
    ev = new_evaluator(metric="map11", num_classes=2)
    targets, feats = {}, {}
    pairs = []
    for split, n in SIZES.items():
        x = torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32)
        t = (x[:, :2] > 0).long()  # 2 classes read off the first two features
        t[::5, 1] = -1  # every fifth image: class 1 "difficult"
        for i in range(n):
            labels = [c for c in range(2) if t[i, c] == 1]
            ignore = [c for c in range(2) if t[i, c] == -1]
            pairs.append(
                (
                    {
                        "probe_split": split,
                        "image_id": f"{split}{i:03d}",
                        "labels": labels,
                        "ignore_labels": ignore,
                    },
                    {"features": {"res5": x[i]}},
                )
            )
        targets[split], feats[split] = t, x
    feed(ev, pairs[::-1])
    result = ev.evaluate()
    expected = select_and_refit(
        *((feats[s], targets[s]) for s in SIZES),
        grid=GRID,
        metric="map11",
        num_classes=2,
        progress=False,
    )
    assert result == {"linear": {k: expected[k] for k in ("score", "reg", "val_score", "map11")}}


def test_input_errors():
    ev = new_evaluator()
    out = {"features": {"res5": torch.zeros(6)}}
    with pytest.raises(ValueError, match=r"image 'img9'.*class id 3 is outside the range \[0, 3\)"):
        ev.process([{"probe_split": "train", "image_id": "img9", "label": 3}], [out])
    with pytest.raises(
        ValueError, match="probe_split must be one of train, val, test, got 'trainval'"
    ):
        ev.process([{"probe_split": "trainval", "image_id": 1, "label": 0}], [out])
    with pytest.raises(
        ValueError,
        match=r"image 4: features of layer 'res5' must be a vector \(pooled\), "
        r"got shape \(6, 1, 1\)",
    ):
        ev.process(
            [{"probe_split": "val", "image_id": 4, "label": 0}],
            [{"features": {"res5": torch.zeros(6, 1, 1)}}],
        )
    with pytest.raises(ValueError, match="no features of layer 'res5'; got \\['res4'\\]"):
        ev.process(
            [{"probe_split": "val", "image_id": 4, "label": 0}],
            [{"features": {"res4": torch.zeros(6)}}],
        )
    ev.process([{"probe_split": "train", "image_id": 7, "label": 0}] * 2, [out, out])
    with pytest.raises(
        ValueError, match="train split: image ids must be unique, got duplicates such as \\[7\\]"
    ):
        ev.evaluate()


def test_constructor_errors():
    with pytest.raises(ValueError, match="known: linear_lbfgs, layerwise, few_shot"):
        new_evaluator("linear_sgd")
    with pytest.raises(ValueError, match="few_shot protocol needs single-label"):
        new_evaluator("few_shot", metric="map11")
    with pytest.raises(ValueError, match="unknown few_shot keys \\['way'\\]"):
        new_evaluator("few_shot", few_shot={"way": 5})
    with pytest.raises(ValueError, match="seed >= 0 .*got seed=-1"):
        # detectron2's SEED -1 ("random") fails before any extraction
        new_evaluator("few_shot", seed=-1)
    with pytest.raises(ValueError, match="layers must be a non-empty list"):
        new_evaluator(layers="res5")
    with pytest.raises(ValueError, match="non-empty regularisation grid"):
        new_evaluator(grid=[])
    with pytest.raises(ValueError, match="reg must be a positive finite number .* got -1.0"):
        new_evaluator(grid=[1.0, -1.0])
    assert new_evaluator("few_shot").few_shot == {
        "ways": 5,
        "shots": [1, 5, 20],
        "queries": 15,
        "episodes": 600,
        "classifier": "logistic",
        "reg": 1.0,
    }
    assert len(new_evaluator(grid=None).grid) == 45
    with pytest.raises(
        ValueError, match="CLASSIFICATION.LBFGS.MAX_ITER must be an integer >= 1, got 0"
    ):
        new_evaluator(max_iter=0)
    with pytest.raises(
        ValueError, match="CLASSIFICATION.LBFGS.TOL must be a positive number, got 0"
    ):
        new_evaluator(tol=0)
    with pytest.raises(
        ValueError, match="CLASSIFICATION.LBFGS.DTYPE must be one of float64, float32, got 'half'"
    ):
        new_evaluator(dtype="half")


def test_lbfgs_max_iter_and_tol_reach_every_fit(monkeypatch):
    from contrastive_det.evaluation import logistic

    seen = []
    real_fit = logistic._fit

    def spy(x, y, c, reg, init, max_iter, tol):
        seen.append((max_iter, tol, x.dtype))
        return real_fit(x, y, c, reg, init, max_iter, tol)

    monkeypatch.setattr(logistic, "_fit", spy)
    data = make_data()
    for kwargs, expected in (
        ({}, (1000, 1e-4, torch.float64)),
        ({"max_iter": 7, "tol": 3e-3, "dtype": "float32"}, (7, 3e-3, torch.float32)),
    ):
        seen.clear()
        ev = new_evaluator(**kwargs)
        feed(ev, dicts(data))
        ev.evaluate()
        assert seen and set(seen) == {expected}  # the sweep and the refit
        assert len(seen) == len(GRID) + 1


def _load_ddp_helpers():
    """tests/distributed/ddp_helpers.py (gloo CPU processes), loaded by path: tests/ is no
    package."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "distributed", "ddp_helpers.py")
    spec = importlib.util.spec_from_file_location("_probe_ddp_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FEW = {"ways": 3, "shots": [2], "queries": 3, "episodes": 6, "classifier": "centroid"}


def _evaluate_on_rank(rank, world):
    from contrastive_det.evaluation import ClassificationEvaluator

    pairs = dicts(make_data(), seed=3)[rank::world]
    ev = new_evaluator("few_shot", few_shot=FEW)
    feed(ev, pairs)
    cls = ClassificationEvaluator("mean_per_class", C)
    cls.reset()
    test = [(i, o) for i, o in pairs if i["probe_split"] == "test"]
    cls.process([i for i, _ in test], [{"logits": o["features"]["res5"][:C]} for _, o in test])
    return {"probe": ev.evaluate(), "classification": cls.evaluate()}


def test_two_processes_give_the_single_process_results(tmp_path):
    results = _load_ddp_helpers().run_on_processes(_evaluate_on_rank, 2, tmp_path)
    single = _evaluate_on_rank(0, 1)
    assert results[0] == single and results[1] == {"probe": None, "classification": None}

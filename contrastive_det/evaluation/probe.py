"""The evaluator of the frozen-feature classification protocols: the L-BFGS linear probe
(Kornblith et al. 2019), the same probe per layer, and few-shot episodes (Islam et al. 2021).

It collects pooled features of the train / val / test images from one inference pass over a
loader that tags each input with its ``probe_split``, completes them from a :class:`FeatureCache`
(splits already cached are not in the loader), stores the newly extracted ones, and fits the
probes in :meth:`FeatureProbeEvaluator.evaluate` on the main process.
"""

from __future__ import annotations

import itertools
import logging
import numbers
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..utils.atomic import atomic_write_json
from .classification import METRICS, sort_by_image_id, target_from_input
from .few_shot import CLASSIFIERS, episode_accuracies, mean_ci95, sample_episodes
from .logistic import (
    LBFGS_DTYPES,
    check_reg,
    check_lbfgs_settings,
    regularisation_grid,
    select_and_refit,
)

if TYPE_CHECKING:
    from .feature_cache import FeatureCache

__all__ = ["FeatureProbeEvaluator", "PROBE_PROTOCOLS", "FEW_SHOT_DEFAULTS"]

logger = logging.getLogger(__name__)

PROBE_PROTOCOLS = ("linear_lbfgs", "layerwise", "few_shot")
SPLITS = ("train", "val", "test")
# Islam et al.'s few-shot setting; a ``few_shot`` dict overrides any of these keys.
FEW_SHOT_DEFAULTS = {
    "ways": 5,
    "shots": [1, 5, 20],
    "queries": 15,
    "episodes": 600,
    "classifier": "logistic",
    "reg": 1.0,
}


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"few_shot[{name!r}] must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _few_shot_config(few_shot):
    unknown = sorted(set(few_shot or {}) - set(FEW_SHOT_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown few_shot keys {unknown}; known: {sorted(FEW_SHOT_DEFAULTS)}")
    cfg = {**FEW_SHOT_DEFAULTS, **(few_shot or {})}
    shots = cfg["shots"] if isinstance(cfg["shots"], (list, tuple)) else [cfg["shots"]]
    if not shots:
        raise ValueError("few_shot['shots'] must list at least one shot count, got []")
    cfg["shots"] = [_positive_int("shots", s) for s in shots]
    cfg["ways"] = _positive_int("ways", cfg["ways"], minimum=2)
    cfg["queries"] = _positive_int("queries", cfg["queries"])
    cfg["episodes"] = _positive_int("episodes", cfg["episodes"])
    if cfg["classifier"] not in CLASSIFIERS:
        raise ValueError(
            f"few_shot['classifier'] must be one of {', '.join(CLASSIFIERS)}, got "
            f"{cfg['classifier']!r}"
        )
    reg = cfg["reg"]
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or not reg > 0:
        raise ValueError(
            f"few_shot['reg'] must be a positive number (reg = 1 / scikit-learn's C), got {reg!r}"
        )
    cfg["reg"] = float(reg)
    return cfg


class FeatureProbeEvaluator(DatasetEvaluator):
    """Frozen-feature probes on features extracted by the model.

    Args:
        protocol: "linear_lbfgs" (:func:`select_and_refit` on ``layers[0]``), "layerwise" (the
            same probe on every layer of ``layers``) or "few_shot" (episodes on the test split
            of ``layers[0]``).
        layers: names of the feature layers (keys of the outputs' ``features``), e.g. ["res5"].
        metric: "top1", "mean_per_class" or "map11" (see :func:`classification_scores`);
            "few_shot" needs a single-label one.
        num_classes: C.
        cache: a :class:`FeatureCache`, or None for no caching.
        cache_keys: {(split, layer): key} for every split and layer the protocol needs
            (:attr:`needed`); required with ``cache``.
        cached: {(split, layer): entry} already loaded from ``cache`` (by the process that decided
            what to extract); the others are loaded when needed.
        expected_counts: {split: N} images of each split the loader extracts; a split whose
            collected images (over every process) are not N is refused (never fitted nor cached).
        grid: the regularisation values of the L-BFGS probes; None = :func:`regularisation_grid`.
        max_iter, tol: each L-BFGS fit's iteration cap and gradient tolerance
        (:func:`fit_logistic`),
            the probes' and the few-shot episodes' logistic fits alike.
        dtype: the L-BFGS fits' precision, "float64" or "float32" (see :func:`fit_logistic`).
        few_shot: overrides of :data:`FEW_SHOT_DEFAULTS` (ways, shots, queries, episodes,
            classifier, reg).
        seed: the seed of the few-shot episodes (an int >= 0).
        device: where the probes are fitted; None = the CPU (where the features are collected).
        progress: show tqdm bars while fitting.

    Inputs of :meth:`process` carry ``probe_split`` ("train" / "val" / "test"), ``image_id``
    and ``label`` (or ``labels`` / ``ignore_labels`` for "map11"); outputs carry ``features``:
    {layer: tensor of D}. Splits the protocol does not use are ignored. Within a split the
    images are ordered by image_id, so results do not depend on the number of processes.

    :meth:`evaluate` (main process; None elsewhere) returns, with plain floats only:

    - "linear_lbfgs": {"linear": {"score", "reg", "val_score", and the other test metrics}}
    - "layerwise": {"layerwise": {"<layer>/score", "<layer>/reg" for each layer}}
    - "few_shot": {"few_shot": {"<W>way_<K>shot", "<W>way_<K>shot_ci95" for each K in shots}}

    Raises:
        ValueError: unknown protocol or metric, empty layers, cache without the needed keys,
            bad few_shot settings (at construction); labels out of range, missing features,
            non-vector features (in process, naming the image_id); a split neither extracted
            nor cached, duplicated image ids, cached targets that do not fit (in evaluate).
    """

    def __init__(
        self,
        protocol: str,
        *,
        layers: Sequence[str],
        metric: str,
        num_classes: int,
        cache: FeatureCache | None = None,
        cache_keys: Mapping[tuple[str, str], str] | None = None,
        cached: Mapping[tuple[str, str], dict[str, Any]] | None = None,
        expected_counts: Mapping[str, int] | None = None,
        grid: Sequence[float] | None = None,
        max_iter: int = 1000,
        tol: float = 1e-4,
        dtype: str = "float64",
        few_shot: Mapping[str, Any] | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: bool = True,
        episodes_file: str | None = None,
    ):
        if protocol not in PROBE_PROTOCOLS:
            raise ValueError(
                f"unknown probe protocol {protocol!r}; known: {', '.join(PROBE_PROTOCOLS)}"
            )
        if metric not in METRICS:
            raise ValueError(
                f"unknown classification metric {metric!r}; known metrics: {', '.join(METRICS)}"
            )
        if (
            isinstance(layers, str)
            or not layers
            or not all(isinstance(layer, str) and layer for layer in layers)
        ):
            raise ValueError(f"layers must be a non-empty list of layer names, got {layers!r}")
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, numbers.Integral)
            or num_classes < 2
        ):
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.protocol, self.layers, self.metric, self.num_classes = (
            protocol,
            list(layers),
            metric,
            int(num_classes),
        )
        self._multi_label = METRICS[metric]
        self.few_shot = None
        if protocol == "few_shot":
            if self._multi_label:
                raise ValueError(
                    f"the few_shot protocol needs single-label targets, got metric {metric!r}"
                )
            self.few_shot = _few_shot_config(few_shot)
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
                raise ValueError(
                    f"the few-shot episodes need a seed >= 0 (numpy default_rng), got seed={seed!r}"
                )
            self.needed = {"test": (self.layers[0],)}
        elif protocol == "linear_lbfgs":
            self.needed = {split: (self.layers[0],) for split in SPLITS}
        else:
            self.needed = {split: tuple(self.layers) for split in SPLITS}
        # fail before extraction
        self.grid = regularisation_grid() if grid is None else [check_reg(r) for r in grid]
        if protocol != "few_shot" and not self.grid:
            raise ValueError(
                "the L-BFGS probe needs a non-empty regularisation grid "
                "(CLASSIFICATION.LBFGS.NUM_REGS >= 1)"
            )
        self.max_iter, self.tol, self.dtype = check_lbfgs_settings(max_iter, tol, dtype)
        self.cache, self.cache_keys = cache, dict(cache_keys or {})
        if cache is not None:
            missing = [
                (s, layer)
                for s, layers_ in self.needed.items()
                for layer in layers_
                if (s, layer) not in self.cache_keys
            ]
            if missing:
                raise ValueError(
                    f"cache_keys must give a key for every (split, layer) the {protocol} protocol "
                    f"needs; missing {missing}"
                )
        self.seed, self.device, self.progress = seed, device, progress
        # few-shot: each episode's accuracy, for intervals pooled over runs
        self.episodes_file = episodes_file
        # (split, layer) -> entry loaded by splits_to_extract, reused by evaluate
        self._cached = dict(cached or {})
        self.expected_counts = dict(expected_counts or {})
        self.reset()

    def splits_to_extract(self) -> list[str]:
        """The needed splits that are not complete in the cache (all of them without a cache);
        the others need not be in the loader. Loaded entries are kept for :meth:`evaluate`."""
        todo = []
        for split, layers in self.needed.items():
            if self.cache is None or any(
                self._load_cached(split, layer) is None for layer in layers
            ):
                todo.append(split)
        return todo

    def _load_cached(self, split, layer):
        if self.cache is None:
            return None
        if (split, layer) not in self._cached:
            entry = self.cache.load(self.cache_keys[(split, layer)])
            if entry is None:
                return None
            self._cached[(split, layer)] = entry
        return self._cached[(split, layer)]

    def reset(self) -> None:
        self._items = {split: [] for split in self.needed}

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            split = inp.get("probe_split")
            if split not in SPLITS:
                raise ValueError(
                    f"image {inp.get('image_id')!r}: probe_split must be one of "
                    f"{', '.join(SPLITS)}, got {split!r}"
                )
            if split not in self.needed:
                continue
            if "image_id" not in inp:
                raise ValueError(f"a {split} input has no image_id (keys {sorted(inp)})")
            image_id = inp["image_id"]
            target = target_from_input(inp, self._multi_label, self.num_classes)
            vectors = {}
            for layer in self.needed[split]:
                if layer not in out["features"]:
                    raise ValueError(
                        f"image {image_id!r}: the outputs have no features of layer {layer!r}; "
                        f"got {sorted(out['features'])}"
                    )
                # a copy: not a view that keeps (or pickles) the model's whole batch tensor
                v = out["features"][layer].detach().to("cpu", torch.float32).clone()  # v: D
                if v.dim() != 1:
                    raise ValueError(
                        f"image {image_id!r}: features of layer {layer!r} must be a vector "
                        f"(pooled), got shape {tuple(v.shape)}"
                    )
                vectors[layer] = v
            self._items[split].append((image_id, vectors, target))

    def _check_cached_targets(self, split, layer, targets):
        where = (
            f"cached {split} features of layer {layer!r} "
            f"({self.cache.path(self.cache_keys[(split, layer)])})"
        )
        if self._multi_label:
            if targets.dim() != 2 or targets.shape[1] != self.num_classes:
                raise ValueError(
                    f"{where}: metric {self.metric!r} needs Nx{self.num_classes} targets, "
                    f"got shape {tuple(targets.shape)}; delete the file to re-extract"
                )
        elif (
            targets.dim() != 1
            or targets.is_floating_point()
            or int(targets.min()) < 0
            or int(targets.max()) >= self.num_classes
        ):
            raise ValueError(
                f"{where}: metric {self.metric!r} needs N class ids in [0, {self.num_classes}), "
                f"got shape {tuple(targets.shape)}; delete the file to re-extract"
            )

    def _collect(self, gathered):
        """{(split, layer): (features NxD, targets N or NxC, image_ids)} for every needed pair."""
        data = {}
        for split, layers in self.needed.items():
            items = sort_by_image_id(
                list(itertools.chain(*(g[split] for g in gathered))), f"{split} split"
            )
            ids = [image_id for image_id, _, _ in items]
            if len(set(ids)) != len(ids):
                dup = sorted(i for i, n in Counter(ids).items() if n > 1)[:5]
                raise ValueError(
                    f"{split} split: image ids must be unique, got duplicates such as {dup}"
                )
            if split in self.expected_counts and len(items) != self.expected_counts[split]:
                raise ValueError(
                    f"{split} split: {len(items)} images were extracted, "
                    f"the dataset has {self.expected_counts[split]}; "
                    "a partial split is neither fitted nor cached (did the processes disagree on "
                    "what to extract?)"
                )
            if items:
                # targets: N or NxC
                targets = torch.tensor([t for _, _, t in items], dtype=torch.long)
                for layer in layers:
                    features = torch.stack([v[layer] for _, v, _ in items])  # features: NxD
                    data[(split, layer)] = (features, targets, ids)
                    if self.cache is not None:
                        meta = {
                            "split": split,
                            "layer": layer,
                            "num_images": len(ids),
                            "dim": features.shape[1],
                            "metric": self.metric,
                            "num_classes": self.num_classes,
                        }
                        self.cache.save(
                            self.cache_keys[(split, layer)], features, targets, ids, meta
                        )
                continue
            for layer in layers:
                entry = self._load_cached(split, layer)
                if entry is None:
                    key = "" if self.cache is None else f" (key {self.cache_keys[(split, layer)]})"
                    raise ValueError(
                        f"no {split} features of layer {layer!r}: the split was not in the loader "
                        f"and is not in the feature cache{key}"
                    )
                self._check_cached_targets(split, layer, entry["targets"])
                order = sorted(range(len(entry["image_ids"])), key=lambda i: entry["image_ids"][i])
                data[(split, layer)] = (
                    entry["features"][order].float(),
                    entry["targets"][order].long(),
                    [entry["image_ids"][i] for i in order],
                )
            id_lists = {layer: data[(split, layer)][2] for layer in layers}
            if any(ids_ != id_lists[layers[0]] for ids_ in id_lists.values()):
                raise ValueError(
                    f"cached {split} features of layers {list(layers)} are not of the same images; "
                    "delete the cache files to re-extract"
                )
        return data

    def _probe(self, data, layer):
        def split(name):
            features, targets, _ = data[(name, layer)]
            return features, targets

        return select_and_refit(
            split("train"),
            split("val"),
            split("test"),
            grid=self.grid,
            metric=self.metric,
            num_classes=self.num_classes,
            max_iter=self.max_iter,
            tol=self.tol,
            dtype=LBFGS_DTYPES[self.dtype],
            device=self.device,
            progress=self.progress,
        )

    def evaluate(self) -> dict[str, dict[str, float]] | None:
        gathered = comm.gather(self._items, dst=0)
        data = self._collect(gathered) if comm.is_main_process() else None
        comm.synchronize()  # every process goes on once the new cache entries are complete
        if not comm.is_main_process():
            return None
        if self.protocol == "linear_lbfgs":
            r = self._probe(data, self.layers[0])
            result = {k: float(v) for k, v in r.items() if k not in ("val_scores", "grid")}
            logger.info(
                f"L-BFGS linear probe on {self.layers[0]}: "
                + ", ".join(f"{k} {v:.4g}" for k, v in result.items())
            )
            return OrderedDict(linear=result)
        if self.protocol == "layerwise":
            result = OrderedDict()
            for layer in self.layers:
                r = self._probe(data, layer)
                result[f"{layer}/score"], result[f"{layer}/reg"] = (
                    float(r["score"]),
                    float(r["reg"]),
                )
                logger.info(
                    f"L-BFGS probe on {layer}: {self.metric} {r['score']:.2f} "
                    f"(reg {r['reg']:g}, val {r['val_score']:.2f})"
                )
            return OrderedDict(layerwise=result)
        return OrderedDict(few_shot=self._few_shot(data))

    def _few_shot(self, data):
        cfg = self.few_shot
        features, labels, _ = data[("test", self.layers[0])]
        # draw every setting's episodes first: a class too small for 20 shots fails before any fit
        episodes = {
            k: sample_episodes(labels, cfg["ways"], k, cfg["queries"], cfg["episodes"], self.seed)
            for k in cfg["shots"]
        }
        result, per_episode = OrderedDict(), OrderedDict()
        for shots, eps in episodes.items():
            accs = episode_accuracies(
                features,
                eps,
                classifier=cfg["classifier"],
                reg=cfg["reg"],
                progress=self.progress,
                device=self.device,
                tol=self.tol,
                max_iter=self.max_iter,
            )
            mean, ci = mean_ci95(accs)
            name = f"{cfg['ways']}way_{shots}shot"
            result[name], result[f"{name}_ci95"] = float(mean), float(ci)
            per_episode[name] = [float(a) for a in accs]
            logger.info(
                f"few-shot {name} on {self.layers[0]}: {mean:.2f} +- {ci:.2f} ({cfg['episodes']} "
                "episodes)"
            )
        if self.episodes_file:
            atomic_write_json(
                self.episodes_file,
                {"layer": self.layers[0], "seed": self.seed, "episodes": per_episode},
            )
        return result

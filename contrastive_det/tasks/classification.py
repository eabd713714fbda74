"""
Classification transfer (docs/design.md section 8) on the one Trainer: a linear probe trained by
SGD, full fine-tuning and Core-tuning train with the Trainer's loop and hooks; the L-BFGS probe, the
layer-wise probes and few-shot episodes are fitted by the evaluator on frozen, cached features
(the run evaluates MODEL.WEIGHTS, as ``--eval-only`` does).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from typing import Any, Iterable

import torch

from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.engine import HookBase
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..convert.classifier_weights import prepare_classifier_weights
from ..data.classification_loader import (
    build_classification_test_loader,
    build_classification_train_loader,
    check_labels,
    check_test_pipeline,
    dataset_metric,
    describe_test_transform,
    label_map_identity,
    label_map_record,
    labelled_dicts,
    own_labelled_dicts,
    train_val_dicts,
    transfer_classes,
)
from ..data.fingerprint import dataset_fingerprint
from ..engine.task import TASK_REGISTRY, Task
from ..evaluation import (
    ClassificationEvaluator,
    FeatureCache,
    FeatureProbeEvaluator,
    weights_digest,
)
from ..evaluation.few_shot import FEW_SHOT_EPISODES_DIR
from ..evaluation.logistic import check_lbfgs_settings, regularisation_grid
from ..modeling.classifier import resolve_num_classes

logger = logging.getLogger(__name__)

SGD_PROTOCOLS = ("linear_sgd", "finetune", "core_tuning")
FEATURE_PROTOCOLS = ("linear_lbfgs", "layerwise", "few_shot")
SPLITS = ("train", "val", "test")


def check_classification_config(cfg: CfgNode) -> None:
    """Protocol, head and freezing agree; the grids and episode settings are usable. Raises
    ValueError."""
    c, m = cfg.CLASSIFICATION, cfg.MODEL.CLASSIFIER
    protocol = c.PROTOCOL
    if protocol not in SGD_PROTOCOLS + FEATURE_PROTOCOLS:
        raise ValueError(
            f"CLASSIFICATION.PROTOCOL must be one of {SGD_PROTOCOLS + FEATURE_PROTOCOLS}, got "
            f"{protocol!r}"
        )
    if protocol == "linear_sgd" and not m.FREEZE_TRUNK:
        raise ValueError(
            "CLASSIFICATION.PROTOCOL linear_sgd needs MODEL.CLASSIFIER.FREEZE_TRUNK True"
        )
    if protocol in ("finetune", "core_tuning") and m.FREEZE_TRUNK:
        raise ValueError(
            f"CLASSIFICATION.PROTOCOL {protocol} trains the trunk: set "
            f"MODEL.CLASSIFIER.FREEZE_TRUNK False"
        )
    if (protocol == "core_tuning") != (m.HEAD == "core_tuning"):
        raise ValueError(
            f"CLASSIFICATION.PROTOCOL {protocol} with MODEL.CLASSIFIER.HEAD {m.HEAD}: the "
            f"core_tuning protocol and "
            "head go together"
        )
    check_test_pipeline(cfg)
    check_epoch_schedule(cfg)
    if not c.LAYERS:
        raise ValueError(
            "CLASSIFICATION.LAYERS is empty; name at least one of res2, res3, res4, res5"
        )
    if protocol in ("linear_lbfgs", "layerwise"):
        # raises naming the keys
        regularisation_grid(c.LBFGS.REG_MIN, c.LBFGS.REG_MAX, c.LBFGS.NUM_REGS)
    # the few-shot episodes' logistic fits take MAX_ITER and TOL too
    if protocol in FEATURE_PROTOCOLS:
        check_lbfgs_settings(c.LBFGS.MAX_ITER, c.LBFGS.TOL, c.LBFGS.DTYPE)
    if protocol == "few_shot":
        f = c.FEW_SHOT
        if f.WAYS < 2 or not f.SHOTS or min(f.SHOTS) < 1 or f.QUERIES < 1 or f.EPISODES < 1:
            raise ValueError(
                "CLASSIFICATION.FEW_SHOT needs WAYS >= 2, SHOTS a non-empty list of values >= 1, "
                "QUERIES >= 1 and "
                f"EPISODES >= 1; got WAYS {f.WAYS}, SHOTS {list(f.SHOTS)}, QUERIES {f.QUERIES}, "
                f"EPISODES {f.EPISODES}"
            )


def check_epoch_schedule(cfg: CfgNode) -> None:
    """``CLASSIFICATION.EPOCHS`` / ``STEP_EPOCHS`` are usable (a whole number of epochs, steps
    inside them, the step scheduler, an SGD protocol); raises ValueError naming the key and
    value."""
    c, s = cfg.CLASSIFICATION, cfg.SOLVER
    epochs, steps = c.EPOCHS, list(c.STEP_EPOCHS)
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(
            f"CLASSIFICATION.EPOCHS must be a whole number >= 0 (0 = SOLVER.MAX_ITER as given), "
            f"got {epochs!r}"
        )
    if not epochs:
        if steps:
            raise ValueError(f"CLASSIFICATION.STEP_EPOCHS {steps} needs CLASSIFICATION.EPOCHS > 0")
        return
    if c.PROTOCOL not in SGD_PROTOCOLS:
        raise ValueError(
            f"CLASSIFICATION.EPOCHS applies to the SGD protocols {SGD_PROTOCOLS}, not {c.PROTOCOL}"
        )
    if steps:
        if any(not isinstance(e, int) or not 0 < e < epochs for e in steps) or steps != sorted(
            set(steps)
        ):
            raise ValueError(
                f"CLASSIFICATION.STEP_EPOCHS must be increasing whole numbers in (0, "
                f"EPOCHS={epochs}), got {steps}"
            )
        if s.LR_SCHEDULER_NAME != "WarmupMultiStepLR":
            raise ValueError(
                f"CLASSIFICATION.STEP_EPOCHS {steps} are LR steps: set SOLVER.LR_SCHEDULER_NAME "
                f"WarmupMultiStepLR (got {s.LR_SCHEDULER_NAME})"
            )


def epoch_schedule(cfg: CfgNode, num_images: int) -> tuple[int, tuple[int, ...]]:
    """(MAX_ITER, STEPS) of ``CLASSIFICATION.EPOCHS`` / ``STEP_EPOCHS`` for ``num_images`` training
    images."""
    c, batch = cfg.CLASSIFICATION, cfg.SOLVER.IMS_PER_BATCH
    # full batches: a partial last batch is dropped, as the references' loaders
    per_epoch = num_images // batch
    if per_epoch < 1:
        raise ValueError(
            f"CLASSIFICATION.EPOCHS: {num_images} training image(s) of "
            f"{'+'.join(cfg.DATASETS.TRAIN)} make no full batch of SOLVER.IMS_PER_BATCH {batch}"
        )
    return c.EPOCHS * per_epoch, tuple(e * per_epoch for e in c.STEP_EPOCHS)


def _weights_identity(cfg):
    """What the features depend on besides the images: the weights file's digest, or the random
    init."""
    if cfg.MODEL.WEIGHTS:
        return weights_digest(cfg.MODEL.WEIGHTS)
    r = cfg.MODEL.TV_RESNET
    return f"random-init-seed{cfg.SEED}-resnet{r.DEPTH}-w{r.WIDTH_PER_GROUP}"


def _data_source(name):
    """Where registered dataset ``name`` lives (the paths its metadata records), for the cache
    identity."""
    meta = MetadataCatalog.get(name)
    paths = [
        str(meta.get(k))
        for k in ("image_root", "csv_file", "dirname", "json_file", "root")
        if meta.get(k, None)
    ]
    return f"{name}@{'|'.join(paths)}" if paths else name


def _split_names(cfg, dataset_name):
    """Names of the probe's splits in the feature cache (the validation rule and data roots are part
    of them, and the label map's digest: the cached targets are its coarse labels, so each
    granularity of a split has entries of its own rather than replacing the others' as a stale
    version)."""
    c = cfg.CLASSIFICATION
    train = "+".join(_data_source(n) for n in cfg.DATASETS.TRAIN)
    test = _data_source(dataset_name)
    if cfg.CLASSIFICATION.PROTOCOL == "few_shot":
        names = {"test": test}
    elif c.VAL_DATASET:
        names = {"train": train, "val": _data_source(c.VAL_DATASET), "test": test}
    else:
        rule = f"stratified{c.VAL_FRACTION}-seed{c.VAL_SEED}"
        names = {"train": f"{train}:{rule}:train", "val": f"{train}:{rule}:val", "test": test}
    labels = label_map_identity(cfg)
    return {split: f"{name}:{labels}" for split, name in names.items()} if labels else names


def _needed_splits(cfg):
    return ("test",) if cfg.CLASSIFICATION.PROTOCOL == "few_shot" else SPLITS


def _layers(cfg):
    layers = tuple(cfg.CLASSIFICATION.LAYERS)
    return layers if cfg.CLASSIFICATION.PROTOCOL == "layerwise" else layers[:1]


def feature_cache(cfg: CfgNode) -> FeatureCache:
    """The run's :class:`FeatureCache`: ``CLASSIFICATION.FEATURE_CACHE``, else
    ``$CONTRASTIVE_DET_CACHE``, else the per-user ``~/.cache/contrastive_det/features`` (entries are
    keyed by the data's content)."""
    root = (
        cfg.CLASSIFICATION.FEATURE_CACHE
        or os.getenv("CONTRASTIVE_DET_CACHE")
        or os.path.join(os.path.expanduser("~"), ".cache", "contrastive_det", "features")
    )
    return FeatureCache(root)


def few_shot_num_classes(cfg: CfgNode, dataset_name: str) -> int:
    """Few-shot episodes use the test set's own classes (novel classes need not be training
    classes), or the coarse classes they map to with CLASSIFICATION.LABEL_MAP."""
    classes = transfer_classes(cfg, dataset_name)
    return len(classes) if classes else resolve_num_classes(cfg)


def probe_dicts(cfg: CfgNode, dataset_name: str) -> dict[str, list[dict[str, Any]]]:
    """``{split: dicts}`` of the splits the frozen-feature protocol needs, labels following class
    names: the training classes for the probes, the test set's own classes for few-shot episodes
    (coarse labels with CLASSIFICATION.LABEL_MAP)."""
    if cfg.CLASSIFICATION.PROTOCOL == "few_shot":
        return {"test": own_labelled_dicts(cfg, dataset_name)}
    train, val = train_val_dicts(cfg)
    return {"train": train, "val": val, "test": labelled_dicts(cfg, dataset_name)}


def _cache_keys_of(cfg, dataset_name, dicts):
    cache, weights, names = (
        feature_cache(cfg),
        _weights_identity(cfg),
        _split_names(cfg, dataset_name),
    )
    transform = describe_test_transform(cfg)
    return {
        (split, layer): cache.key(
            weights=weights,
            dataset=names[split],
            split=split,
            transform=transform,
            layer=layer,
            content=dataset_fingerprint(dicts[split]),
        )
        for split in _needed_splits(cfg)
        for layer in _layers(cfg)
    }


def cache_keys(cfg: CfgNode, dataset_name: str) -> dict[tuple[str, str], str]:
    """``{(split, layer): key}`` of every split and layer the protocol needs; each key holds the
    content digest of the split as it is on disk now (:func:`dataset_fingerprint`)."""
    return _cache_keys_of(cfg, dataset_name, probe_dicts(cfg, dataset_name))


# The plan of the last frozen-feature test set, made by build_test_loader and taken by
# build_evaluator (detectron2's test loop calls them one after the other for each test set):
# {(config, dataset): plan}.
_PLANS = {}


def _plan_id(cfg, dataset_name):
    return hashlib.sha256(cfg.dump().encode()).hexdigest(), dataset_name


def plan_probe(cfg: CfgNode, dataset_name: str) -> dict[str, Any]:
    """
    What the frozen-feature protocol on ``dataset_name`` extracts and what it takes from the cache,
    decided by the main process and shared with every process (each deciding alone could put a
    split in one process's shard and not in another's). Returns ``{"dicts": {split: dicts},
    "keys": {(split, layer): key}, "todo": [splits to extract], "cached": {(split, layer): entry}
    (main process only), "counts": {split: images}}``. A split whose data changed on disk since
    it was cached is extracted again, and the log says so.
    """
    dicts = probe_dicts(cfg, dataset_name)
    decision = None
    cached = {}
    if comm.is_main_process():
        cache, keys = feature_cache(cfg), _cache_keys_of(cfg, dataset_name, dicts)
        todo = []
        for split in _needed_splits(cfg):
            entries = {layer: cache.load(keys[(split, layer)]) for layer in _layers(cfg)}
            if all(e is not None for e in entries.values()):
                cached.update({(split, layer): e for layer, e in entries.items()})
                continue
            todo.append(split)
            if any(cache.stale_contents(keys[(split, layer)]) for layer in _layers(cfg)):
                logger.info(
                    f"Features of the {split} split ({len(dicts[split])} images): dataset changed "
                    f"since it was cached in {cache.root}; extracting them again"
                )
        decision = {"keys": keys, "todo": todo}
    if comm.get_world_size() > 1:
        decision = comm.all_gather(decision)[
            0
        ]  # detectron2's gloo group: CPU objects on any backend
    return {
        **decision,
        "dicts": dicts,
        "cached": cached,
        "counts": {s: len(d) for s, d in dicts.items()},
    }


def check_few_shot_counts(cfg: CfgNode, dicts: Iterable[dict[str, Any]], dataset_name: str) -> None:
    """Every class of the episodes' split has at least max(SHOTS) + QUERIES images; else ValueError
    naming them."""
    f = cfg.CLASSIFICATION.FEW_SHOT
    need = max(f.SHOTS) + f.QUERIES
    counts = Counter(int(d["label"]) for d in dicts)
    short = {c: n for c, n in sorted(counts.items()) if n < need}
    if short:
        raise ValueError(
            f"Few-shot on '{dataset_name}': class(es) {short} (class: images) have fewer than "
            f"max(CLASSIFICATION.FEW_SHOT.SHOTS) + QUERIES = {need} images"
        )
    if len(counts) < f.WAYS:
        raise ValueError(
            f"Few-shot on '{dataset_name}': {len(counts)} classes, fewer than WAYS {f.WAYS}"
        )


class FrozenTrunkCheck(HookBase):
    """
    The linear probe asserts its own freezing (as MoCo's lincls does): after the first step only
    the head has gradients, and after training the trunk (parameters and BN buffers) is
    bit-identical to what it loaded. A violation raises RuntimeError naming the tensor.
    """

    def before_train(self) -> None:
        trunk = getattr(self.trainer.model, "module", self.trainer.model).trunk
        self._reference = {k: v.detach().clone() for k, v in trunk.state_dict().items()}

    def after_step(self) -> None:
        if self.trainer.iter != self.trainer.start_iter:
            return
        model = getattr(self.trainer.model, "module", self.trainer.model)
        moved = [
            n
            for n, p in model.named_parameters()
            if p.grad is not None and not n.startswith("head.")
        ]
        if moved:
            raise RuntimeError(f"Frozen trunk has gradients: {moved[:5]}")
        if not any(p.grad is not None for p in model.head.parameters()):
            raise RuntimeError("Linear probe: the head received no gradient")

    def after_train(self) -> None:
        trunk = getattr(self.trainer.model, "module", self.trainer.model).trunk
        for k, v in trunk.state_dict().items():
            if not torch.equal(v.detach().cpu(), self._reference[k].cpu()):
                raise RuntimeError(
                    f"Frozen trunk changed during training: {k} (BN statistics or weights)"
                )


@TASK_REGISTRY.register()
class ClassificationTask(Task):
    """
    Classification transfer of a pretrained trunk (``CLASSIFICATION.PROTOCOL``) on registered
    classification sets (datasets/README.md), weights from any layout the converter reads.
    """

    name = "classification"
    headline_metrics = (
        r"classification/score",
        r"linear/score",
        r"few_shot/\d+way_\d+shot",
        r"layerwise/res\d/score",
    )
    checkpoint_row_opts = {"MODEL.TV_RESNET.DEPTH": 0}  # the checkpoint's own depth

    @classmethod
    def check_config(cls, cfg: CfgNode) -> None:
        check_classification_config(cfg)

    @classmethod
    def trains(cls, cfg: CfgNode) -> bool:
        return cfg.CLASSIFICATION.PROTOCOL in SGD_PROTOCOLS

    @classmethod
    def datasets_to_check(cls, cfg: CfgNode, eval_only: bool) -> list[str]:
        names = super().datasets_to_check(cfg, eval_only or not cls.trains(cfg))
        if cfg.CLASSIFICATION.PROTOCOL in ("linear_lbfgs", "layerwise"):
            names += list(cfg.DATASETS.TRAIN)
        if cfg.CLASSIFICATION.VAL_DATASET:
            names.append(cfg.CLASSIFICATION.VAL_DATASET)
        return list(dict.fromkeys(names))

    @classmethod
    def adapt_config(cls, cfg: CfgNode) -> list[str]:
        """``CLASSIFICATION.EPOCHS`` (and ``STEP_EPOCHS``) -> ``SOLVER.MAX_ITER`` (and
        ``SOLVER.STEPS``)."""
        if not cfg.CLASSIFICATION.EPOCHS:
            return []
        images = len(cls.training_dicts(cfg))
        max_iter, steps = epoch_schedule(cfg, images)
        cfg.SOLVER.MAX_ITER = max_iter
        text = f"SOLVER.MAX_ITER {max_iter}"
        if cfg.CLASSIFICATION.STEP_EPOCHS:
            cfg.SOLVER.STEPS = steps
            text += f", SOLVER.STEPS {list(steps)}"
        return [
            f"CLASSIFICATION.EPOCHS {cfg.CLASSIFICATION.EPOCHS} of {images} training images at "
            f"batch {cfg.SOLVER.IMS_PER_BATCH}: {text}"
        ]

    @classmethod
    def training_dicts(cls, cfg: CfgNode) -> list[dict[str, Any]]:
        """What the SGD protocols train on: the training split alone with ``EVAL_ON_VAL`` (model
        selection), else train + val (the final training, tested on ``DATASETS.TEST``)."""
        train, val = train_val_dicts(cfg)
        return train if cfg.CLASSIFICATION.EVAL_ON_VAL else train + val

    @classmethod
    def evaluation_dicts(cls, cfg: CfgNode, dataset_name: str) -> list[dict[str, Any]]:
        """What the SGD protocols are scored on: the validation split with ``EVAL_ON_VAL``, else
        ``dataset_name``."""
        return (
            train_val_dicts(cfg)[1]
            if cfg.CLASSIFICATION.EVAL_ON_VAL
            else labelled_dicts(cfg, dataset_name)
        )

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Iterable:
        if not cls.trains(cfg):
            raise ValueError(
                f"CLASSIFICATION.PROTOCOL {cfg.CLASSIFICATION.PROTOCOL} is fitted on features, not "
                "trained"
            )
        return build_classification_train_loader(
            cfg, cls.training_dicts(cfg), resolve_num_classes(cfg)
        )

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> Iterable:
        if cls.trains(cfg):
            dicts = cls.evaluation_dicts(cfg, dataset_name)
            check_labels(dicts, resolve_num_classes(cfg), dataset_name)
            return build_classification_test_loader(cfg, dicts)
        plan = plan_probe(cfg, dataset_name)
        _PLANS.clear()
        _PLANS[_plan_id(cfg, dataset_name)] = plan
        few_shot = cfg.CLASSIFICATION.PROTOCOL == "few_shot"
        if few_shot:
            check_few_shot_counts(cfg, plan["dicts"]["test"], dataset_name)
        num_classes = (
            few_shot_num_classes(cfg, dataset_name) if few_shot else resolve_num_classes(cfg)
        )
        for split in plan["todo"]:
            where = dataset_name if split == "test" else "+".join(cfg.DATASETS.TRAIN)
            check_labels(plan["dicts"][split], num_classes, f"{where} ({split})")
        cached = [s for s in _needed_splits(cfg) if s not in plan["todo"]]
        if cached:
            logger.info(
                f"Features of split(s) {cached} come from the cache {feature_cache(cfg).root}"
            )
        return build_classification_test_loader(
            cfg, [dict(d, probe_split=s) for s in plan["todo"] for d in plan["dicts"][s]]
        )

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        c = cfg.CLASSIFICATION
        metric = dataset_metric(cfg, dataset_name)
        num_classes = resolve_num_classes(cfg)
        if cls.trains(cfg):
            return ClassificationEvaluator(metric, num_classes)
        f = c.FEW_SHOT
        plan = _PLANS.pop(_plan_id(cfg, dataset_name), None) or plan_probe(cfg, dataset_name)
        if c.PROTOCOL == "few_shot":
            num_classes = few_shot_num_classes(cfg, dataset_name)
        return FeatureProbeEvaluator(
            c.PROTOCOL,
            layers=_layers(cfg),
            metric=metric,
            num_classes=num_classes,
            cache=feature_cache(cfg),
            cache_keys=plan["keys"],
            cached=plan["cached"],
            expected_counts={s: plan["counts"][s] for s in plan["todo"]},
            grid=regularisation_grid(c.LBFGS.REG_MIN, c.LBFGS.REG_MAX, c.LBFGS.NUM_REGS),
            max_iter=c.LBFGS.MAX_ITER,
            tol=c.LBFGS.TOL,
            dtype=c.LBFGS.DTYPE,
            few_shot={
                "ways": f.WAYS,
                "shots": list(f.SHOTS),
                "queries": f.QUERIES,
                "episodes": f.EPISODES,
                "classifier": f.CLASSIFIER,
                "reg": f.REG,
            },
            seed=cfg.SEED,
            device=cfg.MODEL.DEVICE,
            episodes_file=os.path.join(
                cfg.OUTPUT_DIR, FEW_SHOT_EPISODES_DIR, f"{dataset_name}.json"
            )
            if c.PROTOCOL == "few_shot"
            else None,
        )

    @classmethod
    def build_hooks(cls, cfg: CfgNode) -> list[HookBase]:
        return [FrozenTrunkCheck()] if cfg.MODEL.CLASSIFIER.FREEZE_TRUNK and cls.trains(cfg) else []

    @classmethod
    def prepare_weights(cls, cfg: CfgNode, output_dir: str) -> list[str]:
        return prepare_classifier_weights(cfg, output_dir, log=print)

    @classmethod
    def results_extra(cls, cfg: CfgNode) -> dict:
        test = list(cfg.DATASETS.TEST)
        c = cfg.CLASSIFICATION
        val = (
            c.VAL_DATASET
            or f"{c.VAL_FRACTION:.0%} of {'+'.join(cfg.DATASETS.TRAIN)}, "
            f"class-stratified (seed {c.VAL_SEED})"
        )
        return {
            "protocol": cfg.CLASSIFICATION.PROTOCOL,
            "validation": val,
            "metric": {name: dataset_metric(cfg, name) for name in test},
            "evaluated_on": "validation split"
            if cfg.CLASSIFICATION.EVAL_ON_VAL and cls.trains(cfg)
            else "test",
            # the labels' granularity: the CLASSIFICATION.LABEL_MAP file and its sha256, or null
            # (fine labels)
            "label_map": label_map_record(cfg),
        }

"""
Benchmarks of classification transfer (``tools/benchmark.py --only probe_speed --only extraction
--only probe_cache``), each printed as a ratio of two sides measured in the same process, on the
same data, model and machine:

* ``probe_speed``: the cached L-BFGS probe (Kornblith et al.: 45 regularisation values chosen on
  the validation split, refit on train+val, :func:`select_and_refit`) against an SGD-trained
  linear layer (the ``linear_sgd`` recipe's head and optimizer: non-affine BN + linear, SGD with
  the config's LR, momentum, weight decay and batch, cosine schedule) on the same frozen
  features, train+val / test. The SGD side is timed until the epoch of its best test accuracy
  (evaluation excluded); the L-BFGS side is timed whole (sweep, validation scoring, refit), and
  also as one fit at the chosen penalty and as the shortest such fit (L-BFGS iteration caps grown
  x1.25 from 1) that reaches the SGD probe's best accuracy.
* ``extraction``: images/s of feature extraction through the real path (the ClassificationTask's
  test loader, the Classifier's inference through detectron2's ``inference_on_dataset`` and the
  FeatureProbeEvaluator's ``process``) against a bare ``torch.no_grad()`` loop calling the same
  model on the same loader, in alternating passes.
* ``probe_cache``: a second L-BFGS probe run, its features in the cache, against the first run,
  which extracts them; each run is what ``tools/train_net.py`` does for the protocol (in-process:
  config, dataset checks, model and weights, ``Trainer.test``, results.json; or ``cli=True``:
  the command itself, interpreter start included).
"""

import argparse
import contextlib
import logging
import math
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from detectron2.evaluation import DatasetEvaluator, inference_on_dataset
from detectron2.utils import comm

from ..data.checks import check_dataset_layout, check_images
from ..data.classification_loader import dataset_metric
from ..engine.defaults import build_run_config, load_config
from ..engine.results import read_results
from ..engine.task import get_task
from ..engine.trainer import Trainer
from ..evaluation.classification import classification_scores
from ..evaluation.logistic import LBFGS_DTYPES, fit_logistic, regularisation_grid, select_and_refit
from ..modeling.classifier import resolve_num_classes
from ..tasks.classification import cache_keys, feature_cache


__all__ = [
    "ClsBench",
    "probe_speed",
    "extraction_speed",
    "probe_cache",
    "sgd_probe_on_features",
    "lbfgs_time_to_reach",
]


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


class ClsBench:
    """
    The shared set-up of the three benchmarks: the L-BFGS probe's config (``config_file`` +
    ``opts``, e.g. ``MODEL.WEIGHTS backbone.pth``) with its feature cache under ``workdir``, the
    weights prepared as ``tools/train_net.py`` prepares them (converted once into ``workdir``),
    and the model.
    """

    def __init__(self, workdir, config_file, opts=(), log=print, train_net=None):
        self.workdir, self.config_file, self.log, self.train_net = (
            workdir,
            config_file,
            log,
            train_net,
        )
        os.makedirs(workdir, exist_ok=True)
        self.opts = list(opts)
        base = load_config(argparse.Namespace(config_file=config_file, opts=self.opts))
        if base.CLASSIFICATION.PROTOCOL != "linear_lbfgs":
            raise ValueError(
                f"{config_file}: the classification benchmarks need the linear_lbfgs protocol"
            )
        # once, as launch_runs does: every run below loads the same converted file (same cache key)
        with contextlib.redirect_stdout(sys.stderr):
            self.opts += get_task(base).prepare_weights(base, os.path.join(workdir, "weights"))
        self._features = None

    def cfg(self, name, cache=None, extra=()):
        """The frozen run config of run ``name`` (OUTPUT_DIR workdir/name), feature cache
        ``cache``."""
        cache = cache or os.path.join(self.workdir, "cache_" + name)
        opts = self.opts + ["CLASSIFICATION.FEATURE_CACHE", cache] + list(extra)
        args = argparse.Namespace(
            config_file=self.config_file, opts=opts, eval_only=True, resume=False
        )
        cfg, _ = build_run_config(args, seed=0, output_dir=os.path.join(self.workdir, name))
        return cfg

    def model(self, cfg):
        return Trainer.build_evaluation_model(cfg)[0]

    def features(self):
        """{split: (features NxD, labels N)} of the probe's train / val / test splits, extracted
        once by the real path into the shared cache ``workdir/cache_shared``."""
        if self._features is None:
            cfg = self.cfg("features", cache=os.path.join(self.workdir, "cache_shared"))
            test, layer = cfg.DATASETS.TEST[0], cfg.CLASSIFICATION.LAYERS[0]
            keys, cache = cache_keys(cfg, test), feature_cache(cfg)
            if any(cache.load(keys[(s, layer)]) is None for s in ("train", "val", "test")):
                evaluator = _ProcessOnly(Trainer.build_evaluator(cfg, test), save=True)
                inference_on_dataset(
                    self.model(cfg), Trainer.build_test_loader(cfg, test), evaluator
                )
            out = {}
            for split in ("train", "val", "test"):
                entry = cache.load(keys[(split, layer)])
                out[split] = (entry["features"].float(), entry["targets"].long())
            self._features = out
            self.num_classes = resolve_num_classes(cfg)
            self.metric = dataset_metric(cfg, test)
            c = cfg.CLASSIFICATION.LBFGS
            self.grid = regularisation_grid(c.REG_MIN, c.REG_MAX, c.NUM_REGS)
            # the protocol's stop and precision, as the probe runs it
            self.max_iter, self.tol, self.dtype = (
                int(c.MAX_ITER),
                float(c.TOL),
                LBFGS_DTYPES[c.DTYPE],
            )
        return self._features


class _ProcessOnly(DatasetEvaluator):
    """The real evaluator's ``reset``/``process``; ``evaluate`` fits no probe: with ``save`` it
    stores the collected features in the cache (the evaluator's own ``_collect``, one process)."""

    def __init__(self, evaluator, save=False):
        self.evaluator, self.save = evaluator, save

    def reset(self):
        self.evaluator.reset()

    def process(self, inputs, outputs):
        self.evaluator.process(inputs, outputs)

    def evaluate(self):
        if self.save:
            self.evaluator._collect([self.evaluator._items])
        return {}


class _TimedEvaluator(DatasetEvaluator):
    """Delegates to ``evaluator`` and records the seconds of its ``evaluate`` (the probe's fit)."""

    def __init__(self, evaluator):
        self.evaluator, self.evaluate_s = evaluator, 0.0

    def reset(self):
        self.evaluator.reset()

    def process(self, inputs, outputs):
        self.evaluator.process(inputs, outputs)

    def evaluate(self):
        t0 = time.perf_counter()
        try:
            return self.evaluator.evaluate()
        finally:
            self.evaluate_s += time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# probe_speed
# ----------------------------------------------------------------------------------------------
def sgd_probe_on_features(
    train,
    test,
    *,
    num_classes,
    epochs,
    batch_size,
    lr,
    momentum,
    nesterov,
    weight_decay,
    seed=0,
    metric="top1",
):
    """
    The linear_sgd recipe on cached features: ``BatchNorm1d(affine=False)`` + ``Linear`` (weights
    N(0, 0.01), bias 0, as the Classifier's ``bn_linear`` head), SGD, cosine schedule over
    ``epochs`` epochs (per iteration, to 0, no warm-up), a fresh shuffle per epoch. The test
    score is taken after every epoch; its time is not counted.

    Returns a dict: ``scores`` and ``train_s`` (cumulative training seconds) per epoch,
    ``best_score``, ``best_epoch`` (1-based, the first epoch at the best score), ``time_to_best_s``.
    """
    x, y = train
    x_te, y_te = test
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dim = x.shape[1]
    fc = nn.Linear(dim, num_classes)
    nn.init.normal_(fc.weight, std=0.01)
    nn.init.zeros_(fc.bias)
    head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), fc)
    opt = torch.optim.SGD(
        head.parameters(),
        lr=lr,
        momentum=momentum,
        nesterov=nesterov and momentum > 0,
        weight_decay=weight_decay,
    )
    n = x.shape[0]
    per_epoch = max(1, n // batch_size)  # full batches only, as the training loader
    total = epochs * per_epoch
    step, elapsed, scores, times = 0, 0.0, [], []
    for _ in range(epochs):
        head.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=g)
        for b in range(per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            loss = nn.functional.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        elapsed += time.perf_counter() - t0
        head.eval()
        with torch.no_grad():
            scores.append(classification_scores(metric, head(x_te), y_te, num_classes)["score"])
        times.append(elapsed)
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return {
        "scores": scores,
        "train_s": times,
        "best_score": scores[best],
        "best_epoch": best + 1,
        "time_to_best_s": times[best],
        "total_s": elapsed,
    }


def _time_to_score(run, score):
    """Training seconds at the first epoch whose test score is >= ``score`` (None if never)."""
    for s, t in zip(run["scores"], run["train_s"]):
        if s >= score:
            return t
    return None


def lbfgs_time_to_reach(
    train,
    test,
    *,
    reg,
    num_classes,
    target,
    metric="top1",
    max_iter=1000,
    tol=1e-4,
    dtype=torch.float64,
):
    """
    The shortest L-BFGS fit at ``reg`` (from zeros, on ``train``) whose test score reaches
    ``target``: fits with max_iter 1, 2, 3, 4, 5, 7, 9, ... (each the larger of +1 and x1.25) up
    to ``max_iter``, the first that does. Returns (seconds of that fit or None, its max_iter, its
    score).
    """
    k, last = 1, None
    quiet = logging.getLogger(fit_logistic.__module__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the short fits stop unconverged on purpose
    try:
        while k <= max_iter:
            t0 = time.perf_counter()
            w, b = fit_logistic(
                train[0], train[1], reg, num_classes=num_classes, max_iter=k, tol=tol, dtype=dtype
            )
            s = time.perf_counter() - t0
            score = classification_scores(
                metric, test[0].to(dtype) @ w.t() + b, test[1], num_classes
            )["score"]
            last = (s, k, score)
            if score >= target:
                return last
            k = max(k + 1, math.ceil(k * 1.25))
    finally:
        quiet.setLevel(level)
    return (None, last[1], last[2])


def probe_speed(bench, *, sgd, epochs, trials=3, log=print):
    """
    L-BFGS probe against the SGD probe on ``bench``'s cached features (see the module docstring).
    ``sgd``: {"lr", "momentum", "nesterov", "weight_decay", "batch_size"} of the linear_sgd recipe.
    Each side runs ``trials`` times, alternating; medians are reported.
    """
    f = bench.features()
    nc, metric = bench.num_classes, bench.metric
    trainval = (torch.cat([f["train"][0], f["val"][0]]), torch.cat([f["train"][1], f["val"][1]]))
    sweep_s, single_s, sgd_runs = [], [], []
    sweep = None
    for trial in range(trials):
        t0 = time.perf_counter()
        sweep = select_and_refit(
            f["train"],
            f["val"],
            f["test"],
            grid=bench.grid,
            metric=metric,
            num_classes=nc,
            max_iter=bench.max_iter,
            tol=bench.tol,
            dtype=bench.dtype,
            progress=False,
        )
        sweep_s.append(time.perf_counter() - t0)
        sgd_runs.append(
            sgd_probe_on_features(
                trainval, f["test"], num_classes=nc, epochs=epochs, seed=trial, metric=metric, **sgd
            )
        )
        t0 = time.perf_counter()
        w, b = fit_logistic(
            trainval[0],
            trainval[1],
            sweep["reg"],
            num_classes=nc,
            max_iter=bench.max_iter,
            tol=bench.tol,
            dtype=bench.dtype,
        )
        single_s.append(time.perf_counter() - t0)
    single_score = classification_scores(
        metric, f["test"][0].to(bench.dtype) @ w.t() + b, f["test"][1], nc
    )["score"]
    sgd_best = statistics.fmean(r["best_score"] for r in sgd_runs)
    sgd_to_best = _median([r["time_to_best_s"] for r in sgd_runs])
    reach_s, reach_iter, reach_score = lbfgs_time_to_reach(
        trainval,
        f["test"],
        reg=sweep["reg"],
        num_classes=nc,
        target=sgd_best,
        metric=metric,
        max_iter=bench.max_iter,
        tol=bench.tol,
        dtype=bench.dtype,
    )
    # the SGD probe's time to the L-BFGS probe's accuracy (when SGD gets there)
    to_lbfgs = [_time_to_score(r, sweep["score"]) for r in sgd_runs]
    to_lbfgs = None if any(t is None for t in to_lbfgs) else _median(to_lbfgs)
    r = {
        "lbfgs_tol": bench.tol,
        "lbfgs_max_iter": bench.max_iter,
        "lbfgs_dtype": str(bench.dtype).replace("torch.", ""),
        "num_train": int(trainval[0].shape[0]),
        "num_test": int(f["test"][0].shape[0]),
        "dim": int(trainval[0].shape[1]),
        "grid_size": len(bench.grid),
        "trials": trials,
        "sgd_epochs": epochs,
        "sgd": dict(sgd),
        "lbfgs_sweep_s": _median(sweep_s),
        "lbfgs_sweep_score": sweep["score"],
        "lbfgs_reg": sweep["reg"],
        "lbfgs_single_fit_s": _median(single_s),
        "lbfgs_single_fit_score": single_score,
        "lbfgs_reach_sgd_s": reach_s,
        "lbfgs_reach_sgd_iters": reach_iter,
        "lbfgs_reach_sgd_score": reach_score,
        "sgd_best_score": sgd_best,
        "sgd_best_scores": [r_["best_score"] for r_ in sgd_runs],
        "sgd_best_epochs": [r_["best_epoch"] for r_ in sgd_runs],
        "sgd_time_to_best_s": sgd_to_best,
        "sgd_total_s": _median([r_["total_s"] for r_ in sgd_runs]),
        "sgd_time_to_lbfgs_score_s": to_lbfgs,
    }
    r["ratio_sweep"] = sgd_to_best / r["lbfgs_sweep_s"]
    r["ratio_single_fit"] = sgd_to_best / r["lbfgs_single_fit_s"]
    r["ratio_reach"] = None if reach_s is None else sgd_to_best / reach_s
    r["lbfgs_reaches_sgd"] = sweep["score"] >= sgd_best
    return r


def print_probe_speed(r, log=print):
    sg = r["sgd"]
    log(
        f"probe_speed: {r['num_train']} train+val / {r['num_test']} test features of dim "
        f"{r['dim']}; L-BFGS {r['lbfgs_dtype']}, tol {r['lbfgs_tol']:g}, max_iter "
        f"{r['lbfgs_max_iter']}; medians of {r['trials']} alternating trials"
    )
    rows = [
        (
            f"L-BFGS probe: {r['grid_size']} regs on val + refit (select_and_refit)",
            f"{r['lbfgs_sweep_s']:.2f} s",
            f"{r['lbfgs_sweep_score']:.2f} (reg {r['lbfgs_reg']:.3g})",
        ),
        (
            "L-BFGS: one fit at the chosen reg on train+val",
            f"{r['lbfgs_single_fit_s']:.3f} s",
            f"{r['lbfgs_single_fit_score']:.2f}",
        ),
        (
            "L-BFGS: shortest fit reaching the SGD probe's best (iteration caps x1.25)",
            "not reached" if r["lbfgs_reach_sgd_s"] is None else f"{r['lbfgs_reach_sgd_s']:.3f} s",
            f"{r['lbfgs_reach_sgd_score']:.2f} ({r['lbfgs_reach_sgd_iters']} it.)",
        ),
        (
            f"SGD probe (lr {sg['lr']:g}, batch {sg['batch_size']}, cosine {r['sgd_epochs']} "
            f"epochs) to its best epoch",
            f"{r['sgd_time_to_best_s']:.2f} s",
            f"{r['sgd_best_score']:.2f} (epochs {r['sgd_best_epochs']})",
        ),
        (
            "SGD probe to the L-BFGS probe's score",
            "not reached"
            if r["sgd_time_to_lbfgs_score_s"] is None
            else f"{r['sgd_time_to_lbfgs_score_s']:.2f} s",
            "",
        ),
    ]
    _table(["probe_speed", "time", "test score"], rows, log)
    reach = "n/a" if r["ratio_reach"] is None else f"{r['ratio_reach']:.3g}x"
    log(
        f"probe_speed ratio (SGD time to best / L-BFGS time): whole protocol "
        f"{r['ratio_sweep']:.3g}x, one fit {r['ratio_single_fit']:.3g}x, shortest fit reaching SGD "
        f"{reach} (goal >= 10x); L-BFGS "
        f"{'reaches' if r['lbfgs_reaches_sgd'] else 'does NOT reach'} the SGD probe's accuracy "
        f"({r['lbfgs_sweep_score']:.2f} vs {r['sgd_best_score']:.2f})"
    )


# ----------------------------------------------------------------------------------------------
# extraction
# ----------------------------------------------------------------------------------------------
def extraction_speed(bench, trials=3, log=print):
    """
    Alternating passes over the same loader and model: the real path (``inference_on_dataset``
    with the FeatureProbeEvaluator's ``process``) and a bare ``torch.no_grad()`` loop. The loader is
    the task's test loader of the L-BFGS probe with an empty cache (train, val and test images).
    One untimed pass of each first. Returns images/s of each side and the ratio of times.
    """
    cfg = bench.cfg("extraction")  # its own, empty cache: every split is in the loader
    test = cfg.DATASETS.TEST[0]
    model = bench.model(cfg)
    loader = Trainer.build_test_loader(cfg, test)
    evaluator = _ProcessOnly(Trainer.build_evaluator(cfg, test))
    counted = {"n": 0}

    def real():
        evaluator.reset()
        inference_on_dataset(model, loader, evaluator)
        return sum(len(v) for v in evaluator.evaluator._items.values())

    def bare():
        n = 0
        model.eval()
        with torch.no_grad():
            for batch in loader:
                model(batch)
                n += len(batch)
        return n

    def timed(fn):
        _sync(cfg)
        t0 = time.perf_counter()
        n = fn()
        _sync(cfg)
        return time.perf_counter() - t0, n

    timed(real), timed(bare)  # warm-up: worker start, allocator, caches
    real_s, bare_s, ratios = [], [], []
    for i in range(trials):
        order = (real, bare) if i % 2 == 0 else (bare, real)  # ABBA
        got = {fn: timed(fn) for fn in order}
        (a, n), (b, m) = got[real], got[bare]
        counted["n"] = n
        if n != m:
            raise RuntimeError(f"extraction: the real path saw {n} images, the bare loop {m}")
        real_s.append(a)
        bare_s.append(b)
        ratios.append(a / b)
    n = counted["n"]
    return {
        "images": n,
        "trials": trials,
        "device": cfg.MODEL.DEVICE,
        "batch_size": cfg.CLASSIFICATION.TEST_BATCH_SIZE,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "real_images_per_s": n * trials / sum(real_s),
        "bare_images_per_s": n * trials / sum(bare_s),
        "ratio": sum(real_s) / sum(bare_s),
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "real_s": real_s,
        "bare_s": bare_s,
    }


def _sync(cfg):
    if cfg.MODEL.DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def print_extraction(r, log=print):
    rows = [
        (
            "real: task loader + inference_on_dataset + FeatureProbeEvaluator.process",
            f"{r['real_images_per_s']:.1f}",
            " ".join(f"{s:.2f}" for s in r["real_s"]),
        ),
        (
            "bare: torch.no_grad() loop, same loader and model",
            f"{r['bare_images_per_s']:.1f}",
            " ".join(f"{s:.2f}" for s in r["bare_s"]),
        ),
    ]
    _table(
        [
            f"extraction ({r['images']} images, batch {r['batch_size']}, {r['num_workers']} "
            f"workers, {r['device']})",
            "images/s",
            "pass seconds",
        ],
        rows,
        log,
    )
    log(
        f"extraction ratio real/bare time: {r['ratio']:.3f} over {r['trials']} alternating passes "
        f"each [per pair min {min(r['ratios']):.3f} median {r['ratio_median']:.3f} "
        f"max {max(r['ratios']):.3f}] (goal <= 1.05)"
    )


# ----------------------------------------------------------------------------------------------
# probe_cache
# ----------------------------------------------------------------------------------------------
def _train_net_in_process(bench, name, cache):
    """What tools/train_net.py's main does for the L-BFGS probe, timed by stage."""
    t = {}
    t0 = time.perf_counter()
    cfg = bench.cfg(name, cache=cache)
    task = get_task(cfg)
    names = task.datasets_to_check(cfg, True)
    for n in names:
        check_dataset_layout(n)
    t1 = time.perf_counter()
    check_images(cfg, dict.fromkeys(names))
    t2 = time.perf_counter()
    model, checkpoint = Trainer.build_evaluation_model(cfg)
    t3 = time.perf_counter()
    evaluator = _TimedEvaluator(Trainer.build_evaluator(cfg, cfg.DATASETS.TEST[0]))
    results = Trainer.test(cfg, model, evaluators=[evaluator])
    t4 = time.perf_counter()
    Trainer.write_eval_results(cfg, results, checkpoint=checkpoint, config_file=bench.config_file)
    t5 = time.perf_counter()
    t = {
        "config_s": t1 - t0,
        "image_check_s": t2 - t1,
        "model_s": t3 - t2,
        "extract_s": (t4 - t3) - evaluator.evaluate_s,
        "fit_s": evaluator.evaluate_s,
        "results_s": t5 - t4,
        "total_s": t5 - t0,
        "score": float(results["linear"]["score"]),
    }
    return t


def _train_net_cli(bench, name, cache):
    out = os.path.join(bench.workdir, name)
    if not bench.train_net:
        raise ValueError(
            "the CLI mode of probe_cache needs the path of tools/train_net.py (train_net=)"
        )
    cmd = [
        sys.executable,
        bench.train_net,
        "--config-file",
        bench.config_file,
        *bench.opts,
        "CLASSIFICATION.FEATURE_CACHE",
        cache,
        "OUTPUT_DIR",
        out,
        "SEED",
        "0",
    ]
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    with open(os.path.join(bench.workdir, name + ".log"), "w") as logf:
        subprocess.run(cmd, check=True, stdout=logf, stderr=subprocess.STDOUT)
    total = time.perf_counter() - t0
    metrics = read_results(out)["metrics"]
    score = next(iter(metrics.values()))["linear/score"]
    return {"total_s": total, "score": float(score)}


def probe_cache(bench, trials=1, cli=False, log=print):
    """
    ``trials`` pairs of (first run with an empty cache, second run on the cache it filled).
    Returns the median seconds of each, the ratio second/first and (in-process) the stages.
    """
    run = _train_net_cli if cli else _train_net_in_process
    firsts, seconds = [], []
    for i in range(trials):
        cache = os.path.join(bench.workdir, f"cache_probe{i}")
        firsts.append(run(bench, f"probe_first{i}", cache))
        seconds.append(run(bench, f"probe_second{i}", cache))
    first = _median([r["total_s"] for r in firsts])
    second = _median([r["total_s"] for r in seconds])
    r = {
        "mode": "cli" if cli else "in-process",
        "trials": trials,
        "first_s": first,
        "second_s": second,
        "ratio": second / first,
        "first": firsts,
        "second": seconds,
        "same_score": all(a["score"] == b["score"] for a, b in zip(firsts, seconds)),
    }
    if not cli:
        # the part of the run that the cache is for: everything but the probe's own fit
        nofit = [
            (b["total_s"] - b["fit_s"]) / (a["total_s"] - a["fit_s"])
            for a, b in zip(firsts, seconds)
        ]
        r["ratio_without_fit"] = _median(nofit)
        r["ratio_without_fit_and_image_check"] = _median(
            [
                (b["total_s"] - b["fit_s"] - b["image_check_s"])
                / (a["total_s"] - a["fit_s"] - a["image_check_s"])
                for a, b in zip(firsts, seconds)
            ]
        )
    return r


def print_probe_cache(r, log=print):
    stages = ("config_s", "image_check_s", "model_s", "extract_s", "fit_s", "results_s", "total_s")
    if r["mode"] == "in-process":
        rows = []
        for label, runs in (
            ("first run (extracts)", r["first"]),
            ("second run (cached)", r["second"]),
        ):
            rows.append((label, *(f"{_median([x[k] for x in runs]):.2f}" for k in stages)))
        _table(
            [
                "probe_cache (train_net eval path, in-process), s",
                "config+layout",
                "image scan",
                "model+weights",
                "extraction",
                "L-BFGS fit",
                "results",
                "total",
            ],
            rows,
            log,
        )
    else:
        _table(
            ["probe_cache (tools/train_net.py, wall s)", "total"],
            [
                ("first run (extracts)", f"{r['first_s']:.2f}"),
                ("second run (cached)", f"{r['second_s']:.2f}"),
            ],
            log,
        )
    extra = ""
    if "ratio_without_fit" in r:
        extra = (
            f"; without the L-BFGS fit (same in both runs) {100 * r['ratio_without_fit']:.1f}%, "
            f"also without the pre-flight image scan "
            f"{100 * r['ratio_without_fit_and_image_check']:.1f}%"
        )
    log(
        f"probe_cache ratio second/first run: {100 * r['ratio']:.1f}% (goal <= 5%){extra}; "
        f"same test score: {r['same_score']}"
    )


def _table(header, rows, log):
    log("| " + " | ".join(header) + " |")
    log("|" + "---|" * len(header))
    for row in rows:
        log("| " + " | ".join(str(c) for c in row) + " |")


def sgd_recipe(config_file, opts=()):
    """The linear_sgd recipe's optimizer settings from its config (+ ``opts``)."""
    s = load_config(argparse.Namespace(config_file=config_file, opts=list(opts))).SOLVER
    return {
        "lr": float(s.BASE_LR),
        "momentum": float(s.MOMENTUM),
        "nesterov": bool(s.NESTEROV),
        "weight_decay": float(s.WEIGHT_DECAY),
        "batch_size": int(s.IMS_PER_BATCH),
    }


def run(
    parts,
    workdir,
    opts=(),
    *,
    lbfgs_config,
    sgd_config,
    train_net=None,
    trials=3,
    sgd_epochs=100,
    cache_trials=1,
    cli=False,
    log=print,
):
    """
    Run the benchmarks named in ``parts``; returns {part: figures}, printing each table.
    ``lbfgs_config`` / ``sgd_config``: the linear_lbfgs and linear_sgd probe configs
    (tools/benchmark.py gives the toy ones); ``train_net``: the path of tools/train_net.py, for
    ``cli=True``.
    """
    if comm.get_world_size() != 1:
        raise RuntimeError("the classification benchmarks run in one process")
    bench = ClsBench(workdir, lbfgs_config, opts, log=log, train_net=train_net)
    out = {}
    if "probe_speed" in parts:
        out["probe_speed"] = probe_speed(
            bench, sgd=sgd_recipe(sgd_config, opts), epochs=sgd_epochs, trials=trials, log=log
        )
        print_probe_speed(out["probe_speed"], log)
    if "extraction" in parts:
        out["extraction"] = extraction_speed(bench, trials=trials, log=log)
        print_extraction(out["extraction"], log)
    if "probe_cache" in parts:
        out["probe_cache"] = probe_cache(bench, trials=cache_trials, cli=cli, log=log)
        print_probe_cache(out["probe_cache"], log)
    return out

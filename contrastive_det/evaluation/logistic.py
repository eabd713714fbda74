"""The L-BFGS linear evaluation of Kornblith et al. (multinomial logistic regression with an L2
penalty on frozen features; the regularisation chosen on a validation split, refit on train+val).

Reference: Kornblith, Shlens, Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019,
https://arxiv.org/abs/1805.08974 (also the linear evaluation of SimCLR's transfer study).

The objective, for N training images, weights W (CxD) and bias b (C)::

    mean_i CE(W x_i + b, y_i) + reg / (2 N) * ||W||_F^2          (the bias is not penalised)

which is scikit-learn's ``LogisticRegression(C=1/reg, l1_ratio=0 (L2), solver="lbfgs")``
multinomial objective ``C * sum_i CE + ||W||^2 / 2`` divided by ``N * C``: so ``reg = 1 / C``,
and ``tol`` bounds the largest absolute gradient entry of the same (mean) objective that
scikit-learn's lbfgs stops on. The optimum in W is unique; the multinomial bias is unique up to a
common constant and is returned centred (mean 0), as scikit-learn's is when started from zero.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .classification import METRICS, classification_scores

__all__ = ["LBFGS_DTYPES", "check_reg", "fit_logistic", "regularisation_grid", "select_and_refit"]

logger = logging.getLogger(__name__)

# The precisions of the fits, by config name (CLASSIFICATION.LBFGS.DTYPE).
LBFGS_DTYPES = {"float64": torch.float64, "float32": torch.float32}

# L-BFGS memory (scipy's and so scikit-learn's default maxcor): D*C*2*10 numbers of history.
_HISTORY = 10


def check_reg(reg: float) -> float:
    if (
        isinstance(reg, bool)
        or not isinstance(reg, numbers.Real)
        or not (math.isfinite(reg) and reg > 0)
    ):
        raise ValueError(
            f"reg must be a positive finite number (reg = 1 / scikit-learn's C), got {reg!r}"
        )
    return float(reg)


def _prepare_features(features, device, dtype, what="features"):
    features = torch.as_tensor(features)
    if features.dim() != 2 or features.shape[0] == 0:
        raise ValueError(
            f"{what} must be an NxD tensor with N > 0, got shape {tuple(features.shape)}"
        )
    if not features.is_floating_point():
        raise ValueError(f"{what} must be floating point, got dtype {features.dtype}")
    device = features.device if device is None else torch.device(device)
    features = features.to(device=device, dtype=dtype)
    if not torch.isfinite(features).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return features


def _prepare_targets(targets, n, num_classes, device, what="labels"):
    """Class ids (N, long) or multi-label indicators (NxC, long with 1 / 0 / -1); returns (targets,
    C)."""
    targets = torch.as_tensor(targets, device=device)
    if targets.is_floating_point() and targets.dim() == 1:
        raise ValueError(f"{what} must be integer class ids, got dtype {targets.dtype}")
    if targets.dim() == 1:
        if targets.shape[0] != n:
            raise ValueError(f"{what} must have N={n} entries, got {targets.shape[0]}")
        targets = targets.long()
        c = int(targets.max()) + 1 if num_classes is None else num_classes
        if int(targets.min()) < 0 or int(targets.max()) >= c:
            raise ValueError(
                f"{what} must lie in [0, {c}), got values in [{int(targets.min())}, "
                f"{int(targets.max())}]"
            )
        return targets, c
    if targets.dim() == 2:
        if targets.shape[0] != n or (num_classes is not None and targets.shape[1] != num_classes):
            expected = f"{n}x{num_classes if num_classes is not None else 'C'}"
            raise ValueError(
                f"multi-label {what} must be {expected} (1 / 0 / -1), got shape "
                f"{tuple(targets.shape)}"
            )
        if not ((targets == 1) | (targets == 0) | (targets == -1)).all():
            raise ValueError(
                f"multi-label {what} must hold only 1 (positive), 0 (negative) and -1 (ignore)"
            )
        return targets.long(), targets.shape[1]
    raise ValueError(
        f"{what} must be N class ids or NxC multi-label indicators, got shape "
        f"{tuple(targets.shape)}"
    )


def _objective(weight, bias, x, y, reg):
    """The penalised mean loss (module docstring); one-vs-rest binary losses for NxC targets."""
    logits = x @ weight.t() + bias  # logits: NxC
    if y.dim() == 1:
        return F.cross_entropy(logits, y) + reg / (2 * x.shape[0]) * weight.pow(2).sum()
    valid = (y >= 0).to(x.dtype)  # valid: NxC, 0 where ignored
    n_c = valid.sum(0).clamp(min=1)  # n_c: C, images that count for each class
    # bce: NxC
    bce = F.binary_cross_entropy_with_logits(logits, (y == 1).to(x.dtype), reduction="none")
    # sum over classes of independent binary objectives, each scikit-learn's on its non-ignored rows
    return ((bce * valid).sum(0) / n_c).sum() + (reg / (2 * n_c) * weight.pow(2).sum(1)).sum()


def _fit(x, y, c, reg, init, max_iter, tol):
    """L-BFGS on prepared tensors (x: NxD, y: N or NxC on x's device and dtype); returns (W CxD, b
    C).

    The fit runs on centred features: ``W x + b = W (x - mu) + (b + W mu)`` with ``mu`` the mean
    training feature, an exact change of variables (the bias is not penalised, so the objective and
    its minimiser in W are the same) that removes the large common direction of non-negative
    (post-ReLU) features and with it most of the ill-conditioning: 3-10x fewer L-BFGS iterations
    on pooled ResNet features. The returned bias is for the original features.
    """
    d = x.shape[1]
    mu = x.mean(0)  # mu: D
    xc = x - mu  # xc: NxD, centred
    if init is None:
        weight = torch.zeros(c, d, dtype=x.dtype, device=x.device)  # weight: CxD
        bias = torch.zeros(c, dtype=x.dtype, device=x.device)  # bias: C, for the centred features
    else:
        weight, bias = init
        if tuple(weight.shape) != (c, d) or tuple(bias.shape) != (c,):
            raise ValueError(
                f"init must be (weight {c}x{d}, bias {c}), got {tuple(weight.shape)} and "
                f"{tuple(bias.shape)}"
            )
        weight = weight.detach().to(device=x.device, dtype=x.dtype).clone()
        # to the centred variables
        bias = bias.detach().to(device=x.device, dtype=x.dtype) + weight @ mu
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    # L-BFGS minimises N times the objective (the sum form, e.g. sum_i CE + reg/2 ||W||^2: the same
    # minimiser), with the tolerances scaled alike. torch's L-BFGS drops curvature pairs with
    # s.y <= 1e-10, an absolute threshold: on the mean form, near the optimum of a strongly
    # regularised fit, it stops learning curvature and crawls (reg=1e5, N=1000, D=128, C=10:
    # 1000 iterations unconverged instead of ~50).
    # torch's tolerance_change also stops on a step whose largest parameter change is below it:
    # scaled by N it is scikit-learn's ftol on the loss in float64 (N * 1.4e-14), but in float32 it
    # would stop the first steps of any large set (N=4000: 0.03), so there it stays 64 epsilons.
    scale = float(x.shape[0])
    change = 64 * torch.finfo(x.dtype).eps * (scale if x.dtype == torch.float64 else 1.0)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter + 20,
        tolerance_grad=tol * scale,
        tolerance_change=change,  # stop only on no progress
        history_size=_HISTORY,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = _objective(weight, bias, xc, y, reg) * scale
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
        if optimizer.state[weight]["n_iter"] >= max_iter:
            closure()  # the gradient at the final point
            worst = max(weight.grad.abs().max().item(), bias.grad.abs().max().item()) / scale
            if worst > tol:
                logger.warning(
                    f"L-BFGS did not converge in max_iter={max_iter} iterations "
                    f"(reg={reg:g}, largest gradient {worst:.3g} > tol {tol:g})"
                )
    weight = weight.detach()
    bias = bias.detach() - weight @ mu  # back to the original features
    if y.dim() == 1:
        bias = bias - bias.mean()  # the multinomial bias is defined up to a constant
    return weight, bias


def fit_logistic(
    features: torch.Tensor,
    labels: torch.Tensor,
    reg: float,
    *,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    num_classes: int | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit an L2-penalised logistic regression with full-batch L-BFGS (strong-Wolfe line search).

    Single-label ``labels`` (N class ids) give the multinomial objective of the module docstring,
    ``reg = 1 / C`` of scikit-learn. Multi-label ``labels`` (NxC, 1 = positive, 0 = negative,
    -1 = ignore) give C independent binary logistic regressions (one-vs-rest), each on the rows
    where its target is not -1: ``mean_i BCE + reg / (2 N_c) * ||W_c||^2`` with N_c those rows,
    i.e. scikit-learn's binary ``LogisticRegression(C=1/reg)`` on them, per class.

    Args:
        features: the training features.
        labels: class ids, or multi-label indicators.
        reg: the L2 regularisation, > 0 (scikit-learn's default C=1 is reg=1).
        init: (weight, bias) to start from (warm start); zeros when None.
        num_classes: C for single-label fits; default ``init``'s C, else ``labels.max() + 1``.
        max_iter: L-BFGS iterations at most (a warning is logged if it stops there unconverged).
        tol: stop when every gradient entry of the objective (in the centred variables, see
            ``_fit``) is at most ``tol`` in absolute value (scikit-learn's gtol), or when a step
            lowers the objective by less than 64 machine epsilons of ``dtype`` (scikit-learn's ftol:
            float64 cannot do better there).
        device: where to fit; None = the features' device (so a GPU fit for GPU features).
        dtype: the fitting precision; None = float64. torch.float32 is allowed (e.g. on a GPU) but
            stops ~1e-3 from the optimum (its ftol, 64 float32 epsilons, is 7.6e-6).

    Shape:
        - features: NxD.
        - labels: N (long) or NxC (1 / 0 / -1).
        - init: (CxD, C).
        - Output: (weight CxD, bias C), in the fitting dtype on the fitting device; the logits
          are ``features @ weight.T + bias``.

    Raises:
        ValueError: bad shapes, labels out of range, non-finite features, reg <= 0, max_iter < 1,
            tol <= 0, or an ``init`` of the wrong shape.
    """
    reg = check_reg(reg)
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    if not (isinstance(tol, numbers.Real) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    x = _prepare_features(features, device, torch.float64 if dtype is None else dtype)  # x: NxD
    if num_classes is None and init is not None and torch.as_tensor(labels).dim() == 1:
        num_classes = init[0].shape[0]
    y, c = _prepare_targets(labels, x.shape[0], num_classes, x.device)  # y: N or NxC
    return _fit(x, y, c, reg, init, int(max_iter), float(tol))


def regularisation_grid(reg_min: float = 1e-6, reg_max: float = 1e5, num: int = 45) -> list[float]:
    """``num`` log-spaced regularisation values from ``reg_min`` to ``reg_max`` (both included;
    ``num=1`` gives ``[reg_min]``). The defaults are Kornblith et al.'s 45 values in [1e-6, 1e5].

    Raises:
        ValueError: num < 1, a non-positive or non-finite bound, or reg_min > reg_max; the
            message names the config keys CLASSIFICATION.LBFGS.NUM_REGS / REG_MIN / REG_MAX.
    """
    if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 1:
        raise ValueError(f"CLASSIFICATION.LBFGS.NUM_REGS must be an integer >= 1, got {num!r}")
    for key, value in (("REG_MIN", reg_min), ("REG_MAX", reg_max)):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not (math.isfinite(value) and value > 0)
        ):
            raise ValueError(
                f"CLASSIFICATION.LBFGS.{key} must be a positive finite number, got {value!r}"
            )
    if reg_min > reg_max:
        raise ValueError(
            f"CLASSIFICATION.LBFGS.REG_MIN ({reg_min!r}) must not exceed "
            f"CLASSIFICATION.LBFGS.REG_MAX ({reg_max!r})"
        )
    if num == 1:
        return [float(reg_min)]
    return [float(v) for v in np.geomspace(reg_min, reg_max, int(num))]


def check_lbfgs_settings(
    max_iter: int, tol: float, dtype: str = "float64"
) -> tuple[int, float, str]:
    """The one check of ``CLASSIFICATION.LBFGS.MAX_ITER`` / ``TOL`` / ``DTYPE`` (the probes' and the
    few-shot fits' settings). Returns ``(int, float, str)``; raises ValueError naming the key."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"CLASSIFICATION.LBFGS.MAX_ITER must be an integer >= 1, got {max_iter!r}")
    if (
        isinstance(tol, bool)
        or not isinstance(tol, numbers.Real)
        or not (math.isfinite(tol) and tol > 0)
    ):
        raise ValueError(f"CLASSIFICATION.LBFGS.TOL must be a positive number, got {tol!r}")
    if dtype not in LBFGS_DTYPES:
        raise ValueError(
            f"CLASSIFICATION.LBFGS.DTYPE must be one of {', '.join(LBFGS_DTYPES)}, got {dtype!r}"
        )
    return int(max_iter), float(tol), dtype


def select_and_refit(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    grid: Sequence[float],
    metric: str,
    num_classes: int,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict:
    """Kornblith et al.'s protocol: choose the regularisation on ``val``, refit on train+val,
    score ``test`` once.

    The fits run along ``grid`` from the strongest regularisation (largest reg) to the weakest,
    each warm-started from the previous solution (the first from zeros). Each is scored on
    ``val`` with ``classification_scores(metric, ...)["score"]``; the best wins, ties going to
    the weaker regularisation (the smaller reg, as ssl-transfer's ``linear.py`` chooses). The
    winner is refit on the concatenation of train and val, warm-started from its train solution,
    and that model is scored on test.

    Args:
        train, val, test: (features, targets) pairs; targets are class ids for "top1" /
            "mean_per_class" and 1 / 0 / -1 indicators for "map11".
        grid: the reg values (e.g. :func:`regularisation_grid`), in any order.
        metric: "top1", "mean_per_class" or "map11".
        num_classes: C.
        max_iter, tol, dtype: as :func:`fit_logistic`; ``tol`` defaults to scikit-learn's
            LogisticRegression default (1e-4), a 100x looser stop than fit_logistic's 1e-6 that
            leaves the chosen penalty and the test score as they were on the toy features
            (docs/benchmarks.md, "Classification benchmarks") at a 12th of the time.
        device: where to fit; None = the train features' device.
        progress: show a tqdm bar over the grid.

    Shape:
        - features: NxD (the same D for the three splits); targets: N or NxC.
        - Output: dict with "score" (test, percent), "reg" (chosen), "val_score" (its val
          score), "val_scores" and "grid" (lists in the order of ``grid``), and the other test
          metrics of :func:`classification_scores` ("top1", "mean_per_class" or "map11").

    Raises:
        ValueError: empty grid, a non-positive reg, unknown metric, or splits that do not fit.
    """
    if metric not in METRICS:
        raise ValueError(
            f"unknown classification metric {metric!r}; known metrics: {', '.join(METRICS)}"
        )
    grid = [check_reg(r) for r in grid]
    if not grid:
        raise ValueError(
            "select_and_refit needs a non-empty regularisation grid (CLASSIFICATION.LBFGS.NUM_REGS "
            ">= 1)"
        )
    dtype = torch.float64 if dtype is None else dtype
    if device is None:
        device = torch.as_tensor(train[0]).device
    splits = {}
    for name, (features, targets) in (("train", train), ("val", val), ("test", test)):
        x = _prepare_features(features, device, dtype, what=f"{name} features")  # x: NxD
        # y: N or NxC
        y, _ = _prepare_targets(targets, x.shape[0], num_classes, x.device, what=f"{name} targets")
        if (y.dim() == 2) != METRICS[metric]:
            kind = "NxC multi-label" if METRICS[metric] else "N single-label"
            raise ValueError(
                f"metric {metric!r} needs {kind} targets, got {name} targets of shape "
                f"{tuple(y.shape)}"
            )
        splits[name] = (x, y)
    dims = {name: x.shape[1] for name, (x, _) in splits.items()}
    if len(set(dims.values())) != 1:
        raise ValueError(f"train, val and test features must have the same dimension, got {dims}")

    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = splits["train"], splits["val"], splits["test"]
    # strongest first; stable for equal values
    order = sorted(range(len(grid)), key=lambda i: -grid[i])
    val_scores = [None] * len(grid)
    best, solution = None, None
    bar = tqdm(order, desc=f"L-BFGS probe over {len(grid)} regs", disable=not progress)
    for i in bar:
        solution = _fit(x_tr, y_tr, num_classes, grid[i], solution, max_iter, tol)
        weight, bias = solution
        val_scores[i] = classification_scores(
            metric, x_val @ weight.t() + bias, y_val, num_classes
        )["score"]
        # the path runs from the strongest reg down: ">=" gives a tie to the weaker penalty, as
        # ssl-transfer's linear.py does (its sweep runs from the weakest up with a strict ">")
        if best is None or val_scores[i] >= val_scores[best[0]]:
            best = (i, solution)
        bar.set_postfix(reg=f"{grid[i]:.3g}", val=f"{val_scores[i]:.2f}")
    bar.close()
    chosen, init = best
    reg = grid[chosen]
    logger.info(
        f"L-BFGS probe: reg={reg:g} chosen on val ({metric} {val_scores[chosen]:.2f}); refitting "
        "on train+val"
    )
    weight, bias = _fit(
        torch.cat([x_tr, x_val]), torch.cat([y_tr, y_val]), num_classes, reg, init, max_iter, tol
    )
    test_scores = classification_scores(metric, x_te @ weight.t() + bias, y_te, num_classes)
    others = {k: v for k, v in test_scores.items() if k != "score"}
    return {
        "score": test_scores["score"],
        "reg": reg,
        "val_score": val_scores[chosen],
        "val_scores": val_scores,
        "grid": grid,
        **others,
    }

"""evaluation/logistic.py: the objective against scikit-learn, warm starts, the grid, the
selection."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from contrastive_det.evaluation import fit_logistic, logistic, regularisation_grid, select_and_refit

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def noisy_problem(seed=0, n=60, d=8, c=3, noise=2.0):
    """Features NxD and labels of a noisy linear rule (not separable: a finite optimum at any
    reg)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x @ rng.normal(size=(c, d)).T + rng.normal(scale=noise, size=(n, c))).argmax(1)
    return x, y


def sklearn_fit(x, y, reg):
    # scikit-learn's objective C * sum CE + ||W||^2 / 2 (multinomial for 3+ classes, L2 by default)
    return LogisticRegression(C=1.0 / reg, tol=1e-12, max_iter=100000).fit(x, y)


# Tolerance: both objectives are strongly convex in W (modulus >= reg / N) and both solvers stop at
# a gradient far below 1e-8 (tol=1e-10 here, gtol=1e-12 / ftol=64 eps there), so the solutions
# agree to ~1e-6 relative at the weakest reg below (measured 7.5e-7); 1e-4 leaves margin for
# other BLAS, while a wrong objective (reg/2 instead of reg/(2N): 60x the penalty; a penalised
# bias) moves them by 1e-2 or more.
RTOL = 1e-4


@pytest.mark.parametrize("reg", [1e-2, 1.0, 100.0])
def test_multinomial_matches_sklearn(reg):
    x, y = noisy_problem()
    weight, bias = fit_logistic(torch.tensor(x), torch.tensor(y), reg, tol=1e-10, max_iter=5000)
    assert weight.dtype == torch.float64 and weight.shape == (3, 8) and bias.shape == (3,)
    ref = sklearn_fit(x, y, reg)
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(weight.numpy(), ref.coef_, rtol=0, atol=RTOL * scale)
    # the multinomial bias is defined up to a constant: compare centred
    np.testing.assert_allclose(
        bias.numpy(), ref.intercept_ - ref.intercept_.mean(), rtol=0, atol=RTOL * max(1.0, scale)
    )
    pred = (torch.tensor(x) @ weight.T + bias).argmax(1).numpy()
    np.testing.assert_array_equal(pred, ref.predict(x))


def test_multi_label_is_sklearn_binary_per_class_without_ignored_rows():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 5))
    targets = (x @ rng.normal(size=(5, 3)) + rng.normal(scale=1.5, size=(50, 3)) > 0).astype(
        np.int64
    )  # 50x3
    targets[rng.random(size=targets.shape) < 0.2] = -1  # ~20% ignored, differently per class
    reg = 0.5
    weight, bias = fit_logistic(
        torch.tensor(x), torch.tensor(targets), reg, tol=1e-10, max_iter=5000
    )
    assert weight.shape == (3, 5) and bias.shape == (3,)
    for c in range(3):
        keep = targets[:, c] != -1
        ref = LogisticRegression(C=1.0 / reg, tol=1e-12, max_iter=100000).fit(
            x[keep], targets[keep, c]
        )
        np.testing.assert_allclose(
            weight[c].numpy(), ref.coef_[0], rtol=0, atol=RTOL * np.abs(ref.coef_).max()
        )
        np.testing.assert_allclose(
            bias[c].item(), ref.intercept_[0], rtol=0, atol=RTOL * max(1.0, np.abs(ref.coef_).max())
        )


def test_warm_start_reaches_the_cold_optimum():
    x, y = noisy_problem(seed=2)
    x, y = torch.tensor(x), torch.tensor(y)
    cold = fit_logistic(x, y, 0.1, tol=1e-10)
    strong = fit_logistic(x, y, 1000.0, tol=1e-10)
    g = torch.Generator().manual_seed(0)
    random_init = (
        torch.randn(3, 8, dtype=torch.float64, generator=g) * 3,
        torch.randn(3, dtype=torch.float64, generator=g),
    )
    # both stop where the objective no longer decreases in float64 (gradient ~2e-8 here), i.e.
    # within ~gradient / (reg / N) = 1e-5 of the optimum: the same RTOL as against scikit-learn
    atol = RTOL * cold[0].abs().max().item()
    for init in (strong, random_init):
        warm = fit_logistic(x, y, 0.1, init=init, tol=1e-10)
        torch.testing.assert_close(warm[0], cold[0], rtol=0, atol=atol)
        torch.testing.assert_close(warm[1], cold[1], rtol=0, atol=atol)
    # the init is not modified in place
    assert not random_init[0].requires_grad


def test_offset_features_fit_like_centred_ones_and_warm_start_stays_at_optimum():
    # Pooled post-ReLU features share a large positive mean. The fit works on centred features (an
    # exact change of variables: the bias is free), so shifting every feature by a constant changes
    # only the bias (by -W shift) and not the work: the same iteration budget converges.
    x, y = noisy_problem(seed=4, n=80, d=10, c=4)
    x, y = torch.tensor(x), torch.tensor(y)
    shift = torch.linspace(5.0, 30.0, 10, dtype=torch.float64)  # D
    reg, budget = 0.3, 60
    ref = fit_logistic(x, y, reg, tol=1e-10, max_iter=5000)
    off = fit_logistic(x + shift, y, reg, tol=1e-10, max_iter=budget)
    atol = RTOL * ref[0].abs().max().item()
    torch.testing.assert_close(off[0], ref[0], rtol=0, atol=atol)
    expected_bias = ref[1] - ref[0] @ shift
    torch.testing.assert_close(
        off[1], expected_bias - expected_bias.mean(), rtol=0, atol=atol * shift.sum().item()
    )
    # a warm start from the optimum (original variables) is already there: one iteration keeps it
    again = fit_logistic(x + shift, y, reg, init=off, tol=1e-10, max_iter=1)
    torch.testing.assert_close(again[0], off[0], rtol=0, atol=atol)
    torch.testing.assert_close(again[1], off[1], rtol=0, atol=atol)


def test_float32_and_class_count():
    x, y = noisy_problem(seed=3)
    weight, bias = fit_logistic(
        torch.tensor(x, dtype=torch.float32), torch.tensor(y), 1.0, dtype=torch.float32
    )
    assert weight.dtype == torch.float32
    ref = fit_logistic(torch.tensor(x), torch.tensor(y), 1.0)
    # float32 stops at a loss change of 64 float32 epsilons (7.6e-6): ~1e-3 from the optimum
    torch.testing.assert_close(weight.double(), ref[0], rtol=0, atol=1e-2)
    x32 = torch.tensor(x, dtype=torch.float32)
    assert torch.equal(
        (x32 @ weight.T + bias).argmax(1), (torch.tensor(x) @ ref[0].T + ref[1]).argmax(1)
    )
    # many rows: float32 must not stop on its first small steps (torch's tolerance_change also
    # bounds the step size; scaled by N it was 0.03 at N=4000 and the fit stopped after 1 step)
    xb, yb = noisy_problem(seed=5, n=4000, d=16, c=5)
    xb = xb + 3.0  # post-ReLU-like offset
    w32, _ = fit_logistic(
        torch.tensor(xb, dtype=torch.float32), torch.tensor(yb), 1.0, dtype=torch.float32
    )
    w64, _ = fit_logistic(torch.tensor(xb), torch.tensor(yb), 1.0, tol=1e-8)
    torch.testing.assert_close(w32.double(), w64, rtol=0, atol=1e-2 * w64.abs().max().item())
    # a class absent from the training labels still gets a row
    w5, b5 = fit_logistic(torch.tensor(x), torch.tensor(y), 1.0, num_classes=5)
    assert w5.shape == (5, 8) and b5.shape == (5,)


def test_fit_logistic_errors():
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="reg must be a positive finite number"):
        fit_logistic(x, torch.tensor([0, 1, 0, 1]), 0.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        fit_logistic(x, torch.tensor([0, 1, 2, 1]), 1.0, num_classes=2)
    with pytest.raises(ValueError, match="N=4"):
        fit_logistic(x, torch.tensor([0, 1, 0]), 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_logistic(torch.full((4, 2), float("nan")), torch.tensor([0, 1, 0, 1]), 1.0)
    with pytest.raises(ValueError, match=r"init must be \(weight 2x2, bias 2\)"):
        fit_logistic(
            x,
            torch.tensor([0, 1, 0, 1]),
            1.0,
            num_classes=2,
            init=(torch.zeros(3, 2), torch.zeros(3)),
        )
    with pytest.raises(ValueError, match="1 \\(positive\\), 0 \\(negative\\) and -1"):
        fit_logistic(x, torch.tensor([[0, 2]] * 4), 1.0)


def test_regularisation_grid():
    grid = regularisation_grid()
    assert len(grid) == 45 and grid[0] == 1e-6 and grid[-1] == 1e5
    ratios = np.array(grid[1:]) / np.array(grid[:-1])
    np.testing.assert_allclose(ratios, 10**0.25)  # 11 decades in 44 steps
    assert regularisation_grid(1e-2, 1e2, 5) == pytest.approx([1e-2, 1e-1, 1.0, 1e1, 1e2])
    assert regularisation_grid(3.0, 3.0, 1) == [3.0]
    with pytest.raises(ValueError, match="CLASSIFICATION.LBFGS.NUM_REGS"):
        regularisation_grid(num=0)
    with pytest.raises(
        ValueError, match="CLASSIFICATION.LBFGS.REG_MIN .* CLASSIFICATION.LBFGS.REG_MAX"
    ):
        regularisation_grid(10.0, 1.0)
    with pytest.raises(ValueError, match="CLASSIFICATION.LBFGS.REG_MIN must be a positive"):
        regularisation_grid(0.0, 1.0)
    with pytest.raises(ValueError, match="CLASSIFICATION.LBFGS.REG_MAX must be a positive"):
        regularisation_grid(1.0, float("inf"))


def blobs(rng, labels, centers, noise):
    return torch.tensor(centers[labels] + noise * rng.normal(size=(len(labels), centers.shape[1])))


def test_select_prefers_weak_reg_when_strong_reg_underfits():
    # well separated classes, train imbalanced 20/5/5: at reg 1e5 W ~ 0 (|W x| ~ 1e-3) and the bias
    # (log 4 in favour of class 0) decides: class 0 everywhere, 1/3 of the balanced val set;
    # at reg 1e-2 the classes are told apart perfectly
    rng = np.random.default_rng(0)
    centers = np.eye(3, 4) * 4
    ytr, yval, yte = (
        np.array([0] * 20 + [1] * 5 + [2] * 5),
        np.repeat(np.arange(3), 6),
        np.repeat(np.arange(3), 6),
    )
    train = (blobs(rng, ytr, centers, 0.3), torch.tensor(ytr))
    val = (blobs(rng, yval, centers, 0.3), torch.tensor(yval))
    test = (blobs(rng, yte, centers, 0.3), torch.tensor(yte))
    r = select_and_refit(
        train, val, test, grid=[1e5, 1e-2], metric="top1", num_classes=3, progress=False
    )
    assert r["reg"] == 1e-2 and r["val_score"] == 100.0 and r["score"] == 100.0
    assert r["val_scores"] == pytest.approx([100 / 3, 100.0])  # aligned with the grid as given
    assert r["grid"] == [1e5, 1e-2] and r["top1"] == r["score"] and "mean_per_class" in r


def test_select_prefers_strong_reg_when_val_contradicts_train():
    # val labels are the train rule reversed: the better the fit, the worse on val; the strongest
    # reg (W ~ 0, the bias says the majority class 0, 60% of val) wins
    rng = np.random.default_rng(1)
    centers = np.eye(2, 3) * 4
    ytr = np.array([0] * 12 + [1] * 8)
    train = (blobs(rng, ytr, centers, 0.3), torch.tensor(ytr))
    yval_true = np.array([1] * 6 + [0] * 4)
    val = (
        blobs(rng, yval_true, centers, 0.3),
        torch.tensor(1 - yval_true),
    )  # 6 of label 0, 4 of label 1
    test = train
    r = select_and_refit(
        train,
        val,
        test,
        grid=[1e-3, 1e-1, 1e5],
        metric="top1",
        num_classes=2,
        max_iter=200,
        progress=False,
    )
    assert r["reg"] == 1e5 and r["val_score"] == pytest.approx(60.0)
    assert r["val_scores"][0] == 0.0


def test_ties_go_to_the_weaker_regularisation_as_ssl_transfer():
    rng = np.random.default_rng(2)
    centers = np.eye(3, 4) * 6
    y = np.repeat(np.arange(3), 8)
    split = (blobs(rng, y, centers, 0.2), torch.tensor(y))
    r = select_and_refit(
        split, split, split, grid=[1e-3, 1e-2, 1e-1], metric="top1", num_classes=3, progress=False
    )
    assert r["val_scores"] == [100.0, 100.0, 100.0]
    # ssl-transfer: C from large to small (wd 1e-6 up), strict ">": the largest C wins a tie
    assert r["reg"] == 1e-3


def test_path_order_warm_starts_and_refit_on_train_plus_val(monkeypatch):
    calls = []
    real_fit = logistic._fit

    def recording_fit(x, y, c, reg, init, max_iter, tol):
        out = real_fit(x, y, c, reg, init, max_iter, tol)
        calls.append({"n": x.shape[0], "reg": reg, "init": init, "out": out})
        return out

    monkeypatch.setattr(logistic, "_fit", recording_fit)
    # class 2 is absent from train: only the train+val refit can predict it on test
    rng = np.random.default_rng(3)
    centers = np.eye(3, 4) * 4
    ytr, yval, yte = np.array([0, 1] * 8), np.repeat(np.arange(3), 5), np.repeat(np.arange(3), 4)
    train = (blobs(rng, ytr, centers, 0.3), torch.tensor(ytr))
    val = (blobs(rng, yval, centers, 0.3), torch.tensor(yval))
    test = (blobs(rng, yte, centers, 0.3), torch.tensor(yte))
    grid = [1e-2, 1.0, 1e-1]
    r = select_and_refit(
        train, val, test, grid=grid, metric="mean_per_class", num_classes=3, progress=False
    )
    path, refit = calls[:-1], calls[-1]
    assert [c["reg"] for c in path] == [1.0, 1e-1, 1e-2]  # strongest first
    assert path[0]["init"] is None
    for prev, cur in zip(path, path[1:]):
        assert cur["init"] is prev["out"]
    assert refit["n"] == 16 + 15 and refit["reg"] == r["reg"]
    assert refit["init"] is path[[c["reg"] for c in path].index(r["reg"])]["out"]
    # the reported test score is that of the refit model
    weight, bias = refit["out"]
    expected = (test[0] @ weight.T + bias).argmax(1)
    per_class = [(expected[test[1] == k] == k).double().mean().item() * 100 for k in range(3)]
    assert r["score"] == pytest.approx(sum(per_class) / 3) and r["score"] == r["mean_per_class"]
    assert r["score"] > 90.0  # class 2 learnt from val


def test_select_multi_label_map11():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(80, 4))
    t = (x[:, :2] > 0).astype(np.int64)  # 2 classes read off the first two features
    t[::7, 0] = -1
    split = lambda a, b: (torch.tensor(x[a:b]), torch.tensor(t[a:b]))  # noqa: E731
    r = select_and_refit(
        split(0, 40),
        split(40, 60),
        split(60, 80),
        grid=[1e3, 1e-2],
        metric="map11",
        num_classes=2,
        progress=False,
    )
    assert set(r) == {"score", "reg", "val_score", "val_scores", "grid", "map11"}
    assert r["reg"] == 1e-2 and r["score"] == r["map11"] > 95.0


def test_select_and_refit_errors():
    x, y = noisy_problem()
    s = (torch.tensor(x), torch.tensor(y))
    with pytest.raises(ValueError, match="non-empty regularisation grid"):
        select_and_refit(s, s, s, grid=[], metric="top1", num_classes=3)
    with pytest.raises(ValueError, match="known metrics"):
        select_and_refit(s, s, s, grid=[1.0], metric="acc", num_classes=3)
    with pytest.raises(ValueError, match="same dimension"):
        select_and_refit(
            s,
            (torch.tensor(x[:, :4]), torch.tensor(y)),
            s,
            grid=[1.0],
            metric="top1",
            num_classes=3,
        )
    with pytest.raises(ValueError, match="needs NxC multi-label targets"):
        select_and_refit(s, s, s, grid=[1.0], metric="map11", num_classes=3)


def test_strong_regularisation_converges():
    # torch's L-BFGS ignores curvature pairs with s.y <= 1e-10; minimising the mean objective it
    # crawled here (gradient still 3e-6 after 300 iterations, 1e-6 after 1000), the sum form
    # converges in ~50
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 128))
    y = rng.integers(0, 10, 1000)
    x = torch.tensor(centers[y] + 3 * rng.normal(size=(1000, 128)))
    y = torch.tensor(y)
    weight, bias = fit_logistic(x, y, 1e5, max_iter=300, tol=1e-6)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    logistic._objective(weight, bias, x, y, 1e5).backward()
    assert max(weight.grad.abs().max().item(), bias.grad.abs().max().item()) <= 1e-6

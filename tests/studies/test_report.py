"""The study report from files: hand-computed means, stds, ranks, bold, CI, CSV, plots."""
import csv
import json
import os

import pytest

from contrastive_det.studies.report import aggregate, collect, write_report


def fake_study(root, results, axes=None):
    """plan.json with one transfer run per (transfer, row, axes, seed, metrics) and their results.json."""
    runs = []
    for transfer, row, method, axes, seed, metrics in results:
        out = os.path.join(root, "transfer", transfer, row, f"seed{seed}")
        runs.append({"id": f"transfer/{transfer}/{row}/seed{seed}", "kind": "transfer", "argv": [], "deps": [],
                     "out_dir": out, "outputs": [], "meta": {"method": method, "row": row, "axes": axes,
                                                             "seed": seed, "transfer": transfer}})
        if metrics is not None:
            os.makedirs(out)
            with open(os.path.join(out, "results.json"), "w") as f:
                json.dump({"metrics": {"toy_test": metrics}}, f)
    with open(os.path.join(root, "plan.json"), "w") as f:
        json.dump({"study": "fake", "study_file": "fake.yaml",
                   "axes": {"images": "DATASETS.PRETRAIN.SUBSET_COUNT"} if axes is None else axes, "runs": runs}, f)


RESULTS = [
    ("lbfgs", "simclr__images-100", "simclr", {"images": 100}, 0, {"linear/score": 80.0, "linear/reg": 1.0}),
    ("lbfgs", "simclr__images-100", "simclr", {"images": 100}, 1, {"linear/score": 84.0, "linear/reg": 1.0}),
    ("lbfgs", "simclr__images-1000", "simclr", {"images": 1000}, 0, {"linear/score": 90.0, "linear/reg": 0.1}),
    ("lbfgs", "simclr__images-1000", "simclr", {"images": 1000}, 1, {"linear/score": 91.0, "linear/reg": 0.1}),
    ("lbfgs", "random-init", "random-init", {}, 0, {"linear/score": 50.0, "linear/reg": 10.0}),
    ("lbfgs", "random-init", "random-init", {}, 1, None),  # not run
    ("fs", "simclr__images-100", "simclr", {"images": 100}, 0,
     {"few_shot/5way_5shot": 70.0, "few_shot/5way_5shot_ci95": 1.0}),
    ("fs", "simclr__images-100", "simclr", {"images": 100}, 1,
     {"few_shot/5way_5shot": 72.0, "few_shot/5way_5shot_ci95": 2.0}),
]


def test_aggregate_means_and_sample_stds(tmp_path):
    fake_study(str(tmp_path), RESULTS)
    records, plan, missing = collect(str(tmp_path))
    assert missing == ["transfer/lbfgs/random-init/seed1"]
    agg = aggregate(records)
    s = agg[("lbfgs", "toy_test")]["simclr__images-100"]["linear/score"]
    assert s["mean"] == 82.0 and s["n"] == 2 and s["std"] == pytest.approx(2.8284271, abs=1e-6)  # sqrt(8), n-1
    r = agg[("lbfgs", "toy_test")]["random-init"]["linear/score"]
    assert (r["mean"], r["std"], r["n"]) == (50.0, 0.0, 1)


def test_tables_csv_and_plots(tmp_path):
    fake_study(str(tmp_path), RESULTS)
    path = write_report(str(tmp_path), log=lambda line: None)
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "| simclr__images-1000 | **90.5 ± 0.7 (2)** [1] |" in tables
    assert "| simclr__images-100 | 82.0 ± 2.8 (2) [2] |" in tables
    assert "| random-init | 50.0 ± 0.0 (1) [3] |" in tables
    assert "linear/reg" not in tables  # not a headline metric: CSV only
    assert "**71.0 ± 1.4 (2), CI95 ±1.5** [1]" in tables
    rows = list(csv.DictReader(open(tmp_path / "report" / "results.csv")))
    reg = [r for r in rows if r["row"] == "simclr__images-1000" and r["metric"] == "linear/reg"][0]
    assert (reg["mean"], reg["n"], reg["values"]) == ("0.1", "2", "0.1 0.1")
    plot = tmp_path / "report" / "images__lbfgs__toy_test__linear_score.png"
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = open(path).read()
    assert "images__lbfgs__toy_test__linear_score.png" in report and "n = 2 runs per point" in report
    assert "1 transfer runs without results" in report


def test_a_study_without_axes_gets_one_bar_chart_per_transfer(tmp_path, monkeypatch):
    """Islam-style: bars = the rows' means of the first headline metric, error bars = their stds."""
    import matplotlib.axes

    results = [("det", "supcon", "supcon", {}, s, {"bbox/AP50": v, "bbox/AP": v / 2}) for s, v in enumerate([5.0, 6.0, 7.0])]
    results += [("det", "random-init", "random-init", {}, s, {"bbox/AP50": v, "bbox/AP": 1.0}) for s, v in enumerate([2.0, 4.0])]
    fake_study(str(tmp_path), results, axes={})
    bars = []
    real_bar = matplotlib.axes.Axes.bar
    monkeypatch.setattr(matplotlib.axes.Axes, "bar",
                        lambda self, x, height, **kw: bars.append((list(height), list(kw["yerr"]))) or real_bar(self, x, height, **kw))
    path = write_report(str(tmp_path), pictures=False, log=lambda line: None)
    assert bars == [([6.0, 3.0], [1.0, pytest.approx(2 ** 0.5)])]  # supcon first (plan order), then random init
    name = "bars__det__toy_test__bbox_AP50.png"
    assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert name in open(path).read() and "n = 2/3 runs per bar" in open(path).read()


def test_not_a_study_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no plan.json"):
        write_report(str(tmp_path))

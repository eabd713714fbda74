"""The study report from files: hand-computed means, stds, ranks, bold, CI, CSV, plots."""

import csv
import json
import os

import pytest

from contrastive_det.studies.report import aggregate, collect, write_report
from contrastive_det.studies.spec import Run
from contrastive_det.studies.state import mark_done, run_digest


def fake_study(root, results, axes=None, stale=(), episodes=None):
    """plan.json with one transfer run per (transfer, row, method, axes, seed, metrics[, pretrain
    seed]), their results.json and study_run.json (done under their digest, except the ids in
    ``stale``); ``episodes``: {run id: {setting: [accuracy, ...]}} written as the few-shot runs'
    episode files."""
    runs = []
    for transfer, row, method, axes_, seed, metrics, *pseed in results:
        pseed = pseed[0] if pseed else None
        rid = (
            f"transfer/{transfer}/{row}"
            + (f"/pretrain_seed{pseed}" if pseed is not None else "")
            + f"/seed{seed}"
        )
        out = os.path.join(root, rid)
        run = Run(
            rid,
            "transfer",
            ["/repo/tools/train_net.py", "SEED", str(seed)],
            [],
            out,
            [os.path.join(out, "results.json")],
            {
                "method": method,
                "row": row,
                "axes": axes_,
                "seed": seed,
                "pretrain_seed": pseed,
                "transfer": transfer,
            },
        )
        runs.append(
            {
                "id": run.id,
                "kind": run.kind,
                "argv": run.argv,
                "deps": [],
                "out_dir": out,
                "outputs": run.outputs,
                "meta": run.meta,
                "inputs": [],
            }
        )
        if metrics is not None:
            os.makedirs(out)
            with open(os.path.join(out, "results.json"), "w") as f:
                json.dump({"metrics": {"toy_test": metrics}}, f)
            mark_done(run, "0" * 64 if rid in stale else run_digest(run, []), 1.0)
        for setting, accs in (episodes or {}).get(rid, {}).items():
            os.makedirs(os.path.join(out, "few_shot_episodes"), exist_ok=True)
            with open(os.path.join(out, "few_shot_episodes", "toy_test.json"), "w") as f:
                json.dump({"layer": "res5", "seed": seed, "episodes": {setting: accs}}, f)
    with open(os.path.join(root, "plan.json"), "w") as f:
        json.dump(
            {
                "study": "fake",
                "study_file": "fake.yaml",
                "axes": {"images": "DATASETS.PRETRAIN.SUBSET_COUNT"} if axes is None else axes,
                "runs": runs,
            },
            f,
        )


RESULTS = [
    (
        "lbfgs",
        "simclr__images-100",
        "simclr",
        {"images": 100},
        0,
        {"linear/score": 80.0, "linear/reg": 1.0},
    ),
    (
        "lbfgs",
        "simclr__images-100",
        "simclr",
        {"images": 100},
        1,
        {"linear/score": 84.0, "linear/reg": 1.0},
    ),
    (
        "lbfgs",
        "simclr__images-1000",
        "simclr",
        {"images": 1000},
        0,
        {"linear/score": 90.0, "linear/reg": 0.1},
    ),
    (
        "lbfgs",
        "simclr__images-1000",
        "simclr",
        {"images": 1000},
        1,
        {"linear/score": 91.0, "linear/reg": 0.1},
    ),
    ("lbfgs", "random-init", "random-init", {}, 0, {"linear/score": 50.0, "linear/reg": 10.0}),
    ("lbfgs", "random-init", "random-init", {}, 1, None),  # not run
    (
        "fs",
        "simclr__images-100",
        "simclr",
        {"images": 100},
        0,
        {"few_shot/5way_5shot": 70.0, "few_shot/5way_5shot_ci95": 1.0},
    ),
    (
        "fs",
        "simclr__images-100",
        "simclr",
        {"images": 100},
        1,
        {"few_shot/5way_5shot": 72.0, "few_shot/5way_5shot_ci95": 2.0},
    ),
]
# each run's episodes: pooled [68, 72, 70, 74] -> mean 71, population std sqrt(5), CI 1.96 * sqrt(5)
# / 2 = 2.19; the mean of the runs' intervals would be 1.5 (their stored values) or 2.77 (from these
# episodes)
EPISODES = {
    "transfer/fs/simclr__images-100/seed0": {"5way_5shot": [68.0, 72.0]},
    "transfer/fs/simclr__images-100/seed1": {"5way_5shot": [70.0, 74.0]},
}


def test_aggregate_means_and_sample_stds(tmp_path):
    fake_study(str(tmp_path), RESULTS)
    records, plan, missing, stale = collect(str(tmp_path))
    assert missing == ["transfer/lbfgs/random-init/seed1"] and stale == []
    agg = aggregate(records)
    s = agg[("lbfgs", "toy_test")]["simclr__images-100"]["linear/score"]
    # sqrt(8), n-1
    assert s["mean"] == 82.0 and s["n"] == 2 and s["std"] == pytest.approx(2.8284271, abs=1e-6)
    assert s["over"] == "transfer seeds"
    r = agg[("lbfgs", "toy_test")]["random-init"]["linear/score"]
    assert (r["mean"], r["std"], r["n"]) == (50.0, None, 1)  # one run: no spread, not a spread of 0


def test_tables_csv_and_plots(tmp_path):
    fake_study(str(tmp_path), RESULTS, episodes=EPISODES)
    path = write_report(str(tmp_path), log=lambda line: None)
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "| simclr__images-1000 | **90.5 ± 0.7 (2)** [1] |" in tables
    assert "| simclr__images-100 | 82.0 ± 2.8 (2) [2] |" in tables
    assert "| random-init | 50.0 (1) [3] |" in tables and "± 0.0" not in tables
    assert "linear/reg" not in tables  # not a headline metric: CSV only
    assert "**71.0 ± 1.4 (2), CI95 ±2.19 (4 episodes)** [1]" in tables
    # tidy: one line per run and metric
    rows = list(csv.DictReader(open(tmp_path / "report" / "results.csv")))
    assert list(rows[0]) == [
        "study",
        "transfer",
        "dataset",
        "row",
        "method",
        "axis_images",
        "pretrain_seed",
        "transfer_seed",
        "metric",
        "value",
    ]
    reg = [r for r in rows if r["row"] == "simclr__images-1000" and r["metric"] == "linear/reg"]
    assert [(r["transfer_seed"], r["value"], r["axis_images"], r["study"]) for r in reg] == [
        ("0", "0.1", "1000", "fake"),
        ("1", "0.1", "1000", "fake"),
    ]
    assert len(rows) == 2 * 7  # 7 runs with results, 2 metrics each
    summary = list(csv.DictReader(open(tmp_path / "report" / "summary.csv")))
    reg = [r for r in summary if r["row"] == "simclr__images-1000" and r["metric"] == "linear/reg"][
        0
    ]
    assert (reg["mean"], reg["n"], reg["over"], reg["values"]) == (
        "0.1",
        "2",
        "transfer seeds",
        "0.1 0.1",
    )
    plot = tmp_path / "report" / "images__lbfgs__toy_test__linear_score.png"
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = open(path).read()
    assert (
        "images__lbfgs__toy_test__linear_score.png" in report
        and "n = 2 transfer seeds per point" in report
    )
    assert "1 transfer runs without results" in report and "stale" not in report


def test_a_few_shot_row_without_every_runs_episodes_shows_no_interval(tmp_path):
    fake_study(
        str(tmp_path), RESULTS, episodes={k: v for k, v in EPISODES.items() if k.endswith("seed0")}
    )
    write_report(str(tmp_path), pictures=False, log=lambda line: None)
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "**71.0 ± 1.4 (2)** [1]" in tables and "CI95" not in tables


def test_stale_results_are_left_out_and_counted(tmp_path):
    """A results.json whose run record is of another digest (the run was changed or redone since)
    never feeds a table; the report says how many were left out and which."""
    fake_study(str(tmp_path), RESULTS, stale={"transfer/lbfgs/simclr__images-1000/seed1"})
    records, _, _, stale = collect(str(tmp_path))
    assert stale == ["transfer/lbfgs/simclr__images-1000/seed1"]
    path = write_report(str(tmp_path), pictures=False, log=lambda line: None)
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "| simclr__images-1000 | **90.0 (1)** [1] |" in tables  # 91.0 of the stale run left out
    report = open(path).read()
    assert "1 transfer runs' results left out as stale" in report
    assert "transfer/lbfgs/simclr__images-1000/seed1" in report
    rows = list(csv.DictReader(open(tmp_path / "report" / "results.csv")))
    assert "91" not in {r["value"] for r in rows}


def test_nan_metrics_are_na_never_ranked_and_never_crash(tmp_path):
    """detectron2 writes NaN for an AP without objects: the cell says n/a, is never ranked or bold,
    and the report's JSON stays valid JSON."""
    nan = float("nan")
    results = [
        ("det", "supcon", "supcon", {}, 0, {"bbox/AP50": 10.0, "bbox/APs": nan}),
        ("det", "supcon", "supcon", {}, 1, {"bbox/AP50": 12.0, "bbox/APs": nan}),
        ("det", "random-init", "random-init", {}, 0, {"bbox/AP50": nan, "bbox/APs": nan}),
        ("det", "random-init", "random-init", {}, 1, {"bbox/AP50": 30.0, "bbox/APs": nan}),
    ]
    fake_study(str(tmp_path), results, axes={})
    write_report(str(tmp_path), pictures=False, log=lambda line: None)
    tables = (tmp_path / "report" / "tables.md").read_text()
    # random init's 30.0 of one seed does not win
    assert "| supcon | **11.0 ± 1.4 (2)** [1] |" in tables
    assert "| random-init | n/a |" in tables
    with open(tmp_path / "report" / "results.json") as f:
        text = f.read()
    assert (
        "NaN" not in text
        and json.loads(text)["det|toy_test"]["random-init"]["bbox/AP50"]["mean"] is None
    )
    summary = list(csv.DictReader(open(tmp_path / "report" / "summary.csv")))
    assert [
        r["mean"] for r in summary if r["row"] == "random-init" and r["metric"] == "bbox/AP50"
    ] == ["n/a"]


def test_rows_that_print_the_same_number_share_their_rank(tmp_path):
    """Ranks follow the printed values (detection_toy's AP75: 0.32, 0.0 and 0.017 print 0.3, 0.0,
    0.0): the two 0.0 rows are both 2nd, not 2nd and 3rd by digits the table hides; the best two
    rows tie for bold when they print alike."""
    results = [
        ("det", "simclr", "simclr", {}, 0, {"bbox/AP75": 0.3207, "bbox/AP50": 1.94}),
        ("det", "supcon", "supcon", {}, 0, {"bbox/AP75": 0.0, "bbox/AP50": 1.86}),
        ("det", "random-init", "random-init", {}, 0, {"bbox/AP75": 0.0172, "bbox/AP50": 0.39}),
    ]
    fake_study(str(tmp_path), results, axes={})
    write_report(str(tmp_path), pictures=False, log=lambda line: None)
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "| simclr | **1.9 (1)** [1] | **0.3 (1)** [1] |" in tables
    assert "| supcon | **1.9 (1)** [1] | 0.0 (1) [2] |" in tables
    assert "| random-init | 0.4 (1) [3] | 0.0 (1) [2] |" in tables


def test_pretraining_and_transfer_seeds_are_not_pooled(tmp_path):
    """Two pretraining seeds x two transfer seeds: the spread is over the pretraining seeds (each
    the mean of its transfer seeds), n = 2, marked; pooling the four values would give std 5.9 (n =
    4)."""
    results = [
        ("lin", "simclr", "simclr", {}, t, {"linear/score": v}, p)
        for p, t, v in [(0, 0, 10.0), (0, 1, 12.0), (1, 0, 20.0), (1, 1, 22.0)]
    ]
    fake_study(str(tmp_path), results, axes={})
    records, *_ = collect(str(tmp_path))
    s = aggregate(records)[("lin", "toy_test")]["simclr"]["linear/score"]
    assert (s["mean"], s["n"], s["over"], s["values"]) == (
        16.0,
        2,
        "pretraining seeds",
        [11.0, 21.0],
    )
    assert s["std"] == pytest.approx(50**0.5)
    write_report(str(tmp_path), pictures=False, log=lambda line: None)
    assert "**16.0 ± 7.1 (2†)** [1]" in (tmp_path / "report" / "tables.md").read_text()


def test_axis_plots_draw_the_baselines(tmp_path, monkeypatch):
    """A one-at-a-time sweep's baseline (the method's run without the axis: the clean images) and
    random init are dashed lines on the axis plot; the y axis names its unit and the title n."""
    import matplotlib.axes

    results = [
        ("lin", f"simclr__jpeg-{q}", "simclr", {"jpeg": q}, 0, {"linear/score": v})
        for q, v in [(10, 40.0), (50, 60.0)]
    ]
    results += [
        ("lin", "simclr", "simclr", {}, 0, {"linear/score": 70.0}),
        ("lin", "random-init", "random-init", {}, 0, {"linear/score": 20.0}),
    ]
    fake_study(str(tmp_path), results, axes={"jpeg": "DATASETS.PRETRAIN.CORRUPTION"})
    lines, labels = [], []
    real_axhline, real_ylabel = matplotlib.axes.Axes.axhline, matplotlib.axes.Axes.set_ylabel
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "axhline",
        lambda self, y, **kw: lines.append((y, kw.get("label"))) or real_axhline(self, y, **kw),
    )
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_ylabel",
        lambda self, text, **kw: labels.append(text) or real_ylabel(self, text, **kw),
    )
    path = write_report(str(tmp_path), pictures=False, log=lambda line: None)
    assert lines == [(70.0, "simclr (baseline)"), (20.0, "random init")]
    assert labels == ["linear/score (%)"]
    assert "dashed: simclr (baseline), random init" in open(path).read()


def test_a_study_without_axes_gets_one_bar_chart_per_transfer(tmp_path, monkeypatch):
    """Islam-style: bars = the rows' means of the first headline metric, error bars = their stds."""
    import matplotlib.axes

    results = [
        ("det", "supcon", "supcon", {}, s, {"bbox/AP50": v, "bbox/AP": v / 2})
        for s, v in enumerate([5.0, 6.0, 7.0])
    ]
    results += [
        ("det", "random-init", "random-init", {}, s, {"bbox/AP50": v, "bbox/AP": 1.0})
        for s, v in enumerate([2.0, 4.0])
    ]
    fake_study(str(tmp_path), results, axes={})
    bars = []
    real_bar = matplotlib.axes.Axes.bar
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "bar",
        lambda self, x, height, **kw: (
            bars.append((list(height), list(kw["yerr"]))) or real_bar(self, x, height, **kw)
        ),
    )
    path = write_report(str(tmp_path), pictures=False, log=lambda line: None)
    assert bars == [
        ([6.0, 3.0], [1.0, pytest.approx(2**0.5)])
    ]  # supcon first (plan order), then random init
    name = "bars__det__toy_test__bbox_AP50.png"
    assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        name in open(path).read()
        and "n = 2 transfer seeds, 3 transfer seeds per bar" in open(path).read()
    )


def test_not_a_study_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no plan.json"):
        write_report(str(tmp_path))


def test_islam_table_per_protocol_with_mean_over_sets_and_mean_rank(tmp_path):
    """One table per protocol: rows = pretraining, columns = the test sets, mean over sets and mean
    rank, by hand. supcon 80/60/40 (ranks 1, 2, 1), simclr 70/65/30 (2, 1, 2), random-init
    10/20/n/a."""
    values = {
        "supcon": [80.0, 60.0, 40.0],
        "simclr": [70.0, 65.0, 30.0],
        "random-init": [10.0, 20.0, float("nan")],
    }
    results = [
        (f"linear_{s}", row, row, {}, 0, {"linear/score": vals[i]})
        for row, vals in values.items()
        for i, s in enumerate(("a", "b", "c"))
    ]
    results += [
        ("det", row, row, {}, 0, {"bbox/AP50": 1.0}) for row in values
    ]  # one set: no protocol table
    fake_study(str(tmp_path), results, axes={})
    for run in json.load(open(tmp_path / "plan.json"))[
        "runs"
    ]:  # results.json as classification writes it
        path = os.path.join(run["out_dir"], "results.json")
        res = json.load(open(path))
        res["metrics"] = {
            f"set_{run['meta']['transfer'][-1]}"
            if run["meta"]["transfer"] != "det"
            else "voc": res["metrics"]["toy_test"]
        }
        res["protocol"] = "linear_lbfgs" if run["meta"]["transfer"] != "det" else None
        json.dump(res, open(path, "w"))
    write_report(str(tmp_path), pictures=False, log=lambda line: None)
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "#### linear_lbfgs: linear/score per test set" in tables
    assert "| pretraining | set_a | set_b | set_c | mean over sets | mean rank |" in tables
    assert "| supcon | **80.0** | 60.0 | **40.0** | **60.0** | **1.33** |" in tables
    assert "| simclr | 70.0 | **65.0** | 30.0 | 55.0 | 1.67 |" in tables
    assert "| random-init | 10.0 | 20.0 | n/a | n/a | n/a |" in tables
    assert "bbox/AP50 per test set" not in tables
    # first, before the details
    assert tables.index("per test set") < tables.index("#### linear_a on set_a")


def test_a_title_wider_than_its_figure_is_wrapped_to_fit(tmp_path):
    """A two-bar chart is 3 inches wide: its one-line title ran off the picture."""
    from contrastive_det.studies.report import _finish, pyplot

    fig, ax = pyplot().subplots(figsize=(3.0, 3.2))
    ax.bar([0, 1], [1.0, 2.0])
    title = "detection on toy_digits_test; n = 3 transfer seeds"
    _finish(fig, ax, "", "AP50", title, str(tmp_path), "two_bars", legend=False)
    assert ax.title.get_text().replace("\n", " ") == title and "\n" in ax.title.get_text()
    fig.canvas.draw()
    box = ax.title.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width

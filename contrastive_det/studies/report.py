"""
A study's report from its files: ``plan.json`` (what each run is) and every transfer run's
``results.json``. Writes into ``<study>/report/``:

* ``results.csv``: tidy, one line per (run, test set, metric): study, transfer, dataset, row,
  method, one column per study axis, pretraining seed, transfer seed, metric, value.
* ``summary.csv``: one line per (transfer, dataset, row, metric): mean, sample std, n, what n
  counts (transfer seeds, or pretraining seeds when a row has several: each then the mean of its
  transfer seeds, never pooled into one n), the values.
* ``tables.md``: first Islam et al.'s table per protocol and metric (rows = pretraining, columns =
  the test sets, then the mean over sets and the mean rank); then per transfer and test set:
  pretraining row x transfer metric, mean ± std (n), the rank in
  each column (1 = best) and the best in bold; few-shot with the 95% interval of all the row's
  episodes (pooled over its runs, from each run's ``few_shot_episodes/``); layer-wise probes per
  layer; detection AP50 / AP / AP75; segmentation mIoU / mACC. A NaN metric (detectron2's for a
  class without objects) is "n/a", never ranked; one run shows no "± 0.0".

Only runs done under their current digest count: a ``results.json`` whose run was redone, changed
(config, dependency) or never finished under this plan is left out and counted in a footnote.
* PNG plots (matplotlib): each metric against each study axis (Cole et al.: e.g. pretraining
  images, log axis when the values span a decade or more) per method, with seed error bars and the
  baselines as dashed lines (a method's own run without the axis, e.g. the clean images of a
  corruption sweep; random init); the layer-wise probe curves. Units on the axes, n in the title and
  caption.
* pictures (:mod:`.pictures`): a 2-D UMAP of each backbone's pooled test features coloured by
  class, per classification transfer; predicted and ground-truth boxes (detectron2's Visualizer) of
  a few test images per detection transfer and row; predicted and ground-truth label maps
  (:mod:`.seg_pictures`) per segmentation transfer and row.
* ``claims.csv`` and a claims table (:mod:`.claims`): each claim of the study file with the measured
  difference, its 95% interval, the test and the verdict.
* ``report.md``: the tables, plots and pictures, readable on GitHub.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import re
import statistics
import textwrap
import warnings
from collections import OrderedDict, defaultdict
from typing import Any, Callable

from ..engine.results import RESULTS_FILE, read_results, summarize_values
from ..engine.task import headline_patterns
from ..evaluation.few_shot import FEW_SHOT_EPISODES_DIR, mean_ci95
from ..utils.atomic import atomic_open, atomic_write_json
from .claims import check_claims
from .figures import pyplot, safe_name, save_png
from .pictures import detection_pictures, embedding_pictures
from .seg_pictures import segmentation_pictures
from .spec import Run
from .state import PLAN_FILE, is_done, plan_digests

__all__ = ["collect", "aggregate", "summarize", "write_report"]

LOWER_IS_BETTER = ()  # every headline metric: higher is better


def _headline_rank(metric):
    """The table column order: the tasks' ``headline_metrics`` (engine.task.headline_patterns);
    other metrics (None) go to results.csv only."""
    for i, p in enumerate(headline_patterns()):
        if re.fullmatch(p, metric):
            return i
    return None


def _plan_runs(plan):
    return [
        Run(
            r["id"],
            r["kind"],
            r["argv"],
            r["deps"],
            r["out_dir"],
            r["outputs"],
            r.get("meta", {}),
            r.get("inputs", []),
        )
        for r in plan["runs"]
    ]


def collect(study_dir: str) -> tuple[list[dict], dict, list[str], list[str]]:
    """
    ``(records, plan, missing, stale)``: a record ``{row, method, axes, seed, pretrain_seed,
    transfer, task, dataset, run, out_dir, metrics: {name: value}}`` per test set of every transfer
    run done under its current digest (its command, config and dependencies now: see :mod:`.state`);
    ``missing``: the transfer runs without results; ``stale``: those whose ``results.json`` is not
    of their current digest.
    """
    path = os.path.join(study_dir, PLAN_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{study_dir}: no {PLAN_FILE}; is this a study folder (tools/run_study.py writes it)?"
        )
    with open(path) as f:
        plan = json.load(f)
    runs = _plan_runs(plan)
    digests = plan_digests(runs)
    records, missing, stale = [], [], []
    for run in runs:
        if run.kind != "transfer":
            continue
        if not os.path.isfile(os.path.join(run.out_dir, RESULTS_FILE)):
            missing.append(run.id)
            continue
        if digests[run.id] is None or not is_done(run, digests[run.id]):
            stale.append(run.id)
            continue
        res = read_results(run.out_dir)
        protocol = (
            res.get("protocol")
            or res.get("task")
            or run.meta.get("task")
            or run.meta.get("transfer")
        )
        for dataset, metrics in res.get("metrics", {}).items():
            records.append(
                {
                    **run.meta,
                    "dataset": dataset,
                    "run": run.id,
                    "out_dir": run.out_dir,
                    "protocol": protocol,
                    "metrics": {
                        k: float(v)
                        for k, v in metrics.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)
                    },
                }
            )
    return records, plan, missing, stale


def summarize(points: list[tuple]) -> dict:
    """
    Stats of one metric of one row: ``points`` = [(pretraining seed or None, transfer seed, value)].
    With several pretraining seeds, each pretraining seed's transfer seeds are averaged first and
    the spread is over pretraining seeds (``over``); otherwise over transfer seeds. A NaN value
    anywhere makes the whole cell n/a (``mean`` None). ``std`` is None for one value (no spread to
    show).
    """
    values = [v for _, _, v in points]
    pretrain_seeds = {p for p, _, _ in points}
    over = "pretraining seeds" if len(pretrain_seeds) > 1 else "transfer seeds"
    if not all(math.isfinite(v) for v in values):
        return {"mean": None, "std": None, "n": len(values), "values": values, "over": over}
    if len(pretrain_seeds) > 1:
        by_seed = defaultdict(list)
        for p, _, v in points:
            by_seed[p].append(v)
        values = [summarize_values(by_seed[p])["mean"] for p in sorted(by_seed, key=str)]
    return {**summarize_values(values), "over": over}


def _pooled_episode_ci(records):
    """{(transfer, dataset, row, "<setting>_ci95"): stats} from the episodes of every run of the row
    (``few_shot_episodes/<dataset>.json``); a row with a run that kept none gets no interval."""
    pooled, broken = defaultdict(list), set()
    for r in records:
        settings = [
            m[:-5] for m in r["metrics"] if m.startswith("few_shot/") and m.endswith("_ci95")
        ]
        if not settings:
            continue
        path = os.path.join(r["out_dir"], FEW_SHOT_EPISODES_DIR, f"{r['dataset']}.json")
        try:
            with open(path) as f:
                episodes = json.load(f)["episodes"]
        except (OSError, ValueError, KeyError):
            episodes = {}
        for m in settings:
            key = (r["transfer"], r["dataset"], r["row"], m + "_ci95")
            accs = episodes.get(m.split("/", 1)[1])
            if accs:
                pooled[key].extend(accs)
            else:
                broken.add(key)
    out = {}
    for key, accs in pooled.items():
        if key not in broken:
            _, ci = mean_ci95(accs)
            out[key] = {"mean": ci, "std": None, "n": len(accs), "values": [], "over": "episodes"}
    return out


def aggregate(records: list[dict]) -> dict:
    """{(transfer, dataset): {row: {metric: stats}}} (see :func:`summarize`); a few-shot setting's
    ``_ci95`` is the interval of the row's pooled episodes, not a mean of the runs' intervals."""
    groups = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        for metric, value in r["metrics"].items():
            groups[(r["transfer"], r["dataset"])][r["row"]][metric].append(
                (r.get("pretrain_seed"), r["seed"], value)
            )
    agg = {
        key: {row: {m: summarize(v) for m, v in metrics.items()} for row, metrics in rows.items()}
        for key, rows in groups.items()
    }
    episode_ci = _pooled_episode_ci(records)
    for (transfer, dataset), rows in agg.items():
        for row, metrics in rows.items():
            for m in [m for m in metrics if m.startswith("few_shot/") and m.endswith("_ci95")]:
                ci = episode_ci.get((transfer, dataset, row, m))
                if ci is None:
                    del metrics[m]
                else:
                    metrics[m] = ci
    return agg


def _row_order(plan):
    rows = OrderedDict()
    for run in plan["runs"]:
        if run["kind"] == "transfer":
            rows.setdefault(run["meta"]["row"], run["meta"])
    return rows


NA = "n/a"


def _fmt(stats, digits=1):
    if stats["mean"] is None:
        return NA
    mark = "†" if stats["over"] == "pretraining seeds" else ""
    if stats["std"] is None:
        return f"{stats['mean']:.{digits}f} ({stats['n']}{mark})"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f} ({stats['n']}{mark})"


def _rank(value, values, digits=1):
    """Competition rank (1 = best) of ``value`` among ``values`` as the table prints them (rounded
    to ``digits``): rows that print the same number share a rank, as in a paper's table."""
    shown = round(value, digits)
    return 1 + sum(1 for v in values if round(v, digits) > shown)


def _headline_metrics(rows):
    """The headline metrics present in ``rows`` ({row: {metric: stats}}), in headline order (no CI
    columns)."""
    return sorted(
        {
            m
            for r in rows.values()
            for m in r
            if _headline_rank(m) is not None and not m.endswith("_ci95")
        },
        key=lambda m: (_headline_rank(m), m),
    )


TABLE_NOTE = (
    "mean ± sample std over transfer seeds (n runs; † n pretraining seeds, each the mean of its "
    "transfer seeds); one run shows its value alone; [rank] in the column, 1 = best, best in bold, "
    "rows that print the same value share a rank; n/a: NaN in a run (e.g. a class or area range "
    "without objects), never ranked."
)


def _table(transfer, dataset, rows, order):
    """Markdown: rows x headline metrics, rank per column, best bold."""
    metrics = _headline_metrics(rows)
    if not metrics:
        return None
    names = [row for row in order if row in rows]
    ranks = {}
    for m in metrics:
        have = sorted(
            (rows[r][m]["mean"] for r in names if m in rows[r] and rows[r][m]["mean"] is not None),
            reverse=True,
        )
        for r in names:
            if m in rows[r] and rows[r][m]["mean"] is not None:
                ranks[(r, m)] = _rank(rows[r][m]["mean"], have)
    lines = [
        f"#### {transfer} on {dataset}",
        "",
        "| pretraining | " + " | ".join(f"{m} (n) [rank]" for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for r in names:
        cells = []
        for m in metrics:
            if m not in rows[r]:
                cells.append("-")
                continue
            text = _fmt(rows[r][m])
            if (r, m) not in ranks:
                cells.append(text)
                continue
            ci = rows[r].get(m + "_ci95")
            if ci is not None:
                text += f", CI95 ±{ci['mean']:.2f} ({ci['n']} episodes)"
            if ranks[(r, m)] == 1:
                text = f"**{text}**"
            cells.append(f"{text} [{ranks[(r, m)]}]")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines += ["", TABLE_NOTE]
    return "\n".join(lines)


def protocol_tables(agg: dict, records: list[dict], order: list[str]) -> list[str]:
    """
    Islam et al.'s tables: per protocol (classification's CLASSIFICATION.PROTOCOL, else the task)
    and headline metric, rows = pretraining rows, columns = the test sets of the protocol's
    transfers, then the mean over the sets and the mean rank (1 = best in a column); only protocols
    with two sets or more. A row without a finite value in every column has no mean and no mean rank
    (n/a).
    """
    protocol_of = {(r["transfer"], r["dataset"]): r["protocol"] for r in records}
    groups = defaultdict(lambda: defaultdict(dict))  # (protocol, metric) -> column -> {row: stats}
    columns = defaultdict(list)  # (protocol, metric) -> [(transfer, dataset)]
    for (transfer, dataset), rows in sorted(agg.items()):
        for m in _headline_metrics(rows):
            key = (protocol_of[(transfer, dataset)], m)
            columns[key].append((transfer, dataset))
            for row, metrics in rows.items():
                if m in metrics:
                    groups[key][(transfer, dataset)][row] = metrics[m]
    out = []
    for key in sorted(columns, key=lambda k: (k[0], _headline_rank(k[1]), k[1])):
        cols = columns[key]
        if len(cols) < 2:
            continue
        datasets = [d for _, d in cols]
        labels = [d if datasets.count(d) == 1 else f"{t}/{d}" for t, d in cols]
        names = [r for r in order if any(r in groups[key][c] for c in cols)]
        ranks = defaultdict(dict)
        for c in cols:
            have = [groups[key][c][r]["mean"] for r in names if _finite(groups[key][c].get(r))]
            for r in names:
                st = groups[key][c].get(r)
                if _finite(st):
                    ranks[r][c] = _rank(st["mean"], have)
        protocol, metric = key
        lines = [
            f"#### {protocol}: {metric} per test set",
            "",
            "| pretraining | " + " | ".join(labels) + " | mean over sets | mean rank |",
            "|---|" + "---|" * (len(cols) + 2),
        ]
        means = {
            r: statistics.fmean(groups[key][c][r]["mean"] for c in cols)
            for r in names
            if len(ranks[r]) == len(cols)
        }
        mean_ranks = {r: statistics.fmean(ranks[r].values()) for r in means}
        best_mean = max(means.values(), default=None)
        best_rank = min(mean_ranks.values(), default=None)
        for r in names:
            cells = []
            for c in cols:
                st = groups[key][c].get(r)
                if st is None:
                    cells.append("-")
                elif not _finite(st):
                    cells.append(NA)
                else:
                    text = f"{st['mean']:.1f}"
                    cells.append(f"**{text}**" if ranks[r][c] == 1 else text)
            if r in means:
                mean_text, rank_text = f"{means[r]:.1f}", f"{mean_ranks[r]:.2f}"
                mean_text = f"**{mean_text}**" if means[r] == best_mean else mean_text
                rank_text = f"**{rank_text}**" if mean_ranks[r] == best_rank else rank_text
            else:
                mean_text = rank_text = NA
            lines.append(f"| {r} | " + " | ".join(cells) + f" | {mean_text} | {rank_text} |")
        lines += [
            "",
            f"{metric}: mean over seeds per test set (spread and n in the per-transfer tables "
            f"below); best of "
            "each column in bold; mean rank over the sets, 1 = best; n/a: not measured or NaN in "
            "some set.",
        ]
        out.append("\n".join(lines))
    return out


def _finite(stats):
    return stats is not None and stats["mean"] is not None


def _err(stats):
    return stats["std"] or 0.0


def _n_text(stats_list):
    ns = sorted({(s["n"], s["over"]) for s in stats_list})
    return ", ".join(f"{n} {over}" for n, over in ns) or "none"


def _ylabel(metric):
    return f"{metric} (%)"  # every headline metric is a percentage (accuracy, AP, IoU)


def _axis_plots(agg, plan, out_dir):
    """Metric vs each study axis, one line per method, its baselines dashed; returns [(file,
    caption)]."""
    plt = pyplot()

    order = _row_order(plan)
    axes = plan.get("axes", {})
    made = []
    for axis, key in axes.items():
        for (transfer, dataset), rows in sorted(agg.items()):
            metrics = _headline_metrics(rows)
            for m in metrics:
                lines = defaultdict(list)  # method -> [(x, stats)]
                # label -> stats: a method's run without any axis, random init
                baselines = OrderedDict()
                for row, meta in order.items():
                    stats = rows.get(row, {}).get(m)
                    if not _finite(stats):
                        continue
                    if axis in meta.get("axes", {}):
                        lines[meta["method"]].append((meta["axes"][axis], stats))
                    elif not meta.get("axes"):
                        baselines[row] = stats
                baselines = OrderedDict(
                    (
                        "random init"
                        if row == "random-init"
                        else f"{row} (baseline)"
                        if row in lines
                        else row,
                        st,
                    )
                    for row, st in baselines.items()
                )
                if not lines:
                    continue
                xs_all = [x for pts in lines.values() for x, _ in pts]
                numeric = all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_all
                )
                fig, ax = plt.subplots(figsize=(5, 3.5))
                shown = []
                for i, (method, pts) in enumerate(lines.items()):
                    pts = sorted(pts, key=lambda p: p[0]) if numeric else pts
                    xs = [p[0] for p in pts] if numeric else list(range(len(pts)))
                    ax.errorbar(
                        xs,
                        [p[1]["mean"] for p in pts],
                        yerr=[_err(p[1]) for p in pts],
                        marker="o",
                        capsize=3,
                        label=method,
                        color=f"C{i}",
                    )
                    shown += [p[1] for p in pts]
                    if not numeric:
                        ax.set_xticks(xs, [str(p[0]) for p in pts])
                methods = list(lines)
                others = 0
                for label, stats in baselines.items():
                    owner = label[: -len(" (baseline)")] if label.endswith(" (baseline)") else None
                    if owner in methods:
                        colour = f"C{methods.index(owner)}"
                    elif label == "random init":
                        colour = "0.5"
                    else:
                        # another method's row (e.g. MoCo v2 beside SCAN's k sweep): a colour of
                        # its own
                        colour, others = f"C{len(methods) + others}", others + 1
                    ax.axhline(
                        stats["mean"], linestyle="--", linewidth=1, color=colour, label=label
                    )
                    shown.append(stats)
                positive = [x for x in xs_all if numeric and x > 0]
                if (
                    numeric
                    and positive
                    and len(positive) == len(xs_all)
                    and max(positive) / min(positive) >= 10
                ):
                    ax.set_xscale("log")
                n_text = _n_text(shown)
                name = _finish(
                    fig,
                    ax,
                    f"{axis} ({key})",
                    _ylabel(m),
                    f"{transfer} on {dataset}; n = {n_text}",
                    out_dir,
                    f"{axis}__{transfer}__{dataset}__{m}",
                )
                made.append(
                    (
                        name,
                        f"{m} (%) of {transfer} on {dataset} against {axis} ({key}), per method; "
                        f"mean ± std, n = {n_text} per point"
                        + (f"; dashed: {', '.join(baselines)}" if baselines else "")
                        + ".",
                    )
                )
    return made


def _method_bars(agg, plan, out_dir):
    """Studies without axes (Islam-style): per transfer and dataset, its first headline metric as
    one bar per row (mean, error bar = std over seeds, each seed's value as a dot); returns [(file,
    caption)]."""
    if plan.get("axes"):
        return []
    plt = pyplot()
    order = list(_row_order(plan))
    made = []
    for (transfer, dataset), rows in sorted(agg.items()):
        metrics = _headline_metrics(rows)
        if not metrics:
            continue
        m = metrics[0]
        names = [r for r in order if r in rows and _finite(rows[r].get(m))]
        if not names:
            continue
        stats = [rows[r][m] for r in names]
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 3.2))
        ax.bar(
            range(len(names)),
            [s["mean"] for s in stats],
            yerr=[_err(s) for s in stats],
            capsize=4,
            color=["0.6" if r == "random-init" else "C0" for r in names],
            alpha=0.8,
        )
        for i, s in enumerate(stats):
            ax.plot([i] * len(s["values"]), s["values"], "k.", markersize=4)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        n_text = _n_text(stats)
        name = _finish(
            fig,
            ax,
            "",
            _ylabel(m),
            f"{transfer} on {dataset}; n = {n_text}",
            out_dir,
            f"bars__{transfer}__{dataset}__{m}",
            legend=False,
            grid="y",
        )
        made.append(
            (
                name,
                f"{m} (%) of {transfer} on {dataset} per pretraining (random init in grey): bar = "
                f"mean, error bar = std, dots = the values; n = {n_text} per bar.",
            )
        )
    return made


def _layer_plots(agg, plan, out_dir):
    plt = pyplot()

    made = []
    order = _row_order(plan)
    for (transfer, dataset), rows in sorted(agg.items()):
        layers = sorted(
            {
                m.split("/")[1]
                for r in rows.values()
                for m in r
                if re.fullmatch(r"layerwise/res\d/score", m)
            }
        )
        if not layers:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        shown = []
        for row in order:
            if row not in rows:
                continue
            pts = [rows[row].get(f"layerwise/{layer}/score") for layer in layers]
            if not all(_finite(p) for p in pts):
                continue
            ax.errorbar(
                range(len(layers)),
                [p["mean"] for p in pts],
                yerr=[_err(p) for p in pts],
                marker="o",
                capsize=3,
                label=row,
            )
            shown += pts
        ax.set_xticks(range(len(layers)), layers)
        n_text = _n_text(shown)
        name = _finish(
            fig,
            ax,
            "layer",
            "L-BFGS probe score (%)",
            f"{transfer} on {dataset}; n = {n_text}",
            out_dir,
            f"layers__{transfer}__{dataset}",
        )
        made.append(
            (
                name,
                f"Layer-wise L-BFGS probes of {transfer} on {dataset}: score (%) per layer and "
                f"pretraining; mean ± std, n = {n_text} per point.",
            )
        )
    return made


def _finish(fig, ax, xlabel, ylabel, title, out_dir, stem, legend=True, grid="both"):
    """Labels, legend (unless ``legend=False``) and grid lines (``grid``: "both", "x" or "y"); saves
    ``<out_dir>/<stem>.png`` (stem made file-safe); returns its name."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    # wrapped to the figure's width (about 12 characters per inch at 9 pt): a narrow bar chart of
    # two rows would cut a one-line title off
    ax.set_title(textwrap.fill(title, width=max(24, int(fig.get_figwidth() * 12))), fontsize=9)
    if legend:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis=grid)
    fig.tight_layout()
    name = safe_name(stem) + ".png"
    save_png(fig, os.path.join(out_dir, name))
    pyplot().close(fig)
    return name


@contextlib.contextmanager
def _quiet_model_loading():
    """The pictures rebuild each run's model in this process: keep the checkpoint loaders' notes (a
    classification head not in a backbone file, ...) and library warnings off the study's
    console."""
    names = (
        "fvcore.common.checkpoint",
        "d2.checkpoint",
        "detectron2",
        "d2",
        "torch.fx._symbolic_trace",
    )
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _tidy_csv(records, plan):
    axes = list(plan.get("axes", {}))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "study",
            "transfer",
            "dataset",
            "row",
            "method",
            *[f"axis_{a}" for a in axes],
            "pretrain_seed",
            "transfer_seed",
            "metric",
            "value",
        ]
    )
    for r in records:
        for m, v in sorted(r["metrics"].items()):
            pseed = r.get("pretrain_seed")
            writer.writerow(
                [
                    plan["study"],
                    r["transfer"],
                    r["dataset"],
                    r["row"],
                    r["method"],
                    *[r.get("axes", {}).get(a, "") for a in axes],
                    "" if pseed is None else pseed,
                    r["seed"],
                    m,
                    f"{v:.6g}",
                ]
            )
    return buf.getvalue()


def _summary_csv(agg, order):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["transfer", "dataset", "row", "metric", "mean", "std", "n", "over", "values"])
    for (transfer, dataset), rows in sorted(agg.items()):
        for row in [r for r in order if r in rows]:
            for m, s in sorted(rows[row].items()):
                writer.writerow(
                    [
                        transfer,
                        dataset,
                        row,
                        m,
                        NA if s["mean"] is None else f"{s['mean']:.6g}",
                        "" if s["std"] is None else f"{s['std']:.6g}",
                        s["n"],
                        s["over"],
                        " ".join(f"{v:.6g}" for v in s["values"]),
                    ]
                )
    return buf.getvalue()


def _json_safe(agg):
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return {
        f"{t}|{d}": {
            row: {
                m: {
                    k: ([clean(x) for x in v] if isinstance(v, list) else clean(v))
                    for k, v in st.items()
                }
                for m, st in metrics.items()
            }
            for row, metrics in rows.items()
        }
        for (t, d), rows in agg.items()
    }


def _fmt_signed(value, digits=2):
    return NA if value is None else f"{value:+.{digits}f}"


def _claims_table(results):
    """Markdown: each claim's measured difference, 95% interval, test and verdict."""
    if not results:
        return None
    lines = [
        "#### Claims",
        "",
        "| claim | transfer | test set | difference | 95% interval | test | n | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in results:
        interval = NA
        if c["ci95"] is not None and c["difference"] is not None:
            interval = f"[{c['difference'] - c['ci95']:+.2f}, {c['difference'] + c['ci95']:+.2f}]"
        verdict = (
            f"**{c['verdict']}**" if c["verdict"] in ("supported", "contradicted") else c["verdict"]
        )
        lines.append(
            f"| {c['claim']} | {c['transfer']} | {c['dataset']} | {_fmt_signed(c['difference'])} | "
            f"{interval} | {c['test']} | {c['n']} | {verdict} |"
        )
    lines += [
        "",
        "difference = better - than, in the metric's points; supported: the whole 95% interval "
        "above 0, contradicted: below 0; measured on this study's runs, whatever the seed paper "
        "found.",
    ]
    return "\n".join(lines)


def write_report(study_dir: str, pictures: bool = True, log: Callable[[str], Any] = print) -> str:
    """Write ``<study_dir>/report/`` (see the module docstring); returns the path of report.md.
    ``pictures``: also the UMAP embeddings and detection pictures (:mod:`.pictures`; they rebuild
    the runs' models, so they take minutes where the tables take seconds)."""
    records, plan, missing, stale = collect(study_dir)
    out_dir = os.path.join(study_dir, "report")
    os.makedirs(out_dir, exist_ok=True)
    agg = aggregate(records)
    order = list(_row_order(plan))

    with atomic_open(os.path.join(out_dir, "results.csv")) as f:
        f.write(_tidy_csv(records, plan))
    with atomic_open(os.path.join(out_dir, "summary.csv")) as f:
        f.write(_summary_csv(agg, order))
    atomic_write_json(os.path.join(out_dir, RESULTS_FILE), _json_safe(agg))

    tables = protocol_tables(agg, records, order)
    tables += [t for (tr, ds), rows in sorted(agg.items()) if (t := _table(tr, ds, rows, order))]
    claims = check_claims(plan.get("claims") or [], records)
    claims_md = _claims_table(claims)
    if claims_md:
        tables.append(claims_md)
        with atomic_open(os.path.join(out_dir, "claims.csv")) as f:
            writer = csv.writer(f)
            writer.writerow(
                ["claim", "transfer", "dataset", "difference", "ci95", "test", "n", "verdict"]
            )
            for c in claims:
                writer.writerow(
                    [
                        c["claim"],
                        c["transfer"],
                        c["dataset"],
                        "" if c["difference"] is None else f"{c['difference']:.6g}",
                        "" if c["ci95"] is None else f"{c['ci95']:.6g}",
                        c["test"],
                        c["n"],
                        c["verdict"],
                    ]
                )
    with atomic_open(os.path.join(out_dir, "tables.md")) as f:
        f.write("\n\n".join(tables) + "\n")
    plots = (
        _axis_plots(agg, plan, out_dir)
        + _method_bars(agg, plan, out_dir)
        + _layer_plots(agg, plan, out_dir)
    )
    shown = []
    if pictures:
        current = {
            r["run"] for r in records
        }  # pictures only of runs whose numbers are in the tables
        pictured = dict(
            plan, runs=[r for r in plan["runs"] if r["kind"] != "transfer" or r["id"] in current]
        )
        with _quiet_model_loading():
            shown = (
                embedding_pictures(study_dir, pictured, out_dir, log=log)
                + detection_pictures(study_dir, pictured, out_dir, log=log)
                + segmentation_pictures(study_dir, pictured, out_dir, log=log)
            )

    lines = [
        f"# Study {plan['study']}",
        "",
        f"Study file: `{plan['study_file']}`; {len(records)} results from "
        f"{len({r['run'] for r in records})} transfer runs"
        + (f"; {len(missing)} transfer runs without results (not run or failed)" if missing else "")
        + (f"; {len(stale)} transfer runs' results left out as stale[^stale]" if stale else "")
        + ".",
        "",
    ]
    lines += ["## Tables", ""] + (tables or ["(no results yet)"]) + [""]
    for title, items in (("Plots", plots), ("Pictures", shown)):
        if items:
            lines += [f"## {title}", ""]
            for name, caption in items:
                lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    lines += [
        "Per-run values: [results.csv](results.csv); per-row summaries: [summary.csv](summary.csv)."
    ]
    if stale:
        lines += [
            "",
            f"[^stale]: not done under their current digest (the config, an upstream run or the "
            f"checkpoint changed since, or the run was started again and has not finished): "
            f"{', '.join(stale[:10])}"
            + (f" and {len(stale) - 10} more" if len(stale) > 10 else "")
            + ". `tools/run_study.py` redoes them.",
        ]
    path = os.path.join(out_dir, "report.md")
    with atomic_open(path) as f:
        f.write("\n".join(lines) + "\n")
    log(
        f"report: {len(tables)} tables, {len(plots)} plots, {len(shown)} pictures in {out_dir}"
        + (f"; {len(stale)} stale results left out" if stale else "")
    )
    return path

"""
A study's report from its files: ``plan.json`` (what each run is) and every transfer run's
``results.json``. Writes into ``<study>/report/``:

* ``results.csv``: one line per (row, transfer, metric): mean, sample std, n, the per-seed values.
* ``tables.md``: Islam-style tables: pretraining row x transfer metric, mean ± std (n), the rank in
  each column (1 = best) and the best in bold; few-shot with the mean 95% interval of the episodes;
  layer-wise probes per layer; detection AP50 / AP / AP75; segmentation mIoU / mACC.
* PNG plots (matplotlib): each metric against each study axis (Cole et al.: e.g. pretraining
  images, log axis when the values span a decade or more) per method, with seed error bars; the
  layer-wise probe curves. Each is captioned with what it shows and n.
* pictures (:mod:`.pictures`): a 2-D UMAP of each backbone's pooled test features coloured by
  class, per classification transfer; predicted and ground-truth boxes (detectron2's Visualizer) of
  a few test images per detection transfer and row; predicted and ground-truth label maps
  (:mod:`.seg_pictures`) per segmentation transfer and row.
* ``report.md``: the tables, plots and pictures, readable on GitHub.
"""
import contextlib
import csv
import io
import json
import logging
import os
import re
import statistics
import warnings
from collections import OrderedDict, defaultdict

from ..utils.atomic import atomic_open, atomic_write_json
from .figures import pyplot, safe_name, save_png
from .state import PLAN_FILE

__all__ = ["collect", "aggregate", "write_report", "HEADLINE_PATTERNS"]

# the columns of the tables, in this order; other metrics go to results.csv only
HEADLINE_PATTERNS = [
    r"classification/score", r"linear/score", r"few_shot/\d+way_\d+shot", r"layerwise/res\d/score",
    r"bbox/AP50", r"bbox/AP", r"bbox/AP75", r"segm/AP", r"sem_seg/mIoU", r"sem_seg/mACC", r"knn/top1",
]
LOWER_IS_BETTER = ()  # every headline metric: higher is better


def _headline_rank(metric):
    for i, p in enumerate(HEADLINE_PATTERNS):
        if re.fullmatch(p, metric):
            return i
    return None


def collect(study_dir):
    """
    [{row, method, axes, seed, pretrain_seed, transfer, task, dataset, metrics: {name: value}}]
    for every transfer run with a results.json (runs not done are left out and counted).
    Returns (records, plan, missing run ids).
    """
    path = os.path.join(study_dir, PLAN_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{study_dir}: no {PLAN_FILE}; is this a study folder (tools/run_study.py writes it)?")
    with open(path) as f:
        plan = json.load(f)
    records, missing = [], []
    for run in plan["runs"]:
        if run["kind"] != "transfer":
            continue
        res_path = os.path.join(run["out_dir"], "results.json")
        if not os.path.isfile(res_path):
            missing.append(run["id"])
            continue
        with open(res_path) as f:
            res = json.load(f)
        for dataset, metrics in res.get("metrics", {}).items():
            records.append({**run["meta"], "dataset": dataset,
                            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}})
    return records, plan, missing


def _stats(values):
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "values": values}


def aggregate(records):
    """{(transfer, dataset): {row: {metric: stats}}} over seeds (the ``seed`` and pretraining seeds)."""
    groups = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        for metric, value in r["metrics"].items():
            groups[(r["transfer"], r["dataset"])][r["row"]][metric].append(float(value))
    return {key: {row: {m: _stats(v) for m, v in metrics.items()} for row, metrics in rows.items()}
            for key, rows in groups.items()}


def _row_order(plan):
    rows = OrderedDict()
    for run in plan["runs"]:
        if run["kind"] == "transfer":
            rows.setdefault(run["meta"]["row"], run["meta"])
    return rows


def _fmt(stats, digits=1):
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f} ({stats['n']})"


def _headline_metrics(rows):
    """The headline metrics present in ``rows`` ({row: {metric: stats}}), in headline order (no CI columns)."""
    return sorted({m for r in rows.values() for m in r if _headline_rank(m) is not None and not m.endswith("_ci95")},
                  key=lambda m: (_headline_rank(m), m))


def _table(transfer, dataset, rows, order):
    """Markdown: rows x headline metrics, rank per column, best bold."""
    metrics = _headline_metrics(rows)
    if not metrics:
        return None
    names = [row for row in order if row in rows]
    ranks = {}
    for m in metrics:
        have = sorted((rows[r][m]["mean"] for r in names if m in rows[r]), reverse=True)
        for r in names:
            if m in rows[r]:
                ranks[(r, m)] = 1 + sum(1 for v in have if v > rows[r][m]["mean"])
    lines = [f"#### {transfer} on {dataset}", "",
             "| pretraining | " + " | ".join(f"{m} (rank)" for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for r in names:
        cells = []
        for m in metrics:
            if m not in rows[r]:
                cells.append("-")
                continue
            text = _fmt(rows[r][m])
            ci = rows[r].get(m + "_ci95")
            if ci is not None:
                text += f", CI95 ±{ci['mean']:.1f}"
            if ranks[(r, m)] == 1:
                text = f"**{text}**"
            cells.append(f"{text} [{ranks[(r, m)]}]")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines += ["", "mean ± sample std over seeds (n runs); [rank] in the column, 1 = best, best in bold."]
    return "\n".join(lines)


def _axis_plots(agg, plan, out_dir):
    """Metric vs each study axis, one line per method; returns [(file, caption)]."""
    plt = pyplot()

    order = _row_order(plan)
    axes = plan.get("axes", {})
    made = []
    for axis, key in axes.items():
        for (transfer, dataset), rows in sorted(agg.items()):
            metrics = _headline_metrics(rows)
            for m in metrics:
                lines = defaultdict(list)  # method -> [(x, stats)]
                for row, meta in order.items():
                    if row in rows and m in rows[row] and axis in meta.get("axes", {}):
                        lines[meta["method"]].append((meta["axes"][axis], rows[row][m]))
                if not lines:
                    continue
                xs_all = [x for pts in lines.values() for x, _ in pts]
                numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_all)
                fig, ax = plt.subplots(figsize=(5, 3.5))
                ns = set()
                for method, pts in lines.items():
                    pts = sorted(pts, key=lambda p: p[0]) if numeric else pts
                    xs = [p[0] for p in pts] if numeric else list(range(len(pts)))
                    ax.errorbar(xs, [p[1]["mean"] for p in pts], yerr=[p[1]["std"] for p in pts], marker="o",
                                capsize=3, label=method)
                    ns.update(p[1]["n"] for p in pts)
                    if not numeric:
                        ax.set_xticks(xs, [str(p[0]) for p in pts])
                positive = [x for x in xs_all if numeric and x > 0]
                if numeric and positive and len(positive) == len(xs_all) and max(positive) / min(positive) >= 10:
                    ax.set_xscale("log")
                name = _finish(fig, ax, f"{axis} ({key})", m, f"{transfer} on {dataset}", out_dir,
                               f"{axis}__{transfer}__{dataset}__{m}")
                n_text = "/".join(str(n) for n in sorted(ns))
                made.append((name, f"{m} of {transfer} on {dataset} against {axis} ({key}), per method; "
                                   f"mean ± std over seeds, n = {n_text} runs per point."))
    return made


def _method_bars(agg, plan, out_dir):
    """Studies without axes (Islam-style): per transfer and dataset, its first headline metric as one bar
    per row (mean, error bar = std over seeds, each seed's value as a dot); returns [(file, caption)]."""
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
        names = [r for r in order if r in rows and m in rows[r]]
        stats = [rows[r][m] for r in names]
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 3.2))
        ax.bar(range(len(names)), [s["mean"] for s in stats], yerr=[s["std"] for s in stats], capsize=4,
               color=["0.6" if r == "random-init" else "C0" for r in names], alpha=0.8)
        for i, s in enumerate(stats):
            ax.plot([i] * len(s["values"]), s["values"], "k.", markersize=4)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        name = _finish(fig, ax, "", m, f"{transfer} on {dataset}", out_dir, f"bars__{transfer}__{dataset}__{m}",
                       legend=False, grid="y")
        ns = "/".join(str(n) for n in sorted({s["n"] for s in stats}))
        made.append((name, f"{m} of {transfer} on {dataset} per pretraining (random init in grey): bar = mean, "
                           f"error bar = std over seeds, dots = the seeds' values; n = {ns} runs per bar."))
    return made


def _layer_plots(agg, plan, out_dir):
    plt = pyplot()

    made = []
    order = _row_order(plan)
    for (transfer, dataset), rows in sorted(agg.items()):
        layers = sorted({m.split("/")[1] for r in rows.values() for m in r if re.fullmatch(r"layerwise/res\d/score", m)})
        if not layers:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ns = set()
        for row in order:
            if row not in rows:
                continue
            pts = [rows[row].get(f"layerwise/{layer}/score") for layer in layers]
            if any(p is None for p in pts):
                continue
            ax.errorbar(range(len(layers)), [p["mean"] for p in pts], yerr=[p["std"] for p in pts], marker="o",
                        capsize=3, label=row)
            ns.update(p["n"] for p in pts)
        ax.set_xticks(range(len(layers)), layers)
        name = _finish(fig, ax, "layer", "L-BFGS probe score", f"{transfer} on {dataset}", out_dir,
                       f"layers__{transfer}__{dataset}")
        made.append((name, f"Layer-wise L-BFGS probes of {transfer} on {dataset}: score per layer and pretraining; "
                           f"mean ± std over seeds, n = {'/'.join(str(n) for n in sorted(ns))} runs per point."))
    return made


def _finish(fig, ax, xlabel, ylabel, title, out_dir, stem, legend=True, grid="both"):
    """Labels, legend (unless ``legend=False``) and grid lines (``grid``: "both", "x" or "y"); saves
    ``<out_dir>/<stem>.png`` (stem made file-safe); returns its name."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
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
    classification head not in a backbone file, ...) and library warnings off the study's console."""
    names = ("fvcore.common.checkpoint", "d2.checkpoint", "detectron2", "d2", "torch.fx._symbolic_trace")
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


def write_report(study_dir, pictures=True, log=print):
    """Write ``<study_dir>/report/`` (see the module docstring); returns the path of report.md.
    ``pictures``: also the UMAP embeddings and detection pictures (:mod:`.pictures`; they rebuild
    the runs' models, so they take minutes where the tables take seconds)."""
    records, plan, missing = collect(study_dir)
    out_dir = os.path.join(study_dir, "report")
    os.makedirs(out_dir, exist_ok=True)
    agg = aggregate(records)
    order = list(_row_order(plan))

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["transfer", "dataset", "row", "metric", "mean", "std", "n", "values"])
    for (transfer, dataset), rows in sorted(agg.items()):
        for row in [r for r in order if r in rows]:
            for m, s in sorted(rows[row].items()):
                writer.writerow([transfer, dataset, row, m, f"{s['mean']:.6g}", f"{s['std']:.6g}", s["n"],
                                 " ".join(f"{v:.6g}" for v in s["values"])])
    with atomic_open(os.path.join(out_dir, "results.csv")) as f:
        f.write(buf.getvalue())
    atomic_write_json(os.path.join(out_dir, "results.json"), {
        f"{t}|{d}": rows for (t, d), rows in agg.items()})

    tables = [t for (tr, ds), rows in sorted(agg.items()) if (t := _table(tr, ds, rows, order))]
    with atomic_open(os.path.join(out_dir, "tables.md")) as f:
        f.write("\n\n".join(tables) + "\n")
    plots = _axis_plots(agg, plan, out_dir) + _method_bars(agg, plan, out_dir) + _layer_plots(agg, plan, out_dir)
    shown = []
    if pictures:
        from .pictures import detection_pictures, embedding_pictures
        from .seg_pictures import segmentation_pictures

        with _quiet_model_loading():
            shown = (embedding_pictures(study_dir, plan, out_dir, log=log)
                     + detection_pictures(study_dir, plan, out_dir, log=log)
                     + segmentation_pictures(study_dir, plan, out_dir, log=log))

    lines = [f"# Study {plan['study']}", "",
             f"Study file: `{plan['study_file']}`; {len(records)} results from "
             f"{len({(r['transfer'], r['row'], r['seed'], r.get('pretrain_seed')) for r in records})} transfer runs"
             + (f"; {len(missing)} transfer runs without results (not run or failed)." if missing else "."), ""]
    lines += ["## Tables", ""] + (tables or ["(no results yet)"]) + [""]
    for title, items in (("Plots", plots), ("Pictures", shown)):
        if items:
            lines += [f"## {title}", ""]
            for name, caption in items:
                lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    lines += ["Per-seed values: [results.csv](results.csv)."]
    path = os.path.join(out_dir, "report.md")
    with atomic_open(path) as f:
        f.write("\n".join(lines) + "\n")
    log(f"report: {len(tables)} tables, {len(plots)} plots, {len(shown)} pictures in {out_dir}")
    return path

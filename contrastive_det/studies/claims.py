"""
A study's claims, checked: each claim of the study file compares two rows on one metric over the
transfers it names, and gets the measured difference, its 95% interval and a verdict.

A claim in the study file::

    claims:
      - better: supcon_selfsupcon     # a row (method, checkpoint or random-init label; with its
        than: supervised              #   axes: simclr__images-1000)
        metric: linear/score          # a metric of the transfers' results.json (higher is better)
        transfers: [linear_*]         # fnmatch patterns of transfer names (default: every transfer)
        over: datasets                # "seeds" (default): one verdict per matched transfer
                                      #   and test set;
                                      # "datasets": one verdict on the mean over the matched ones
        name: joint beats supervised  # optional, shown in the table

      - row: mocov2                   # two transfers of one row (e.g. two tuning methods), paired
        better: core_tuning_*         #   by set: transfer patterns with one "*"; core_tuning_dtd is
        than: ce_finetune_*           #   compared with ce_finetune_dtd on the test sets both have
        metric: classification/score
        over: datasets

The unit of replication is a transfer seed, or a pretraining seed where a row has several (the
mean of its transfer seeds, as the tables show). Over seeds, the difference is paired when both rows
have the same seeds (a paired t interval on the per-seed differences), Welch's interval otherwise.
Over datasets, each dataset's difference of the rows' means is one unit, paired by dataset (a t
interval over datasets, n = the number of datasets). Verdict: "supported" when the whole interval is
above 0, "contradicted" when it is below, otherwise "inconclusive at n = ..." (also with fewer than
two units on a side, or when the units gave identical values, as the transfer seeds of a
deterministic probe do: no interval can be formed). A NaN anywhere makes the claim "n/a".
"""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["check_claims", "claim_text", "difference_interval", "CLAIM_KEYS", "OVER"]

NO_SPREAD = "none (no spread over the seeds: their runs gave identical values)"
CLAIM_KEYS = ("better", "than", "metric", "transfers", "over", "name", "row")
OVER = ("seeds", "datasets")


def _t_quantile(df):
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def _units(points):
    """{unit key: value}: per transfer seed, or per pretraining seed (mean of its transfer seeds)
    where the row has several pretraining seeds; points = [(pretrain_seed, transfer_seed,
    value)]."""
    pretrain_seeds = {p for p, _, _ in points}
    if len(pretrain_seeds) > 1:
        by = defaultdict(list)
        for p, _, v in points:
            by[p].append(v)
        return {("pretrain", p): statistics.fmean(vs) for p, vs in by.items()}
    return {("transfer", t): v for _, t, v in points}


def difference_interval(
    a: Mapping[Any, float], b: Mapping[Any, float]
) -> tuple[float, float | None, str, str]:
    """
    ``a`` - ``b`` ({unit: value} each): (difference, half-width or None, test name, n text). Paired
    when the two have the same units (>= 2), Welch otherwise (>= 2 on each side); None half-width
    when neither can be formed.
    """
    if set(a) == set(b) and len(a) >= 2:
        d = [a[k] - b[k] for k in sorted(a, key=str)]
        n = len(d)
        mean = statistics.fmean(d)
        sd = statistics.stdev(d)
        # identical differences: the seeds did not replicate anything (e.g. a deterministic probe)
        if sd == 0:
            return mean, None, NO_SPREAD, f"n = {n}"
        return mean, _t_quantile(n - 1) * sd / math.sqrt(n), "paired t over seeds", f"n = {n}"
    diff = statistics.fmean(a.values()) - statistics.fmean(b.values())
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return diff, None, "none (fewer than 2 runs on a side)", f"n = {na}, {nb}"
    va, vb = statistics.variance(a.values()) / na, statistics.variance(b.values()) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, None, NO_SPREAD, f"n = {na}, {nb}"
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return diff, _t_quantile(df) * se, "Welch t", f"n = {na}, {nb}"


def _verdict(diff, half, n_text):
    if half is None:
        return f"inconclusive at {n_text}"
    if diff - half > 0:
        return "supported"
    if diff + half < 0:
        return "contradicted"
    return f"inconclusive at {n_text}"


def claim_text(claim: Mapping[str, Any]) -> str:
    if claim.get("row"):
        text = f"{claim['better']} > {claim['than']} for {claim['row']} on {claim['metric']}"
        text += " (mean over datasets)" if claim.get("over") == "datasets" else ""
        return f"{claim['name']}: {text}" if claim.get("name") else text
    where = ", ".join(claim.get("transfers") or ["*"])
    text = f"{claim['better']} > {claim['than']} on {claim['metric']} ({where}"
    text += ", mean over datasets)" if claim.get("over") == "datasets" else ")"
    return f"{claim['name']}: {text}" if claim.get("name") else text


def _sides(claim, points):
    """What a claim compares: [(transfer label, dataset, better's key, than's key)] into ``points``
    ({(transfer, dataset, row, metric): [...]}), where both sides have results."""
    metric = claim["metric"]
    have = {(t, d, r) for (t, d, r, m) in points if m == metric}
    out = []
    # two transfers of one row, paired by the part the "*" matches, then by test set
    if claim.get("row"):
        row = claim["row"]
        prefix_b, _, suffix_b = claim["better"].partition("*")
        for t, d, r in sorted(have):
            if r != row or not fnmatch.fnmatchcase(t, claim["better"]):
                continue
            wild = t[len(prefix_b) : len(t) - len(suffix_b)] if "*" in claim["better"] else ""
            other = claim["than"].replace("*", wild, 1)
            if (other, d, row) in have:
                out.append((f"{t} vs {other}", d, (t, d, row, metric), (other, d, row, metric)))
        return out
    patterns = claim.get("transfers") or ["*"]
    for t, d in sorted(
        {(t, d) for t, d, _ in have if any(fnmatch.fnmatchcase(t, p) for p in patterns)}
    ):
        if (t, d, claim["better"]) in have and (t, d, claim["than"]) in have:
            out.append((t, d, (t, d, claim["better"], metric), (t, d, claim["than"], metric)))
    return out


def check_claims(
    claims: Iterable[Mapping[str, Any]], records: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """
    One result per claim (over datasets) or per claim and matched (transfer, test set) (over seeds):
    ``{claim, transfer, dataset, difference, ci95, test, n, verdict}``; ``records`` as
    :func:`~.report.collect` returns them (current runs only). A claim whose rows or metric have no
    results gets the verdict "not measured".
    """
    # (transfer, dataset, row) -> [(pretrain seed, transfer seed, value)]
    points = defaultdict(list)
    for r in records:
        for metric, value in r["metrics"].items():
            points[(r["transfer"], r["dataset"], r["row"], metric)].append(
                (r.get("pretrain_seed"), r["seed"], value)
            )
    out = []
    for claim in claims:
        # [(transfer label, dataset, better's points key, than's points key)]
        sides = _sides(claim, points)
        base = {"claim": claim_text(claim)}
        pairs = [(t, d) for t, d, _, _ in sides]
        if not pairs:
            out.append(
                dict(
                    base,
                    transfer="-",
                    dataset="-",
                    difference=None,
                    ci95=None,
                    test="-",
                    n="n = 0",
                    verdict="not measured",
                )
            )
            continue
        per_pair = []
        for t, d, key_a, key_b in sides:
            a, b = points[key_a], points[key_b]
            if not all(math.isfinite(v) for _, _, v in a + b):
                per_pair.append((t, d, None))
                continue
            per_pair.append((t, d, (_units(a), _units(b))))
        if claim.get("over") == "datasets":
            if any(u is None for _, _, u in per_pair):
                out.append(
                    dict(
                        base,
                        transfer=f"{len(pairs)} matched",
                        dataset="mean",
                        difference=None,
                        ci95=None,
                        test="-",
                        n=f"n = {len(pairs)}",
                        verdict="n/a (NaN in a run)",
                    )
                )
                continue
            diffs = [
                statistics.fmean(a.values()) - statistics.fmean(b.values())
                for _, _, (a, b) in per_pair
            ]
            n = len(diffs)
            mean = statistics.fmean(diffs)
            half = _t_quantile(n - 1) * statistics.stdev(diffs) / math.sqrt(n) if n >= 2 else None
            half = None if half == 0 else half  # identical differences over every set: no interval
            n_text = f"n = {n} datasets"
            out.append(
                dict(
                    base,
                    transfer=f"{len(set(t for t, _ in pairs))} transfers",
                    dataset="mean",
                    difference=mean,
                    ci95=half,
                    test="paired t over datasets" if half is not None else "none (1 dataset)",
                    n=n_text,
                    verdict=_verdict(mean, half, n_text),
                )
            )
            continue
        for t, d, units in per_pair:
            if units is None:
                out.append(
                    dict(
                        base,
                        transfer=t,
                        dataset=d,
                        difference=None,
                        ci95=None,
                        test="-",
                        n="-",
                        verdict="n/a (NaN in a run)",
                    )
                )
                continue
            diff, half, test, n_text = difference_interval(*units)
            out.append(
                dict(
                    base,
                    transfer=t,
                    dataset=d,
                    difference=diff,
                    ci95=half,
                    test=test,
                    n=n_text,
                    verdict=_verdict(diff, half, n_text),
                )
            )
    return out

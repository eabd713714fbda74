"""
The runs a study file expands into (:func:`expand`), in dependency order.

The runs, with their folders under the study folder:

* ``pretrain/<row>/seed<S>``: ``tools/pretrain_net.py`` (writes ``backbone.pth``); ``<row>`` is
  the method label, then ``__<axis>-<value>`` for each axis.
* ``checkpoint/<label>``: a checkpoint row's verified conversion to the canonical backbone
  (``tools/convert_to_detectron2.py <path> backbone.pth --to torchvision``), done once; the
  checkpoint file's sha256 is part of the run's digest, so a file changed on disk is converted
  again and every transfer of its row is redone. Two labels naming one file (same content) are an
  error. A checkpoint row's transfers get their task's ``checkpoint_row_opts`` (classification:
  ``MODEL.TV_RESNET.DEPTH 0``, the checkpoint's depth); detection and segmentation adopt it from the
  converted weights.
* ``convert/<row>/seed<S>/<transfer>``: for a transfer whose task's ``study_weights`` is "converted"
  (detection, segmentation: see :class:`~contrastive_det.engine.task.Task`), the verified conversion
  ``tools/convert_to_detectron2.py backbone.pth weights.pkl --base <transfer config>`` (``--base``
  checks that the protocol can hold the backbone); ``weights.pkl`` records the depth and input keys.
* ``transfer/<transfer>/<row>[/pretrain_seed<S>]/seed<T>``: every transfer run has one shape,
  ``tools/train_net.py --config-file <transfer config> MODEL.WEIGHTS <exported backbone or
  weights.pkl> SEED <T>`` (detection and segmentation adopt the keys the .pkl records); the
  random-init row has ``MODEL.WEIGHTS ""`` (detection, segmentation: plus
  ``MODEL.KEYS_FROM_WEIGHTS`` = the first row's weights.pkl, so that the rows differ only by their
  weights). ``/pretrain_seed<S>`` appears when there are several pretraining seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
from dataclasses import dataclass

from ..engine.defaults import load_config
from ..engine.results import RESULTS_FILE
from ..engine.task import get_task
from ..utils.config_keys import cli_value
from .selection import CHOSEN_CONFIG, SELECTION_FILE, point_name
from .spec import RANDOM_INIT, Run, Study, StudyError, value_name

__all__ = ["expand"]


def _argv_opts(*dicts):
    merged = {}
    for d in dicts:
        merged.update(d)
    return [x for k, v in merged.items() for x in (k, cli_value(v))]


def _task_of(config):
    """The :class:`~contrastive_det.engine.task.Task` of a config file (its _BASE_ chain merged)."""
    return get_task(load_config(argparse.Namespace(config_file=config, opts=[])))


def _combos(study, method):
    """The axis values ``method`` is pretrained with: [{axis: value}], by the study's sweep, over
    the axes that apply to it (an axis with ``methods:`` applies to those only; the others run once,
    without it)."""
    axes = {
        a: spec
        for a, spec in study.axes.items()
        if spec.get("methods") is None or method in spec["methods"]
    }
    if study.sweep == "one_at_a_time":
        return [{}] + [{axis: v} for axis, spec in axes.items() for v in spec["values"]]
    combos = [{}]
    for axis, spec in axes.items():
        combos = [{**c, axis: v} for c in combos for v in spec["values"]]
    return combos


def _check_claim_is_measured(study, i, claim, method_of):
    """A claim whose rows never run on its transfers (a transfer's ``methods:`` leaves one out)
    could only ever be "not measured": refuse it at expansion, naming the transfers and the rows
    they run."""

    def runs(tname, row):
        methods = study.transfers[tname]["methods"]
        return methods is None or method_of[row] in methods

    if claim.get("row"):
        pairs = []
        for tname in study.transfers:
            if fnmatch.fnmatchcase(tname, claim["better"]):
                prefix, _, suffix = claim["better"].partition("*")
                wild = (
                    tname[len(prefix) : len(tname) - len(suffix)] if "*" in claim["better"] else ""
                )
                pairs.append((tname, claim["than"].replace("*", wild, 1)))
        if not any(
            other in study.transfers and runs(t, claim["row"]) and runs(other, claim["row"])
            for t, other in pairs
        ):
            raise StudyError(
                f"{study.path}: claims[{i}]: row {claim['row']!r} runs on no pair of transfers "
                f"{claim['better']!r} / {claim['than']!r} (pairs found: {pairs or 'none'}); "
                "the claim could never be measured"
            )
        return
    patterns = claim.get("transfers") or ["*"]
    matched = [t for t in study.transfers if any(fnmatch.fnmatchcase(t, p) for p in patterns)]
    if not any(runs(t, claim["better"]) and runs(t, claim["than"]) for t in matched):
        detail = (
            "; ".join(f"{t} runs {study.transfers[t]['methods'] or 'every row'}" for t in matched)
            or "none match"
        )
        raise StudyError(
            f"{study.path}: claims[{i}]: no transfer of {patterns} runs both {claim['better']!r} "
            f"and {claim['than']!r} ({detail}); the claim could never be measured"
        )


@dataclass(frozen=True)
class _RowTransfer:
    """One row of one transfer: what its grid, select and transfer runs share."""

    name: str  # the transfer's name in the study file
    entry: dict  # its study-file entry (config, opts, seeds, select, ...)
    task: str  # its task's class name
    method: str
    row: str
    axes: dict
    pretrain_seed: int | None
    deps: list  # the runs its runs need first
    weights: str  # MODEL.WEIGHTS ("" = random init)
    config: str  # --config-file (the transfer's config, or a selection's chosen.yaml)
    row_opts: dict  # overrides of this row (a brought checkpoint's, random init's)

    def meta(self, **extra):
        return {
            "method": self.method,
            "row": self.row,
            "axes": self.axes,
            **extra,
            "pretrain_seed": self.pretrain_seed,
            "transfer": self.name,
        }

    def train_argv(self, tools, seed, out, *opts):
        """``train_net.py --config-file C [opts] MODEL.WEIGHTS W RESULTS.METHOD M SEED t OUTPUT_DIR
        out``."""
        return [
            os.path.join(tools, "train_net.py"),
            "--config-file",
            self.config,
            *_argv_opts(self.entry["opts"], self.row_opts, *opts),
            "MODEL.WEIGHTS",
            self.weights,
            "RESULTS.METHOD",
            self.method,
            "SEED",
            str(seed),
            "OUTPUT_DIR",
            out,
        ]


def _selection_runs(study, sid, rt):
    """
    The grid runs of one row's selection on validation (``rt``: a :class:`_RowTransfer`), then its
    select run (last).
    """
    sel, runs, points = rt.entry["select"], [], []
    for i, point in enumerate(sel["points"]):
        dirs = []
        for t in sel["seeds"] or rt.entry["seeds"][:1]:
            gid = f"{sid}/{point_name(i, point, value_name)}/seed{t}"
            out = os.path.join(study.output_dir, gid)
            runs.append(
                Run(
                    gid,
                    "grid",
                    rt.train_argv(study.tools_dir, t, out, sel["opts"], point),
                    list(rt.deps),
                    out,
                    [os.path.join(out, RESULTS_FILE)],
                    rt.meta(seed=t, task=rt.task, config=rt.entry["config"], point=point),
                )
            )
            dirs.append(out)
        points.append((point, dirs))
    cid = f"{sid}/choice"
    out = os.path.join(study.output_dir, cid)
    argv = [
        os.path.join(study.tools_dir, "select_config.py"),
        "--base",
        rt.config,
        "--metric",
        sel["metric"],
        "--mode",
        sel["mode"],
        "--out",
        out,
    ]
    for point, dirs in points:
        argv += ["--point", json.dumps(point), *dirs]
    runs.append(
        Run(
            cid,
            "select",
            argv,
            [r.id for r in runs],
            out,
            [os.path.join(out, CHOSEN_CONFIG), os.path.join(out, SELECTION_FILE)],
            rt.meta(),
        )
    )
    return runs


def expand(study: Study) -> list[Run]:
    """The study's runs, in an order that respects their dependencies (see the module docstring)."""
    tools = study.tools_dir
    root = study.output_dir
    runs = []
    # (row label, method, axes, pretrain seed, backbone path or None, pretrain run id or None)
    rows = []
    for method, entry in study.methods.items():
        for combo in _combos(study, method):
            row = method + "".join(f"__{axis}-{value_name(v)}" for axis, v in combo.items())
            for s in study.pretrain_seeds:
                rid = f"pretrain/{row}/seed{s}"
                out = os.path.join(root, rid)
                axis_opts = {study.axes[a]["key"]: v for a, v in combo.items()}
                argv = [
                    os.path.join(tools, "pretrain_net.py"),
                    "--config-file",
                    entry["config"],
                    *_argv_opts(study.pretrain_opts, entry["opts"], axis_opts),
                    "SEED",
                    str(s),
                    "OUTPUT_DIR",
                    out,
                ]
                backbone = os.path.join(out, "backbone.pth")
                runs.append(
                    Run(
                        rid,
                        "pretrain",
                        argv,
                        [],
                        out,
                        [backbone, os.path.join(out, RESULTS_FILE)],
                        {
                            "method": method,
                            "row": row,
                            "axes": dict(combo),
                            "seed": s,
                            "config": entry["config"],
                        },
                    )
                )
                rows.append((row, method, dict(combo), s, backbone, rid))
    for label, ckpt in study.checkpoints.items():
        rid = f"checkpoint/{label}"
        out = os.path.join(root, rid)
        backbone = os.path.join(out, "backbone.pth")
        argv = [
            os.path.join(tools, "convert_to_detectron2.py"),
            ckpt["path"],
            backbone,
            "--to",
            "torchvision",
            "--method",
            label,
        ]
        for key in ("prefix", "format"):
            if ckpt[key] is not None:  # "" is a prefix too: the keys at the top level
                argv += [f"--{key}", ckpt[key]]
        if ckpt["trust"]:
            argv.append("--trust")
        runs.append(
            Run(
                rid,
                "convert",
                argv,
                [],
                out,
                [backbone],
                {
                    "method": label,
                    "row": label,
                    "axes": {},
                    "seed": None,
                    "checkpoint": ckpt["path"],
                },
                inputs=[ckpt["path"]],
            )
        )
        rows.append((label, label, {}, None, backbone, rid))
    if study.random_init:
        rows.append((RANDOM_INIT, RANDOM_INIT, {}, None, None, None))

    labels = [r[0] for r in rows]
    # a claim naming a row with a mistyped axis value would only ever be "not measured"
    for i, claim in enumerate(study.claims):
        for key in ("row",) if claim.get("row") else ("better", "than"):
            if claim[key] not in labels:
                raise StudyError(
                    f"{study.path}: claims[{i}].{key}: no row {claim[key]!r}; the study's rows: "
                    f"{list(dict.fromkeys(labels))}"
                )
        _check_claim_is_measured(study, i, claim, {r[0]: r[1] for r in rows})
    multi_seed = len(study.pretrain_seeds) > 1
    for tname, tentry in study.transfers.items():
        task_cls = _task_of(tentry["config"])
        task, converted = task_cls.__name__, task_cls.study_weights == "converted"
        first_convert = None
        for row, method, combo, pseed, backbone, pre_id in rows:
            if tentry["methods"] is not None and method not in tentry["methods"]:
                continue
            deps, weights = [], ""
            row_opts = dict(task_cls.checkpoint_row_opts) if method in study.checkpoints else {}
            if backbone is not None:
                deps, weights = [pre_id], backbone
                if converted:
                    # converted and verified once; the run adopts the keys the .pkl records
                    cid = (
                        f"convert/{row}/{tname}"
                        if method in study.checkpoints
                        else f"convert/{row}/seed{pseed}/{tname}"
                    )
                    cout = os.path.join(root, cid)
                    pkl = os.path.join(cout, "weights.pkl")
                    argv = [
                        os.path.join(tools, "convert_to_detectron2.py"),
                        backbone,
                        pkl,
                        "--base",
                        tentry["config"],
                    ]
                    runs.append(
                        Run(
                            cid,
                            "convert",
                            argv,
                            [pre_id],
                            cout,
                            [pkl],
                            {
                                "method": method,
                                "row": row,
                                "axes": combo,
                                "seed": pseed,
                                "transfer": tname,
                            },
                        )
                    )
                    first_convert = first_convert or (cid, pkl)
                    deps, weights = [cid], pkl
            elif converted and first_convert is not None:  # random init of the first row's network
                deps, row_opts = [first_convert[0]], {"MODEL.KEYS_FROM_WEIGHTS": first_convert[1]}
            rt = _RowTransfer(
                tname,
                tentry,
                task,
                method,
                row,
                combo,
                pseed,
                deps,
                weights,
                tentry["config"],
                row_opts,
            )
            suffix = f"/pretrain_seed{pseed}" if multi_seed and pseed is not None else ""
            if tentry["select"] is not None:
                runs.extend(_selection_runs(study, f"select/{tname}/{row}{suffix}", rt))
                # the refit runs read the chosen config
                rt = dataclasses.replace(rt, deps=[runs[-1].id], config=runs[-1].outputs[0])
            for t in tentry["seeds"]:
                rid = f"transfer/{tname}/{row}{suffix}/seed{t}"
                out = os.path.join(root, rid)
                runs.append(
                    Run(
                        rid,
                        "transfer",
                        rt.train_argv(tools, t, out),
                        rt.deps,
                        out,
                        [os.path.join(out, RESULTS_FILE)],
                        rt.meta(seed=t, task=task, config=tentry["config"]),
                    )
                )
    return runs

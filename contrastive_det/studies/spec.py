"""
Study files: one YAML that names the pretraining runs, the axes swept over them, the seeds and
the transfer runs; :func:`expand` turns it into the runs of the real CLIs.

A study file::

    name: islam_toy                      # the study's folder: output/studies/<name>, or output_dir
    output_dir: output/studies/islam_toy # optional
    pretrain:
      methods:                           # label -> pretraining config (+ overrides)
        simclr: {config: configs/toy/pretrain_simclr_R18.yaml}
        supcon: {config: configs/toy/pretrain_supcon_R18.yaml, opts: {SOLVER.MAX_ITER: 240}}
      axes:                              # optional (Cole et al.): the swept config keys
        images: {key: DATASETS.PRETRAIN.SUBSET_COUNT, values: [500, 1000]}
        # an axis of some methods only; the others run once:
        # k: {key: ..., values: [...], methods: [scan]}
      sweep: product                     # every combination of the axes (default), or
                                         # one_at_a_time: each value alone, plus the methods'
                                         # own configs as baseline
      seeds: [0]                         # pretraining seeds (default [0])
      opts: {}                           # overrides for every pretraining run
      random_init: true                  # a random-init row in every transfer (default true)
    transfer:
      seeds: [0, 1, 2]                   # transfer seeds (default [0])
      runs:                              # name -> config (+ overrides); its TASK gives the task
        linear_lbfgs: {config: configs/toy/cls_linear_lbfgs_R18.yaml,
                       opts: {CLASSIFICATION.LBFGS.NUM_REGS: 12}}
        detection:
          config: configs/toy/digits_R_50_FPN.yaml
          methods: [supcon, random-init]  # optional: only these rows (method labels, random-init)
          seeds: [0, 1, 2]                # optional: this transfer's seeds (default transfer.seeds)

A study's rows can also be checkpoints that already exist, beside or instead of pretraining runs
(then ``pretrain`` may be left out; ``random_init`` is then a top-level key)::

    checkpoints:                         # label -> any file tools/convert_to_detectron2.py reads
      moco_v2_800ep: {path: /models/moco_v2_800ep_pretrain.pth.tar}
      supervised_tv: {path: /models/resnet50-0676ba61.pth}
      dino_r50: {path: /models/dino_resnet50_pretrain.pth, prefix: "", format: torchvision,
                 trust: false}

Relative paths (configs, checkpoints, ``output_dir``) start at the study's root folder: the working
directory unless :func:`load_study` is given another (``tools/run_study.py`` runs from the
repository root in every example). The runs are commands of the scripts in the study's ``tools_dir``
(``tools/run_study.py`` gives its own folder); the library itself never assumes a checkout. ``opts``
values are written on the command line as yacs reads them: lists become tuples, strings stay as they
are.

The runs a study file expands into, and their folders: :mod:`.expansion`.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..utils.config_keys import cli_value
from ..utils.file_digest import file_sha256
from ..utils.yaml_files import DuplicateKeyError, load_yaml_file
from .claims import CLAIM_KEYS, OVER
from .resources import KINDS, check_resources, run_resources
from .selection import grid_points

__all__ = ["Run", "Study", "StudyError", "load_study", "value_name", "TOOLS", "RANDOM_INIT"]

# the scripts a study's runs are commands of, looked up in Study.tools_dir
TOOLS = (
    "pretrain_net.py",
    "convert_to_detectron2.py",
    "train_net.py",
    "select_config.py",
    "report.py",
)
RANDOM_INIT = "random-init"
SWEEPS = ("product", "one_at_a_time")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class StudyError(ValueError):
    """A study file that cannot be expanded; the message names the file and the key."""


@dataclass
class Run:
    """
    One run of a study: a CLI invocation with its folder and the runs it needs first.

    Attributes:
        id: stable identifier, also the folder below the study folder (e.g.
            "pretrain/simclr/seed0").
        kind: "pretrain", "convert" or "transfer".
        argv: the command after the interpreter: [tool path, args...] (paths absolute).
        deps: ids of the runs that must be done first.
        out_dir: the run's folder (absolute).
        outputs: files that exist when the run is done (absolute).
        meta: what the report needs: method, axes ({axis: value}), seed, pretrain_seed, transfer,
            task, config.
        inputs: files outside the study whose content the run reads (a brought checkpoint): their
            sha256 is part of the run's digest.
    """

    id: str
    kind: str
    argv: list
    deps: list
    out_dir: str
    outputs: list
    meta: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)  # files whose content is part of the run's digest


@dataclass
class Study:
    """A validated study file."""

    path: str
    name: str
    output_dir: str
    methods: dict  # label -> {"config": abs path, "opts": {key: value}}
    axes: dict  # axis -> {"key": config key, "values": [...]}
    sweep: str  # "product" or "one_at_a_time"
    pretrain_seeds: list
    pretrain_opts: dict
    random_init: bool
    transfer_seeds: list
    transfers: dict  # name -> {"config": abs path, "opts": {key: value}, "seeds": [...],
    #                          "methods": [...] or None, "resources": {...}}
    raw: dict
    resources: dict = field(default_factory=dict)  # kind -> {resource: value} (see .resources)
    # label -> {"path": abs path, "prefix", "format", "trust"}
    checkpoints: dict = field(default_factory=dict)
    # [{better, than, metric, transfers, over, name}] (see .claims)
    claims: list = field(default_factory=list)
    root: str = ""  # where the file's relative paths start (absolute)
    tools_dir: str = ""  # the folder of the scripts in TOOLS that the runs call (absolute)

    def run_resources(
        self, run: Run, cli: Mapping[str, int | None] | None = None
    ) -> dict[str, int]:
        """The cluster resources of ``run`` (see :mod:`.resources`); ``cli``: the command line's
        values."""
        entry = (
            self.transfers.get(run.meta.get("transfer"), {})
            if run.kind in ("transfer", "grid")
            else {}
        )
        return run_resources(run.kind, cli, self.resources, entry.get("resources"))

    def digest(self) -> str:
        """sha256 of the study's content (not its path)."""
        return hashlib.sha256(
            json.dumps(self.raw, sort_keys=True, default=str).encode()
        ).hexdigest()


def _fail(path, where, message):
    raise StudyError(f"{path}: {where}: {message}")


def _mapping(path, where, value, required=False):
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        _fail(path, where, f"expected a mapping, got {type(value).__name__} {value!r}")
    return value


def _check_keys(path, where, value, allowed):
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        _fail(path, where, f"unknown keys {unknown}; allowed: {sorted(allowed)}")


def _seeds(path, where, value):
    if value is None:
        return [0]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        _fail(path, where, f"expected a non-empty list of integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        _fail(path, where, f"repeated seeds in {value!r}")
    return list(value)


def _config_path(path, where, value, root):
    if not isinstance(value, str) or not value:
        _fail(path, where, f"expected a config file path, got {value!r}")
    full = value if os.path.isabs(value) else os.path.join(root, value)
    if not os.path.isfile(full):
        _fail(
            path,
            where,
            f"no such config file {value!r} (relative paths start at the study's root {root})",
        )
    return full


def _opts(path, where, value):
    value = _mapping(path, where, value)
    for key in value:
        if not isinstance(key, str) or not re.match(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$", key):
            _fail(path, where, f"{key!r} is not a config key like SOLVER.MAX_ITER")
    return dict(value)


def _label(path, where, name):
    if not isinstance(name, str) or not _NAME.match(name) or "__" in name:
        _fail(path, where, f"{name!r} must be a name of letters, digits and _.+- (no '__', no '/')")
    return name


def _entries(path, where, value, root, extra=()):
    """``{name: {config, opts}}`` (also accepts a list of ``{name, config, opts}``); ``extra``:
    further allowed keys, kept as written (validated by the caller)."""
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            item = _mapping(path, f"{where}[{i}]", item, required=True)
            if "name" not in item:
                _fail(path, f"{where}[{i}]", "missing 'name'")
            out[item["name"]] = {k: v for k, v in item.items() if k != "name"}
        value = out
    value = _mapping(path, where, value, required=True)
    if not value:
        _fail(path, where, "names no runs")
    entries = {}
    for name, entry in value.items():
        _label(path, f"{where}.{name}", name)
        entry = _mapping(path, f"{where}.{name}", entry, required=True)
        _check_keys(path, f"{where}.{name}", entry, {"config", "opts", *extra})
        if "config" not in entry:
            _fail(path, f"{where}.{name}", "missing 'config'")
        entries[name] = {
            "config": _config_path(path, f"{where}.{name}.config", entry["config"], root),
            "opts": _opts(path, f"{where}.{name}.opts", entry.get("opts")),
            **{k: entry[k] for k in extra if k in entry},
        }
    return entries


def _checkpoints(path, raw, methods, root):
    """The ``checkpoints:`` section: label -> {path (absolute), prefix, format, trust, digest}."""
    out, by_digest = {}, {}
    for label, entry in _mapping(path, "checkpoints", raw.get("checkpoints")).items():
        where = f"checkpoints.{label}"
        _label(path, where, label)
        if label == RANDOM_INIT or label in methods:
            _fail(
                path,
                where,
                f"{label!r} is already a row of the study "
                f"({'the baseline' if label == RANDOM_INIT else 'a pretraining method'}); "
                "give the checkpoint another label",
            )
        if isinstance(entry, str):
            entry = {"path": entry}
        entry = _mapping(path, where, entry, required=True)
        _check_keys(path, where, entry, {"path", "prefix", "format", "trust"})
        file = entry.get("path")
        if not isinstance(file, str) or not file:
            _fail(path, f"{where}.path", f"expected the path of a checkpoint file, got {file!r}")
        full = os.path.abspath(file if os.path.isabs(file) else os.path.join(root, file))
        if not os.path.isfile(full):
            _fail(
                path,
                f"{where}.path",
                f"no such file {file!r} (relative paths start at the study's root {root})",
            )
        for key in ("prefix", "format"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                _fail(path, f"{where}.{key}", f"expected a string, got {entry[key]!r}")
        if not isinstance(entry.get("trust", False), bool):
            _fail(path, f"{where}.trust", f"expected true or false, got {entry['trust']!r}")
        digest = file_sha256(full)
        if digest in by_digest:  # one network under two names would look like two results
            _fail(
                path,
                where,
                f"{full} has the same content (sha256 {digest[:12]}) as "
                f"checkpoints.{by_digest[digest]}; "
                "one checkpoint is one row",
            )
        by_digest[digest] = label
        out[label] = {
            "path": full,
            "prefix": entry.get("prefix"),
            "format": entry.get("format"),
            "trust": entry.get("trust", False),
            "digest": digest,
        }
    return out


def _claims(path, value, labels, axes, transfer_names=()):
    """The ``claims:`` list (see :mod:`.claims`); rows are labels of the study (with their axes)."""
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(path, "claims", f"expected a list of claims, got {type(value).__name__}")
    out = []
    for i, claim in enumerate(value):
        where = f"claims[{i}]"
        claim = _mapping(path, where, claim, required=True)
        _check_keys(path, where, claim, CLAIM_KEYS)
        for key in ("better", "than", "metric"):
            if not isinstance(claim.get(key), str) or not claim[key]:
                _fail(
                    path,
                    f"{where}.{key}",
                    f"expected a {'row label' if key != 'metric' else 'metric name'}, "
                    f"got {claim.get(key)!r}",
                )
        if claim.get("row") is not None:  # two transfers of one row
            if not isinstance(claim["row"], str) or claim["row"].split("__")[0] not in labels:
                _fail(
                    path,
                    f"{where}.row",
                    f"{claim['row']!r} is not a row of the study; rows: {labels}",
                )
            if "transfers" in claim:
                _fail(
                    path,
                    where,
                    "a claim about one row compares the transfers named by better/than; "
                    "'transfers' does not apply",
                )
            for key in ("better", "than"):
                if claim[key].count("*") > 1 or claim[key].count("*") != claim["better"].count("*"):
                    _fail(
                        path,
                        f"{where}.{key}",
                        f"{claim[key]!r}: better and than must both have one '*' "
                        "(paired by what it matches) or none",
                    )
                if not any(fnmatch.fnmatchcase(t, claim[key]) for t in transfer_names):
                    _fail(
                        path,
                        f"{where}.{key}",
                        f"{claim[key]!r} matches no transfer; transfers: {transfer_names}",
                    )
            if claim["better"] == claim["than"]:
                _fail(path, where, f"compares {claim['better']!r} with itself")
            out.append(
                {
                    "better": claim["better"],
                    "than": claim["than"],
                    "metric": claim["metric"],
                    "row": claim["row"],
                    "over": claim.get("over", "seeds"),
                    "name": claim.get("name"),
                }
            )
            if out[-1]["over"] not in OVER:
                _fail(
                    path,
                    f"{where}.over",
                    f"expected one of {', '.join(OVER)}, got {out[-1]['over']!r}",
                )
            continue
        for key in ("better", "than"):
            label, *parts = claim[key].split("__")
            if label not in labels:
                _fail(
                    path, f"{where}.{key}", f"{label!r} is not a row of the study; rows: {labels}"
                )
            unknown = [p.split("-", 1)[0] for p in parts if p.split("-", 1)[0] not in axes]
            if unknown:
                _fail(
                    path,
                    f"{where}.{key}",
                    f"{claim[key]!r} names axes {unknown} the study does not have ({axes})",
                )
        if claim["better"] == claim["than"]:
            _fail(path, where, f"compares {claim['better']!r} with itself")
        transfers = claim.get("transfers", ["*"])
        if isinstance(transfers, str):
            transfers = [transfers]
        if (
            not isinstance(transfers, list)
            or not transfers
            or not all(isinstance(t, str) and t for t in transfers)
        ):
            _fail(
                path,
                f"{where}.transfers",
                f"expected a list of transfer names or patterns, got {transfers!r}",
            )
        over = claim.get("over", "seeds")
        if over not in OVER:
            _fail(path, f"{where}.over", f"expected one of {', '.join(OVER)}, got {over!r}")
        if claim.get("name") is not None and not isinstance(claim["name"], str):
            _fail(path, f"{where}.name", f"expected a string, got {claim['name']!r}")
        out.append(
            {
                "better": claim["better"],
                "than": claim["than"],
                "metric": claim["metric"],
                "transfers": list(transfers),
                "over": over,
                "name": claim.get("name"),
            }
        )
    return out


def _add_cli_checkpoints(path, raw, checkpoints, no_pretrain):
    """``raw`` with the command line's checkpoints ({label: path}) and ``--no-pretrain`` applied:
    they become part of the study's content (its digest); transfers that list their rows get the
    new labels too, and lose the pretraining methods under ``no_pretrain``."""
    raw = copy.deepcopy(raw)
    if checkpoints:
        section = raw.get("checkpoints")
        raw["checkpoints"] = dict(section) if isinstance(section, dict) else {}
        for label, file in checkpoints.items():
            raw["checkpoints"][label] = {"path": os.path.abspath(file)}
    pre = raw.get("pretrain") if isinstance(raw.get("pretrain"), dict) else None
    dropped = set()
    if no_pretrain and pre is not None:
        dropped = set(pre.get("methods") or {})
        raw["pretrain"] = {k: v for k, v in pre.items() if k == "random_init"}
    # claims about the left-out rows cannot be checked
    if dropped and isinstance(raw.get("claims"), list):
        raw["claims"] = [
            c
            for c in raw["claims"]
            if not isinstance(c, dict)
            or not {str(c.get(k, "")).split("__")[0] for k in ("better", "than", "row")} & dropped
        ]
    runs = (
        (raw.get("transfer") or {}).get("runs") if isinstance(raw.get("transfer"), dict) else None
    )
    if isinstance(runs, dict):
        for entry in runs.values():
            if isinstance(entry, dict) and isinstance(entry.get("methods"), list):
                kept = [m for m in entry["methods"] if m not in dropped]
                entry["methods"] = kept + [c for c in (checkpoints or {}) if c not in kept]
    return raw


def load_study(
    path: str,
    checkpoints: dict[str, str] | None = None,
    no_pretrain: bool = False,
    *,
    root: str | None = None,
    tools_dir: str | None = None,
) -> Study:
    """
    Read and validate a study file; raises :class:`StudyError` naming the file and key.

    Args:
        checkpoints: {label: path} added to (or replacing in) the file's ``checkpoints`` (the
            command line's ``--checkpoint label=path``).
        no_pretrain: leave the file's pretraining runs out (rows: the checkpoints and random init).
        root: where the file's relative paths start (default: the working directory).
        tools_dir: the folder holding the scripts in :data:`TOOLS` (default: ``<root>/tools``).
    """
    if not os.path.isfile(path):
        raise StudyError(f"{path}: no such study file")
    root = os.path.abspath(root if root is not None else os.getcwd())
    tools_dir = os.path.abspath(tools_dir if tools_dir is not None else os.path.join(root, "tools"))
    missing = [t for t in TOOLS if not os.path.isfile(os.path.join(tools_dir, t))]
    if missing:
        raise StudyError(
            f"{path}: the runs call {', '.join(TOOLS)}, and {tools_dir} lacks "
            f"{', '.join(missing)}; "
            "run from the repository root or give the folder of contrastive-det's tools/"
        )
    try:
        raw = load_yaml_file(path)
    except DuplicateKeyError as e:
        raise StudyError(str(e)) from None
    except yaml.YAMLError as e:
        raise StudyError(f"{path}: not valid YAML: {e}") from None
    raw = _mapping(path, "top level", raw, required=True)
    _check_keys(
        path,
        "top level",
        raw,
        {
            "name",
            "output_dir",
            "pretrain",
            "transfer",
            "description",
            "resources",
            "checkpoints",
            "random_init",
            "claims",
        },
    )
    if checkpoints or no_pretrain:
        raw = _add_cli_checkpoints(path, raw, checkpoints, no_pretrain)
    resources = {}
    for kind, value in _mapping(path, "resources", raw.get("resources")).items():
        if kind not in KINDS:
            _fail(path, f"resources.{kind}", f"unknown kind of run; known: {', '.join(KINDS)}")
        resources[kind], error = check_resources(f"resources.{kind}", value)
        if error:
            raise StudyError(f"{path}: {error}")
    name = _label(path, "name", raw.get("name"))
    output_dir = raw.get("output_dir") or os.path.join("output", "studies", name)
    output_dir = output_dir if os.path.isabs(output_dir) else os.path.join(root, output_dir)

    pre = _mapping(path, "pretrain", raw.get("pretrain"))
    _check_keys(path, "pretrain", pre, {"methods", "axes", "sweep", "seeds", "opts", "random_init"})
    if pre.get("methods") is None and raw.get("checkpoints"):
        methods = {}  # a study of existing checkpoints only
        if pre.get("axes"):
            _fail(
                path,
                "pretrain.axes",
                "axes sweep pretraining runs, and the study has no pretrain.methods",
            )
    else:
        methods = _entries(path, "pretrain.methods", pre.get("methods"), root)
    if RANDOM_INIT in methods:
        _fail(
            path,
            "pretrain.methods",
            f"{RANDOM_INIT!r} is the baseline row (pretrain.random_init), not a method",
        )
    axes = {}
    for axis, spec in _mapping(path, "pretrain.axes", pre.get("axes")).items():
        _label(path, f"pretrain.axes.{axis}", axis)
        spec = _mapping(path, f"pretrain.axes.{axis}", spec, required=True)
        _check_keys(path, f"pretrain.axes.{axis}", spec, {"key", "values", "methods"})
        key = spec.get("key")
        _opts(path, f"pretrain.axes.{axis}.key", {key: None})
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            _fail(
                path, f"pretrain.axes.{axis}.values", f"expected a non-empty list, got {values!r}"
            )
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            _fail(path, f"pretrain.axes.{axis}.values", f"repeated values in {values!r}")
        folders = {}
        # each value's runs go to a folder named after it: two values, one folder = one run
        for v in values:
            other = folders.setdefault(value_name(v), v)
            if other is not v:
                _fail(
                    path,
                    f"pretrain.axes.{axis}.values",
                    f"values {other!r} and {v!r} map to the same run folder "
                    f"name {value_name(v)!r}; rename one (e.g. a file) so that their runs stay "
                    f"apart",
                )
        only = spec.get("methods")
        if only is not None:  # an axis of some methods only (e.g. SCAN's neighbourhood size)
            if not isinstance(only, list) or not only or not all(isinstance(m, str) for m in only):
                _fail(
                    path,
                    f"pretrain.axes.{axis}.methods",
                    f"expected a non-empty list of method labels, got {only!r}",
                )
            unknown = [m for m in only if m not in methods]
            if unknown:
                _fail(
                    path,
                    f"pretrain.axes.{axis}.methods",
                    f"unknown methods {unknown}; the study has {list(methods)}",
                )
        axes[axis] = {
            "key": key,
            "values": list(values),
            "methods": list(only) if only is not None else None,
        }
    sweep = pre.get("sweep", "product")
    if sweep not in SWEEPS:
        _fail(path, "pretrain.sweep", f"expected one of {', '.join(SWEEPS)}, got {sweep!r}")
    if "random_init" in pre and "random_init" in raw:
        _fail(path, "random_init", "given twice (top level and pretrain.random_init); keep one")
    where = "pretrain.random_init" if "random_init" in pre else "random_init"
    random_init = pre.get("random_init", raw.get("random_init", True))
    if not isinstance(random_init, bool):
        _fail(path, where, f"expected true or false, got {random_init!r}")
    brought = _checkpoints(path, raw, methods, root)

    tr = _mapping(path, "transfer", raw.get("transfer"), required=True)
    _check_keys(path, "transfer", tr, {"runs", "seeds"})
    transfer_seeds = _seeds(path, "transfer.seeds", tr.get("seeds"))
    transfers = _entries(
        path,
        "transfer.runs",
        tr.get("runs"),
        root,
        extra=("seeds", "methods", "resources", "select"),
    )
    for tname, entry in transfers.items():
        where = f"transfer.runs.{tname}"
        entry["resources"], error = check_resources(
            f"{where}.resources", entry.get("resources", {})
        )
        if error:
            raise StudyError(f"{path}: {error}")
        entry["seeds"] = (
            _seeds(path, f"{where}.seeds", entry["seeds"]) if "seeds" in entry else transfer_seeds
        )
        entry["select"] = (
            _select(path, f"{where}.select", entry["select"], entry) if "select" in entry else None
        )
        if "methods" in entry:
            known = [*methods, *brought, *([RANDOM_INIT] if random_init else [])]
            chosen = entry["methods"]
            if (
                not isinstance(chosen, list)
                or not (chosen or no_pretrain)
                or not all(isinstance(m, str) for m in chosen)
            ):
                _fail(
                    path,
                    f"{where}.methods",
                    f"expected a non-empty list of method labels, got {chosen!r}",
                )
            unknown = [m for m in chosen if m not in known]
            if unknown:
                _fail(path, f"{where}.methods", f"unknown methods {unknown}; the study has {known}")
        else:
            entry["methods"] = None  # every method and the random-init row
    claims = _claims(
        path, raw.get("claims"), [*methods, *brought, RANDOM_INIT], list(axes), list(transfers)
    )
    return Study(
        path=os.path.abspath(path),
        name=name,
        output_dir=os.path.abspath(output_dir),
        methods=methods,
        axes=axes,
        sweep=sweep,
        pretrain_seeds=_seeds(path, "pretrain.seeds", pre.get("seeds")),
        pretrain_opts=_opts(path, "pretrain.opts", pre.get("opts")),
        random_init=random_init,
        transfer_seeds=transfer_seeds,
        transfers=transfers,
        raw=copy.deepcopy(raw),
        resources=resources,
        checkpoints=brought,
        claims=claims,
        root=root,
        tools_dir=tools_dir,
    )


def value_name(value: Any) -> str:
    """A value as it appears in a folder name (a file: its name without extension)."""
    if isinstance(value, str) and "/" in value:  # a file (e.g. a label map): its name
        value = os.path.splitext(os.path.basename(value))[0]
    text = cli_value(value) if not isinstance(value, str) else value
    text = re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")
    return text or "empty"


def _select(path, where, value, entry):
    """A transfer's ``select:`` (see :mod:`.selection`): {points, metric, mode, opts, seeds}."""
    value = _mapping(path, where, value, required=True)
    _check_keys(path, where, value, {"grid", "points", "metric", "mode", "opts", "seeds"})
    if ("grid" in value) == ("points" in value):
        _fail(
            path,
            where,
            "give grid: {KEY: [values]} (every combination) or points: [{KEY: value}, ...], one of "
            "them",
        )
    if "grid" in value:
        grid = _opts(path, f"{where}.grid", value["grid"])
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                _fail(
                    path,
                    f"{where}.grid.{key}",
                    f"expected a non-empty list of values, got {values!r}",
                )
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                _fail(path, f"{where}.grid.{key}", f"repeated values in {values!r}")
        if not grid:
            _fail(path, f"{where}.grid", "names no keys")
        points = grid_points(grid)
    else:
        points = value["points"]
        if not isinstance(points, list) or not points:
            _fail(
                path,
                f"{where}.points",
                f"expected a non-empty list of {{KEY: value}} mappings, got {points!r}",
            )
        points = [_opts(path, f"{where}.points[{i}]", p) for i, p in enumerate(points)]
        if any(not p or set(p) != set(points[0]) for p in points):
            _fail(path, f"{where}.points", "every point must set the same, non-empty set of keys")
        if len({json.dumps(p, sort_keys=True) for p in points}) != len(points):
            _fail(path, f"{where}.points", "repeated points")
    metric = value.get("metric")
    if not isinstance(metric, str) or not metric:
        _fail(
            path,
            f"{where}.metric",
            f"expected a metric of the runs' results.json (e.g. classification/score), got "
            f"{metric!r}",
        )
    mode = value.get("mode", "max")
    if mode not in ("max", "min"):
        _fail(path, f"{where}.mode", f"expected max or min, got {mode!r}")
    opts = _opts(path, f"{where}.opts", value.get("opts"))
    if not opts:  # without it the grid would be scored on the test sets: selection on test
        _fail(
            path,
            f"{where}.opts",
            "missing: the overrides that make a grid run score on the validation split, "
            "e.g. {CLASSIFICATION.EVAL_ON_VAL: true}",
        )
    for key in points[0]:
        for other, source in ((entry.get("opts") or {}, "opts"), (opts, "select.opts")):
            if key in other:
                _fail(
                    path,
                    where,
                    f"{key} is a grid key and is also set in the transfer's {source}; the refit "
                    "runs would not use the chosen value",
                )
    seeds = _seeds(path, f"{where}.seeds", value["seeds"]) if "seeds" in value else None
    return {"points": points, "metric": metric, "mode": mode, "opts": opts, "seeds": seeds}

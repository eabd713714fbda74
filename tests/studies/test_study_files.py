"""Every study file in configs/studies loads, expands, and every run's config + overrides loads as
the CLI would load it (unknown keys, missing files or bad values fail here, not hours into a study)."""
import argparse
import glob
import os

import pytest

from contrastive_det.engine.defaults import load_config
from contrastive_det.studies import expand, load_study

from conftest import REPO

STUDIES = sorted(glob.glob(os.path.join(REPO, "configs", "studies", "*.yaml")))


def test_every_published_study_has_a_toy_twin():
    names = {os.path.basename(p)[:-5] for p in STUDIES}
    assert {"islam", "cole_quantity", "core_tuning", "scan"} <= names
    for name in ("islam", "cole_quantity", "core_tuning", "scan"):
        assert f"{name}_toy" in names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: os.path.basename(p))
def test_study_file_expands_and_every_run_config_loads(path):
    study = load_study(path)
    runs = expand(study)
    assert runs and study.name == os.path.basename(path)[:-5]
    kinds = {r.kind for r in runs}
    assert {"pretrain", "transfer"} <= kinds
    for run in runs:
        if "--config-file" not in run.argv:
            continue
        i = run.argv.index("--config-file")
        config = run.argv[i + 1]
        if not os.path.isfile(config):  # written by the conversion run: load the transfer config instead
            config = run.meta["config"]
        load_config(argparse.Namespace(config_file=config, opts=run.argv[i + 2:]))


def test_the_demo_study_covers_what_the_main_job_promises():
    """`make demo` runs Makefile's DEMO_STUDY: SimCLR, SupCon and a joint objective against random init,
    linear probe and few-shot for every row and detection for SupCon and random init, each over >= 3 seeds."""
    import re

    makefile = open(os.path.join(REPO, "Makefile")).read()
    demo = re.search(r"^DEMO_STUDY \?= (\S+)$", makefile, re.M).group(1)
    assert re.search(r"^demo: data\n\t\$\(PY\) tools/run_study.py \$\(DEMO_STUDY\)", makefile, re.M)
    runs = expand(load_study(os.path.join(REPO, demo)))
    rows = {r.meta["row"] for r in runs if r.kind == "pretrain"}
    assert {"simclr", "supcon", "supcon_selfsupcon"} <= rows
    seeds = {}
    for r in runs:
        if r.kind == "transfer":
            seeds.setdefault((r.meta["transfer"], r.meta["row"]), set()).add(r.meta["seed"])
    for transfer in ("linear_lbfgs", "few_shot"):
        for row in rows | {"random-init"}:
            assert len(seeds[(transfer, row)]) >= 3, (transfer, row)
    assert len(seeds[("detection", "supcon")]) >= 3 and len(seeds[("detection", "random-init")]) >= 3

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

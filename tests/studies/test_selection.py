"""
Selection on validation as a study step (contrastive_det/studies/selection.py): a transfer's
``select:`` expands into grid runs scored on validation, a select run (tools/select_config.py) that
writes the chosen config, and refit runs that read it; end to end on a tiny fine-tuning study.
"""

import argparse
import json
import math
import os
import subprocess
import sys

import pytest
import yaml

from contrastive_det.engine.defaults import load_config
from contrastive_det.studies import StudyError, expand, load_study
from contrastive_det.studies.selection import choose, grid_points, point_score, write_selection

from conftest import REPO, copy_crops, folder_sets

FINETUNE = "configs/toy/cls_finetune_R18.yaml"
SELECT = {
    "grid": {"SOLVER.BASE_LR": [0.1, 0.01], "SOLVER.WEIGHT_DECAY": [0.0, 0.0001]},
    "metric": "classification/score",
    "opts": {"CLASSIFICATION.EVAL_ON_VAL": True},
}


def write_results(run_dir, metrics):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump({"metrics": metrics}, f)
    return str(run_dir)


def study_file(tmp_path, select=None, opts=None, name="sel", extra_runs=None):
    runs = {
        "ft": {"config": FINETUNE, "select": select or SELECT, "opts": opts or {}},
        **(extra_runs or {}),
    }
    study = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "pretrain": {"methods": {"simclr": {"config": "configs/toy/pretrain_simclr_R18.yaml"}}},
        "transfer": {"seeds": [0, 1], "runs": runs},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return str(path)


def test_the_grid_is_every_combination_in_order_and_ties_go_to_the_earlier_point():
    assert grid_points({"A.X": [1, 2], "A.Y": ["p", "q"]}) == [
        {"A.X": 1, "A.Y": "p"},
        {"A.X": 1, "A.Y": "q"},
        {"A.X": 2, "A.Y": "p"},
        {"A.X": 2, "A.Y": "q"},
    ]
    assert choose([50.0, 70.0, 70.0, 10.0]) == 1
    assert choose([50.0, 70.0, 70.0, 10.0], "min") == 3
    assert choose([3.0, 1.0, 1.0], "min") == 1


def test_a_point_scores_the_mean_over_test_sets_then_over_seeds(tmp_path):
    a = write_results(
        tmp_path / "a", {"v1": {"classification/score": 60.0}, "v2": {"classification/score": 80.0}}
    )
    b = write_results(
        tmp_path / "b",
        {
            "v1": {
                "classification/score": {"mean": 40.0, "std": 1.0, "n": 2, "values": [39.0, 41.0]}
            },
            "v2": {"classification/score": 60.0},
        },
    )
    assert point_score([a, b], "classification/score") == pytest.approx((70.0 + 50.0) / 2)
    missing = write_results(tmp_path / "m", {"v1": {"linear/score": 1.0}})
    with pytest.raises(
        ValueError, match=r"m/results.json: no 'classification/score' in any test set"
    ):
        point_score([a, missing], "classification/score")
    nan = write_results(tmp_path / "n", {"v1": {"classification/score": math.nan}})
    with pytest.raises(ValueError, match="n/results.json: 'classification/score' is NaN"):
        point_score([nan], "classification/score")


def test_the_chosen_config_inherits_the_base_and_sets_the_point(tmp_path):
    points = []
    for i, score in enumerate([55.0, 61.0, 61.0, 40.0]):
        point = grid_points(SELECT["grid"])[i]
        points.append(
            (point, [write_results(tmp_path / f"p{i}", {"val": {"classification/score": score}})])
        )
    record = write_selection(
        str(tmp_path / "choice"),
        os.path.join(REPO, FINETUNE),
        points,
        "classification/score",
        log=lambda m: None,
    )
    assert record["chosen"] == {
        "index": 1,
        "point": {"SOLVER.BASE_LR": 0.1, "SOLVER.WEIGHT_DECAY": 0.0001},
        "score": 61.0,
    }
    cfg = load_config(
        argparse.Namespace(config_file=str(tmp_path / "choice" / "chosen.yaml"), opts=[])
    )
    base = load_config(argparse.Namespace(config_file=os.path.join(REPO, FINETUNE), opts=[]))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY) == (0.1, 0.0001)
    assert (
        cfg.CLASSIFICATION.PROTOCOL == base.CLASSIFICATION.PROTOCOL
        and cfg.SOLVER.MAX_ITER == base.SOLVER.MAX_ITER
    )
    saved = json.load(open(tmp_path / "choice" / "selection.json"))
    assert [p["score"] for p in saved["points"]] == [55.0, 61.0, 61.0, 40.0]


def test_expansion_grid_then_choice_then_refit_on_the_chosen_config(tmp_path):
    runs = {r.id: r for r in expand(load_study(study_file(tmp_path)))}
    grid = sorted(
        rid for rid in runs if rid.startswith("select/ft/simclr/") and runs[rid].kind == "grid"
    )
    assert grid == [
        "select/ft/simclr/00_base_lr0.1_weight_decay0.0/seed0",
        "select/ft/simclr/01_base_lr0.1_weight_decay0.0001/seed0",
        "select/ft/simclr/02_base_lr0.01_weight_decay0.0/seed0",
        "select/ft/simclr/03_base_lr0.01_weight_decay0.0001/seed0",
    ]  # the first transfer seed only
    g = runs[grid[1]].argv
    assert g[g.index("CLASSIFICATION.EVAL_ON_VAL") + 1] == "True"
    assert g[g.index("SOLVER.WEIGHT_DECAY") + 1] == "0.0001" and runs[grid[1]].deps == [
        "pretrain/simclr/seed0"
    ]
    choice = runs["select/ft/simclr/choice"]
    assert choice.kind == "select" and choice.deps == grid
    refit = runs["transfer/ft/simclr/seed1"]
    assert refit.deps == ["select/ft/simclr/choice"]
    assert refit.argv[refit.argv.index("--config-file") + 1] == choice.outputs[0]
    assert "CLASSIFICATION.EVAL_ON_VAL" not in refit.argv and "SOLVER.BASE_LR" not in refit.argv
    assert "select/ft/random-init/choice" in runs  # every row is selected on its own
    listed = {
        "points": [{"SOLVER.BASE_LR": 0.1}, {"SOLVER.BASE_LR": 0.03}],
        "metric": "m",
        "seeds": [0, 1],
        "opts": {"CLASSIFICATION.EVAL_ON_VAL": True},
    }
    ids = [
        r.id
        for r in expand(load_study(study_file(tmp_path, select=listed, name="listed")))
        if r.kind == "grid" and r.meta["row"] == "simclr"
    ]
    assert ids == [
        "select/ft/simclr/00_base_lr0.1/seed0",
        "select/ft/simclr/00_base_lr0.1/seed1",
        "select/ft/simclr/01_base_lr0.03/seed0",
        "select/ft/simclr/01_base_lr0.03/seed1",
    ]


@pytest.mark.parametrize(
    "select, opts, message",
    [
        (
            {**SELECT, "points": [{"SOLVER.BASE_LR": 0.1}]},
            None,
            "give grid: .* or points: .*, one of them",
        ),
        (
            {k: v for k, v in SELECT.items() if k != "opts"},
            None,
            r"select\.opts: missing: the overrides that make a grid "
            "run score on the validation split",
        ),
        (
            {k: v for k, v in SELECT.items() if k != "metric"},
            None,
            r"select\.metric: expected a metric",
        ),
        ({**SELECT, "mode": "best"}, None, r"select\.mode: expected max or min"),
        (
            {**SELECT, "grid": {"SOLVER.BASE_LR": []}},
            None,
            r"select\.grid\.SOLVER\.BASE_LR: expected a non-empty list",
        ),
        ({**SELECT, "grid": {"SOLVER.BASE_LR": [0.1, 0.1]}}, None, "repeated values"),
        (
            SELECT,
            {"SOLVER.BASE_LR": 0.5},
            "SOLVER.BASE_LR is a grid key and is also set in the transfer's opts",
        ),
        (
            {
                "points": [{"SOLVER.BASE_LR": 0.1}, {"SOLVER.MAX_ITER": 5}],
                "metric": "m",
                "opts": {"A.B": 1},
            },
            None,
            "every point must set the same",
        ),
    ],
)
def test_bad_selections_name_the_key(tmp_path, select, opts, message):
    path = study_file(tmp_path, select=select, opts=opts)
    with pytest.raises(StudyError, match=message) as e:
        load_study(path)
    assert path in str(e.value) and "transfer.runs.ft.select" in str(e.value)


def test_select_config_cli_names_a_grid_run_without_results(tmp_path):
    ok = write_results(tmp_path / "ok", {"val": {"classification/score": 1.0}})
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "select_config.py"),
            "--base",
            os.path.join(REPO, FINETUNE),
            "--metric",
            "classification/score",
            "--out",
            str(tmp_path / "c"),
            "--point",
            '{"SOLVER.BASE_LR": 0.1}',
            ok,
            "--point",
            '{"SOLVER.BASE_LR": 0.01}',
            str(tmp_path / "absent"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        proc.returncode == 2
        and f"{tmp_path / 'absent'}/results.json: no results file" in proc.stderr
    )
    assert not os.path.exists(tmp_path / "c" / "chosen.yaml")  # nothing half-chosen


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow
def test_a_selection_study_runs_end_to_end(toy_root, tmp_path):
    """Two fine-tuning points of 2 iterations on a tiny folder set, for random init: the refit runs
    use the point that scored best on the held-out validation split, trained on train +
    validation."""
    sets = copy_crops(toy_root, tmp_path / "sets", {"train": 6, "test": 3}, "crops_textured")
    small = {
        "DATASETS.CUSTOM": folder_sets("sel", sets),
        "DATASETS.TRAIN": ["sel_train"],
        "DATASETS.TEST": ["sel_test"],
        "DATALOADER.NUM_WORKERS": 0,
        "INPUT.CLS.CROP_SIZE": 32,
        "INPUT.CLS.TEST_RESIZE": 32,
        "SOLVER.IMS_PER_BATCH": 8,
        "SOLVER.MAX_ITER": 2,
        "SOLVER.STEPS": [],
        "SOLVER.WARMUP_ITERS": 0,
        "SOLVER.CHECKPOINT_PERIOD": 100,
        "TEST.EVAL_PERIOD": 0,
    }
    select = {
        "points": [{"SOLVER.BASE_LR": 0.001}, {"SOLVER.BASE_LR": 0.05}],
        "metric": "classification/score",
        "opts": {"CLASSIFICATION.EVAL_ON_VAL": True},
    }
    pretrain = {
        "config": "configs/toy/pretrain_simclr_R18.yaml",
        "opts": {  # a study needs a row: 1 iteration
            **{
                k: small[k]
                for k in (
                    "DATASETS.CUSTOM",
                    "DATASETS.TRAIN",
                    "DATASETS.TEST",
                    "DATALOADER.NUM_WORKERS",
                )
            },
            "SOLVER.IMS_PER_BATCH": 16,
            "SOLVER.MAX_ITER": 1,
            "SOLVER.WARMUP_ITERS": 0,
            "TEST.KNN.K": 5,
        },
    }
    study = {
        "name": "sel_e2e",
        "output_dir": str(tmp_path / "out"),
        "pretrain": {"methods": {"simclr": pretrain}},
        "transfer": {
            "seeds": [3],
            "runs": {
                "ft": {
                    "config": FINETUNE,
                    "opts": small,
                    "select": select,
                    "methods": ["random-init"],
                }
            },
        },
    }
    path = tmp_path / "sel_e2e.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    env = dict(os.environ, DETECTRON2_DATASETS=str(toy_root), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "run_study.py"), str(path), "--jobs", "2"],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = tmp_path / "out"
    sel = json.load(open(out / "select/ft/random-init/choice/selection.json"))
    scores = [p["score"] for p in sel["points"]]
    grid_runs = [
        json.load(open(out / f"select/ft/random-init/{d}/seed3/results.json"))
        for d in ("00_base_lr0.001", "01_base_lr0.05")
    ]
    assert scores == [next(iter(r["metrics"].values()))["classification/score"] for r in grid_runs]
    assert sel["chosen"]["index"] == choose(scores)
    refit = json.load(open(out / "transfer/ft/random-init/seed3/results.json"))
    frozen = yaml.safe_load(open(out / "transfer/ft/random-init/seed3/config.yaml"))
    assert frozen["SOLVER"]["BASE_LR"] == sel["chosen"]["point"]["SOLVER.BASE_LR"]
    # the refit trains on train + validation
    assert frozen["CLASSIFICATION"]["EVAL_ON_VAL"] is False
    assert "sel_test" in refit["metrics"]
    report = (out / "report" / "tables.md").read_text()
    assert "ft" in report and "00_base_lr" not in report  # the grid runs are not rows of the report


def test_the_former_finetune_grid_keys_load_with_a_warning_and_are_ignored(tmp_path, caplog):
    cfg_file = tmp_path / "old.yaml"
    cfg_file.write_text(
        f"_BASE_: {os.path.join(REPO, FINETUNE)}\nCLASSIFICATION:\n  FINETUNE_GRID:\n"
        "    BASE_LRS: (0.1,)\n    WD_OVER_LR: True\n"
    )
    with caplog.at_level("WARNING"):
        cfg = load_config(
            argparse.Namespace(
                config_file=str(cfg_file),
                opts=["CLASSIFICATION.FINETUNE_GRID.WEIGHT_DECAYS", "(0.0,)"],
            )
        )
    assert "FINETUNE_GRID" not in cfg.CLASSIFICATION
    assert "Deprecated config key (ignoring): CLASSIFICATION.FINETUNE_GRID" in caplog.text
    assert "CLASSIFICATION.FINETUNE_GRID.WEIGHT_DECAYS" in caplog.text


def test_the_toy_fine_tuning_selection_follows_ssl_transfers_rule():
    """ssl-transfer's finetune.py: weight decay = grid value / learning rate, every lr x wd pair."""
    study = load_study(os.path.join(REPO, "configs", "studies", "finetune_select_toy.yaml"))
    select = study.transfers["finetune"]["select"]
    pairs = {
        (p["SOLVER.BASE_LR"], round(p["SOLVER.WEIGHT_DECAY"] * p["SOLVER.BASE_LR"], 9))
        for p in select["points"]
    }
    assert pairs == {(lr, wd) for lr in (0.03, 0.003) for wd in (0.0, 1e-4)}
    assert (
        select["opts"] == {"CLASSIFICATION.EVAL_ON_VAL": True}
        and select["metric"] == "classification/score"
    )

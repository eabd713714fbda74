"""tools/finetune_sweep.py: grid on the validation split, the best point retrained on train+val; resumable."""
import json

import pytest

from contrastive_det.apps.finetune_sweep import choose, grid_points
from conftest import run_cli
from test_train_net_classification import config, mini_textured, opts  # noqa: F401  (fixture)


def test_grid_and_choice_rules():
    assert grid_points([0.1, 0.01], [0.0]) == [(0.1, 0.0, 0.0), (0.01, 0.0, 0.0)]
    # ssl-transfer's finetune.py: the weight decay trained with is the grid's divided by the learning rate
    points = grid_points([0.1, 0.01], [0.0, 1e-4], wd_over_lr=True)
    expected = [(0.1, 0.0, 0.0), (0.1, 1e-4, 1e-3), (0.01, 0.0, 0.0), (0.01, 1e-4, 1e-2)]
    assert [p[:2] for p in points] == [e[:2] for e in expected]
    assert [p[2] for p in points] == pytest.approx([e[2] for e in expected])
    with pytest.raises(ValueError, match="BASE_LRS"):
        grid_points([], [0.0])
    with pytest.raises(ValueError, match="WEIGHT_DECAYS"):
        grid_points([0.1], [])
    assert choose([((1, 0), 50.0), ((2, 0), 70.0), ((3, 0), 70.0)]) == ((2, 0), 70.0)  # ties: earlier point


def test_sweep_runs_grid_chooses_on_val_and_resumes(mini_textured, toy_root, tmp_path):  # noqa: F811
    out = tmp_path / "sweep"
    args = ["--config-file", config("finetune"), *opts(mini_textured, out, tmp_path / "c", **{
        "SOLVER.MAX_ITER": "1", "CLASSIFICATION.FINETUNE_GRID.BASE_LRS": "(0.001, 0.01)",
        "CLASSIFICATION.FINETUNE_GRID.WEIGHT_DECAYS": "(0.0,)"})]
    run_cli("finetune_sweep.py", args, toy_root)
    record = json.load(open(out / "sweep.json"))
    assert [(r["base_lr"], r["weight_decay"]) for r in record["grid"]] == [(0.001, 0.0), (0.01, 0.0)]
    for row in record["grid"]:
        res = json.load(open(f"{row['output_dir']}/results.json"))
        assert res["evaluated_on"] == "validation split" and res["config_digest"]
    best = max(record["grid"], key=lambda r: r["val_score"])
    assert record["chosen"]["val_score"] == best["val_score"]
    final = json.load(open(out / "final" / "results.json"))
    assert final["evaluated_on"] == "test" and final["metrics"]["mini_tex_test"]["classification/score"] == \
        record["final"]["test_score"]
    # a second invocation runs no grid point again
    proc = run_cli("finetune_sweep.py", args, toy_root)
    assert proc.stdout.count("done before") == 2

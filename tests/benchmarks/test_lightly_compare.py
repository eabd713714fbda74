"""The comparison with lightly: our side runs the real engine; lightly's side and its absence."""

import os

import pytest

from conftest import REPO, run_cli

SIMCLR = os.path.join(REPO, "configs", "toy", "pretrain_simclr_R18.yaml")
TINY = [
    "SOLVER.IMS_PER_BATCH",
    "4",
    "INPUT.TWO_VIEW.CROP_SIZE",
    "32",
    "INPUT.TWO_VIEW.TEST_RESIZE",
    "32",
    "DATALOADER.NUM_WORKERS",
    "0",
    "MODEL.DEVICE",
    "cpu",
]


def test_ours_block_times_the_real_engine_with_its_writers(toy_root, tmp_path):
    from contrastive_det.benchmarks.lightly_compare import time_ours

    cfg, times = time_ours(SIMCLR, TINY, warmup=1, iters=2, output_dir=str(tmp_path))
    assert len(times) == 2 and all(t > 0 for t in times)
    assert cfg.SOLVER.MAX_ITER == 3 and cfg.DATASETS.TEST == ()
    assert (tmp_path / "metrics.json").is_file()  # the PeriodicWriter wrote (last iteration)


def test_lightly_block_runs_on_the_same_folder(toy_root, tmp_path):
    pytest.importorskip(
        "lightly.transforms", reason="lightly is optional (pip install -e .[bench])"
    )
    from contrastive_det.benchmarks.lightly_compare import _cfg, image_folder_root, time_lightly

    cfg = _cfg(SIMCLR, TINY, str(tmp_path))
    assert image_folder_root(cfg) == str(toy_root / "toy_digits" / "crops" / "train")
    times = time_lightly(cfg, warmup=1, iters=2)
    assert len(times) == 2 and all(t > 0 for t in times)


def test_benchmark_skips_lightly_row_with_install_hint(toy_root, tmp_path, monkeypatch):
    fake = tmp_path / "hide" / "lightly"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('lightly hidden by the test')\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(tmp_path / "hide"), os.environ.get("PYTHONPATH", "")])
    )
    proc = run_cli("benchmark.py", ["--only", "lightly"], toy_root)
    assert "pretrain_net vs lightly: skipped" in proc.stdout
    assert "pip install --no-deps lightly==1.6.0" in proc.stdout

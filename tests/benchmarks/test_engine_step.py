"""
tools/benchmark.py runs end to end (tiny settings) and reports every figure; no timing is asserted
except that the Trainer's measured blocks contain its periodic writes.
"""

import argparse
import json
import os
import time

import pytest

from conftest import REPO, run_cli


@pytest.mark.slow
def test_benchmark_prints_and_writes_every_figure(toy_root, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli(
        "benchmark.py",
        [
            "--only",
            "toy",
            "--only",
            "ratio",
            "--only",
            "seg_ratio",
            "--only",
            "pretrain_r18",
            "--only",
            "pretrain_ratio",
            "--warmup",
            "0",
            "--iters",
            "1",
            "--block",
            "1",
            "--trials",
            "1",
            "--json",
            str(out),
            "SOLVER.IMS_PER_BATCH",
            "2",
            "INPUT.MIN_SIZE_TRAIN",
            "(128,)",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
            "16",
            "INPUT.SEM_SEG.CROP_SIZE",
            "(64, 64)",
            "DATALOADER.NUM_WORKERS",
            "0",
        ],
        toy_root,
    )
    figures = json.load(open(out))
    assert figures["toy_s_per_iter"] > 0 and figures["pretrain_r18_images_per_s"] > 0
    for key in ("ratio", "seg_ratio", "pretrain_ratio"):
        assert figures[key]["ratio_median"] > 0 and len(figures[key]["ratios"]) == 1
        assert figures[key]["ratio_total"] > 0
    assert "train_net step / bare SimpleTrainer step" in proc.stdout
    assert "pretrain_net step / bare PyTorch loop" in proc.stdout
    assert "train_net segmentation step / bare SemanticSegmentor loop" in proc.stdout
    assert "Full config saved" not in proc.stdout  # figures only


@pytest.mark.slow
def test_trainer_blocks_include_hooks_and_periodic_writes(toy_root, tmp_path, monkeypatch):
    """
    Every JSONWriter write of the Trainer (period 20) happens inside a timed Trainer iteration:
    the benchmark's clock jumps by an hour at each write, and exactly as many timed Trainer
    iterations (and no baseline iteration) last that long. Each write reads the Trainer's own
    storage (its iteration number and iteration times), not the baseline's: with the baseline's
    storage current, the second write of detectron2's CommonMetricPrinter divided by zero (seen on
    a GPU, where the benchmark ran two periods).
    """
    from detectron2.utils.events import JSONWriter, get_event_storage

    from contrastive_det.benchmarks import engine_step as benchmark
    from contrastive_det.benchmarks.engine_step import StepBench, trainer_overhead
    from contrastive_det.engine.defaults import build_run_config

    pause, writes = 3600.0, []
    real_write = JSONWriter.write

    class JumpingClock:
        offset = 0.0

        def perf_counter(self):
            return time.perf_counter() + self.offset

    clock = JumpingClock()

    def jumping_write(self):
        storage = get_event_storage()
        writes.append((storage.iter, "time" in storage.histories()))
        clock.offset += pause
        return real_write(self)

    monkeypatch.setattr(benchmark, "time", clock)
    monkeypatch.setattr(JSONWriter, "write", jumping_write)
    args = argparse.Namespace(
        config_file=os.path.join(REPO, "configs", "toy", "pretrain_simclr_R18.yaml"),
        opts=[
            "SOLVER.IMS_PER_BATCH",
            "2",
            "INPUT.TWO_VIEW.CROP_SIZE",
            "32",
            "INPUT.TWO_VIEW.TEST_RESIZE",
            "32",
            "DATALOADER.NUM_WORKERS",
            "0",
            "MODEL.DEVICE",
            "cpu",
            "SOLVER.CHECKPOINT_PERIOD",
            "1000000",
        ],
    )
    cfg, _ = build_run_config(args, seed=0, output_dir=str(tmp_path / "out"))
    block, trials = 5, 2 * StepBench.WRITER_PERIOD // 5  # 40 timed Trainer iterations: two writes
    r = trainer_overhead(cfg, warmup=1, block=block, trials=trials, baseline="torch")
    assert len(r["trainer_s"]) == len(r["baseline_s"]) == block * trials
    period = StepBench.WRITER_PERIOD
    # iterations 19 and 39, timed
    assert writes == [(period - 1, True), (2 * period - 1, True)], writes
    slow = [t for t in r["trainer_s"] if t >= pause]
    assert len(slow) == len(writes), (r["trainer_s"], writes)
    assert not [t for t in r["baseline_s"] if t >= pause]
    assert r["ratio_total"] > 1  # the write's pause counts in the Trainer's total

"""tools/benchmark.py runs end to end (tiny settings) and reports every figure; no timing is asserted."""
import json

from conftest import run_cli


def test_benchmark_prints_and_writes_every_figure(toy_root, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli(
        "benchmark.py",
        ["--only", "toy", "--only", "ratio", "--only", "pretrain_r18", "--only", "pretrain_ratio",
         "--warmup", "0", "--iters", "1", "--block", "1", "--trials", "1", "--json", str(out),
         "SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TRAIN", "(128,)", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
         "DATALOADER.NUM_WORKERS", "0"],
        toy_root,
    )
    figures = json.load(open(out))
    assert figures["toy_s_per_iter"] > 0 and figures["pretrain_r18_images_per_s"] > 0
    for key in ("ratio", "pretrain_ratio"):
        assert figures[key]["ratio_median"] > 0 and len(figures[key]["ratios"]) == 1
    assert "train_net step / bare SimpleTrainer step" in proc.stdout
    assert "pretrain_net step / bare PyTorch loop" in proc.stdout
    assert "Full config saved" not in proc.stdout  # figures only

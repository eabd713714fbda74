"""
End to end: the L-BFGS probe of a randomly initialised ResNet on 2 CPU processes (--num-gpus 2,
gloo: the same init on both, features split across processes and gathered) gives the 1-process
    numbers.
"""

import json

import pytest

from conftest import copy_crops, run_cli
from ddp_helpers import REPO, free_port


@pytest.mark.slow
def test_lbfgs_probe_on_two_processes_matches_one(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "tex", {"train": 5, "test": 5}, "crops_textured")
    custom = (
        f"[{{'NAME': 'ddp_tex_train', 'FORMAT': 'folder', 'ROOT': '{root / 'train'}'}}, "
        f"{{'NAME': 'ddp_tex_test', 'FORMAT': 'folder', 'ROOT': '{root / 'test'}'}}]"
    )

    def run(protocol, out, processes, cache, extra=()):
        opts = [
            "DATASETS.CUSTOM",
            custom,
            "DATASETS.TRAIN",
            "('ddp_tex_train',)",
            "DATASETS.TEST",
            "('ddp_tex_test',)",
            "INPUT.CLS.CROP_SIZE",
            "32",
            "INPUT.CLS.TEST_RESIZE",
            "32",
            "DATALOADER.NUM_WORKERS",
            "0",
            "CLASSIFICATION.TEST_BATCH_SIZE",
            "7",
            "CLASSIFICATION.LBFGS.NUM_REGS",
            "3",
            "SEED",
            "4",
            "CLASSIFICATION.FEATURE_CACHE",
            str(cache),
            "OUTPUT_DIR",
            str(out),
            *extra,
        ]
        args = [
            "--config-file",
            f"{REPO}/configs/toy/cls_{protocol}_R18.yaml",
            "--num-gpus",
            str(processes),
            "--dist-url",
            f"tcp://127.0.0.1:{free_port()}",
            *opts,
        ]
        run_cli("train_net.py", args, toy_root, timeout=300)
        return json.load(open(out / "results.json"))["metrics"]["ddp_tex_test"]

    # separate caches: the 2-process run extracts (and gathers) every split itself
    one = run("linear_lbfgs", tmp_path / "one", 1, tmp_path / "c1")
    two = run("linear_lbfgs", tmp_path / "two", 2, tmp_path / "c2")
    assert one == two


@pytest.mark.slow
def test_two_test_sets_on_two_processes_share_one_decision_and_complete_entries(toy_root, tmp_path):
    """Two test sets: the second one's train/val features come from the entries the first one wrote
    (rank 0 decides for every process); results equal one process's, every entry is complete."""
    from contrastive_det.evaluation import FeatureCache

    root = copy_crops(toy_root, tmp_path / "tex", {"train": 5, "test": 5}, "crops_textured")
    other = copy_crops(toy_root, tmp_path / "plain", {"test": 5}, "crops")
    custom = (
        f"[{{'NAME': 'two_train', 'FORMAT': 'folder', 'ROOT': '{root / 'train'}'}}, "
        f"{{'NAME': 'two_test_a', 'FORMAT': 'folder', 'ROOT': '{root / 'test'}'}}, "
        f"{{'NAME': 'two_test_b', 'FORMAT': 'folder', 'ROOT': '{other / 'test'}'}}]"
    )

    def run(out, processes, cache):
        opts = [
            "DATASETS.CUSTOM",
            custom,
            "DATASETS.TRAIN",
            "('two_train',)",
            "DATASETS.TEST",
            "('two_test_a', 'two_test_b')",
            "INPUT.CLS.CROP_SIZE",
            "32",
            "INPUT.CLS.TEST_RESIZE",
            "32",
            "DATALOADER.NUM_WORKERS",
            "0",
            "CLASSIFICATION.TEST_BATCH_SIZE",
            "7",
            "CLASSIFICATION.LBFGS.NUM_REGS",
            "3",
            "SEED",
            "4",
            "CLASSIFICATION.FEATURE_CACHE",
            str(cache),
            "OUTPUT_DIR",
            str(out),
        ]
        args = [
            "--config-file",
            f"{REPO}/configs/toy/cls_linear_lbfgs_R18.yaml",
            "--num-gpus",
            str(processes),
            "--dist-url",
            f"tcp://127.0.0.1:{free_port()}",
            *opts,
        ]
        proc = run_cli("train_net.py", args, toy_root, timeout=300)
        return json.load(open(out / "results.json"))["metrics"], proc.stdout + proc.stderr

    one, _ = run(tmp_path / "one", 1, tmp_path / "c1")
    two, log = run(tmp_path / "two", 2, tmp_path / "c2")
    assert one == two and set(two) == {"two_test_a", "two_test_b"}
    assert "Features of split(s) ['train', 'val'] come from the cache" in log  # the second test set
    cache = FeatureCache(tmp_path / "c2")
    assert len(cache.keys()) == 4  # train, val and the two test sets
    sizes = sorted(len(cache.load(k)["image_ids"]) for k in cache.keys())
    assert sizes == [10, 40, 50, 50]  # val 20% and train 80% of 50, each test set whole

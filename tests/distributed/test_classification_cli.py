"""
End to end: the L-BFGS probe of a randomly initialised ResNet on 2 CPU processes (--num-gpus 2,
gloo: the same init on both, features split across processes and gathered) gives the 1-process numbers.
"""
import json

from conftest import copy_crops, run_cli
from ddp_helpers import REPO, free_port


def test_lbfgs_probe_on_two_processes_matches_one(toy_root, tmp_path):
    root = copy_crops(toy_root, tmp_path / "tex", {"train": 5, "test": 5}, "crops_textured")
    custom = (f"[{{'NAME': 'ddp_tex_train', 'FORMAT': 'folder', 'ROOT': '{root / 'train'}'}}, "
              f"{{'NAME': 'ddp_tex_test', 'FORMAT': 'folder', 'ROOT': '{root / 'test'}'}}]")

    def run(protocol, out, processes, cache, extra=()):
        opts = ["DATASETS.CUSTOM", custom, "DATASETS.TRAIN", "('ddp_tex_train',)", "DATASETS.TEST", "('ddp_tex_test',)",
                "INPUT.CLS.CROP_SIZE", "32", "INPUT.CLS.TEST_RESIZE", "32", "DATALOADER.NUM_WORKERS", "0",
                "CLASSIFICATION.TEST_BATCH_SIZE", "7", "CLASSIFICATION.LBFGS.NUM_REGS", "3", "SEED", "4",
                "CLASSIFICATION.FEATURE_CACHE", str(cache), "OUTPUT_DIR", str(out), *extra]
        args = ["--config-file", f"{REPO}/configs/toy/cls_{protocol}_R18.yaml", "--num-gpus", str(processes),
                "--dist-url", f"tcp://127.0.0.1:{free_port()}", *opts]
        run_cli("train_net.py", args, toy_root, timeout=300)
        return json.load(open(out / "results.json"))["metrics"]["ddp_tex_test"]

    # separate caches: the 2-process run extracts (and gathers) every split itself
    one = run("linear_lbfgs", tmp_path / "one", 1, tmp_path / "c1")
    two = run("linear_lbfgs", tmp_path / "two", 2, tmp_path / "c2")
    assert one == two

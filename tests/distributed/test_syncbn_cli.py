"""End to end: SimCLR with its recipe's global BN (MODEL.TV_RESNET.NORM SyncBN) through
tools/pretrain_net.py on 2 CPU processes (--num-gpus 2: gloo; SyncBN becomes detectron2's
naiveSyncBN in trunk and head)."""

import json

import pytest
import torch

from conftest import copy_crops, run_cli
from ddp_helpers import REPO, free_port


@pytest.mark.slow
def test_simclr_global_bn_on_two_cpu_processes(toy_root, tmp_path):
    crops = copy_crops(toy_root, tmp_path / "crops", {"train": 2, "test": 1})
    out = tmp_path / "run"
    custom = (
        f"[{{'NAME': 'syncbn_train', 'FORMAT': 'folder', 'ROOT': '{crops / 'train'}'}}, "
        f"{{'NAME': 'syncbn_test', 'FORMAT': 'folder', 'ROOT': '{crops / 'test'}'}}]"
    )
    opts = {
        "DATASETS.CUSTOM": custom,
        "DATASETS.TRAIN": "('syncbn_train',)",
        "DATASETS.TEST": "('syncbn_test',)",
        # the recipe's value, stated so the test does not depend on it
        "MODEL.TV_RESNET.NORM": "SyncBN",
        "SOLVER.IMS_PER_BATCH": "4",
        "SOLVER.MAX_ITER": "2",
        "SOLVER.WARMUP_ITERS": "1",
        "SOLVER.CHECKPOINT_PERIOD": "100",
        "INPUT.TWO_VIEW.CROP_SIZE": "32",
        "INPUT.TWO_VIEW.TEST_RESIZE": "32",
        "MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM": "32",
        "DATALOADER.NUM_WORKERS": "0",
        "TEST.KNN.K": "3",
        "TEST.KNN.BATCH_SIZE": "16",
        "SEED": "3",
        "OUTPUT_DIR": str(out),
    }
    args = [
        "--config-file",
        f"{REPO}/configs/toy/pretrain_simclr_R18.yaml",
        "--num-gpus",
        "2",
        "--dist-url",
        f"tcp://127.0.0.1:{free_port()}",
        *[x for kv in opts.items() for x in kv],
    ]
    proc = run_cli("pretrain_net.py", args, toy_root, timeout=300)
    log = proc.stdout + proc.stderr
    assert "World size: 2" in log
    assert "MODEL.TV_RESNET.NORM SyncBN -> naiveSyncBN" in log
    res = json.load(open(out / "results.json"))
    assert res["method"] == "SimCLR" and res["iteration"] == 2
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    # BN statistics were collected (running means start at 0) in the trunk and in the projection
    # head
    for key in (
        "encoder.resnet.bn1.running_mean",
        "encoder.resnet.layer4.1.bn2.running_mean",
        "projection.mlp.1.running_mean",
    ):
        assert final[key].abs().sum() > 0, key
    assert (out / "backbone.pth").is_file()

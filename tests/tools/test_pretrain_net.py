"""End to end: tools/pretrain_net.py for every method on tiny class-per-folder sets of the toy digit
crops."""

import json
import math
import os
import shutil
import subprocess
import time

import pytest
import torch

from conftest import REPO, copy_crops, free_port, run_cli, start_cli

METHODS = ["simclr", "mocov2", "supcon", "ce_selfsupcon", "supcon_selfsupcon", "scan"]
META_ARCH = {
    "simclr": "SimCLR",
    "mocov2": "MoCoV2",
    "supcon": "SupCon",
    "ce_selfsupcon": "CESelfSupCon",
    "supcon_selfsupcon": "SupConSelfSupCon",
    "scan": "SCAN",
}


def config(method):
    return os.path.join(REPO, "configs", "toy", f"pretrain_{method}_R18.yaml")


@pytest.fixture(scope="module")
def mini_crops(toy_root, tmp_path_factory):
    """8 train and 4 test crops per class, copied from the toy digit crops (class-per-folder)."""
    return copy_crops(toy_root, tmp_path_factory.mktemp("mini_crops"), {"train": 8, "test": 4})


def fast_opts(mini_crops, out, max_iter=3, **extra):
    custom = (
        f"[{{'NAME': 'mini_train', 'FORMAT': 'folder', 'ROOT': '{mini_crops / 'train'}'}}, "
        f"{{'NAME': 'mini_test', 'FORMAT': 'folder', 'ROOT': '{mini_crops / 'test'}'}}]"
    )
    opts = {
        "DATASETS.CUSTOM": custom,
        "DATASETS.TRAIN": "('mini_train',)",
        "DATASETS.TEST": "('mini_test',)",
        "SOLVER.IMS_PER_BATCH": "16",
        "SOLVER.MAX_ITER": str(max_iter),
        "SOLVER.WARMUP_ITERS": "1",
        "MODEL.CONTRASTIVE.QUEUE_SIZE": "64",
        "MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM": "64",
        "MODEL.SCAN.NUM_NEIGHBORS": "8",
        "DATALOADER.NUM_WORKERS": "0",
        "SEED": "7",
        "TEST.KNN.K": "10",
        "OUTPUT_DIR": str(out),
    }
    opts.update(extra)
    return [x for kv in opts.items() for x in kv]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_evaluates_and_exports(method, mini_crops, toy_root, tmp_path):
    out = tmp_path / method
    run_cli(
        "pretrain_net.py", ["--config-file", config(method), *fast_opts(mini_crops, out)], toy_root
    )
    res = json.load(open(out / "results.json"))
    top1 = res["metrics"]["mini_test"]["knn/top1"]
    assert res["task"] == "pretraining" and res["method"] == META_ARCH[method]
    assert math.isfinite(top1) and 0.0 <= top1 <= 100.0 and res["iteration"] == 3
    rows = [json.loads(line) for line in open(out / "metrics.json") if line.strip()]
    trained = [r for r in rows if "total_loss" in r]
    assert trained and all(r["images_per_s"] > 0 and r["lr"] >= 0 for r in trained)
    exported = torch.load(out / "backbone.pth", weights_only=True)
    state, meta = exported["state_dict"], exported["meta"]
    reference = torchvision_resnet18_keys()
    assert set(state) == reference
    assert (
        meta["arch"] == "resnet18"
        and meta["method"] == META_ARCH[method]
        and meta["input_format"] == "RGB"
    )
    # the exported trunk is the trained query encoder, not a fresh network
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    torch.testing.assert_close(
        state["layer4.1.conv2.weight"], final["encoder.resnet.layer4.1.conv2.weight"]
    )


def torchvision_resnet18_keys():
    import torchvision

    keys = torchvision.models.resnet18(weights=None).state_dict()
    return {k for k in keys if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


@pytest.mark.slow
def test_export_from_any_checkpoint(mini_crops, toy_root, tmp_path):
    out = tmp_path / "run"
    run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            config("simclr"),
            *fast_opts(mini_crops, out, 2, **{"SOLVER.CHECKPOINT_PERIOD": "1"}),
        ],
        toy_root,
    )
    target = tmp_path / "early.pth"
    run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            config("simclr"),
            "--export-from",
            str(out / "model_0000000.pth"),
            "--export-to",
            str(target),
            *fast_opts(mini_crops, tmp_path / "x"),
        ],
        toy_root,
    )
    early = torch.load(target, weights_only=True)["state_dict"]
    ckpt = torch.load(out / "model_0000000.pth", map_location="cpu", weights_only=False)["model"]
    torch.testing.assert_close(early["conv1.weight"], ckpt["encoder.resnet.conv1.weight"])
    # a checkpoint of another model (SimCLR's into MoCo v2's config) is refused, not half loaded
    refused = tmp_path / "refused.pth"
    proc = run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            config("mocov2"),
            "--export-from",
            str(out / "model_final.pth"),
            "--export-to",
            str(refused),
            *fast_opts(mini_crops, tmp_path / "y"),
        ],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0 and not refused.exists()
    assert (
        f"Checkpoint {out / 'model_final.pth'} does not fit the config's model (MoCoV2"
        in proc.stdout + proc.stderr
    )


def test_pretraining_starts_from_a_resnet_of_any_layout_in_every_encoder(
    mini_crops, toy_root, tmp_path
):
    """MODEL.WEIGHTS of a pretraining run: a MoCo-layout ResNet-18 fills the query and the momentum
    encoder."""
    import argparse

    import torchvision

    from contrastive_det.engine.defaults import load_config
    from contrastive_det.tasks.pretrain import prepare_pretraining_weights

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    source = tmp_path / "moco_r18.pth.tar"
    torch.save(
        {
            "state_dict": {
                f"module.encoder_q.{k}": v
                for k, v in net.state_dict().items()
                if not k.startswith("fc.")
            }
        },
        source,
    )
    args = argparse.Namespace(
        config_file=config("mocov2"),
        opts=[*fast_opts(mini_crops, tmp_path / "o"), "MODEL.WEIGHTS", str(source)],
    )
    cfg = load_config(args)
    overrides = prepare_pretraining_weights(cfg, str(tmp_path / "o"), log=lambda line: None)
    assert overrides[:1] == ["MODEL.WEIGHTS"] and overrides[3] == str(source)
    model = torch.load(overrides[1], weights_only=True)["model"]
    prefixes = sorted(
        {k[: -len("conv1.weight")] for k in model if k.endswith("resnet.conv1.weight")}
    )
    assert len(prefixes) == 2  # the query and the momentum encoder
    for prefix in prefixes:
        for k, v in net.state_dict().items():
            if not k.startswith("fc."):
                assert torch.equal(model[prefix + k], v), prefix + k
    # a file that holds no ResNet stops the run before training, naming it
    bad = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), bad)
    out = tmp_path / "bad"
    proc = run_cli(
        "pretrain_net.py",
        ["--config-file", config("simclr"), *fast_opts(mini_crops, out), "MODEL.WEIGHTS", str(bad)],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0 and str(bad) in proc.stdout + proc.stderr
    assert not (out / "metrics.json").exists() and not (out / "model_final.pth").exists()


def test_empty_and_unreadable_image_folders(mini_crops, toy_root, tmp_path):
    empty = tmp_path / "empty"
    (empty / "0").mkdir(parents=True)
    custom = f"[{{'NAME': 'empty_train', 'FORMAT': 'folder', 'ROOT': '{empty}'}}]"
    proc = run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            config("simclr"),
            "DATASETS.CUSTOM",
            custom,
            "DATASETS.TRAIN",
            "('empty_train',)",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            str(tmp_path / "o1"),
        ],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0 and f"Classification root {empty} has no images" in proc.stderr

    broken = tmp_path / "broken"
    shutil.copytree(mini_crops / "train", broken)
    for cls in range(10):
        for name in os.listdir(broken / str(cls)):
            (broken / str(cls) / name).write_bytes(b"not a png")
    bad_file = broken / "0" / sorted(os.listdir(broken / "0"))[0]
    custom = f"[{{'NAME': 'broken_train', 'FORMAT': 'folder', 'ROOT': '{broken}'}}]"
    proc = run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            config("simclr"),
            "DATASETS.CUSTOM",
            custom,
            "DATASETS.TRAIN",
            "('broken_train',)",
            "DATASETS.TEST",
            "()",
            "DATALOADER.NUM_WORKERS",
            "0",
            "SOLVER.IMS_PER_BATCH",
            "8",
            "DATALOADER.CHECK_IMAGES_MAX",
            "0",  # met in training, not by the scan
            "OUTPUT_DIR",
            str(tmp_path / "o2"),
        ],
        toy_root,
        check=False,
    )
    assert (
        proc.returncode != 0
        and "Could not read image" in proc.stderr
        and str(broken) in proc.stderr
    )
    assert bad_file.exists()


MOCO_DDP = {"MODEL.CONTRASTIVE.QUEUE_SIZE": "48"}


@pytest.fixture(scope="module")
def mocov2_one_machine(mini_crops, toy_root, tmp_path_factory):
    """MoCo v2, 2 steps, --num-gpus 2 on CPU (one machine, 2 gloo processes); returns (output dir,
    process)."""
    out = tmp_path_factory.mktemp("mocov2_one_machine")
    proc = run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            config("mocov2"),
            "--num-gpus",
            "2",
            *fast_opts(mini_crops, out, 2, **MOCO_DDP),
        ],
        toy_root,
    )
    return out, proc


@pytest.mark.slow
def test_mocov2_on_two_cpu_processes_with_shuffled_bn(mocov2_one_machine):
    """--num-gpus 2 on CPU: gloo, MoCo's shuffled BN across the 2 processes, the global batch
    enqueued."""
    out, proc = mocov2_one_machine
    assert "World size: 2" in proc.stdout + proc.stderr
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    # 2 steps of the global batch (16 = 2 processes x 8) went into the queue, with their labels
    assert int(final["queues.projection.ptr"]) == 32
    assert (final["queues.projection.labels"][:32] >= 0).all() and (
        final["queues.projection.labels"][32:] == -1
    ).all()
    assert json.load(open(out / "results.json"))["metrics"]["mini_test"]["knn/top1"] >= 0


def _run_two_machines(argv, out, datasets_root, attempts=3, machine_opts=((), ())):
    """
    Launch ``pretrain_net.py argv`` as machine 0 and machine 1 of two on localhost; return (procs,
    logs). When one machine fails, the other (left waiting for its peer) is stopped. gloo's tcp
    transport can abort a process (SIGABRT, "terminate called without an active exception") when a
    connection of its full-mesh set-up fails transiently (pytorch/gloo#162): such a start, killed by
    a signal before training began, is retried on a fresh port. Any other failure is returned as is.
    """
    for attempt in range(attempts):
        shutil.rmtree(out, ignore_errors=True)
        url = f"tcp://127.0.0.1:{free_port()}"
        log_files = [open(f"{out}_machine{rank}_try{attempt}.log", "w+") for rank in (0, 1)]
        procs = [
            start_cli(
                "pretrain_net.py",
                [
                    "--num-machines",
                    "2",
                    "--machine-rank",
                    str(rank),
                    "--num-gpus",
                    "1",
                    "--dist-url",
                    url,
                    *argv,
                    *machine_opts[rank],
                ],
                datasets_root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for rank, log in enumerate(log_files)
        ]
        deadline = time.monotonic() + 600
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                time.sleep(5)  # let the peer fail on its own first, then stop it
                break
            time.sleep(0.5)
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        logs = []
        for log in log_files:
            log.seek(0)
            logs.append(log.read())
            log.close()
        aborted_at_start = any(
            p.returncode != 0
            and "Starting training" not in log
            and (p.returncode < 0 or "signal" in log)
            for p, log in zip(procs, logs)
        )
        if not aborted_at_start:
            break
    return procs, logs


@pytest.mark.slow
def test_two_machines_equal_one_machine_with_two_processes(
    mocov2_one_machine, mini_crops, toy_root, tmp_path
):
    """
    --num-machines 2 (two launches on localhost, one process each, joined by --dist-url) trains the
    same model as --num-gpus 2 on one machine: the same global ranks, seeds, gathers and queue.
    Machine 1 is given SEED -1 (a seed drawn on each machine): the main process's SEED 7 is the
    run's.
    """
    one, _ = mocov2_one_machine
    two = tmp_path / "two_machines"
    procs, logs = _run_two_machines(
        ["--config-file", config("mocov2"), *fast_opts(mini_crops, two, 2, **MOCO_DDP)],
        two,
        toy_root,
        machine_opts=((), ("SEED", "-1")),
    )
    for rank, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"machine {rank} failed:\n{log[-5000:]}"
    assert "World size: 2" in logs[0]

    a = torch.load(one / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    b = torch.load(two / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert set(a) == set(b) and int(b["queues.projection.ptr"]) == 32
    for key in a:
        torch.testing.assert_close(
            b[key], a[key], rtol=0, atol=0, msg=f"{key} differs between one and two machines"
        )
    record = json.load(open(two / "results.json"))
    assert record["method"] == "MoCoV2" and record["seed"] == 7


def test_random_init_baseline_over_seeds(mini_crops, toy_root, tmp_path):
    """--eval-only without weights and --seeds: kNN of the randomly initialised network, one init
    per seed."""
    out = tmp_path / "random_init"
    proc = run_cli(
        "pretrain_net.py",
        [
            "--config-file",
            config("simclr"),
            "--eval-only",
            "--seeds",
            "0,1",
            *fast_opts(mini_crops, out),
        ],
        toy_root,
    )
    per_seed = [json.load(open(out / f"seed{s}" / "results.json")) for s in (0, 1)]
    assert [r["seed"] for r in per_seed] == [0, 1] and all(r["weights"] == "" for r in per_seed)
    values = [r["metrics"]["mini_test"]["knn/top1"] for r in per_seed]
    top1 = json.load(open(out / "results.json"))["metrics"]["mini_test"]["knn/top1"]
    assert top1["values"] == values and top1["n"] == 2
    expected = (
        f"mini_test knn/top1: {top1['mean']:.2f} +- {top1['std']:.2f} "
        f"(n=2: {values[0]:.2f}, {values[1]:.2f})"
    )
    assert expected in proc.stdout
    assert "evaluating the randomly initialised model" in proc.stdout + proc.stderr

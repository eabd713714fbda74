"""
End to end: every classification protocol through tools/train_net.py on a tiny class-per-folder
copy of the textured toy digits (the second toy domain), with seeds, cached features, --resume,
--eval-only, weights from a peer layout, and the bad inputs that must stop a run before training.
"""

import json
import math
import os

import pytest
import torch
import torchvision

from contrastive_det.evaluation import FeatureCache
from contrastive_det.tasks.classification import cache_keys

from conftest import REPO, copy_crops, folder_sets, run_cli, run_config, tiny_probe_opts

PROTOCOLS = ["linear_sgd", "linear_lbfgs", "layerwise", "few_shot", "finetune", "core_tuning"]


def config(protocol):
    return os.path.join(REPO, "configs", "toy", f"cls_{protocol}_R18.yaml")


@pytest.fixture(scope="module")
def mini_textured(toy_root, tmp_path_factory):
    """10 train and 8 test textured crops per class (class-per-folder)."""
    return copy_crops(
        toy_root,
        tmp_path_factory.mktemp("mini_textured"),
        {"train": 10, "test": 8},
        "crops_textured",
    )


def opts(root, out, cache, **extra):
    return tiny_probe_opts(
        folder_sets("mini_tex", root),
        "mini_tex",
        out,
        cache,
        **{
            "SOLVER.IMS_PER_BATCH": "16",
            "CLASSIFICATION.FEW_SHOT.SHOTS": "(1, 2)",
            "CLASSIFICATION.FEW_SHOT.QUERIES": "3",
            "CLASSIFICATION.FEW_SHOT.EPISODES": "20",
            "CLASSIFICATION.CORE_TUNING.HIDDEN_DIM": "64",
            "SOLVER.CHECKPOINT_PERIOD": "2",
            **extra,
        },
    )


def results(out):
    with open(out / "results.json") as f:
        return json.load(f)


def save_moco_checkpoint(path, seed=0):
    """A MoCo-layout checkpoint (module.encoder_q.*) of a torchvision ResNet-18 with non-trivial BN
    statistics."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {
        f"module.encoder_q.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")
    }
    torch.save({"state_dict": state, "arch": "resnet18", "epoch": 200}, path)
    return net


def test_linear_sgd_probe_keeps_the_trunk_frozen_with_precise_bn(mini_textured, toy_root, tmp_path):
    """Weights from MoCo's layout; PreciseBN on: the trunk (weights and BN statistics) ends
    bit-identical."""
    source = tmp_path / "moco.pth.tar"
    net = save_moco_checkpoint(source)
    out = tmp_path / "lin"
    run_cli(
        "train_net.py",
        [
            "--config-file",
            config("linear_sgd"),
            *opts(
                mini_textured,
                out,
                tmp_path / "cache",
                **{
                    "MODEL.WEIGHTS": str(source),
                    "SOLVER.MAX_ITER": "4",
                    "TEST.PRECISE_BN.ENABLED": "True",
                    "TEST.PRECISE_BN.NUM_ITER": "2",
                    "RESULTS.METHOD": "mocov2",
                },
            ),
        ],
        toy_root,
    )
    res = results(out)
    assert (
        res["task"] == "classification"
        and res["protocol"] == "linear_sgd"
        and res["method"] == "mocov2"
    )
    assert res["weights_source"] == str(source) and res["iteration"] == 4 and res["seed"] == 5
    score = res["metrics"]["mini_tex_test"]["classification/score"]
    assert 0.0 <= score <= 100.0 and score == res["metrics"]["mini_tex_test"]["classification/top1"]
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    for k, v in net.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(final[f"trunk.resnet.{k}"], v), k
    # the head did train, and its non-affine BN has statistics (PreciseBN / training updated them)
    assert final["head.0.running_var"].ne(1).any()
    assert "head.0.weight" not in final  # affine=False


def test_lbfgs_probe_caches_features_and_reuses_them(mini_textured, toy_root, tmp_path):
    cache = tmp_path / "cache"
    first, second = tmp_path / "a", tmp_path / "b"
    args = ["--config-file", config("linear_lbfgs")]
    run_cli("train_net.py", [*args, *opts(mini_textured, first, cache)], toy_root)
    files = FeatureCache(cache).keys()
    assert len(files) == 3  # train, val, test of res5
    proc = run_cli("train_net.py", [*args, *opts(mini_textured, second, cache)], toy_root)
    assert "come from the cache" in proc.stdout + proc.stderr
    a, b = results(first), results(second)
    assert (
        a["protocol"] == "linear_lbfgs" and a["iteration"] is None and a["method"] == "random-init"
    )
    assert a["metrics"] == b["metrics"]
    m = a["metrics"]["mini_tex_test"]
    assert 0.0 <= m["linear/score"] <= 100.0 and m["linear/reg"] > 0
    assert FeatureCache(cache).keys() == files  # nothing re-extracted


def test_lbfgs_keys_reach_the_probe(mini_textured, toy_root, tmp_path):
    from contrastive_det.engine.task import get_task

    cfg = run_config(
        config("linear_lbfgs"),
        opts(
            mini_textured,
            tmp_path / "o",
            tmp_path / "c",
            **{
                "CLASSIFICATION.LBFGS.MAX_ITER": "17",
                "CLASSIFICATION.LBFGS.TOL": "0.003",
                "CLASSIFICATION.LBFGS.DTYPE": "float32",
            },
        ),
        seed=0,
    )
    evaluator = get_task(cfg).build_evaluator(cfg, "mini_tex_test")
    assert (evaluator.max_iter, evaluator.tol, evaluator.dtype, len(evaluator.grid)) == (
        17,
        0.003,
        "float32",
        4,
    )


@pytest.mark.slow
def test_layerwise_probe_reports_every_layer(mini_textured, toy_root, tmp_path):
    out = tmp_path / "layers"
    run_cli(
        "train_net.py",
        [
            "--config-file",
            config("layerwise"),
            *opts(
                mini_textured,
                out,
                tmp_path / "cache",
                **{"CLASSIFICATION.LAYERS": "('res2', 'res5')"},
            ),
        ],
        toy_root,
    )
    m = results(out)["metrics"]["mini_tex_test"]
    assert not any(k.startswith("layerwise/res3") for k in m)
    # res5: the linear probe of the same weights and data reads the same cached features and fits
    # the same
    lin = tmp_path / "lin"
    run_cli(
        "train_net.py",
        ["--config-file", config("linear_lbfgs"), *opts(mini_textured, lin, tmp_path / "cache")],
        toy_root,
    )
    assert results(lin)["metrics"]["mini_tex_test"]["linear/score"] == m["layerwise/res5/score"]
    # res2: select_and_refit on the cached res2 features gives the reported score and penalty
    from contrastive_det.evaluation import select_and_refit
    from contrastive_det.evaluation.logistic import regularisation_grid

    cfg = probe_cfg(
        "layerwise", mini_textured, tmp_path, **{"CLASSIFICATION.LAYERS": "('res2', 'res5')"}
    )
    cache = FeatureCache(tmp_path / "cache")
    keys = cache_keys(cfg, "mini_tex_test")
    split = {s: cache.load(keys[(s, "res2")]) for s in ("train", "val", "test")}
    r = select_and_refit(
        *((split[s]["features"], split[s]["targets"]) for s in ("train", "val", "test")),
        grid=regularisation_grid(1e-6, 1e5, 4),
        metric="top1",
        num_classes=10,
        max_iter=100,
        tol=1e-4,
        progress=False,
    )
    assert (
        math.isclose(r["score"], m["layerwise/res2/score"], abs_tol=1e-6)
        and r["reg"] == m["layerwise/res2/reg"]
    )
    assert r["score"] != m["layerwise/res5/score"]  # another layer, another number


def probe_cfg(protocol, root, tmp_path, seed=5, **extra):
    return run_config(
        config(protocol), opts(root, tmp_path / "o", tmp_path / "cache", **extra), seed=seed
    )


@pytest.mark.slow
def test_few_shot_seeds_give_mean_std_and_ci(mini_textured, toy_root, tmp_path):
    out = tmp_path / "fs"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            config("few_shot"),
            "--seeds",
            "1,2",
            *opts(mini_textured, out, tmp_path / "cache"),
        ],
        toy_root,
    )
    per_seed = [results(out / f"seed{s}")["metrics"]["mini_tex_test"] for s in (1, 2)]
    # each seed's numbers are the episodes of that seed on the cached test features, refitted here
    from contrastive_det.evaluation import episode_accuracies, mean_ci95, sample_episodes

    # random init: each seed is another network, with its own features
    for seed, m in zip((1, 2), per_seed):
        keys = cache_keys(
            probe_cfg("few_shot", mini_textured, tmp_path, seed=seed), "mini_tex_test"
        )
        entry = FeatureCache(tmp_path / "cache").load(keys[("test", "res5")])
        for shots in (1, 2):
            eps = sample_episodes(entry["targets"], 5, shots, 3, 20, seed=seed)
            accs = episode_accuracies(
                entry["features"],
                eps,
                classifier="logistic",
                reg=1.0,
                progress=False,
                tol=1e-4,
                max_iter=100,
            )
            mean, ci = mean_ci95(accs)
            assert math.isclose(m[f"few_shot/5way_{shots}shot"], mean, abs_tol=1e-9)
            assert math.isclose(m[f"few_shot/5way_{shots}shot_ci95"], ci, abs_tol=1e-9) and ci > 0
            # each episode's accuracy is kept, so that a study pools the episodes of its seeds for
            # one interval
            kept = json.load(open(out / f"seed{seed}" / "few_shot_episodes" / "mini_tex_test.json"))
            assert kept["seed"] == seed and kept["layer"] == "res5"
            assert kept["episodes"][f"5way_{shots}shot"] == pytest.approx(
                [float(a) for a in accs], abs=1e-9
            )
    assert per_seed[0] != per_seed[1]  # other episodes
    summary = results(out)
    assert summary["seeds"] == [1, 2]
    agg = summary["metrics"]["mini_tex_test"]["few_shot/5way_1shot"]
    assert math.isclose(
        agg["mean"], (per_seed[0]["few_shot/5way_1shot"] + per_seed[1]["few_shot/5way_1shot"]) / 2
    )
    assert "few_shot/5way_1shot" in proc.stdout


@pytest.mark.slow
def test_finetune_resumes_and_eval_only_reproduces(mini_textured, toy_root, tmp_path):
    out = tmp_path / "ft"
    base = ["--config-file", config("finetune")]
    run_cli(
        "train_net.py",
        [*base, *opts(mini_textured, out, tmp_path / "c", **{"SOLVER.MAX_ITER": "2"})],
        toy_root,
    )
    run_cli(
        "train_net.py",
        [
            *base,
            "--resume",
            "--allow-config-change",
            *opts(mini_textured, out, tmp_path / "c", **{"SOLVER.MAX_ITER": "3"}),
        ],
        toy_root,
    )
    trained = results(out)
    assert trained["iteration"] == 3 and trained["protocol"] == "finetune"
    ev = tmp_path / "ev"
    run_cli(
        "train_net.py",
        [
            *base,
            "--eval-only",
            *opts(
                mini_textured,
                ev,
                tmp_path / "c",
                **{"MODEL.WEIGHTS": str(out / "model_final.pth"), "SOLVER.MAX_ITER": "3"},
            ),
        ],
        toy_root,
    )
    evaluated = results(ev)
    assert evaluated["metrics"] == trained["metrics"] and evaluated["iteration"] == 3


def test_epoch_schedule_is_recorded_and_resumes_without_a_config_change(
    mini_textured, toy_root, tmp_path
):
    out = tmp_path / "ep"
    overrides = opts(
        mini_textured,
        out,
        tmp_path / "c",
        **{
            "CLASSIFICATION.EPOCHS": "2",
            "CLASSIFICATION.STEP_EPOCHS": "(1,)",
            "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
            "SOLVER.IMS_PER_BATCH": "32",
            "SOLVER.CHECKPOINT_PERIOD": "3",
            "TEST.PRECISE_BN.ENABLED": "False",
        },
    )
    first = run_cli("train_net.py", ["--config-file", config("linear_sgd"), *overrides], toy_root)
    assert (
        "CLASSIFICATION.EPOCHS 2 of 100 training images at batch 32: SOLVER.MAX_ITER 6, "
        "SOLVER.STEPS [3]" in first.stdout + first.stderr
    )
    assert results(out)["iteration"] == 6
    with open(out / "config.yaml") as f:
        text = f.read()
    assert "MAX_ITER: 6" in text and "- 3" in text.split("STEPS:")[1].split("\n")[1]
    again = run_cli(
        "train_net.py", ["--config-file", config("linear_sgd"), "--resume", *overrides], toy_root
    )  # the derived keys equal the checkpoint's
    assert "config differs" not in again.stdout + again.stderr and results(out)["iteration"] == 6


def test_core_tuning_trains(mini_textured, toy_root, tmp_path):
    out = tmp_path / "core"
    run_cli(
        "train_net.py",
        [
            "--config-file",
            config("core_tuning"),
            *opts(mini_textured, out, tmp_path / "c", **{"SOLVER.MAX_ITER": "2"}),
        ],
        toy_root,
    )
    rows = [json.loads(line) for line in open(out / "metrics.json") if line.strip()]
    trained = [r for r in rows if "loss_con" in r]
    assert trained and all(
        math.isfinite(r["loss_cls"]) and math.isfinite(r["loss_con"]) for r in trained
    )
    assert results(out)["protocol"] == "core_tuning"


@pytest.mark.parametrize(
    "protocol, extra, message",
    [
        ("linear_lbfgs", {"DATASETS.TEST": "('no_such_set',)"}, "no_such_set"),
        ("linear_lbfgs", {"CLASSIFICATION.LBFGS.NUM_REGS": "0"}, "CLASSIFICATION.LBFGS"),
        (
            "linear_lbfgs",
            {"CLASSIFICATION.LBFGS.TOL": "0.0"},
            "CLASSIFICATION.LBFGS.TOL must be a positive number",
        ),
        (
            "layerwise",
            {"CLASSIFICATION.LBFGS.MAX_ITER": "0"},
            "CLASSIFICATION.LBFGS.MAX_ITER must be an integer >= 1",
        ),
        (
            "linear_lbfgs",
            {"CLASSIFICATION.LBFGS.DTYPE": "half"},
            "CLASSIFICATION.LBFGS.DTYPE must be one of",
        ),
        ("few_shot", {"CLASSIFICATION.FEW_SHOT.SHOTS": "(6,)"}, "fewer"),
        (
            "linear_sgd",
            {"MODEL.CLASSIFIER.NUM_CLASSES": "5", "SOLVER.MAX_ITER": "2"},
            "outside [0, 5)",
        ),
        ("linear_sgd", {"MODEL.CLASSIFIER.FREEZE_TRUNK": "False"}, "FREEZE_TRUNK"),
    ],
)
def test_bad_input_stops_before_training(
    protocol, extra, message, mini_textured, toy_root, tmp_path
):
    out = tmp_path / "bad"
    proc = run_cli(
        "train_net.py",
        ["--config-file", config(protocol), *opts(mini_textured, out, tmp_path / "c", **extra)],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (out / "results.json").exists() and not (out / "model_final.pth").exists()
    assert (
        not (out / "metrics.json").exists() or "loss_cls" not in (out / "metrics.json").read_text()
    )


def test_weights_that_are_not_a_resnet_are_refused(mini_textured, toy_root, tmp_path):
    bad = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), bad)
    out = tmp_path / "refused"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            config("linear_lbfgs"),
            *opts(mini_textured, out, tmp_path / "c", **{"MODEL.WEIGHTS": str(bad)}),
        ],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0 and str(bad) in proc.stdout + proc.stderr
    assert not (out / "results.json").exists()


def test_weights_of_another_depth_are_refused(mini_textured, toy_root, tmp_path):
    source = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), source)
    out = tmp_path / "depth"
    proc = run_cli(
        "train_net.py",
        [
            "--config-file",
            config("linear_lbfgs"),
            *opts(mini_textured, out, tmp_path / "c", **{"MODEL.WEIGHTS": str(source)}),
        ],
        toy_root,
        check=False,
    )
    assert proc.returncode != 0 and "ResNet-18" in proc.stdout + proc.stderr

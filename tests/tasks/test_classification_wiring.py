"""
The classification task's wiring that every shipped per-dataset config relies on: which images are
the train, validation and test splits (CLASSIFICATION.VAL_DATASET, the stratified hold-out,
EVAL_ON_VAL), and the linear probe's own check that its trunk stays frozen.
"""

import os
import types

import pytest
import torch

from contrastive_det.modeling.classifier import Classifier
from contrastive_det.tasks.classification import ClassificationTask, FrozenTrunkCheck, probe_dicts

from conftest import REPO, copy_crops, folder_sets, option_list, run_config


def config(protocol):
    return os.path.join(REPO, "configs", "toy", f"cls_{protocol}_R18.yaml")


@pytest.fixture(scope="module")
def three_sets(toy_root, tmp_path_factory):
    """train / val / test class-per-folder sets (val: a copy of other test images)."""
    root = tmp_path_factory.mktemp("wiring")
    copy_crops(toy_root, root, {"train": 5, "test": 6}, "crops_textured")
    os.rename(root / "test", root / "val")
    copy_crops(toy_root, root, {"test": 3}, "crops")
    return root


def wiring_config(root, protocol, **extra):
    values = {
        "DATASETS.CUSTOM": folder_sets("w", root, ("train", "val", "test")),
        "DATASETS.TRAIN": "('w_train',)",
        "DATASETS.TEST": "('w_test',)",
        "OUTPUT_DIR": str(root / "out"),
        **extra,
    }
    return run_config(config(protocol), option_list(values), seed=0)


def under(dicts, folder):
    return bool(dicts) and all(d["file_name"].startswith(str(folder) + os.sep) for d in dicts)


def test_val_dataset_is_the_probes_validation_split(three_sets):
    cfg = wiring_config(three_sets, "linear_lbfgs", **{"CLASSIFICATION.VAL_DATASET": "w_val"})
    dicts = probe_dicts(cfg, "w_test")
    assert under(dicts["train"], three_sets / "train") and len(dicts["train"]) == 50
    assert under(dicts["val"], three_sets / "val") and len(dicts["val"]) == 60
    assert under(dicts["test"], three_sets / "test") and len(dicts["test"]) == 30


def test_without_val_dataset_a_stratified_part_of_train_is_held_out(three_sets):
    cfg = wiring_config(three_sets, "linear_lbfgs", **{"CLASSIFICATION.VAL_FRACTION": "0.2"})
    dicts = probe_dicts(cfg, "w_test")
    train, val = dicts["train"], dicts["val"]
    assert under(train, three_sets / "train") and under(val, three_sets / "train")
    assert {d["image_id"] for d in train}.isdisjoint(d["image_id"] for d in val)
    assert len(train) + len(val) == 50
    assert sorted(d["class_name"] for d in val) == [str(c) for c in range(10)]  # one of 5 per class


@pytest.mark.parametrize("eval_on_val", [True, False])
def test_eval_on_val_trains_on_train_and_scores_val_else_train_plus_val_and_test(
    three_sets, eval_on_val
):
    cfg = wiring_config(
        three_sets,
        "finetune",
        **{"CLASSIFICATION.VAL_DATASET": "w_val", "CLASSIFICATION.EVAL_ON_VAL": str(eval_on_val)},
    )
    trained = ClassificationTask.training_dicts(cfg)
    scored = ClassificationTask.evaluation_dicts(cfg, "w_test")
    if eval_on_val:  # model selection: the grid's points train on train alone, scored on val
        assert under(trained, three_sets / "train") and len(trained) == 50
        assert under(scored, three_sets / "val") and len(scored) == 60
    else:  # the final run: train + val, scored once on test
        assert len(trained) == 110 and under(trained[50:], three_sets / "val")
        assert under(scored, three_sets / "test") and len(scored) == 30


def classifier(freeze=True):
    from contrastive_det.config import get_cfg

    cfg = get_cfg()
    cfg.MODEL.TV_RESNET.DEPTH = 18
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = 3
    cfg.MODEL.CLASSIFIER.HEAD = "bn_linear"
    cfg.MODEL.CLASSIFIER.FREEZE_TRUNK = freeze
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    torch.manual_seed(0)
    return Classifier(cfg)


def images(n=4):
    g = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8),
            "label": i % 3,
        }
        for i in range(n)
    ]


def probe_step(model, check):
    model.train()
    model.zero_grad()
    model(images())["loss_cls"].backward()
    check.after_step()


def test_frozen_trunk_check_passes_a_frozen_probe_and_fires_on_a_leak():
    model = classifier()
    check = FrozenTrunkCheck()
    check.trainer = types.SimpleNamespace(model=model, iter=0, start_iter=0)
    check.before_train()
    probe_step(model, check)  # a frozen trunk: no error
    check.after_train()
    # a trunk tensor that receives a gradient (freezing broken) stops the run naming it
    model.trunk.resnet.layer4[1].conv2.weight.requires_grad_(True)
    model.freeze_trunk = False
    with pytest.raises(
        RuntimeError, match="Frozen trunk has gradients: .*trunk.resnet.layer4.1.conv2.weight"
    ):
        probe_step(model, check)
    # BN statistics that moved during training (a trunk left in train mode) are named after training
    fresh = classifier()
    check = FrozenTrunkCheck()
    check.trainer = types.SimpleNamespace(model=fresh, iter=0, start_iter=0)
    check.before_train()
    with torch.no_grad():
        fresh.trunk.resnet.bn1.running_mean += 0.5
    with pytest.raises(
        RuntimeError, match="Frozen trunk changed during training: resnet.bn1.running_mean"
    ):
        check.after_train()


def training_config(root, protocol, **extra):
    """The config tools/train_net.py trains with (not --eval-only: the task's adapt_config runs)."""
    import argparse

    from contrastive_det.engine.defaults import build_run_config

    values = {
        "DATASETS.CUSTOM": folder_sets("w", root, ("train", "val", "test")),
        "DATASETS.TRAIN": "('w_train',)",
        "DATASETS.TEST": "('w_test',)",
        "OUTPUT_DIR": str(root / "out"),
        **extra,
    }
    args = argparse.Namespace(
        config_file=config(protocol), eval_only=False, resume=False, opts=option_list(values)
    )
    return build_run_config(args, seed=0)


@pytest.mark.parametrize("eval_on_val, images", [(True, 50), (False, 110)])
def test_epochs_set_max_iter_and_steps_from_what_the_run_trains_on(three_sets, eval_on_val, images):
    cfg, messages = training_config(
        three_sets,
        "finetune",
        **{
            "CLASSIFICATION.VAL_DATASET": "w_val",
            "CLASSIFICATION.EVAL_ON_VAL": str(eval_on_val),
            "CLASSIFICATION.EPOCHS": "3",
            "CLASSIFICATION.STEP_EPOCHS": "(1, 2)",
            "SOLVER.IMS_PER_BATCH": "8",
            "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
        },
    )
    # 6 or 13 full batches (a partial last batch does not count: 50 / 8 = 6.25)
    per_epoch = images // 8
    assert cfg.SOLVER.MAX_ITER == 3 * per_epoch and tuple(cfg.SOLVER.STEPS) == (
        per_epoch,
        2 * per_epoch,
    )
    assert any(
        f"CLASSIFICATION.EPOCHS 3 of {images} training images at batch 8" in m for m in messages
    )


def test_without_epochs_max_iter_and_steps_stay(three_sets):
    cfg, _ = training_config(
        three_sets, "finetune", **{"SOLVER.MAX_ITER": "7", "SOLVER.STEPS": "(3,)"}
    )
    assert cfg.SOLVER.MAX_ITER == 7 and tuple(cfg.SOLVER.STEPS) == (3,)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"CLASSIFICATION.STEP_EPOCHS": "(1,)"}, "SOLVER.LR_SCHEDULER_NAME WarmupMultiStepLR"),
        (
            {"CLASSIFICATION.STEP_EPOCHS": "(3,)", "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR"},
            r"in \(0, EPOCHS=3\)",
        ),
        (
            {
                "CLASSIFICATION.STEP_EPOCHS": "(2, 1)",
                "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
            },
            "increasing",
        ),
        (
            {"CLASSIFICATION.EPOCHS": "0", "CLASSIFICATION.STEP_EPOCHS": "(1,)"},
            "needs CLASSIFICATION.EPOCHS > 0",
        ),
        ({"CLASSIFICATION.EPOCHS": "-1"}, "whole number >= 0"),
        ({"SOLVER.IMS_PER_BATCH": "64"}, "no full batch of SOLVER.IMS_PER_BATCH 64"),
    ],
)
def test_bad_epoch_schedules_are_named(three_sets, extra, message):
    values = {
        "CLASSIFICATION.EPOCHS": "3",
        "CLASSIFICATION.EVAL_ON_VAL": "True",
        "SOLVER.IMS_PER_BATCH": "8",
        "CLASSIFICATION.VAL_DATASET": "w_val",
        **extra,
    }
    with pytest.raises(ValueError, match=message):
        training_config(three_sets, "finetune", **values)


def test_epochs_belong_to_the_sgd_protocols(three_sets):
    with pytest.raises(ValueError, match="SGD protocols"):
        wiring_config(three_sets, "linear_lbfgs", **{"CLASSIFICATION.EPOCHS": "3"})

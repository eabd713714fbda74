"""
The classification protocol configs: published values (docs/design.md section 8), generated
per-dataset files, toy twins.
"""

import os
import subprocess
import sys

import pytest
from detectron2.data import DatasetCatalog

from contrastive_det.tasks.classification import check_classification_config
from test_protocol_configs import assert_config_values, flat, merged

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(REPO, "configs")

PUBLISHED = {
    "classification/linear_sgd/imagenet.yaml": {  # MoCo's main_lincls.py
        "CLASSIFICATION.PROTOCOL": "linear_sgd",
        "MODEL.CLASSIFIER.FREEZE_TRUNK": True,
        "MODEL.CLASSIFIER.HEAD": "linear",
        "SOLVER.BASE_LR": 30.0,
        "SOLVER.MOMENTUM": 0.9,
        "SOLVER.WEIGHT_DECAY": 0.0,
        "SOLVER.IMS_PER_BATCH": 256,
        "SOLVER.MAX_ITER": 500456,
        "SOLVER.STEPS": (300274, 400365),
        "SOLVER.GAMMA": 0.1,
        "INPUT.CLS.CROP_SIZE": 224,
        "INPUT.CLS.TEST_RESIZE": 256,
        "INPUT.CLS.CROP_SCALE": (0.08, 1.0),
        "INPUT.CLS.FLIP_PROB": 0.5,
        "INPUT.CLS.TEST_PIPELINE": "resize_crop",  # resize 256, centre crop 224
    },
    # Islam et al.: non-affine BN before the linear layer
    "classification/linear_sgd/Base-Linear-SGD.yaml": {
        "MODEL.CLASSIFIER.HEAD": "bn_linear",
        "MODEL.CLASSIFIER.FREEZE_TRUNK": True,
    },
    "classification/linear_lbfgs/Base-Linear-LBFGS.yaml": {  # Kornblith et al. 2019
        "CLASSIFICATION.PROTOCOL": "linear_lbfgs",
        "CLASSIFICATION.LBFGS.REG_MIN": 1e-6,
        "CLASSIFICATION.LBFGS.REG_MAX": 1e5,
        "CLASSIFICATION.LBFGS.NUM_REGS": 45,
        "CLASSIFICATION.LAYERS": ("res5",),
        # ssl-transfer's linear.py: Resize(224, bicubic) + CenterCrop(224)
        "INPUT.CLS.TEST_PIPELINE": "ssl_transfer",
    },
    "classification/layerwise/Base-Layerwise.yaml": {
        "CLASSIFICATION.PROTOCOL": "layerwise",
        "CLASSIFICATION.LAYERS": ("res2", "res3", "res4", "res5"),
        "CLASSIFICATION.LBFGS.NUM_REGS": 45,
    },
    "classification/few_shot/Base-Few-Shot.yaml": {  # Islam et al. 2021
        "CLASSIFICATION.FEW_SHOT.WAYS": 5,
        "CLASSIFICATION.FEW_SHOT.SHOTS": (1, 5, 20),
        "CLASSIFICATION.FEW_SHOT.QUERIES": 15,
        "CLASSIFICATION.FEW_SHOT.EPISODES": 600,
        "CLASSIFICATION.FEW_SHOT.CLASSIFIER": "logistic",
        "CLASSIFICATION.FEW_SHOT.REG": 1.0,
        # Islam et al.: square resize to int(1.15 * 224), centre crop 224
        "INPUT.CLS.TEST_PIPELINE": "islam",
    },
    "classification/finetune/Base-Finetune.yaml": {  # ssl-transfer's finetune.py
        "MODEL.CLASSIFIER.FREEZE_TRUNK": False,
        "SOLVER.NESTEROV": True,
        "SOLVER.MOMENTUM": 0.9,
        "SOLVER.IMS_PER_BATCH": 64,
        "SOLVER.LR_SCHEDULER_NAME": "WarmupCosineLR",
        "SOLVER.WARMUP_ITERS": 0,
        "INPUT.CLS.TEST_PIPELINE": "ssl_transfer",
    },
    "classification/finetune/cifar10.yaml": {
        "SOLVER.MAX_ITER": 5000
    },  # ssl-transfer's --steps default
    "classification/core_tuning/Base-Core-Tuning.yaml": {  # Zhang et al. 2021, their README/code
        "MODEL.CLASSIFIER.HEAD": "core_tuning",
        "CLASSIFICATION.CORE_TUNING.ETA": 0.1,
        "CLASSIFICATION.CORE_TUNING.ALPHA": 1.0,
        "CLASSIFICATION.CORE_TUNING.TEMPERATURE": 0.07,
        "CLASSIFICATION.CORE_TUNING.HIDDEN_DIM": 2048,
        "CLASSIFICATION.CORE_TUNING.PROJ_DIM": 256,
        "SOLVER.BASE_LR": 0.01,
        "SOLVER.WEIGHT_DECAY": 1e-4,
        "SOLVER.NESTEROV": True,
        "SOLVER.IMS_PER_BATCH": 256,
        "SOLVER.LR_SCHEDULER_NAME": "WarmupCosineLR",
    },
}


@pytest.mark.parametrize("rel", sorted(PUBLISHED))
def test_published_values(rel):
    assert_config_values(rel, PUBLISHED[rel])


def classification_files():
    root = os.path.join(CONFIGS, "classification")
    return sorted(
        os.path.relpath(os.path.join(d, f), CONFIGS)
        for d, _, fs in os.walk(root)
        for f in fs
        if f.endswith(".yaml")
    )


def test_every_classification_config_is_consistent_and_names_registered_sets():
    registered = set(DatasetCatalog.list())
    files = classification_files()
    assert len(files) > 100
    for rel in files:
        if rel == "classification/Base-Classification.yaml":
            continue  # the common base: a protocol base chooses the protocol
        cfg = merged(rel)
        assert cfg.TASK == "ClassificationTask" and cfg.MODEL.META_ARCHITECTURE == "Classifier", rel
        check_classification_config(cfg)
        names = (
            list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST) + [cfg.CLASSIFICATION.VAL_DATASET]
        )
        assert all(n in registered for n in names if n), (rel, names)
        if rel.startswith("classification/few_shot/") and not os.path.basename(rel).startswith(
            "Base"
        ):
            assert cfg.DATASETS.TEST[0].endswith("_all"), rel


def test_generated_dataset_configs_are_current():
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "scripts", "make_classification_configs.py"),
            "--check",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_schedule_is_epochs_of_trainval():
    cfg = merged("classification/linear_sgd/cifar10.yaml")
    assert cfg.SOLVER.MAX_ITER == round(100 * 50000 / 256) and cfg.SOLVER.IMS_PER_BATCH == 256
    assert cfg.CLASSIFICATION.VAL_DATASET == "cifar10_val" and cfg.DATASETS.TEST == (
        "cifar10_test",
    )


TOY_ALLOWED = (
    "INPUT.CLS.CROP_SIZE",
    "INPUT.CLS.TEST_RESIZE",
    "INPUT.CLS.CROP_SCALE",
    "INPUT.CLS.FLIP_PROB",
    "MODEL.TV_RESNET.DEPTH",
    "SOLVER.",
    "DATASETS.",
    "DATALOADER.",
    "OUTPUT_DIR",
    "CLASSIFICATION.TEST_BATCH_SIZE",
    "CLASSIFICATION.CORE_TUNING.HIDDEN_DIM",
)


@pytest.mark.parametrize(
    "protocol, base",
    [
        ("linear_sgd", "linear_sgd/Base-Linear-SGD.yaml"),
        ("linear_lbfgs", "linear_lbfgs/Base-Linear-LBFGS.yaml"),
        ("layerwise", "layerwise/Base-Layerwise.yaml"),
        ("few_shot", "few_shot/Base-Few-Shot.yaml"),
        ("finetune", "finetune/Base-Finetune.yaml"),
        ("core_tuning", "core_tuning/Base-Core-Tuning.yaml"),
    ],
)
def test_toy_configs_only_override_size_schedule_batch_datasets(protocol, base):
    toy, real = flat(merged(f"toy/cls_{protocol}_R18.yaml")), flat(merged(f"classification/{base}"))
    changed = sorted(k for k in toy if toy[k] != real[k])
    other = [k for k in changed if not k.startswith(TOY_ALLOWED)]
    assert changed and other == [], other

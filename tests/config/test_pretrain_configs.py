"""The pretraining recipes (configs/pretrain): published values asserted from the merged config, and
their toy twins (configs/toy/pretrain_*_R18.yaml) overriding only size, schedule, batch and data."""

import pytest

from test_protocol_configs import assert_config_values, flat, merged

IMAGENET_TRAIN = 1281167

PUBLISHED = {
    # torchvision's ImageNet classification recipe for ResNet-50 (references/classification,
    # defaults): batch 256, SGD lr 0.1 momentum 0.9, wd 1e-4 on every parameter, 90 epochs, lr x0.1
    # at epochs 30, 60.
    "pretrain/supervised_R50_90ep.yaml": {
        "MODEL.META_ARCHITECTURE": "Supervised",
        "RESULTS.METHOD": "supervised",
        "MODEL.TV_RESNET.DEPTH": 50,
        "MODEL.TV_RESNET.NORM": "BN",
        "MODEL.TV_RESNET.ZERO_INIT_RESIDUAL": False,
        "MODEL.CONTRASTIVE.NUM_CLASSES": 1000,
        "MODEL.CONTRASTIVE.LABEL_SMOOTHING": 0.0,
        "SOLVER.OPTIMIZER": "SGD",
        "SOLVER.IMS_PER_BATCH": 256,
        "SOLVER.BASE_LR": 0.1,
        "SOLVER.MOMENTUM": 0.9,
        "SOLVER.NESTEROV": False,
        "SOLVER.WEIGHT_DECAY": 1e-4,
        "SOLVER.WEIGHT_DECAY_NORM": 1e-4,
        "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
        "SOLVER.GAMMA": 0.1,
        "SOLVER.WARMUP_ITERS": 0,
        "SOLVER.MAX_ITER": 450411,
        "SOLVER.STEPS": (150137, 300274),
        "INPUT.TWO_VIEW.NUM_VIEWS": 1,
        "INPUT.TWO_VIEW.CROP_SIZE": 224,
        "INPUT.TWO_VIEW.CROP_SCALE": (0.08, 1.0),
        "INPUT.TWO_VIEW.FLIP_PROB": 0.5,
        "INPUT.TWO_VIEW.JITTER_PROB": 0.0,
        "INPUT.TWO_VIEW.GRAYSCALE_PROB": 0.0,
        "INPUT.TWO_VIEW.BLUR_PROB": 0.0,
        "INPUT.TWO_VIEW.SOLARIZE_PROB": 0.0,
        "INPUT.TWO_VIEW.TEST_RESIZE": 256,
        "INPUT.FORMAT": "RGB",
        "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
        "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
        "DATASETS.TRAIN": ("imagenet_train",),
        "TASK": "PretrainTask",
    },
}


@pytest.mark.parametrize("rel", sorted(PUBLISHED))
def test_published_values(rel):
    assert_config_values(rel, PUBLISHED[rel])


def test_supervised_schedule_is_90_epochs_stepped_at_30_and_60():
    s = merged("pretrain/supervised_R50_90ep.yaml").SOLVER
    iters_per_epoch = IMAGENET_TRAIN / s.IMS_PER_BATCH
    assert s.MAX_ITER == -(-90 * IMAGENET_TRAIN // s.IMS_PER_BATCH)  # ceil, as the other recipes
    assert [round(x / iters_per_epoch, 2) for x in s.STEPS] == [30.0, 60.0]
    assert s.BASE_LR == pytest.approx(0.1 * s.IMS_PER_BATCH / 256)  # lr 0.1 per 256 images


TOY_ALLOWED = (
    "MODEL.TV_RESNET.DEPTH",
    "MODEL.CONTRASTIVE.NUM_CLASSES",  # size; the toy set's 10 classes
    "INPUT.TWO_VIEW.CROP_SIZE",
    "INPUT.TWO_VIEW.TEST_RESIZE",  # 64 px input
    "INPUT.TWO_VIEW.FLIP_PROB",
    "INPUT.TWO_VIEW.CROP_SCALE",  # digits: no flips, crops >= 30%
    "SOLVER.",
    "DATASETS.",
    "DATALOADER.",
    "OUTPUT_DIR",
    "TEST.EVAL_PERIOD",
    "TEST.KNN.BATCH_SIZE",
)


@pytest.mark.parametrize(
    "toy, real", [("toy/pretrain_supervised_R18.yaml", "pretrain/supervised_R50_90ep.yaml")]
)
def test_toy_pretrain_configs_only_override_size_schedule_batch_data(toy, real):
    toy_cfg, real_cfg = flat(merged(toy)), flat(merged(real))
    changed = sorted(k for k in toy_cfg if toy_cfg[k] != real_cfg[k])
    other = [k for k in changed if not k.startswith(TOY_ALLOWED)]
    assert changed and other == [], f"{toy} overrides model/recipe keys: {other}"
    solver = [k for k in changed if k.startswith("SOLVER.")]
    assert set(solver) <= {
        "SOLVER.IMS_PER_BATCH",
        "SOLVER.BASE_LR",
        "SOLVER.STEPS",
        "SOLVER.MAX_ITER",
        "SOLVER.CHECKPOINT_PERIOD",
    }, solver  # same optimizer, momentum, decay, schedule kind
    t = merged(toy).SOLVER
    assert t.BASE_LR == pytest.approx(0.1 * t.IMS_PER_BATCH / 256)  # the linear scaling rule
    # epochs 30 and 60 of 90
    assert [x / t.MAX_ITER for x in t.STEPS] == pytest.approx([1 / 3, 2 / 3])

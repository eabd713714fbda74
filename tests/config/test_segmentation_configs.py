"""Every published value of the two segmentation protocols (docs/segmentation.md), asserted per
config file."""

import os

import pytest

from test_protocol_configs import CAFFE2, CONFIGS, TORCHVISION, assert_config_values, flat, merged

MOCO = {  # He et al. 2020, appendix A.5
    "TASK": "SegmentationTask",
    "MODEL.META_ARCHITECTURE": "FCNSemanticSegmentor",
    "MODEL.BACKBONE.NAME": "build_dilated_resnet_backbone",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.NORM": "SyncBN",
    "MODEL.RESNETS.RES4_DILATION": 1,
    "MODEL.RESNETS.RES5_DILATION": 2,
    "MODEL.RESNETS.CONTRACT_DILATION": False,  # every res5 block at dilation 2, as detectron2's
    "MODEL.RESNETS.OUT_FEATURES": ["res5"],
    "MODEL.SEM_SEG_HEAD.NAME": "FCNHead",
    "MODEL.SEM_SEG_HEAD.IN_FEATURES": ["res5"],
    "MODEL.SEM_SEG_HEAD.NUM_CONVS": 2,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 256,
    "MODEL.SEM_SEG_HEAD.DILATION": 6,
    "MODEL.SEM_SEG_HEAD.NORM": "SyncBN",
    "MODEL.SEM_SEG_HEAD.CONCAT_INPUT": False,
    "MODEL.SEM_SEG_HEAD.DROPOUT": 0.0,
    "MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE": "",
    "MODEL.SEM_SEG_HEAD.IGNORE_VALUE": 255,
    "INPUT.SEM_SEG.SCALE_RATIO": (0.5, 2.0),
    "INPUT.SEM_SEG.BASE_SIZE": (),
    "INPUT.SEM_SEG.FLIP_PROB": 0.5,
    "INPUT.SEM_SEG.PHOTOMETRIC": False,
    "INPUT.SEM_SEG.TEST_BASE_SIZE": (),
    "INPUT.SEM_SEG.TEST_CROP_SIZE": (),
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.WEIGHT_DECAY": 1e-4,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
    "SOLVER.GAMMA": 0.1,
    "TEST.PRECISE_BN.ENABLED": False,
}
MOCO_VOC = {
    **MOCO,
    "DATASETS.TRAIN": ("voc_2012_sem_seg_train_aug",),
    "DATASETS.TEST": ("voc_2012_sem_seg_val",),
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 21,
    "INPUT.SEM_SEG.CROP_SIZE": (513, 513),
    "SOLVER.MAX_ITER": 30000,
    "SOLVER.BASE_LR": 0.003,
    "SOLVER.STEPS": (21000, 27000),
}
MOCO_CITYSCAPES = {
    **MOCO,
    "DATASETS.TRAIN": ("cityscapes_sem_seg_train",),
    "DATASETS.TEST": ("cityscapes_sem_seg_val",),
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 19,
    "INPUT.SEM_SEG.CROP_SIZE": (769, 769),
    "SOLVER.MAX_ITER": 90000,
    "SOLVER.BASE_LR": 0.01,
    "SOLVER.STEPS": (63000, 81000),
}
MMSEG = {  # mmseg fcn_r50-d8, the DenseCL / mmselfsup benchmark
    "TASK": "SegmentationTask",
    "MODEL.META_ARCHITECTURE": "FCNSemanticSegmentor",
    "MODEL.BACKBONE.NAME": "build_dilated_resnet_backbone",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.NORM": "SyncBN",
    "MODEL.RESNETS.STEM_TYPE": "basic",
    "MODEL.RESNETS.RES4_DILATION": 2,
    "MODEL.RESNETS.RES5_DILATION": 4,
    "MODEL.RESNETS.RES5_MULTI_GRID": [1, 1, 1],
    "MODEL.RESNETS.CONTRACT_DILATION": True,  # mmseg's contract_dilation
    "MODEL.RESNETS.OUT_FEATURES": ["res4", "res5"],
    "MODEL.SEM_SEG_HEAD.NAME": "FCNHead",
    "MODEL.SEM_SEG_HEAD.IN_FEATURES": ["res5"],
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 512,
    "MODEL.SEM_SEG_HEAD.NUM_CONVS": 2,
    "MODEL.SEM_SEG_HEAD.DILATION": 1,
    "MODEL.SEM_SEG_HEAD.CONCAT_INPUT": True,
    "MODEL.SEM_SEG_HEAD.DROPOUT": 0.1,
    "MODEL.SEM_SEG_HEAD.NORM": "SyncBN",
    "MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE": "res4",
    "MODEL.SEM_SEG_HEAD.AUX_CONVS_DIM": 256,
    "MODEL.SEM_SEG_HEAD.AUX_NUM_CONVS": 1,
    "MODEL.SEM_SEG_HEAD.AUX_LOSS_WEIGHT": 0.4,
    "INPUT.SEM_SEG.SCALE_RATIO": (0.5, 2.0),
    "INPUT.SEM_SEG.PHOTOMETRIC": True,
    "INPUT.SEM_SEG.FLIP_PROB": 0.5,
    "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA": 0.75,
    "SOLVER.BASE_LR": 0.01,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.WEIGHT_DECAY": 5e-4,
    "SOLVER.WEIGHT_DECAY_NORM": 5e-4,
    "SOLVER.LR_SCHEDULER_NAME": "WarmupPolyLR",
    "SOLVER.POLY_LR_POWER": 0.9,
    "SOLVER.POLY_LR_MIN": 1e-4,
    "SOLVER.WARMUP_ITERS": 0,
}
MMSEG_VOC = {
    **MMSEG,
    "DATASETS.TRAIN": ("voc_2012_sem_seg_train_aug",),
    "DATASETS.TEST": ("voc_2012_sem_seg_val",),
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 21,
    "INPUT.SEM_SEG.BASE_SIZE": (2048, 512),
    "INPUT.SEM_SEG.CROP_SIZE": (512, 512),
    "INPUT.SEM_SEG.TEST_BASE_SIZE": (2048, 512),
    "INPUT.SEM_SEG.TEST_CROP_SIZE": (),
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.MAX_ITER": 20000,
}
MMSEG_CITYSCAPES = {
    **MMSEG,
    "DATASETS.TRAIN": ("cityscapes_sem_seg_train",),
    "DATASETS.TEST": ("cityscapes_sem_seg_val",),
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 19,
    "INPUT.SEM_SEG.BASE_SIZE": (2049, 1025),
    "INPUT.SEM_SEG.CROP_SIZE": (769, 769),
    "INPUT.SEM_SEG.TEST_BASE_SIZE": (),
    "INPUT.SEM_SEG.TEST_CROP_SIZE": (769, 769),
    "INPUT.SEM_SEG.TEST_STRIDE": (513, 513),
    "SOLVER.IMS_PER_BATCH": 8,
    "SOLVER.MAX_ITER": 40000,
}
MMSEG_ADE20K = {  # mmseg fcn_r50-d8_512x512_80k_ade20k (model zoo: mIoU 35.94, ResNet-50 V1c)
    **MMSEG_VOC,  # the same sizes, batch and LR as VOC12aug 512x512
    "DATASETS.TRAIN": ("ade20k_2016_sem_seg_train",),
    "DATASETS.TEST": ("ade20k_2016_sem_seg_val",),
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 150,
    "SOLVER.MAX_ITER": 80000,
}

PROTOCOLS = {
    "segmentation/voc12aug_R_50_FCN16s_30k.yaml": {**MOCO_VOC, **CAFFE2},
    "segmentation/cityscapes_R_50_FCN16s_90k.yaml": {**MOCO_CITYSCAPES, **CAFFE2},
    "segmentation/voc12aug_R_50_FCN_D8_20k.yaml": {**MMSEG_VOC, **CAFFE2},
    "segmentation/cityscapes_R_50_FCN_D8_40k.yaml": {**MMSEG_CITYSCAPES, **CAFFE2},
    "segmentation/ade20k_R_50_FCN_D8_80k.yaml": {**MMSEG_ADE20K, **CAFFE2},
}
PROTOCOLS.update(
    {
        path.replace(".yaml", "_torchvision.yaml"): {**want, **TORCHVISION}
        for path, want in list(PROTOCOLS.items())
    }
)


@pytest.mark.parametrize("path", sorted(PROTOCOLS))
def test_segmentation_protocol_values(path):
    assert_config_values(path, PROTOCOLS[path])


def test_every_segmentation_config_is_covered():
    folder = os.path.join(CONFIGS, "segmentation")
    files = sorted(
        f"segmentation/{f}"
        for f in os.listdir(folder)
        if f.endswith(".yaml") and not f.startswith("Base-")
    )
    assert files == sorted(PROTOCOLS)


TOY_ALLOWED = (
    "SOLVER.IMS_PER_BATCH",
    "SOLVER.STEPS",
    "SOLVER.MAX_ITER",
    "SOLVER.CHECKPOINT_PERIOD",
    "DATASETS.",
    "DATALOADER.",
    "OUTPUT_DIR",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    "INPUT.SEM_SEG.CROP_SIZE",
    "INPUT.SEM_SEG.BASE_SIZE",
    "INPUT.SEM_SEG.TEST_BASE_SIZE",
)


@pytest.mark.parametrize(
    "toy, real",
    [
        ("toy/seg_digits_R_50_FCN16s.yaml", "segmentation/voc12aug_R_50_FCN16s_30k.yaml"),
        ("toy/seg_digits_R_50_FCN_D8.yaml", "segmentation/voc12aug_R_50_FCN_D8_20k.yaml"),
    ],
)
def test_toy_segmentation_configs_only_override_size_schedule_batch_datasets(toy, real):
    toy_cfg, real_cfg = flat(merged(toy)), flat(merged(real))
    changed = sorted(k for k in toy_cfg if toy_cfg[k] != real_cfg[k])
    other = [k for k in changed if not k.startswith(TOY_ALLOWED)]
    assert changed and other == [], f"{toy} overrides model/protocol keys: {other}"

"""Every value of docs/design.md section 4, asserted from the merged config of each protocol
file."""

import os
from argparse import Namespace

import pytest

from contrastive_det.utils.config_keys import get_key
from contrastive_det.config import get_cfg
from contrastive_det.engine.defaults import load_config

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")

VOC = {
    "DATASETS.TRAIN": ("voc_2007_trainval", "voc_2012_trainval"),
    "DATASETS.TEST": ("voc_2007_test",),
    "MODEL.ROI_HEADS.NUM_CLASSES": 20,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
    "SOLVER.STEPS": (18000, 22000),
    "SOLVER.MAX_ITER": 24000,
    "SOLVER.WARMUP_ITERS": 100,
    "INPUT.MIN_SIZE_TRAIN": tuple(range(480, 801, 32)),
    "INPUT.MIN_SIZE_TEST": 800,
}
COCO = {
    "DATASETS.TRAIN": ("coco_2017_train",),
    "DATASETS.TEST": ("coco_2017_val",),
    "MODEL.ROI_HEADS.NUM_CLASSES": 80,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
    "INPUT.MIN_SIZE_TRAIN": tuple(range(640, 801, 32)),
    "INPUT.MIN_SIZE_TEST": 800,
}
COCO_1X = {**COCO, "SOLVER.STEPS": (60000, 80000), "SOLVER.MAX_ITER": 90000}
COCO_2X = {**COCO, "SOLVER.STEPS": (120000, 160000), "SOLVER.MAX_ITER": 180000}
# Detectron2 defaults that the protocols rely on (WD 1e-4, momentum 0.9, gamma 0.1).
D2_DEFAULTS = {
    "SOLVER.WEIGHT_DECAY": 1e-4,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.GAMMA": 0.1,
    "MODEL.MASK_ON": False,
    "MODEL.RESNETS.DEPTH": 50,
}
BN_TRANSFER = {
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.NORM": "SyncBN",
    "TEST.PRECISE_BN.ENABLED": True,
}
C4 = {
    **BN_TRANSFER,
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeadsExtraNorm",
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
}
FPN = {
    **BN_TRANSFER,
    "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
    "MODEL.FPN.NORM": "SyncBN",
    "MODEL.ROI_BOX_HEAD.NORM": "SyncBN",
    "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
}
TORCHVISION = {
    "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
    "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
    "INPUT.FORMAT": "RGB",
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
}
# Mask R-CNN C4 (MoCo's COCO table): masks on; detectron2's C4 mask head (deconv + 1x1 predictor on
# the res5 ROI features, no conv layers), COCO's polygons read as polygons.
MASK_C4 = {
    "MODEL.MASK_ON": True,
    "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 0,
    "INPUT.MASK_FORMAT": "polygon",
}
CAFFE2 = {  # detectron2's defaults, kept by the non-torchvision variants
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "INPUT.FORMAT": "BGR",
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
}

PROTOCOLS = {
    "detection/voc0712_R_50_C4_24k.yaml": {**D2_DEFAULTS, **C4, **VOC, **CAFFE2},
    "detection/voc0712_R_50_FPN_24k.yaml": {**D2_DEFAULTS, **FPN, **VOC, **CAFFE2},
    "detection/coco_R_50_C4_1x.yaml": {**D2_DEFAULTS, **C4, **COCO_1X, **CAFFE2},
    "detection/coco_R_50_C4_2x.yaml": {**D2_DEFAULTS, **C4, **COCO_2X, **CAFFE2},
    "detection/coco_R_50_FPN_1x.yaml": {**D2_DEFAULTS, **FPN, **COCO_1X, **CAFFE2},
    "detection/coco_mask_R_50_C4_1x.yaml": {**D2_DEFAULTS, **C4, **COCO_1X, **CAFFE2, **MASK_C4},
    "detection/coco_mask_R_50_C4_2x.yaml": {**D2_DEFAULTS, **C4, **COCO_2X, **CAFFE2, **MASK_C4},
}
PROTOCOLS.update(
    {
        path.replace(".yaml", "_torchvision.yaml"): {**want, **TORCHVISION}
        for path, want in list(PROTOCOLS.items())
    }
)


def merged(path):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, path))
    return cfg


def as_comparable(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def assert_config_values(path, expected):
    """The merged config of ``configs/<path>`` has every {key: value} of ``expected`` (floats
    approx)."""
    cfg = merged(path)
    for key, want in expected.items():
        got = get_key(cfg, key)
        if isinstance(want, float):
            assert got == pytest.approx(want), f"{path}: {key} = {got}, expected {want}"
        else:
            assert as_comparable(got) == as_comparable(want), (
                f"{path}: {key} = {got!r}, expected {want!r}"
            )


@pytest.mark.parametrize("path", sorted(PROTOCOLS))
def test_protocol_values(path):
    assert_config_values(path, PROTOCOLS[path])


def test_every_protocol_file_is_covered():
    files = sorted(
        os.path.relpath(os.path.join(root, f), CONFIGS)
        for root, _, names in os.walk(os.path.join(CONFIGS, "detection"))
        for f in names
        if f.endswith(".yaml")
    )
    assert files == sorted(PROTOCOLS)


TOY_ALLOWED_PREFIXES = (
    "INPUT.MIN_SIZE_",
    "INPUT.MAX_SIZE_",
    "SOLVER.",
    "DATASETS.",
    "DATALOADER.",
    "OUTPUT_DIR",
    "TEST.EVAL_PERIOD",
    "TEST.PRECISE_BN.NUM_ITER",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "MODEL.RPN.PRE_NMS_TOPK_",
    "MODEL.RPN.POST_NMS_TOPK_",
    "INPUT.MASK_FORMAT",  # how the dataset stores its masks (the toy set: RLE -> "bitmask")
)


def flat(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize(
    "toy, real",
    [
        ("toy/digits_R_50_C4.yaml", "detection/voc0712_R_50_C4_24k.yaml"),
        ("toy/digits_R_50_FPN.yaml", "detection/voc0712_R_50_FPN_24k.yaml"),
        ("toy/digits_mask_R_50_C4.yaml", "detection/coco_mask_R_50_C4_1x.yaml"),
    ],
)
def test_toy_configs_only_override_size_schedule_batch_datasets(toy, real):
    toy_cfg, real_cfg = flat(merged(toy)), flat(merged(real))
    assert toy_cfg["MODEL.MASK_ON"] == real_cfg["MODEL.MASK_ON"]
    changed = sorted(k for k in toy_cfg if toy_cfg[k] != real_cfg[k])
    assert changed, "toy config overrides nothing"
    other = [k for k in changed if not k.startswith(TOY_ALLOWED_PREFIXES)]
    assert other == [], f"{toy} overrides model/protocol keys: {other}"
    # the protocol-defining model keys survive
    assert toy_cfg["MODEL.BACKBONE.FREEZE_AT"] == 0 and toy_cfg["MODEL.RESNETS.NORM"] == "SyncBN"


def test_unknown_key_names_the_key_and_its_source(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        '_BASE_: "%s"\nSOLVER:\n  BASE_LRR: 0.1\n' % os.path.join(CONFIGS, "Base-RCNN-C4-BN.yaml")
    )
    with pytest.raises(KeyError, match=r"bad\.yaml.*SOLVER\.BASE_LRR"):
        load_config(Namespace(config_file=str(bad), opts=[]))
    good = os.path.join(CONFIGS, "toy", "digits_R_50_C4.yaml")
    with pytest.raises(KeyError, match=r"command-line override.*MODEL\.NOPE"):
        load_config(Namespace(config_file=good, opts=["MODEL.NOPE", "1"]))
    with pytest.raises(ValueError, match="KEY VALUE"):
        load_config(Namespace(config_file=good, opts=["SOLVER.MAX_ITER"]))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(Namespace(config_file=str(tmp_path / "nope.yaml"), opts=[]))


def test_every_toy_detection_config_is_checked_against_its_protocol():
    toy = sorted(
        f
        for f in os.listdir(os.path.join(CONFIGS, "toy"))
        if f.startswith("digits_") and f.endswith(".yaml")
    )
    assert toy == ["digits_R_50_C4.yaml", "digits_R_50_FPN.yaml", "digits_mask_R_50_C4.yaml"]
    mask = merged("toy/digits_mask_R_50_C4.yaml")
    assert mask.MODEL.MASK_ON and mask.DATASETS.TRAIN == ("toy_digits_coco_trainval",)
    assert mask.INPUT.MASK_FORMAT == "bitmask"  # the toy COCO JSON stores RLE masks

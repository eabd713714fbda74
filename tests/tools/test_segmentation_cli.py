"""tools/train_net.py on the toy segmentation configs: plumbing, an oracle score, converted weights,
the stem check."""

import json
import os

import numpy as np
import pytest
import torch

from conftest import REPO, run_cli
from contrastive_det.data.sem_seg_labels import read_sem_seg_label

TOY_SEG = os.path.join(REPO, "configs", "toy", "seg_digits_R_50_FCN16s.yaml")
TOY_SEG_D8 = os.path.join(REPO, "configs", "toy", "seg_digits_R_50_FCN_D8.yaml")
# seconds on 2 CPU cores: tiny crops and batches, no data workers
FAST = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "INPUT.SEM_SEG.CROP_SIZE",
    "(64, 64)",
    "DATALOADER.NUM_WORKERS",
    "0",
]


def _results(out):
    with open(out / "results.json") as f:
        return json.load(f)


@pytest.mark.slow
def test_toy_segmentation_trains_and_writes_miou(toy_root, tmp_path):
    """Also with the pixel Core-tuning terms on (their losses logged)."""
    out = tmp_path / "seg"
    run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_SEG,
            *FAST,
            "SOLVER.MAX_ITER",
            "3",
            "OUTPUT_DIR",
            str(out),
            "MODEL.SEM_SEG_HEAD.CORE_TUNING.ENABLED",
            "True",
        ],
        toy_root,
    )
    metrics_log = (out / "metrics.json").read_text()
    assert "loss_sem_seg_con" in metrics_log and "loss_sem_seg_mix" in metrics_log
    record = _results(out)
    assert record["task"] == "segmentation"
    metrics = record["metrics"]["toy_digits_sem_seg_test"]
    for key in (
        "sem_seg/mIoU",
        "sem_seg/mACC",
        "sem_seg/pACC",
        "sem_seg/fwIoU",
        "sem_seg/mIoU_mmseg",
    ):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert (out / "model_final.pth").is_file()


def _test_labels(toy_root):
    from detectron2.data import DatasetCatalog

    return [read_sem_seg_label(d) for d in DatasetCatalog.get("toy_digits_sem_seg_test")]


def test_all_background_prediction_scores_the_oracle_values(toy_root, tmp_path):
    """A head that always says "background": mIoU = background IoU / classes present, mACC = 100 /
    classes present."""
    from contrastive_det.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(TOY_SEG)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    model = build_model(cfg)
    with torch.no_grad():
        model.sem_seg_head.head.predictor.weight.zero_()
        model.sem_seg_head.head.predictor.bias.zero_()
        model.sem_seg_head.head.predictor.bias[0] = 10.0
    weights = tmp_path / "background.pth"
    torch.save({"model": model.state_dict()}, weights)
    out = tmp_path / "oracle"
    run_cli(
        "train_net.py",
        [
            "--config-file",
            TOY_SEG,
            "--eval-only",
            "MODEL.WEIGHTS",
            str(weights),
            "DATALOADER.NUM_WORKERS",
            "0",
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
    )
    metrics = _results(out)["metrics"]["toy_digits_sem_seg_test"]

    labels = _test_labels(toy_root)
    valid = sum(int((lab != 255).sum()) for lab in labels)
    background = sum(int((lab == 0).sum()) for lab in labels)
    present = len(set().union(*[set(np.unique(lab[lab != 255]).tolist()) for lab in labels]))
    assert present > 2
    background_iou = 100.0 * background / valid  # every valid pixel is predicted background
    assert metrics["sem_seg/mIoU"] == pytest.approx(background_iou / present, abs=1e-6)
    assert metrics["sem_seg/mACC"] == pytest.approx(100.0 / present, abs=1e-6)
    assert metrics["sem_seg/pACC"] == pytest.approx(background_iou, abs=1e-6)
    assert metrics["sem_seg/mIoU_mmseg"] == pytest.approx(background_iou / present, abs=1e-6)


@pytest.mark.slow
def test_torchvision_checkpoint_is_converted_and_a_deeplab_stem_is_refused(toy_root, tmp_path):
    import torchvision

    torch.manual_seed(0)
    ckpt = tmp_path / "tv_r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), ckpt)  # a torchvision-layout ResNet-50
    out = tmp_path / "tv"
    tv_config = os.path.join(
        REPO, "configs", "segmentation", "voc12aug_R_50_FCN_D8_20k_torchvision.yaml"
    )
    toy_overrides = [
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        "11",
        "DATASETS.TRAIN",
        "('toy_digits_sem_seg_trainval',)",
        "DATASETS.TEST",
        "('toy_digits_sem_seg_test',)",
        "INPUT.SEM_SEG.BASE_SIZE",
        "(256, 64)",
        "INPUT.SEM_SEG.TEST_BASE_SIZE",
        "(256, 64)",
    ]
    run_cli(
        "train_net.py",
        [
            "--config-file",
            tv_config,
            *toy_overrides,
            *FAST,
            "SOLVER.MAX_ITER",
            "1",
            "MODEL.WEIGHTS",
            str(ckpt),
            "OUTPUT_DIR",
            str(out),
        ],
        toy_root,
    )
    assert (out / "converted_weights.pkl").is_file()
    assert "sem_seg/mIoU" in _results(out)["metrics"]["toy_digits_sem_seg_test"]

    bad = run_cli(
        "train_net.py",
        [
            "--config-file",
            tv_config,
            *toy_overrides,
            *FAST,
            "SOLVER.MAX_ITER",
            "1",
            "MODEL.RESNETS.STEM_TYPE",
            "deeplab",
            "MODEL.WEIGHTS",
            str(ckpt),
            "OUTPUT_DIR",
            str(tmp_path / "bad"),
        ],
        toy_root,
        check=False,
    )
    assert bad.returncode != 0
    assert "MODEL.RESNETS.STEM_TYPE basic" in bad.stderr and "backbone.stem" in bad.stderr
    assert not (tmp_path / "bad" / "results.json").exists()

"""
detectron2's own DetectionCheckpointer loads converted weights into the Faster R-CNN models of the
detection protocols (C4 for R50, FPN for R18 and R50) with no backbone key missing, every
backbone tensor equal to its source.
"""

import os
import re

import pytest
import torch

from conftest import REPO
from contrastive_det.convert import convert_checkpoint
from resnet_checkpoints import d2_name, random_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

C4 = os.path.join(REPO, "configs", "detection", "voc0712_R_50_C4_24k_torchvision.yaml")
FPN = os.path.join(REPO, "configs", "detection", "voc0712_R_50_FPN_24k_torchvision.yaml")


def build_detector(config, depth):
    import contrastive_det  # noqa: F401  (registers Res5ROIHeadsExtraNorm)
    from contrastive_det.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(config)
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.RESNETS.NORM",
            "BN",
            "MODEL.FPN.NORM",
            "BN",
            "MODEL.ROI_BOX_HEAD.NORM",
            "BN",
            "MODEL.RESNETS.DEPTH",
            str(depth),
            "MODEL.RESNETS.RES2_OUT_CHANNELS",
            "64" if depth < 50 else "256",
        ]
    )
    return build_model(cfg)


def load_with_detectron2(model, path):
    from detectron2.checkpoint import DetectionCheckpointer

    class Recording(DetectionCheckpointer):
        def _load_model(self, checkpoint):
            self.incompatible = super()._load_model(checkpoint)
            return self.incompatible

    ckp = Recording(model)
    ckp.load(str(path))
    return ckp.incompatible


BACKBONE_KEY = re.compile(r"^(backbone\.(bottom_up\.)?(stem|res[2-5])\.|roi_heads\.res5\.\d+\.)")


@pytest.mark.parametrize("kind,depth", [("C4", 50), ("FPN", 50), ("FPN", 18)])
def test_detectron2_detector_loads_every_backbone_weight(kind, depth, tmp_path):
    sd = random_resnet(depth, seed=depth)
    torch.save(
        {"state_dict": {"module.encoder_q." + k: v for k, v in sd.items()}}, tmp_path / "moco.pth"
    )
    result = convert_checkpoint(tmp_path / "moco.pth", tmp_path / "w.pkl")
    assert result.verification.max_diff < 1e-4

    model = build_detector(C4 if kind == "C4" else FPN, depth)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inc = load_with_detectron2(model, tmp_path / "w.pkl")

    backbone_keys = [
        k
        for k in model.state_dict()
        if BACKBONE_KEY.match(k) and not k.endswith("num_batches_tracked")
    ]
    expected_count = len(
        [k for k in sd if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    )
    assert len(backbone_keys) == expected_count  # the regex really selects the whole ResNet
    missing_backbone = [
        k
        for k in inc.missing_keys
        if BACKBONE_KEY.match(k) and not k.endswith("num_batches_tracked")
    ]
    assert missing_backbone == []
    assert inc.unexpected_keys == [] and inc.incorrect_shapes == []
    # the heads are not in the checkpoint: their keys are reported missing (the check is live)
    assert any(k.startswith("roi_heads.box_predictor.") for k in inc.missing_keys)

    by_suffix = {
        d2_name(k): v
        for k, v in sd.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    state = model.state_dict()
    for key in backbone_keys:
        suffix = re.sub(r"^(backbone\.(bottom_up\.)?|roi_heads\.)", "", key)
        assert torch.equal(state[key], by_suffix[suffix]), key
        # differs from detectron2's init: loaded
        assert not torch.equal(before[key], state[key]), key
    if kind == "C4":
        assert any(k.startswith("roi_heads.res5.0.") for k in backbone_keys)
        assert "roi_heads.res5.norm.weight" in inc.missing_keys  # the extra norm is a new layer

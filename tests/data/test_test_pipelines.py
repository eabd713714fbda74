"""INPUT.CLS.TEST_PIPELINE: each preset equals its reference's pipeline, written here with
torchvision's classic transforms as the references write it."""

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as V1

from contrastive_det.config import get_cfg
from contrastive_det.data.classification_loader import (
    build_classification_transform,
    describe_test_transform,
)


def image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


REFERENCES = {
    # MoCo main_lincls.py
    "resize_crop": lambda: V1.Compose([V1.Resize(256), V1.CenterCrop(224)]),
    # ssl-transfer linear.py
    "ssl_transfer": lambda: V1.Compose(
        [V1.Resize(224, interpolation=Image.BICUBIC), V1.CenterCrop(224)]
    ),
    # Islam et al. (the CD-FSL loader): Resize([int(224 * 1.15)] * 2) + CenterCrop(224)
    "islam": lambda: V1.Compose(
        [V1.Resize([int(224 * 1.15), int(224 * 1.15)]), V1.CenterCrop(224)]
    ),
}


@pytest.mark.parametrize("preset", sorted(REFERENCES))
@pytest.mark.parametrize("size", [(300, 200), (32, 32), (224, 500)])
def test_each_preset_is_its_references_pipeline(preset, size):
    cfg = get_cfg()
    cfg.INPUT.CLS.TEST_PIPELINE = preset
    img = image(*size)
    ours = np.asarray(build_classification_transform(cfg, is_train=False)(img))
    ref = np.asarray(REFERENCES[preset]()(img))
    assert ours.shape == (224, 224, 3) and np.array_equal(ours, ref)


def test_presets_differ_and_name_themselves_in_the_cache_key():
    cfg = get_cfg()
    img = image(300, 200)
    outputs, keys = {}, {}
    for preset in REFERENCES:
        cfg.INPUT.CLS.TEST_PIPELINE = preset
        outputs[preset] = np.asarray(build_classification_transform(cfg, is_train=False)(img))
        keys[preset] = describe_test_transform(cfg)
    assert len({o.tobytes() for o in outputs.values()}) == 3 and len(set(keys.values())) == 3
    cfg.INPUT.CLS.TEST_PIPELINE = "vissl"
    with pytest.raises(
        ValueError,
        match="INPUT.CLS.TEST_PIPELINE must be one of resize_crop, ssl_transfer, islam, "
        "got 'vissl'",
    ):
        build_classification_transform(cfg, is_train=False)

"""
One image reader for pretraining and classification (contrastive_det/data/image_reader.py): a file
decodes to the same RGB pixels in a pretraining run's mapper and in a classification transfer, for
every mode a downstream set ships (16-bit grayscale medical scans, palette, grayscale, RGBA,
EXIF-rotated JPEGs), and a broken file is an error naming it.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive_det.data.classification import read_classification_image
from contrastive_det.data.image_reader import read_rgb_image
from contrastive_det.data.mapper import ImageReadError
from contrastive_det.data.transforms import read_rgb_tensor


def sixteen_bit(path):
    values = np.array([[0, 256, 4096], [32768, 65280, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)  # mode I;16
    return values


def test_a_16_bit_png_keeps_its_top_8_bits_in_pretraining_and_in_transfer(tmp_path):
    path = tmp_path / "scan.png"
    values = sixteen_bit(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16") or im.mode == "I"
    # 0, 1, 16, 128, 255, 255
    expected = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2)
    pretrain = read_rgb_tensor(str(path)).permute(1, 2, 0).numpy()
    transfer = np.asarray(read_classification_image({"file_name": str(path)}))
    np.testing.assert_array_equal(pretrain, expected)
    np.testing.assert_array_equal(transfer, expected)
    # PIL's own conversion, which the pretraining reader used to apply, saturates: not these pixels
    with Image.open(path) as im:
        assert not np.array_equal(np.asarray(im.convert("RGB")), expected)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "1"])
def test_other_modes_read_the_same_in_both_paths(tmp_path, mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / f"im_{mode}.png"
    image.save(path)
    a = read_rgb_tensor(str(path))
    b = torch.from_numpy(
        np.asarray(read_classification_image({"file_name": str(path)})).copy()
    ).permute(2, 0, 1)
    assert a.shape == (3, 5, 7) and torch.equal(a, b)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert read_rgb_image(str(path)).size == (4, 6)  # width, height after the rotation


def test_a_broken_file_is_named(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageReadError, match=f"Could not read image {path}"):
        read_rgb_image(str(path))
    with pytest.raises(ImageReadError, match=f"Could not read image {path}"):
        read_classification_image({"file_name": str(path)})

"""Corruptions of pretraining images: JPEG, salt-and-pepper, downsampling, and their config."""

import math

import pytest
import torch

from contrastive_det.config import get_cfg
from contrastive_det.data.corruptions import (
    Corruption,
    build_corruption,
    downsample,
    jpeg,
    salt_and_pepper,
)


def psnr(a, b):
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def textured(h=64, w=64, seed=0):
    """A smooth colour gradient with random texture and a sharp square: 3xHxW uint8."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([x * 200, y * 200, (x + y) * 100]) + torch.rand(3, h, w, generator=g) * 8
    base[:, h // 4 : h // 2, w // 4 : w // 2] = 250
    return base.clamp(0, 255).to(torch.uint8)


def checkerboard(h=64, w=64):
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (((x + y) % 2) * 255).to(torch.uint8).expand(3, h, w).contiguous()


def test_jpeg_fidelity_grows_with_quality():
    img = textured()
    scores = [psnr(jpeg(img, q), img) for q in (5, 10, 50, 90)]
    assert all(
        jpeg(img, q).shape == img.shape and jpeg(img, q).dtype == torch.uint8 for q in (10, 90)
    )
    assert scores == sorted(scores) and scores[1] < scores[3] - 5, scores  # q=10 well below q=90
    assert not torch.equal(jpeg(img, 90), img)


def test_salt_and_pepper_fraction_and_values():
    img = torch.full((3, 100, 100), 128, dtype=torch.uint8)
    out = salt_and_pepper(img, 0.1, torch.Generator().manual_seed(0))
    changed = (out != img).any(0)  # HxW
    assert abs(changed.float().mean().item() - 0.1) < 0.015  # 10,000 pixels: std of the rate 0.003
    # changed pixels are exactly black or white in all channels, about half each
    values = out[:, changed]  # 3xK
    assert bool(((values == 0).all(0) | (values == 255).all(0)).all())
    white = (values[0] == 255).float().mean().item()
    assert 0.4 < white < 0.6
    assert torch.equal(out[:, ~changed], img[:, ~changed])
    # the same generator seed gives the same noise; another seed other noise; fraction 0 = identity
    assert torch.equal(out, salt_and_pepper(img, 0.1, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, salt_and_pepper(img, 0.1, torch.Generator().manual_seed(1)))
    assert salt_and_pepper(img, 0.0) is img


def test_downsample_identity_and_low_pass():
    img = textured()
    assert torch.equal(downsample(img, 1), img)
    board = checkerboard()
    assert board.float().std().item() > 120
    flat = downsample(board, 4)
    assert flat.shape == board.shape and flat.dtype == torch.uint8
    # ~flat grey
    assert flat.float().std().item() < 5 and abs(flat.float().mean().item() - 127.5) < 5
    # a smooth image survives downsampling much better than the checkerboard
    assert psnr(downsample(img, 2), img) > psnr(downsample(img, 4), img) > 20
    assert downsample(torch.zeros(3, 3, 5, dtype=torch.uint8), 8).shape == (
        3,
        3,
        5,
    )  # sides >= 1 px


def test_build_corruption_from_config():
    cfg = get_cfg()
    assert build_corruption(cfg) is None  # all off by default
    cfg.INPUT.CORRUPTION.JPEG_QUALITY = 30
    cfg.INPUT.CORRUPTION.DOWNSAMPLE = 2
    c = build_corruption(cfg)
    assert isinstance(c, Corruption)
    assert c.settings() == {"JPEG_QUALITY": 30, "SALT_PEPPER": 0.0, "DOWNSAMPLE": 2}
    img = textured()
    assert torch.equal(c(img), jpeg(downsample(img, 2), 30))  # downsample, then JPEG
    cfg.INPUT.CORRUPTION.SALT_PEPPER = 1.0
    out = build_corruption(cfg)(img, torch.Generator().manual_seed(0))
    assert bool(((out == 0) | (out == 255)).all())  # noise comes last


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "JPEG_QUALITY",
            120,
            r"INPUT.CORRUPTION.JPEG_QUALITY must be in \[1, 95\] or 0 \(off\), got 120",
        ),
        (
            "JPEG_QUALITY",
            -3,
            r"INPUT.CORRUPTION.JPEG_QUALITY must be in \[1, 95\] or 0 \(off\), got -3",
        ),
        (
            "SALT_PEPPER",
            1.5,
            r"INPUT.CORRUPTION.SALT_PEPPER must be a fraction in \[0, 1\] \(0 = off\), got 1.5",
        ),
        (
            "SALT_PEPPER",
            -0.1,
            r"INPUT.CORRUPTION.SALT_PEPPER must be a fraction in \[0, 1\] \(0 = off\), got -0.1",
        ),
        (
            "DOWNSAMPLE",
            0,
            r"INPUT.CORRUPTION.DOWNSAMPLE must be an integer >= 1 \(1 = off\), got 0",
        ),
        (
            "DOWNSAMPLE",
            2.5,
            r"INPUT.CORRUPTION.DOWNSAMPLE must be an integer >= 1 \(1 = off\), got 2.5",
        ),
    ],
)
def test_corruption_values_out_of_range_name_the_key(key, value, message):
    cfg = get_cfg()
    setattr(cfg.INPUT.CORRUPTION, key, value)
    with pytest.raises(ValueError, match=message):
        build_corruption(cfg)

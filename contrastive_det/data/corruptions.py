"""
Corruption of pretraining images (docs/design.md section 6, after Cole et al.): JPEG re-encoding,
salt-and-pepper noise and downsampling. Each works on a 3xHxW uint8 RGB tensor and returns a new
one of the same shape; :func:`build_corruption` turns ``INPUT.CORRUPTION.*`` into one callable,
applied by the training mapper to the decoded image before the two views are drawn.
"""

import math
import numbers

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

__all__ = [
    "jpeg",
    "salt_and_pepper",
    "downsample",
    "Corruption",
    "build_corruption",
    "check_corruption_config",
]


def _check_image(image):
    if not (isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.dim() == 3):
        raise TypeError(
            f"expected a CxHxW uint8 tensor, got {getattr(image, 'dtype', type(image))} "
            f"of shape {tuple(getattr(image, 'shape', ()))}"
        )


def jpeg(image, quality):
    """Encode ``image`` as JPEG at ``quality`` (1-95) and decode it again."""
    _check_image(image)
    return decode_jpeg(encode_jpeg(image.contiguous(), quality=int(quality)))


def salt_and_pepper(image, fraction, generator=None):
    """
    Set a random ``fraction`` of the pixels (all channels of a location) to black (0) or white
    (255), each with probability 1/2. ``generator``: a ``torch.Generator`` (None: the global RNG).
    ``fraction`` 0 returns the image unchanged.
    """
    _check_image(image)
    if fraction <= 0:
        return image
    h, w = image.shape[-2:]
    u = torch.rand(2, h, w, generator=generator)
    hit = u[0] < fraction  # HxW
    value = (u[1] < 0.5).to(torch.uint8) * 255  # HxW: 0 (pepper) or 255 (salt)
    return torch.where(hit, value, image)  # broadcast over channels -> CxHxW


def downsample(image, factor):
    """
    Shrink ``image`` by ``factor`` (antialiased bilinear, sides rounded down, at least 1 px) and
    resize it back to its size (bilinear): detail finer than ``factor`` pixels is lost.
    ``factor`` 1 returns the image unchanged.
    """
    _check_image(image)
    if factor == 1:
        return image
    h, w = image.shape[-2:]
    small = (max(1, h // factor), max(1, w // factor))
    x = image.unsqueeze(0).float()
    x = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.round().clamp_(0, 255).to(torch.uint8).squeeze(0)


class Corruption:
    """
    Downsampling, then JPEG, then salt-and-pepper (noise last, so that it is neither smoothed nor
    compressed away); the levels that are off are skipped.
    """

    def __init__(self, jpeg_quality=0, salt_pepper=0.0, downsample_factor=1):
        self.jpeg_quality = int(jpeg_quality)
        self.salt_pepper = float(salt_pepper)
        self.downsample_factor = int(downsample_factor)

    def __call__(self, image, generator=None):
        if self.downsample_factor > 1:
            image = downsample(image, self.downsample_factor)
        if self.jpeg_quality > 0:
            image = jpeg(image, self.jpeg_quality)
        if self.salt_pepper > 0:
            image = salt_and_pepper(image, self.salt_pepper, generator)
        return image

    def settings(self):
        return {
            "JPEG_QUALITY": self.jpeg_quality,
            "SALT_PEPPER": self.salt_pepper,
            "DOWNSAMPLE": self.downsample_factor,
        }

    def __repr__(self):
        return f"Corruption({self.settings()})"


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_corruption_config(cfg):
    """Validate ``INPUT.CORRUPTION.*``; errors name the key. Returns (quality, fraction, factor)."""
    c = cfg.INPUT.CORRUPTION
    q, s, f = c.JPEG_QUALITY, c.SALT_PEPPER, c.DOWNSAMPLE
    if not _is_int(q) or not (q == 0 or 1 <= q <= 95):
        raise ValueError(f"INPUT.CORRUPTION.JPEG_QUALITY must be in [1, 95] or 0 (off), got {q!r}")
    if (
        not isinstance(s, numbers.Real)
        or isinstance(s, bool)
        or math.isnan(s)
        or not 0.0 <= s <= 1.0
    ):
        raise ValueError(
            f"INPUT.CORRUPTION.SALT_PEPPER must be a fraction in [0, 1] (0 = off), got {s!r}"
        )
    if not _is_int(f) or f < 1:
        raise ValueError(
            f"INPUT.CORRUPTION.DOWNSAMPLE must be an integer >= 1 (1 = off), got {f!r}"
        )
    return int(q), float(s), int(f)


def build_corruption(cfg):
    """The :class:`Corruption` of ``INPUT.CORRUPTION.*``, or None when every level is off."""
    q, s, f = check_corruption_config(cfg)
    if q == 0 and s == 0 and f == 1:
        return None
    return Corruption(q, s, f)

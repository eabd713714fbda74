"""
Semantic segmentation sets in Pascal VOC2012's layout (any root that has it: VOC2012 itself, the
toy digit scenes' ``VOC/``):

    <dirname>/JPEGImages/<image_id>.jpg
    <dirname>/<label_dir>/<image_id>.png          palette PNG of class indices, 255 = void
    <dirname>/ImageSets/Segmentation/<split>.txt  one image_id per line

The dataset dicts follow the contract of :mod:`contrastive_det.data.sem_seg_labels` (read the label
maps with :func:`~contrastive_det.data.sem_seg_labels.read_sem_seg_label`, never ``convert("L")``).
"""

import os

import numpy as np
from PIL import Image

from ..checks import DatasetLayoutError, layout_error

SEGMENTATION_SETS = os.path.join("ImageSets", "Segmentation")


def voc_palette(num_colors=256):
    """
    The Pascal VOC colour map (index i -> RGB from the bits of i, interleaved: bit 3k of i is bit
    7-k of red, 3k+1 of green, 3k+2 of blue), as a flat list of ``3 * num_colors`` ints for
    :meth:`PIL.Image.Image.putpalette`. Index 1 is (128, 0, 0), 255 (void) is (224, 224, 192).
    """
    palette = []
    for i in range(num_colors):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_label_png(path, label):
    """Write ``label`` (HxW integer class indices in 0..255) as a palette PNG with
    :func:`voc_palette`."""
    label = np.ascontiguousarray(label, dtype=np.uint8)  # HxW
    image = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
    image.putpalette(voc_palette())
    image.save(path)


def voc_sem_seg_layout(dirname, split, label_dir="SegmentationClass"):
    """The one-line expected layout of :func:`load_voc_sem_seg` (for error messages and
    metadata)."""
    return (
        f"{dirname}/{{JPEGImages/<id>.jpg, {label_dir}/<id>.png (palette PNG of class indices, 255 "
        f"void), {SEGMENTATION_SETS}/{split}.txt (one id per line)}}"
    )


def load_voc_sem_seg(dirname, split, label_dir="SegmentationClass", name=None):
    """
    The semantic segmentation dicts of a VOC2012-layout root: one per id of
    ``<dirname>/ImageSets/Segmentation/<split>.txt``, in file order.

    Args:
        dirname (str): the VOC root (holding JPEGImages/, ``label_dir``/, ImageSets/Segmentation/)
        split (str): the image set, e.g. "train", "val", "trainval"
        label_dir (str): the label-map folder under ``dirname`` ("SegmentationClass"; VOC2012 also
            has "SegmentationObject", which holds instance ids, not classes)
        name (str or None): the dataset name for error messages (:func:`~.checks.layout_error`)
    Returns:
        list[dict]: ``{"file_name", "sem_seg_file_name", "image_id", "height", "width"}``; the size
        is read from the image header (no decoding)
    Raises:
        DatasetLayoutError: the list file, an image or a label map is missing or an image header
            cannot be read; the message names the file
    """
    layout = voc_sem_seg_layout(dirname, split, label_dir)

    def error(message):
        if name is not None:
            return layout_error(name, layout, message)
        return DatasetLayoutError(f"{message.rstrip('.')}. Expected layout: {layout}.")

    list_file = os.path.join(dirname, SEGMENTATION_SETS, f"{split}.txt")
    try:
        with open(list_file) as f:
            ids = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise error(
            f"cannot read the image list {list_file} ({type(e).__name__}: {e.strerror or e})"
        ) from e
    dicts = []
    for image_id in ids:
        file_name = os.path.join(dirname, "JPEGImages", f"{image_id}.jpg")
        sem_seg_file_name = os.path.join(dirname, label_dir, f"{image_id}.png")
        if not os.path.isfile(sem_seg_file_name):
            raise error(
                f"the label map {sem_seg_file_name} of image {image_id!r} (listed in {list_file}) "
                "is missing"
            )
        try:
            with Image.open(file_name) as im:  # reads the header only
                width, height = im.size
        except (OSError, SyntaxError, ValueError) as e:
            raise error(
                f"the image {file_name} (listed in {list_file}) is missing or unreadable "
                f"({type(e).__name__}: {e})"
            ) from e
        dicts.append(
            {
                "file_name": file_name,
                "sem_seg_file_name": sem_seg_file_name,
                "image_id": image_id,
                "height": height,
                "width": width,
            }
        )
    return dicts

"""
Semantic segmentation label maps: the dataset-dict contract and the one reader every part uses.

A semantic segmentation dataset dict has:

* ``file_name`` (str): the image;
* ``sem_seg_file_name`` (str): its label map, a PNG (palette or single-channel) of class indices,
  or an SBD ``cls/<id>.mat`` file (``GTcls.Segmentation``);
* ``image_id`` (str), and optionally ``height`` / ``width``;
* optionally ``sem_seg_reduce_zero_label`` (bool): the file stores 0 = "other/unlabelled" and
  classes from 1 (ADE20K's ``annotations/``): 0 becomes the ignore label and every class moves
  down by one, as mmseg's ``reduce_zero_label``.

Its metadata has ``stuff_classes`` (class names, index = label value), ``ignore_label`` (255 for
every built-in set) and ``evaluator_type`` "sem_seg".

Label PNGs are read as they are stored. detectron2's default mapper opens them with
``convert("L")``, which turns the palette indices of VOC's ``SegmentationClass`` files into
luminance values (class 1 "aeroplane" becomes 38, detectron2 issue #1760): here a palette image
gives its indices, a one-channel image its values, and a colour (RGB) image is refused, since
its colours are not class indices.
"""

import os

import numpy as np
from PIL import Image

IGNORE_LABEL = 255  # label value of void / unlabelled pixels in every built-in set

# PIL modes whose pixel values are class indices: palette, 8-bit, 32-bit integer, 16-bit
INDEX_MODES = ("P", "L", "I", "I;16", "I;16B", "I;16L")


class LabelMapError(ValueError):
    """A label map cannot be read as class indices; the message names the file and the fix."""


def _read_png(path):
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode not in INDEX_MODES:
                raise LabelMapError(
                    f"Label map {path} is a {mode} image; expected class indices: a palette ('P') "
                    "PNG such as VOC's SegmentationClass files, or a single-channel PNG whose "
                    f"values are the class ids (ignore = {IGNORE_LABEL}). A colour-coded label "
                    "image must be converted to class ids first (e.g. Cityscapes' "
                    "createTrainIdLabelImgs.py writes *_labelTrainIds.png)."
                )
            return np.asarray(im, dtype=np.int64)  # HxW: palette images give their indices
    except LabelMapError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise LabelMapError(f"Label map {path} cannot be read: {type(e).__name__}: {e}") from e


def _read_sbd_mat(path):
    """SBD's ``dataset/cls/<id>.mat``: ``GTcls.Segmentation`` (HxW uint8, 0 background, 1..20, 255
    void)."""
    from scipy.io import loadmat

    try:
        gtcls = loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
        return np.asarray(gtcls.Segmentation, dtype=np.int64)
    except (OSError, KeyError, AttributeError, ValueError) as e:
        raise LabelMapError(
            f"Label map {path} is not an SBD class file (expected a .mat with GTcls.Segmentation): "
            f"{type(e).__name__}: {e}"
        ) from e


def read_sem_seg_label(record):
    """
    The label map of a dataset dict (or of a file path) as an HxW int64 array of class indices,
    ``IGNORE_LABEL`` for void pixels.

    Raises:
        LabelMapError: the file is missing, unreadable, not a class-index image (RGB), or not an
            SBD class file; the message names the file.
    """
    if isinstance(record, str):
        record = {"sem_seg_file_name": record}
    path = record["sem_seg_file_name"]
    if not os.path.isfile(path):
        raise LabelMapError(
            f"Label map {path} does not exist (image {record.get('file_name', '?')})"
        )
    label = _read_sbd_mat(path) if path.endswith(".mat") else _read_png(path)
    if label.ndim != 2:
        raise LabelMapError(f"Label map {path} has shape {label.shape}; expected HxW class indices")
    if record.get("sem_seg_reduce_zero_label", False):
        label = np.where(
            label == 0, IGNORE_LABEL, np.where(label == IGNORE_LABEL, IGNORE_LABEL, label - 1)
        )
    return label


def check_label_values(label, num_classes, path, ignore_label=IGNORE_LABEL):
    """
    Raise :class:`LabelMapError` naming ``path`` when ``label`` holds a value that is neither a
    class index in ``[0, num_classes)`` nor ``ignore_label`` (a label map of another dataset, or
    MODEL.SEM_SEG_HEAD.NUM_CLASSES too small).
    """
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != ignore_label) | (values < 0)]
    if bad.size:
        raise LabelMapError(
            f"Label map {path} holds value(s) {bad.tolist()[:10]} outside the {num_classes} "
            f"classes [0, {num_classes}) and the ignore label {ignore_label}; check the dataset's "
            f"class list and MODEL.SEM_SEG_HEAD.NUM_CLASSES"
        )

"""
Loaders of semantic segmentation sets stored as two folders (images ``<stem>.<ext>``, label maps
``<stem>.png``), and the checks their registration shares; registration itself is in
:mod:`.datasets.catalog` (``register_sem_seg``) and :mod:`.datasets.sem_seg_sets`.
"""

import os

from detectron2.data import MetadataCatalog

from .checks import DatasetLayoutError, check_required_paths, read_listed_dicts
from .sem_seg_labels import IGNORE_LABEL

# image files a sem_seg set may hold (compared case-insensitively); its label maps are <stem>.png
SEM_SEG_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MAX_LISTED = 5  # files a sem_seg error names (then the count)


def first_few(items):
    """The first :data:`MAX_LISTED` of ``items`` joined, and how many more."""
    items = list(items)
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    return shown + (f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def folder_entries(folder):
    """The entries of ``folder`` as a set (empty when it does not exist: the caller reports it)."""
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def load_sem_seg_split(name, read):
    """A sem_seg loader: check the metadata's paths, read, check ids are unique, sort by
    ``image_id``."""
    meta = MetadataCatalog.get(name)
    check_required_paths(name, list(meta.required_paths), meta.layout)
    dicts = read_listed_dicts(name, meta.layout, read, "no images are listed for this split")
    return sorted(dicts, key=lambda d: d["image_id"])


def check_sem_seg_args(
    where,
    class_names,
    ignore_label,
    reduce_zero_label,
    keys=("CLASSES", "IGNORE_LABEL", "REDUCE_ZERO_LABEL"),
):
    """
    Raise ValueError naming ``where`` and the key unless ``class_names`` is a non-empty list of
    unique, non-empty strings, ``ignore_label`` an int in [0, 65535] that is no class index, and
    ``reduce_zero_label`` a bool (which needs ignore label 255, the value the reader writes).
    """
    k_classes, k_ignore, k_reduce = keys
    if (
        isinstance(class_names, str)
        or not isinstance(class_names, (list, tuple))
        or not class_names
        or not all(isinstance(c, str) and c.strip() for c in class_names)
        or len(set(class_names)) != len(class_names)
    ):
        raise ValueError(
            f"{where}.{k_classes} must list the class names (non-empty, unique strings; index = "
            f"label value), got {class_names!r}"
        )
    if (
        isinstance(ignore_label, bool)
        or not isinstance(ignore_label, int)
        or not 0 <= ignore_label <= 65535
    ):
        raise ValueError(
            f"{where}.{k_ignore} must be an integer in [0, 65535] (the label value of unlabelled "
            f"pixels; default 255), got {ignore_label!r}"
        )
    if ignore_label < len(class_names):
        raise ValueError(
            f"{where}.{k_ignore} {ignore_label} is the index of class "
            f"{class_names[ignore_label]!r}; it must be >= the number of classes "
            f"({len(class_names)})"
        )
    if not isinstance(reduce_zero_label, bool):
        raise ValueError(f"{where}.{k_reduce} must be true or false, got {reduce_zero_label!r}")
    if reduce_zero_label and ignore_label != IGNORE_LABEL:
        raise ValueError(
            f"{where}.{k_reduce} maps label 0 to {IGNORE_LABEL}, so {k_ignore} must be "
            f"{IGNORE_LABEL}, got {ignore_label}"
        )


def read_text_lines(path, what):
    """
    The lines of the text file ``path``; a DatasetLayoutError when it is missing or not text
    (``what``: what it lists).
    """
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise DatasetLayoutError(f"{path} is missing") from None
    except UnicodeDecodeError as e:
        raise DatasetLayoutError(f"{path} is not a text file of {what}: {e}") from e


def _read_stems(list_file):
    lines = read_text_lines(list_file, "image stems")
    stems = []
    for line in lines:
        stem = line.strip()
        if stem:
            base, ext = os.path.splitext(stem)
            stems.append(base if ext.lower() in SEM_SEG_IMAGE_EXTENSIONS else stem)
    return stems


def read_sem_seg_folder(image_root, label_root, list_file=None, reduce_zero_label=False):
    """
    The dicts of ``<image_root>/<stem>.<jpg|jpeg|png|bmp|tif|tiff>`` paired with
    ``<label_root>/<stem>.png``: every image of ``image_root``, or the stems of ``list_file``
    (one a line). Raises :class:`DatasetLayoutError` naming the images without a label, the listed
    stems without an image, and stems with two images.
    """
    by_stem = {}
    for fname in sorted(folder_entries(image_root)):
        stem, ext = os.path.splitext(fname)
        if ext.lower() in SEM_SEG_IMAGE_EXTENSIONS and os.path.isfile(
            os.path.join(image_root, fname)
        ):
            by_stem.setdefault(stem, []).append(fname)
    exts = "{" + ",".join(e[1:] for e in SEM_SEG_IMAGE_EXTENSIONS) + "}"
    if list_file:
        stems = _read_stems(list_file)
        no_image = [os.path.join(image_root, f"{s}.{exts}") for s in stems if s not in by_stem]
        if no_image:
            raise DatasetLayoutError(
                f"{len(no_image)} of the {len(stems)} stems listed in {list_file} have no image: "
                f"{first_few(no_image)}"
            )
    else:
        stems = sorted(by_stem)
        if not stems:
            raise DatasetLayoutError(f"{image_root} holds no images <stem>.{exts}")
    twice = [
        " and ".join(os.path.join(image_root, f) for f in by_stem[s])
        for s in stems
        if len(by_stem[s]) > 1
    ]
    if twice:
        raise DatasetLayoutError(f"{len(twice)} stems have more than one image: {first_few(twice)}")
    labels = folder_entries(label_root)
    no_label = [
        f"{os.path.join(image_root, by_stem[s][0])} (no {os.path.join(label_root, s + '.png')})"
        for s in stems
        if f"{s}.png" not in labels
    ]
    if no_label:
        raise DatasetLayoutError(
            f"{len(no_label)} of the {len(stems)} images have no label: {first_few(no_label)}"
        )
    dicts = []
    for s in stems:
        record = {
            "file_name": os.path.join(image_root, by_stem[s][0]),
            "sem_seg_file_name": os.path.join(label_root, f"{s}.png"),
            "image_id": s,
        }
        if reduce_zero_label:
            record["sem_seg_reduce_zero_label"] = True
        dicts.append(record)
    return dicts

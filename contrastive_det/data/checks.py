"""
Checks that run before any training starts: a registered dataset's files are where its metadata
says (:func:`check_dataset_layout`), and its images can be decoded (:func:`check_images`).
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from tqdm import tqdm

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

from .classification import read_classification_image
from .mapper import ImageReadError
from .paths import datasets_root
from .sem_seg_labels import INDEX_MODES

logger = logging.getLogger(__name__)

README_HINT = (
    "See datasets/README.md for the layouts; the root is $DETECTRON2_DATASETS (now {root!r})."
)


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder or file is missing or not in the expected layout."""


class UnreadableImagesError(ImageReadError):
    """
    Some images of a dataset cannot be opened or decoded. ``bad`` lists every one of them as
    ``(file_name, reason)``; the message shows the first few and the count.
    """

    def __init__(self, message, bad):
        super().__init__(message)
        self.bad = list(bad)


def _voc_expected(dirname, split):
    return [
        os.path.join(dirname, "JPEGImages") + "/",
        os.path.join(dirname, "Annotations") + "/",
        os.path.join(dirname, "ImageSets", "Main", f"{split}.txt"),
    ]


def missing_path_error(name, path, layout, num_missing=1):
    """
    The :class:`DatasetLayoutError` for dataset ``name`` whose ``path`` is missing: it names the
    path, the dataset, the expected ``layout`` (one line) and the README.
    """
    more = f" (and {num_missing - 1} more)" if num_missing > 1 else ""
    return DatasetLayoutError(
        f"Dataset '{name}' is missing {path}{more}. Expected layout: {layout}. "
        + README_HINT.format(root=datasets_root())
    )


def layout_error(name, layout, message):
    """A :class:`DatasetLayoutError` for dataset ``name``: the problem, the expected layout, the
    README."""
    message = str(message).rstrip()
    message += "" if message.endswith(".") else "."
    return DatasetLayoutError(
        f"Dataset '{name}': {message} Expected layout: {layout}. "
        + README_HINT.format(root=datasets_root())
    )


def read_listed_dicts(name, layout, read, empty_message):
    """
    ``read()`` -> the dataset dicts of ``name``, checked: a :class:`DatasetLayoutError` that does
    not name a dataset yet is re-raised as :func:`layout_error` (with ``layout``), an empty list
    raises ``empty_message``, and an ``image_id`` listed twice raises naming it. Returns the dicts
    as read.
    """
    try:
        dicts = read()
    except DatasetLayoutError as e:
        if str(e).startswith("Dataset '"):
            raise
        raise layout_error(name, layout, e) from e
    if not dicts:
        raise layout_error(name, layout, empty_message)
    seen = set()
    for d in dicts:
        if d["image_id"] in seen:
            raise layout_error(name, layout, f"image {d['image_id']!r} is listed twice")
        seen.add(d["image_id"])
    return dicts


def check_required_paths(name, required_paths, layout):
    """
    Raise :func:`missing_path_error` for the first of ``required_paths`` that does not exist
    (a path ending with "/" must be a folder, any other a file).
    """
    missing = [
        p
        for p in required_paths
        if not (os.path.isdir(p) if p.endswith("/") else os.path.isfile(p))
    ]
    if missing:
        raise missing_path_error(name, missing[0], layout, len(missing))


def check_dataset_layout(name):
    """
    Raise :class:`DatasetLayoutError` naming the missing path and the expected layout when the
    files of dataset ``name`` are not in place. Unknown names raise KeyError listing the
    registered ones. Datasets whose metadata names no files are not checked.

    Metadata with ``required_paths`` (classification sets: folders end with "/") is checked
    against those paths and reported with its ``layout`` line; otherwise Pascal VOC metadata
    (``dirname``, ``split``), COCO metadata (``json_file``, ``image_root``) and class-per-folder
    metadata (``image_root``) are checked.
    """
    if name not in DatasetCatalog.list():
        raise KeyError(
            f"Dataset '{name}' is not registered. Registered: "
            f"{', '.join(sorted(DatasetCatalog.list()))}"
        )
    meta = MetadataCatalog.get(name)
    hint = README_HINT.format(root=datasets_root())
    if meta.get("required_paths", None):
        check_required_paths(
            name, list(meta.required_paths), meta.get("layout", "see datasets/README.md")
        )
    elif hasattr(meta, "dirname") and hasattr(meta, "split"):
        expected = _voc_expected(meta.dirname, meta.split)
        missing = [p for p in expected if not os.path.exists(p.rstrip("/"))]
        if missing:
            raise DatasetLayoutError(
                f"Dataset '{name}' (Pascal VOC layout) is incomplete: missing {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f". Expected under {meta.dirname}: JPEGImages/<id>.jpg, Annotations/<id>.xml, "
                f"ImageSets/Main/{meta.split}.txt. {hint}"
            )
        with open(expected[2]) as f:
            num_ids = sum(1 for line in f if line.strip())
        if num_ids < 2:
            # detectron2's load_voc_instances reads the list with np.loadtxt, which fails on one
            # line
            raise DatasetLayoutError(
                f"Dataset '{name}': {expected[2]} lists {num_ids} image(s); detectron2's VOC "
                f"loader needs at least 2 ids in an image set."
            )
    elif hasattr(meta, "json_file"):
        if not os.path.isfile(meta.json_file):
            raise DatasetLayoutError(
                f"Dataset '{name}' (COCO JSON) is missing its annotation file {meta.json_file}. "
                f"Expected the instances JSON there and images under {meta.image_root}. {hint}"
            )
        if not os.path.isdir(meta.image_root):
            raise DatasetLayoutError(
                f"Dataset '{name}' (COCO JSON) is missing its image folder {meta.image_root}. "
                f"{hint}"
            )
    elif getattr(meta, "evaluator_type", None) == "classification":
        if not os.path.isdir(meta.image_root):
            raise DatasetLayoutError(
                f"Dataset '{name}' (class-per-folder) is missing {meta.image_root}; "
                f"expected {meta.image_root}/<class_name>/<image>. {hint}"
            )


# ----------------------------------------------------------------------------------------------
# Image pre-flight scan
# ----------------------------------------------------------------------------------------------
def image_problem(file_name):
    """
    Why ``file_name`` cannot be used as an image, or None if it decodes.

    JPEGs are decoded in PIL's draft mode (DCT scaling to 1/8 size: the whole entropy-coded
    stream is read, so truncation is caught, at a fraction of a full decode); PNGs are checked with
    :meth:`PIL.Image.Image.verify` (chunk CRCs up to IEND); other formats are fully decoded.
    """
    try:
        with Image.open(file_name) as im:
            if im.format == "JPEG":
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
            elif im.format == "PNG":
                im.verify()
            else:
                im.load()
    except Exception as e:  # noqa: BLE001  (PIL raises OSError, SyntaxError, ValueError, ...)
        return f"{type(e).__name__}: {e}"
    return None


def container_problem(file_name, max_index):
    """
    Why the array container ``file_name`` (a CIFAR python batch, an SVHN ``.mat`` file) cannot
    serve items ``0..max_index``, or None. The container is decoded (and kept for the process, see
    :func:`contrastive_det.data.classification.read_classification_image`).
    """
    try:
        read_classification_image({"file_name": file_name, "array_index": int(max_index)})
    except ImageReadError as e:
        cause = e.__cause__
        return f"{type(cause).__name__}: {cause}" if cause is not None else str(e)
    return None


# EXIF orientations that swap width and height (detectron2's read_image applies them)
_TRANSPOSED = (5, 6, 7, 8)


def label_problem(label_file, image_file):
    """
    Why ``label_file`` cannot be the label map of ``image_file``, or None: a PNG that is not of
    class indices (RGB, say), that cannot be opened, or whose size differs from the image's as
    detectron2 reads it (after its EXIF rotation). Reads headers only; an SBD ``.mat`` is checked
    when it is read.
    """
    if not label_file.lower().endswith(".png"):
        return None
    try:
        with Image.open(label_file) as lab:
            mode, size = lab.mode, lab.size
    except Exception as e:  # noqa: BLE001  (PIL raises OSError, SyntaxError, ValueError, ...)
        return f"label map: {type(e).__name__}: {e}"
    if mode not in INDEX_MODES:
        return (
            f"label map is a {mode} image; expected class indices (a palette or single-channel "
            "PNG; a colour-coded map must be converted to class ids first)"
        )
    try:
        with Image.open(image_file) as im:
            w, h = im.size
            if im.getexif().get(0x0112) in _TRANSPOSED:
                w, h = h, w
    except Exception:  # noqa: BLE001  (the image's own check reports it)
        return None
    if size != (w, h):
        return f"label map is {size[0]}x{size[1]} but its image {image_file} is {w}x{h}"
    return None


def _label_pairs(datasets):
    """``[(label file, image file)]``, in order and without repeats, of the dicts of ``datasets``
    that have a ``sem_seg_file_name``."""
    seen = {}
    for item in datasets:
        for d in DatasetCatalog.get(item) if isinstance(item, str) else [item]:
            if d.get("sem_seg_file_name"):
                seen.setdefault(d["sem_seg_file_name"], d["file_name"])
    return list(seen.items())


def _file_names(datasets):
    """
    ``{file_name: None or the largest array_index}``, in order, of ``datasets`` (registered names
    and/or dataset dicts): image files map to None, array containers to the last item they serve.
    """
    seen = {}
    for item in datasets:
        dicts = DatasetCatalog.get(item) if isinstance(item, str) else [item]
        for d in dicts:
            index = d.get("array_index")
            if index is None:
                seen.setdefault(d["file_name"], None)
            else:
                previous = seen.get(d["file_name"])
                seen[d["file_name"]] = int(index) if previous is None else max(previous, int(index))
    return seen


def _problem(item):
    file_name, max_index, image_file = item
    if image_file is not None:  # a label map and the image it belongs to
        return label_problem(file_name, image_file)
    return (
        image_problem(file_name) if max_index is None else container_problem(file_name, max_index)
    )


def scan_images(datasets, max_listed=20, progress=True, num_threads=None):
    """
    Open and decode every image of ``datasets`` (see :func:`image_problem`; array-stored items:
    :func:`container_problem` on their container file), check each segmentation label map against
    its image (:func:`label_problem`: headers only), and raise one error that lists ALL the bad
    files (the first ``max_listed`` in the message, and the count).

    Args:
        datasets: iterable of registered dataset names and/or dataset dicts (with "file_name")
        max_listed: how many bad files the error message names
        progress: show a tqdm progress bar
        num_threads: decoding threads (PIL releases the GIL while decoding); default
            min(8, number of CPUs)
    Returns:
        the number of distinct files checked
    Raises:
        UnreadableImagesError: listing every unreadable, truncated, missing or non-image file
            (``.bad``: [(file_name, reason), ...])
    """
    datasets = list(datasets)
    items = [(f, i, None) for f, i in _file_names(datasets).items()]
    labels = [(lab, None, image) for lab, image in _label_pairs(datasets)]
    items += labels
    files = [f for f, _, _ in items]
    num_threads = num_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        problems = list(
            tqdm(
                pool.map(_problem, items, chunksize=16),
                total=len(files),
                desc="Checking images",
                unit="img",
                disable=not progress,
                leave=False,
            )
        )
    bad = [(f, p) for f, p in zip(files, problems) if p is not None]
    if bad:
        listed = "\n".join(f"  {f}: {p}" for f, p in bad[:max_listed])
        more = f"\n  ... and {len(bad) - max_listed} more" if len(bad) > max_listed else ""
        what = "files (images and label maps)" if labels else "images"
        raise UnreadableImagesError(
            f"{len(bad)} of {len(files)} {what} cannot be read:\n{listed}{more}\n"
            "Fix or remove these files (or their annotations). To skip this check, set "
            "DATALOADER.CHECK_IMAGES_MAX 0.",
            bad,
        )
    return len(files)


def check_class_lists(sets, key, expected):
    """
    ``sets``: ``[(dataset name, its class names), ...]`` of one run. Each must have ``expected``
    classes (the model's output count, config key ``key``) and all must list the same classes (a
    label means one class in training and in evaluation); else ValueError naming the key, the
    dataset and its classes.
    """
    first = None
    for name, classes in sets:
        classes = list(classes)
        if len(classes) != expected:
            raise ValueError(
                f"{key} is {expected} but dataset '{name}' has {len(classes)} classes "
                f"({', '.join(map(str, classes[:6]))}{', ...' if len(classes) > 6 else ''}); "
                f"set {key} {len(classes)}"
            )
        if first is None:
            first = (name, classes)
        elif classes != first[1]:
            raise ValueError(
                f"datasets '{first[0]}' and '{name}' list different classes ({first[1][:4]}... vs "
                f"{classes[:4]}...): a label would mean another class in evaluation"
            )


def check_images(cfg, dataset_names):
    """
    The pre-flight image scan of the datasets ``dataset_names`` (e.g. ``cfg.DATASETS.TRAIN``),
    as configured by ``cfg.DATALOADER.CHECK_IMAGES_MAX``: the scan runs when the datasets together
    hold at most that many distinct images (0 = never). Call it before training starts, on every
    process (each reads the files it would train on; the bar shows on the main process only).

    Returns:
        the number of images checked (0 when skipped)
    Raises:
        UnreadableImagesError: see :func:`scan_images`
    """
    limit = int(cfg.DATALOADER.CHECK_IMAGES_MAX)
    names = list(dataset_names)
    if limit <= 0 or not names:
        return 0
    dicts = [d for name in names for d in DatasetCatalog.get(name)]
    num_files = len({d["file_name"] for d in dicts})
    if num_files > limit:
        logger.info(
            f"Not checking the {num_files} images of {names}: more than "
            f"DATALOADER.CHECK_IMAGES_MAX ({limit}). Raise it to scan them before training."
        )
        return 0
    logger.info(f"Checking that the {num_files} images of {names} can be decoded ...")
    return scan_images(dicts, progress=comm.is_main_process())

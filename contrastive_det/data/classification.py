"""
Classification sets as detectron2 dataset dicts, and the one image reader they share.

Dataset dicts of every classification set (class-per-folder, CSV, the downstream sets of
:mod:`contrastive_det.data.datasets.downstream`) follow one contract:

* ``file_name`` (str): the image file, or for array-stored sets (CIFAR, SVHN) the container file
  that holds the pixels, with ``array_index`` (int) the item's index in it;
* ``image_id`` (str): unique within the set;
* single-label sets: ``label`` (int in [0, C)) and ``class_name`` (str);
* multi-label sets (VOC2007 classification): ``labels`` (list[int], positive classes),
  ``ignore_labels`` (list[int], classes marked difficult) and ``label`` = -1.

:func:`read_classification_image` turns any such dict into an RGB PIL image.
"""

import collections.abc
import csv
import functools
import logging
import os
import pickle

import numpy as np
from PIL import Image

from .image_reader import read_rgb_image, to_rgb
from .mapper import ImageReadError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")

__all__ = [
    "IMAGE_EXTENSIONS",
    "ClassificationCSVError",
    "LazyClassList",
    "class_folder_names",
    "load_class_folders",
    "load_classification_csv",
    "dataset_classes",
    "relabel_by_name",
    "read_classification_image",
    "clear_array_cache",
    "unpickle_cifar",
]


# ----------------------------------------------------------------------------------------------
# Class lists known only once the files are read
# ----------------------------------------------------------------------------------------------
class LazyClassList(collections.abc.Sequence):
    """
    A read-only sequence of class names that reads them from disk on first use, then caches them.

    Registration must not read files (like detectron2's builtins), yet ``MetadataCatalog`` must
    carry ``classes`` for sets whose class list lives on disk (folder names, a ``classes.txt``, a
    ``.mat`` file). This object is that value: ``len()``, indexing, iteration and ``list(...)`` read
    the list the first time. Two lazy lists are equal when they read the same source (nothing is
    read to compare them); compared with a list or tuple, they compare their names.

    Args:
        reader: a module-level callable returning the class names (an iterable of str)
        args: the reader's positional arguments (they identify the source)
        description: one line saying where the names come from (shown before they are read)
    """

    def __init__(self, reader, *args, description=""):
        self._reader = reader
        self._args = tuple(args)
        self._names = None
        self.description = description or f"{getattr(reader, '__name__', reader)}{self._args}"

    def _get(self):
        if self._names is None:
            self._names = [str(c) for c in self._reader(*self._args)]
        return self._names

    def __len__(self):
        return len(self._get())

    def __getitem__(self, index):
        return self._get()[index]

    def __iter__(self):
        return iter(self._get())

    def __eq__(self, other):
        if isinstance(other, LazyClassList):
            return (self._reader, self._args) == (other._reader, other._args)
        if isinstance(other, (list, tuple)):
            return list(self._get()) == list(other)
        return NotImplemented

    __hash__ = None

    def tolist(self):
        """The class names as a new plain list."""
        return list(self._get())

    def __repr__(self):
        if self._names is None:
            return f"<classes read on first use: {self.description}>"
        return f"LazyClassList({self._names!r})"


# ----------------------------------------------------------------------------------------------
# Class-per-folder sets
# ----------------------------------------------------------------------------------------------
def dataset_dicts(name):
    """The dicts of the registered dataset ``name``; an empty dataset raises ValueError naming
    it."""
    from detectron2.data import DatasetCatalog

    dicts = DatasetCatalog.get(name)
    if not dicts:
        raise ValueError(f"Dataset '{name}' has no images")
    return dicts


def class_folder_names(root, exclude=()):
    """The sorted names of the sub-folders of ``root`` (minus ``exclude``): the default class
    order."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Classification root {root} does not exist; expected {root}/<class_name>/<image>"
        )
    return sorted(
        d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and d not in exclude
    )


def load_class_folders(root, class_names=None):
    """
    Return detectron2-style dicts ``{"file_name", "image_id", "label", "class_name"}`` for
    ``root/<class>/<img>``, sorted by class then file name. ``class_names`` fixes the label order
    (default: the sorted folder names). With ``class_names``, a listed class without a folder is
    allowed (a test split may lack a class; the others keep their labels) and logged; a folder that
    is not a listed class raises ValueError naming it; no folder of any listed class raises
    FileNotFoundError.
    """
    folders = class_folder_names(root)
    class_names = list(class_names) if class_names else folders
    unknown = [f for f in folders if f not in class_names]
    if unknown:
        raise ValueError(
            f"Classification root {root} has folder(s) {unknown} that are not among its declared "
            f"classes {class_names}; add them to the class list (CLASSES) or move them out of "
            f"{root}"
        )
    missing = [c for c in class_names if c not in folders]
    if len(missing) == len(class_names):
        raise FileNotFoundError(
            f"Classification root {root} has no folder for any of its classes {class_names}"
        )
    if missing:
        logger.warning(
            f"Classification root {root} has no folder for class(es) {missing}; the other classes "
            f"keep their labels"
        )
    dicts = []
    for label, cls in enumerate(class_names):
        if cls in missing:
            continue
        cls_dir = os.path.join(root, cls)
        for fname in sorted(os.listdir(cls_dir)):
            if fname.lower().endswith(IMAGE_EXTENSIONS):
                dicts.append(
                    {
                        "file_name": os.path.join(cls_dir, fname),
                        "image_id": f"{cls}/{fname}",
                        "label": label,
                        "class_name": cls,
                    }
                )
    if not dicts:
        raise FileNotFoundError(
            f"Classification root {root} has no images (extensions {', '.join(IMAGE_EXTENSIONS)}) "
            f"in its class folders {class_names}"
        )
    return dicts


# ----------------------------------------------------------------------------------------------
# Labels that follow class names
# ----------------------------------------------------------------------------------------------
def dataset_classes(name):
    """The class names in registered dataset ``name``'s metadata (``classes``), or None without
    them."""
    from detectron2.data import MetadataCatalog

    classes = MetadataCatalog.get(name).get("classes", None)
    return None if classes is None else [str(c) for c in classes]


def relabel_by_name(dicts, classes, dataset_name, reference):
    """
    Copies of ``dicts`` whose ``label`` is the index of their ``class_name`` in ``classes``: the
    label map of a reference split (the training set, the kNN bank) applied to another split by
    name, so that a split without some class, or whose own class list is in another order, keeps
    every other class's label. Multi-label dicts (``labels``) and dicts without ``class_name`` are
    returned unchanged (their labels index a fixed class list).

    Args:
        dicts (list[dict]): single-label dataset dicts (``class_name``, ``label``)
        classes (list[str]): the reference class names, in label order
        dataset_name (str): the split's name, for messages
        reference (str): where ``classes`` come from (e.g. "the training set 'x_train'"), for
            messages
    Raises:
        ValueError: naming the classes of ``dataset_name`` that are not in ``classes``
    """
    index = {str(c): i for i, c in enumerate(classes)}
    unseen = {}
    out = []
    for d in dicts:
        if "labels" in d or "class_name" not in d:
            out.append(d)
            continue
        label = index.get(str(d["class_name"]))
        if label is None:
            unseen[str(d["class_name"])] = unseen.get(str(d["class_name"]), 0) + 1
            continue
        out.append(d if d.get("label") == label else dict(d, label=label))
    if unseen:
        listed = ", ".join(f"'{c}' ({n} images)" for c, n in sorted(unseen.items()))
        raise ValueError(
            f"Dataset '{dataset_name}' has class(es) {listed} that {reference} does not have; its "
            f"labels follow the class names of {reference} ({len(classes)} classes: "
            f"{list(classes)[:10]}{' ...' if len(classes) > 10 else ''})"
        )
    return out


# ----------------------------------------------------------------------------------------------
# CSV sets: one "path,label" row per image
# ----------------------------------------------------------------------------------------------
class ClassificationCSVError(ValueError):
    """A classification CSV file is empty or has a malformed row; the message names
    ``file:line``."""


def load_classification_csv(csv_file, class_names, root=None):
    """
    Read a classification set listed in a CSV file of ``path,label`` rows.

    The first line may be the header ``path,label``; blank lines are skipped. ``path`` is the image
    file, absolute or relative to ``root`` (default: the CSV file's folder). ``label`` is a class
    name of ``class_names`` or, when it is not one, an integer id in ``[0, len(class_names))``.

    Args:
        csv_file (str): the CSV file
        class_names (list[str]): the label order
        root (str or None): the folder relative paths start from
    Returns:
        list[dict]: ``{"file_name", "image_id" (the path as written), "label", "class_name"}``,
        in file order
    Raises:
        FileNotFoundError: the CSV file is missing
        ClassificationCSVError: naming ``file:line`` for an empty file, a row without exactly two
            columns or with an empty path, an unknown class name, an integer id out of range, an
            image file that does not exist, or a path listed twice
    """
    class_names = [str(c) for c in class_names]
    index = {c: i for i, c in enumerate(class_names)}
    root = os.path.expanduser(root) if root else os.path.dirname(os.path.abspath(csv_file))
    if not os.path.isfile(csv_file):
        raise FileNotFoundError(
            f"Classification CSV {csv_file} does not exist (expected rows 'path,label')"
        )
    dicts, started, line_of = [], False, {}
    with open(csv_file, newline="", encoding="utf-8-sig") as f:  # Excel writes a BOM
        for line_no, row in enumerate(csv.reader(f), start=1):
            where = f"{csv_file}:{line_no}"
            if not row or all(not cell.strip() for cell in row):
                continue
            cells = [cell.strip() for cell in row]
            if not started and [c.lower() for c in cells] == ["path", "label"]:
                started = True  # the optional header
                continue
            started = True
            if len(cells) != 2:
                raise ClassificationCSVError(
                    f"{where}: expected 2 columns 'path,label', got {len(cells)}: {','.join(row)!r}"
                )
            path, raw = cells
            if not path:
                raise ClassificationCSVError(f"{where}: the image path (first column) is empty")
            if raw in index:
                label = index[raw]
            else:
                try:
                    label = int(raw)
                except ValueError:
                    raise ClassificationCSVError(
                        f"{where}: label {raw!r} is not one of CLASSES {class_names} nor an "
                        "integer id"
                    ) from None
                if not 0 <= label < len(class_names):
                    raise ClassificationCSVError(
                        f"{where}: integer label {label} is out of range [0, {len(class_names)}) "
                        f"(CLASSES has {len(class_names)} names)"
                    )
            if path in line_of:
                raise ClassificationCSVError(
                    f"{where}: image {path!r} is already listed on line {line_of[path]}"
                )
            line_of[path] = line_no
            file_name = path if os.path.isabs(path) else os.path.join(root, path)
            if not os.path.isfile(file_name):
                raise ClassificationCSVError(f"{where}: image file {file_name} does not exist")
            dicts.append(
                {
                    "file_name": file_name,
                    "image_id": path,
                    "label": label,
                    "class_name": class_names[label],
                }
            )
    if not dicts:
        raise ClassificationCSVError(
            f"{csv_file}:1: the file lists no images (expected rows 'path,label')"
        )
    return dicts


# ----------------------------------------------------------------------------------------------
# Reading images: files and array containers
# ----------------------------------------------------------------------------------------------
def _cifar_rows(batch):
    """A CIFAR pickle's dict (str or bytes keys) -> its N x 32 x 32 x 3 uint8 images (a view)."""
    data = batch.get("data", batch.get(b"data"))
    if data is None:
        raise KeyError("no 'data' entry (expected a CIFAR python batch)")
    data = np.asarray(data, dtype=np.uint8)
    return data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)


def unpickle_cifar(path):
    """A CIFAR python batch (a Python 2 pickle) as a dict with str keys."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}


@functools.lru_cache(maxsize=8)
def _array_container(path, mtime_ns, size):
    """The N x H x W x C uint8 images of a container file (cached per file and version)."""
    del mtime_ns, size  # part of the cache key only: a rewritten file is read again
    if path.lower().endswith(".mat"):  # SVHN: X is 32 x 32 x 3 x N
        from scipy.io import loadmat

        x = loadmat(path, variable_names=["X"]).get("X")
        if x is None:
            raise KeyError("no 'X' variable (expected an SVHN .mat file)")
        return np.asarray(x, dtype=np.uint8).transpose(3, 0, 1, 2)
    return _cifar_rows(unpickle_cifar(path))


def clear_array_cache():
    """Forget the decoded array containers (CIFAR batches, SVHN .mat files) of this process."""
    _array_container.cache_clear()


def read_classification_image(dataset_dict):
    """
    The RGB PIL image of a classification dataset dict (see the module docstring).

    Image files are decoded with EXIF orientation applied; grayscale, palette, binary and RGBA
    images become RGB (16-bit grayscale keeps its top 8 bits). For array-stored items
    (``array_index`` present) the container file (a CIFAR python batch or an SVHN ``.mat`` file) is
    decoded once per process and kept (see :func:`clear_array_cache`).

    Raises:
        ImageReadError: naming the file (and item) when it is missing or cannot be decoded
    """
    file_name = dataset_dict["file_name"]
    index = dataset_dict.get("array_index")
    try:
        if index is None:
            return read_rgb_image(file_name)
        st = os.stat(file_name)
        array = _array_container(os.path.abspath(file_name), st.st_mtime_ns, st.st_size)
        item = np.ascontiguousarray(array[int(index)])
        return to_rgb(Image.fromarray(item))
    except ImageReadError:
        raise
    except Exception as e:  # noqa: BLE001  (OSError, SyntaxError, ValueError, KeyError, IndexError, ...)
        where = file_name if index is None else f"{file_name} (item {index})"
        raise ImageReadError(f"Could not read image {where}: {type(e).__name__}: {e}") from e

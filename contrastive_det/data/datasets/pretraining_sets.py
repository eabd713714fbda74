"""
The pretraining sets of Cole et al. ("When does contrastive visual representation learning
work?", 2022) besides ImageNet, registered by name and read from the files their official archives
leave on disk (datasets/README.md, "Pretraining sets"):

* iNaturalist 2021 (``$DETECTRON2_DATASETS/inat2021/``): ``inat2021_train``,
  ``inat2021_train_mini`` and ``inat2021_val``, from the COCO-style ``{train,train_mini,val}.json``;
  the taxonomy of its categories gives label maps to coarser levels
  (:func:`write_inat2021_label_map`, for ``DATASETS.PRETRAIN.LABEL_MAP`` and
  ``CLASSIFICATION.LABEL_MAP``);
* Places365-Standard (``$DETECTRON2_DATASETS/places365/``): ``places365_train`` and
  ``places365_val``, from the official file lists.

Like ``imagenet_train``/``imagenet_val`` (and detectron2's builtins), registering reads no file
(it only looks which of the alternative image folders exists); the class list is a
:class:`~contrastive_det.data.classification.LazyClassList` read on first use. A missing folder or
file is reported when a name is used, by :func:`~contrastive_det.data.checks.check_dataset_layout`
(metadata ``required_paths`` and ``layout``) or by the loader, naming the path and the layout.
Content that does not parse raises :class:`DatasetLayoutError` naming the file (and line).

The dataset dicts follow the classification contract of
:mod:`contrastive_det.data.classification` (``file_name``, ``image_id``, ``label``,
``class_name``), sorted by label then image id, as the pretraining loader consumes them.

A label map to the iNat 2021 orders, for ``DATASETS.PRETRAIN.LABEL_MAP`` (or
``CLASSIFICATION.LABEL_MAP``)::

    python -c "from contrastive_det.data import write_inat2021_label_map as w; \
        w('inat2021_order.json', 'order')"
"""

import functools
import json
import os
from collections import Counter

from detectron2.data import MetadataCatalog

from ...utils.atomic import atomic_write_json
from .catalog import register_dataset
from ..checks import DatasetLayoutError, check_required_paths, read_listed_dicts
from ..classification import LazyClassList
from ..paths import datasets_root

__all__ = [
    "INAT2021_SPLITS",
    "INAT2021_TAXONOMY_LEVELS",
    "PLACES365_SPLITS",
    "inat2021_categories",
    "inat2021_classes",
    "read_inat2021",
    "inat2021_label_map",
    "write_inat2021_label_map",
    "places365_classes",
    "read_places365",
    "register_inat2021",
    "register_places365",
    "register_pretraining_sets",
]


def _load(name, root, reader):
    """The DatasetCatalog loader: check the metadata's paths, read, sort, check ids are unique."""
    meta = MetadataCatalog.get(name)
    check_required_paths(name, list(meta.required_paths), meta.layout)
    dicts = read_listed_dicts(
        name,
        meta.layout,
        lambda: reader(list(meta.classes)),
        f"no images are listed for this split under {root}",
    )
    return sorted(dicts, key=lambda d: (d["label"], d["image_id"]))


def _register_split(name, root, loader, classes, required, layout, **extra):
    register_dataset(
        name,
        functools.partial(_load, name, root, loader),
        classes=classes,
        evaluator_type="classification",
        metric="top1",
        multi_label=False,
        image_root=root,
        required_paths=[root.rstrip("/") + "/"] + list(required),
        layout=layout,
        **extra,
    )
    return name


# ----------------------------------------------------------------------------------------------
# iNaturalist 2021
# ----------------------------------------------------------------------------------------------
INAT2021_FOLDER = "inat2021"
# registered split -> <split>.json and the image folder <split>/ (the archives' names)
INAT2021_SPLITS = ("train", "train_mini", "val")
# the coarse levels of a category's taxonomy, top down (the fine level is the species, "name")
INAT2021_TAXONOMY_LEVELS = ("kingdom", "phylum", "class", "order", "family", "genus")
# where the class list is read from: the first JSON of these that exists (all carry the same
# 10,000 categories; the smallest first). Every split checks its own categories against it.
_INAT2021_CLASS_SOURCES = ("val", "train_mini", "train")


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetLayoutError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetLayoutError(f"{path} is not valid JSON: {e}") from e


def _records(data, key, fields, path):
    """The list ``data[key]`` of a COCO-style JSON, each a mapping with ``fields``."""
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DatasetLayoutError(
            f"{path} has no list {key!r} (expected COCO-style images, annotations, categories)"
        )
    for i, record in enumerate(data[key]):
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise DatasetLayoutError(f"{path}: {key}[{i}] lacks field(s) {missing}")
    return data[key]


def _categories(data, path):
    """The categories of a parsed iNat JSON, sorted by id, with unique ids and names."""
    categories = _records(data, "categories", ("id", "name"), path)
    bad = [c["id"] for c in categories if not isinstance(c["id"], int) or isinstance(c["id"], bool)]
    if bad:
        raise DatasetLayoutError(f"{path}: category ids must be integers, got {bad[:5]}")
    categories = sorted(categories, key=lambda c: c["id"])
    for what, values in (
        ("id", [c["id"] for c in categories]),
        ("name", [str(c["name"]) for c in categories]),
    ):
        dup = sorted((v for v, n in Counter(values).items() if n > 1), key=str)
        if dup:
            raise DatasetLayoutError(f"{path}: category {what}(s) {dup[:5]} appear twice")
    if not categories:
        raise DatasetLayoutError(f"{path} lists no categories")
    return categories


def inat2021_categories(json_file):
    """
    The categories of an iNat 2021 JSON file, sorted by ``id``: label ``i`` is the ``i``-th
    (contiguous ``0..C-1`` whatever the ids are). Each is the file's dict (``id``, ``name``,
    ``kingdom``, ``phylum``, ``class``, ``order``, ``family``, ``genus``, ``specific_epithet``,
    ...).
    """
    return _categories(_read_json(json_file), json_file)


def _class_source(root):
    for split in _INAT2021_CLASS_SOURCES:
        path = os.path.join(root, f"{split}.json")
        if os.path.isfile(path):
            return path
    wanted = ", ".join(os.path.join(root, f"{s}.json") for s in _INAT2021_CLASS_SOURCES)
    raise DatasetLayoutError(
        f"iNat 2021 has no JSON file to read its categories from: none of {wanted} exists"
    )


def inat2021_classes(root):
    """The class names of iNat 2021 in ``root``: the categories' ``name``, by category id."""
    return [str(c["name"]) for c in inat2021_categories(_class_source(root))]


def read_inat2021(root, split, classes):
    """
    The dicts of ``root/<split>.json``: one per image, ``file_name`` = ``root/<image file_name>``,
    ``image_id`` = the image's ``file_name`` as written, ``label`` = the index of its annotation's
    category among the categories sorted by id. The file's categories must be ``classes``; every
    image needs exactly one annotation.
    """
    path = os.path.join(root, f"{split}.json")
    data = _read_json(path)
    categories = _categories(data, path)
    if [str(c["name"]) for c in categories] != list(classes):
        raise DatasetLayoutError(
            f"{path}: its categories differ from the class list (read from {_class_source(root)}); "
            "all iNat 2021 JSON files must carry the same categories"
        )
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    images = _records(data, "images", ("id", "file_name"), path)
    file_of = {}
    for image in images:
        if image["id"] in file_of:
            raise DatasetLayoutError(f"{path}: image id {image['id']!r} appears twice in 'images'")
        file_of[image["id"]] = str(image["file_name"])
    category_of = {}
    for i, ann in enumerate(_records(data, "annotations", ("image_id", "category_id"), path)):
        image_id, category = ann["image_id"], ann["category_id"]
        if image_id not in file_of:
            raise DatasetLayoutError(
                f"{path}: annotations[{i}] refers to image id {image_id!r}, not in 'images'"
            )
        if category not in label_of:
            raise DatasetLayoutError(
                f"{path}: annotations[{i}] has category_id {category!r}, not in 'categories'"
            )
        if image_id in category_of:
            raise DatasetLayoutError(
                f"{path}: image {file_of[image_id]} has more than one annotation"
            )
        category_of[image_id] = category
    dicts = []
    for image_id, rel in file_of.items():
        if image_id not in category_of:
            raise DatasetLayoutError(f"{path}: image {rel} has no annotation")
        label = label_of[category_of[image_id]]
        dicts.append(
            {
                "file_name": os.path.join(root, rel),
                "image_id": rel,
                "label": label,
                "class_name": classes[label],
            }
        )
    return dicts


def _inat2021_layout(root):
    return (
        f"{root}/{{train,train_mini,val}}.json (COCO-style: images[id, file_name], "
        f"annotations[image_id, category_id], categories[id, name, kingdom, phylum, class, order, "
        f"family, genus, specific_epithet]) + "
        f"{root}/{{train,train_mini,val}}/<nnnnn>_<Kingdom>_..._<genus>_<epithet>/<uuid>.jpg "
        "(the iNat 2021 archives unpacked)"
    )


def register_inat2021(root=None):
    """
    Register iNaturalist 2021 in ``root`` (default ``$DETECTRON2_DATASETS/inat2021``) as
    ``inat2021_train``, ``inat2021_train_mini`` and ``inat2021_val`` (lazily; see the module
    docstring). ``inat2021_<split>`` reads ``root/<split>.json`` and the images under
    ``root/<split>/``. Labels are the categories sorted by id (``0..C-1``); metadata ``classes`` are
    their names. Returns the names.
    """
    root = os.path.expanduser(root) if root else os.path.join(datasets_root(), INAT2021_FOLDER)
    classes = LazyClassList(
        inat2021_classes, root, description=f"the category names of the iNat 2021 JSON in {root}"
    )
    layout = _inat2021_layout(root)
    return [
        _register_split(
            f"inat2021_{split}",
            root,
            functools.partial(read_inat2021, root, split),
            classes,
            [os.path.join(root, f"{split}.json"), os.path.join(root, split) + "/"],
            layout,
            taxonomy_levels=INAT2021_TAXONOMY_LEVELS,
        )
        for split in INAT2021_SPLITS
    ]


def inat2021_label_map(categories, level, lineage=True):
    """
    The label map ``{species name: coarse class name}`` of iNat 2021 ``categories`` (see
    :func:`inat2021_categories`) at taxonomy ``level`` (one of :data:`INAT2021_TAXONOMY_LEVELS`).

    The coarse class name is the taxon's lineage from the kingdom down to ``level`` joined by "/"
    (``"Animalia/Chordata/Aves/Passeriformes"`` for ``order``) when ``lineage`` is true, so that
    taxa of the same name in different lineages stay apart (the genus *Prunella* is a bird and a
    plant); with ``lineage=False`` it is the bare name (``"Passeriformes"``), and a name used by two
    lineages raises ValueError.
    """
    if level not in INAT2021_TAXONOMY_LEVELS:
        raise ValueError(
            f"taxonomy level must be one of {list(INAT2021_TAXONOMY_LEVELS)}, got {level!r}"
        )
    levels = INAT2021_TAXONOMY_LEVELS[: INAT2021_TAXONOMY_LEVELS.index(level) + 1]
    mapping, lineage_of = {}, {}
    for c in categories:
        missing = [lv for lv in levels if not str(c.get(lv, "") or "").strip()]
        if missing:
            raise ValueError(
                f"category {c.get('id')!r} ({c.get('name')!r}) has no taxonomy field(s) {missing}"
            )
        path = "/".join(str(c[lv]).strip() for lv in levels)
        bare = str(c[level]).strip()
        if not lineage and lineage_of.setdefault(bare, path) != path:
            raise ValueError(
                f"the {level} name {bare!r} is used by two lineages ({lineage_of[bare]} and "
                f"{path}); use lineage=True for unambiguous coarse classes"
            )
        mapping[str(c["name"])] = path if lineage else bare
    return mapping


def write_inat2021_label_map(output_file, level, root=None, json_file=None, lineage=True):
    """
    Write the label map of iNat 2021 at taxonomy ``level`` (see :func:`inat2021_label_map`) to
    ``output_file`` as the JSON object ``DATASETS.PRETRAIN.LABEL_MAP`` and
    ``CLASSIFICATION.LABEL_MAP`` expect (``{"fine class name": "coarse class name", ...}``, fine
    names = metadata ``classes`` of the ``inat2021_*`` sets, in label order), atomically.

    Args:
        output_file (str): the JSON file to write
        level (str): "kingdom", "phylum", "class", "order", "family" or "genus"
        root (str or None): the iNat 2021 folder (default ``$DETECTRON2_DATASETS/inat2021``)
        json_file (str or None): the JSON to read the categories from (default: the first of
            ``root/{val,train_mini,train}.json`` that exists)
        lineage (bool): coarse names as lineages ("Animalia/Chordata/Aves") or bare names ("Aves")
    Returns:
        dict: the mapping written
    """
    root = os.path.expanduser(root) if root else os.path.join(datasets_root(), INAT2021_FOLDER)
    mapping = inat2021_label_map(
        inat2021_categories(json_file or _class_source(root)), level, lineage
    )
    atomic_write_json(output_file, mapping)
    return mapping


# ----------------------------------------------------------------------------------------------
# Places365-Standard
# ----------------------------------------------------------------------------------------------
PLACES365_FOLDER = "places365"
PLACES365_CATEGORIES = "categories_places365.txt"
# registered split -> (file list, image folders: the first that exists is read)
PLACES365_SPLITS = {
    "train": (
        "places365_train_standard.txt",
        ("data_256", "data_large", "data_256_standard", "data_large_standard"),
    ),
    "val": ("places365_val.txt", ("val_256", "val_large")),
}


def _lines(path):
    """(line number, stripped text) of the non-empty lines of a text file."""
    try:
        with open(path) as f:
            return [(i, line.strip()) for i, line in enumerate(f, start=1) if line.strip()]
    except FileNotFoundError:
        raise DatasetLayoutError(f"{path} is missing") from None


def _scene_class(path_text):
    """``/a/airfield`` -> ``airfield``, ``/a/apartment_building/outdoor`` ->
    ``apartment_building/outdoor``."""
    parts = path_text.strip("/").split("/")
    if len(parts) < 2 or len(parts[0]) != 1 or not all(parts):
        return None
    return "/".join(parts[1:])


def places365_classes(root):
    """
    The 365 class names of ``root/categories_places365.txt`` (lines ``/a/airfield 0``), by id:
    the path without its letter folder (``airfield``, ``apartment_building/outdoor``). The ids
    must be exactly ``0..C-1``.
    """
    path = os.path.join(root, PLACES365_CATEGORIES)
    by_id = {}
    for line, text in _lines(path):
        fields = text.split()
        cls = _scene_class(fields[0]) if len(fields) == 2 else None
        if cls is None or not (fields[1].isascii() and fields[1].isdigit()):
            raise DatasetLayoutError(f"{path}:{line}: {text!r} is not '/<letter>/<class> <id>'")
        if int(fields[1]) in by_id:
            raise DatasetLayoutError(f"{path}:{line}: id {fields[1]} appears twice")
        by_id[int(fields[1])] = cls
    if sorted(by_id) != list(range(len(by_id))) or not by_id:
        raise DatasetLayoutError(f"{path}: the class ids must be 0..{len(by_id) - 1} without gaps")
    names = [by_id[i] for i in range(len(by_id))]
    if len(set(names)) != len(names):
        raise DatasetLayoutError(f"{path}: a class name appears twice")
    return names


def read_places365(root, split, classes, image_dir):
    """
    The dicts of a Places365 file list: train lines ``/a/airfield/00000001.jpg 0`` (the class
    folder must be the class of the label), val lines ``Places365_val_00000001.jpg 165``;
    ``file_name`` = ``image_dir/<path>``, ``image_id`` = the path without its leading "/".
    """
    path = os.path.join(root, PLACES365_SPLITS[split][0])
    dicts = []
    for line, text in _lines(path):
        fields = text.split()
        if len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()):
            raise DatasetLayoutError(f"{path}:{line}: {text!r} is not '<image> <class id>'")
        rel, label = fields[0].lstrip("/"), int(fields[1])
        if label >= len(classes):
            raise DatasetLayoutError(
                f"{path}:{line}: class id {label} is outside [0, {len(classes)})"
            )
        if split == "train" and _scene_class(os.path.dirname("/" + rel)) != classes[label]:
            raise DatasetLayoutError(
                f"{path}:{line}: {fields[0]!r} is not in the folder of class {label} "
                f"({classes[label]!r})"
            )
        dicts.append(
            {
                "file_name": os.path.join(image_dir, rel),
                "image_id": rel,
                "label": label,
                "class_name": classes[label],
            }
        )
    return dicts


def _places365_layout(root):
    return (
        f"{root}/{PLACES365_CATEGORIES} (lines '/a/airfield 0') + "
        f"{root}/places365_train_standard.txt (lines '/a/airfield/00000001.jpg 0') + "
        f"{root}/places365_val.txt (lines 'Places365_val_00000001.jpg 165') + "
        f"{root}/data_256/<letter>/<class>/<nnnnnnnn>.jpg + "
        f"{root}/val_256/Places365_val_<nnnnnnnn>.jpg "
        "(filelist_places365-standard.tar, train_256_places365standard.tar and val_256.tar "
        "unpacked; data_large/ and val_large/ are read when the 256 px folders are absent)"
    )


def register_places365(root=None):
    """
    Register Places365-Standard in ``root`` (default ``$DETECTRON2_DATASETS/places365``) as
    ``places365_train`` and ``places365_val`` (lazily; see the module docstring). Labels are the
    ids of ``categories_places365.txt``; the images are read from the first existing folder of
    :data:`PLACES365_SPLITS` (``data_256``/``val_256`` first). Returns the names.
    """
    root = os.path.expanduser(root) if root else os.path.join(datasets_root(), PLACES365_FOLDER)
    classes = LazyClassList(
        places365_classes, root, description=f"the classes of {root}/{PLACES365_CATEGORIES}"
    )
    layout = _places365_layout(root)
    names = []
    for split, (file_list, folders) in PLACES365_SPLITS.items():
        present = [os.path.join(root, f) for f in folders if os.path.isdir(os.path.join(root, f))]
        image_dir = present[0] if present else os.path.join(root, folders[0])
        required = [
            os.path.join(root, PLACES365_CATEGORIES),
            os.path.join(root, file_list),
            image_dir + "/",
        ]
        loader = functools.partial(read_places365, root, split, image_dir=image_dir)
        names.append(_register_split(f"places365_{split}", root, loader, classes, required, layout))
    return names


def register_pretraining_sets(root=None):
    """
    Register iNat 2021 and Places365 under the datasets root ``root`` (default
    ``$DETECTRON2_DATASETS``); returns the names.
    """
    base = os.path.expanduser(root) if root else datasets_root()
    return register_inat2021(os.path.join(base, INAT2021_FOLDER)) + register_places365(
        os.path.join(base, PLACES365_FOLDER)
    )

"""
Readers of the downstream classification sets, each in the layout its official archive (or
torchvision's downloader) leaves on disk. datasets/README.md documents every layout.

Two kinds of functions, all module-level (they key :class:`LazyClassList`):

* ``<set>_classes(root)`` -> list of class names read from disk (sets with a fixed list have none;
  see :mod:`.meta`);
* ``read_<set>(root, split, classes)`` -> dataset dicts of one *official* split (``"all"`` for the
  sets without one), following the contract of :mod:`contrastive_det.data.classification`.

``root`` is the set's folder (e.g. ``$DETECTRON2_DATASETS/food-101``). The caller checks the
required files first; content that does not parse raises :class:`DatasetLayoutError` naming the
file and line.
"""

import csv
import logging
import math
import os

from ...checks import DatasetLayoutError
from ...classification import (
    IMAGE_EXTENSIONS,
    class_folder_names,
    load_class_folders,
    unpickle_cifar,
)
from .meta import CHESTX_CLASSES, ISIC_CLASSES, KAOKORE_CLASSES, VOC_CLASSES

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def _item(file_name, image_id, label, classes, **extra):
    return dict(
        file_name=file_name, image_id=image_id, label=int(label), class_name=classes[label], **extra
    )


def _images_in(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def _lines(path):
    """(line number, stripped text) of the non-empty lines of a text file."""
    with open(path) as f:
        return [(i, line.strip()) for i, line in enumerate(f, start=1) if line.strip()]


def _csv_rows(path, required_columns):
    """(line number, row dict) of a CSV file with a header, checking that the header has
    ``required_columns``."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required_columns if c not in header]
        if missing:
            raise DatasetLayoutError(f"{path}:1: header {header} lacks column(s) {missing}")
        reader.fieldnames = header
        return [
            (reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader
        ]


def _label_from(where, value, num_classes):
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number != int(number):
        raise DatasetLayoutError(f"{where}: label {value!r} is not an integer")
    label = int(number)
    if not 0 <= label < num_classes:
        raise DatasetLayoutError(f"{where}: label {label} is outside [0, {num_classes})")
    return label


def read_class_folders(image_dir, classes, id_prefix=""):
    """``image_dir/<class>/<image>`` for each class of ``classes`` (a missing class folder is an
    error)."""
    dicts = []
    for label, cls in enumerate(classes):
        folder = os.path.join(image_dir, cls)
        if not os.path.isdir(folder):
            raise DatasetLayoutError(f"the class folder {folder}/ is missing")
        for fname in _images_in(folder):
            dicts.append(
                _item(os.path.join(folder, fname), f"{id_prefix}{cls}/{fname}", label, classes)
            )
    return dicts


def _mat(path, **kwargs):
    from scipy.io import loadmat

    try:
        return loadmat(path, **kwargs)
    except Exception as e:  # noqa: BLE001  (scipy raises ValueError, TypeError, MatReadError, ...)
        raise DatasetLayoutError(
            f"{path} is not a readable MATLAB file: {type(e).__name__}: {e}"
        ) from e


def _flat(array):
    import numpy as np

    return np.atleast_1d(array).ravel()


def _one_based(value, count, where):
    """A MATLAB class number 1..``count`` -> the 0-based label; else an error naming ``where`` and
    the range."""
    label = int(value) - 1
    if not 0 <= label < count:
        raise DatasetLayoutError(f"{where}: class {label + 1} is outside 1..{count}")
    return label


# ----------------------------------------------------------------------------------------------
# Class-per-folder sets without an official split (split "all")
# ----------------------------------------------------------------------------------------------
def read_eurosat(root, split, classes):
    """``eurosat/2750/<class>/<class>_<n>.jpg``."""
    return read_class_folders(os.path.join(root, "2750"), classes)


def cropdisease_classes(root):
    return class_folder_names(os.path.join(root, "dataset", "train"))


def read_cropdisease(root, split, classes):
    """
    ``CropDiseases/dataset/train/<class>/<image>`` (split "all" or "train": CD-FSL samples this
    folder only) or ``CropDiseases/dataset/test/<class>/<image>`` (split "test", Islam et al.'s test
    split; labels by the training folders' class names: a class without a test folder keeps the
    others' labels, an unknown one is an error).
    """
    if split != "test":
        return read_class_folders(os.path.join(root, "dataset", "train"), classes)
    try:
        dicts = load_class_folders(os.path.join(root, "dataset", "test"), classes)
    except (ValueError, FileNotFoundError) as e:
        raise DatasetLayoutError(str(e)) from e
    return [dict(d, image_id=f"test/{d['image_id']}") for d in dicts]


def resisc45_classes(root):
    return class_folder_names(root)


def read_resisc45(root, split, classes):
    """``NWPU-RESISC45/<class>/<class>_<nnn>.jpg``."""
    return read_class_folders(root, classes)


def sketch_classes(root):
    return class_folder_names(root)


def read_sketch(root, split, classes):
    """``sketch/<wnid>/<n>.JPEG`` (ImageNet-Sketch)."""
    return read_class_folders(root, classes)


def caltech101_classes(root):
    """The 102 sorted folder names (Python's order: upper case first), ``BACKGROUND_Google``
    included: the class list of ssl-transfer's ``linear.py`` (102 classes) and of VISSL's split
    script, whose numbers the Kornblith et al. protocol is compared with (torchvision's loader drops
    it: 101)."""
    return class_folder_names(os.path.join(root, "101_ObjectCategories"))


def read_caltech101(root, split, classes):
    """``caltech101/101_ObjectCategories/<class>/image_<nnnn>.jpg``."""
    return read_class_folders(os.path.join(root, "101_ObjectCategories"), classes)


def _omniglot_characters(root, subsets):
    """``{"<alphabet>/<character>": "<subset>/<alphabet>/<character>"}`` over the subsets."""
    characters = {}
    for subset in subsets:
        base = os.path.join(root, subset)
        for alphabet in class_folder_names(base):
            for character in class_folder_names(os.path.join(base, alphabet)):
                name = f"{alphabet}/{character}"
                if name in characters:
                    raise DatasetLayoutError(
                        f"character {name} is in both {characters[name]} and {subset}/{name}"
                    )
                characters[name] = f"{subset}/{name}"
    return characters


def omniglot_classes(root, subsets):
    """The characters ``"<alphabet>/<character>"`` of the subsets, sorted."""
    return sorted(_omniglot_characters(root, subsets))


def read_omniglot(root, split, classes, subsets):
    """``omniglot-py/<subset>/<alphabet>/<character>/<id>_<drawer>.png``."""
    where = _omniglot_characters(root, subsets)
    dicts = []
    for label, cls in enumerate(classes):
        if cls not in where:
            raise DatasetLayoutError(
                f"the character folder of {cls} is missing under {root}/{'|'.join(subsets)}/"
            )
        folder = os.path.join(root, where[cls])
        for fname in _images_in(folder):
            dicts.append(_item(os.path.join(folder, fname), f"{cls}/{fname}", label, classes))
    return dicts


# ----------------------------------------------------------------------------------------------
# Sets labelled by a CSV file (no official split)
# ----------------------------------------------------------------------------------------------
CHESTX_CSV = "Data_Entry_2017.csv"


def read_chestx(root, split, classes):
    """``ChestX/Data_Entry_2017.csv`` ("Image Index", "Finding Labels") + ``ChestX/images/<Image
    Index>``."""
    path = os.path.join(root, CHESTX_CSV)
    index = {c: i for i, c in enumerate(CHESTX_CLASSES)}
    dicts = []
    for _line, row in _csv_rows(path, ["Image Index", "Finding Labels"]):
        findings = row["Finding Labels"].split("|")
        if len(findings) == 1 and findings[0] in index:
            name = row["Image Index"]
            dicts.append(
                _item(os.path.join(root, "images", name), name, index[findings[0]], classes)
            )
    return dicts


ISIC_CSV = "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv"
ISIC_IMAGES = "ISIC2018_Task3_Training_Input"


def read_isic(root, split, classes):
    """One-hot ground truth CSV (image, MEL, NV, BCC, AKIEC, BKL, DF, VASC) + ``<image>.jpg``
    files."""
    path = os.path.join(root, ISIC_CSV)
    dicts = []
    for line, row in _csv_rows(path, ["image", *ISIC_CLASSES]):
        where = f"{path}:{line}"
        try:
            hot = [float(row[c]) != 0 for c in ISIC_CLASSES]
        except ValueError:
            raise DatasetLayoutError(
                f"{where}: the class columns must be numbers (one-hot)"
            ) from None
        if sum(hot) != 1:
            raise DatasetLayoutError(
                f"{where}: expected exactly one class column set, got {sum(hot)}"
            )
        name = row["image"]
        dicts.append(
            _item(os.path.join(root, ISIC_IMAGES, f"{name}.jpg"), name, hot.index(True), classes)
        )
    return dicts


def read_deepweeds(root, split, classes):
    """``DeepWeeds/labels.csv`` (Filename, Label 0..8, Species) +
    ``DeepWeeds/images/<Filename>``."""
    path = os.path.join(root, "labels.csv")
    dicts = []
    for line, row in _csv_rows(path, ["Filename", "Label"]):
        label = _label_from(f"{path}:{line}", row["Label"], len(classes))
        dicts.append(
            _item(os.path.join(root, "images", row["Filename"]), row["Filename"], label, classes)
        )
    return dicts


# Rows per set (train, dev, test) of each KaoKore release's labels.csv (rois-codh/kaokore,
# download.py --dataset_version V). Islam et al. use 1.1; the KaoKore paper's figures are of 1.0.
KAOKORE_VERSIONS = {
    (4238, 533, 527): "1.0",
    (6568, 826, 821): "1.1",
    (6756, 845, 845): "1.2",
    (7405, 926, 926): "1.3",
}
KAOKORE_SETS = ("train", "dev", "test")  # the order of the counts above
KAOKORE_ISLAM_VERSION = "1.1"
_kaokore_reported = set()


def kaokore_version(set_counts):
    """The KaoKore release whose labels.csv has ``set_counts`` ({"train": n, "dev": n, "test": n})
    rows, or None."""
    return KAOKORE_VERSIONS.get(tuple(set_counts.get(s, 0) for s in KAOKORE_SETS))


def _report_kaokore_version(path, set_counts):
    """Log once per file and content which release ``path`` is, warning unless it is the one Islam
    et al. used."""
    seen = (path, tuple(sorted(set_counts.items())))
    if seen in _kaokore_reported:
        return
    _kaokore_reported.add(seen)
    version = kaokore_version(set_counts)
    counts = "/".join(str(set_counts.get(s, 0)) for s in KAOKORE_SETS)
    islam = next(c for c, v in KAOKORE_VERSIONS.items() if v == KAOKORE_ISLAM_VERSION)
    if version == KAOKORE_ISLAM_VERSION:
        logger.info(f"KaoKore {path}: version {version} ({counts} train/dev/test rows)")
        return
    what = f"version {version} of KaoKore" if version else "no released KaoKore version (edited?)"
    logger.warning(
        f"KaoKore {path} has {counts} train/dev/test rows: {what}. Islam et al. "
        f"(configs/studies/islam.yaml) use version {KAOKORE_ISLAM_VERSION} "
        f"({islam[0]}/{islam[1]}/{islam[2]}): python3 download.py --dataset_version "
        f"{KAOKORE_ISLAM_VERSION} (https://github.com/rois-codh/kaokore); results on another "
        f"version are not comparable"
    )


def read_kaokore(root, split, classes):
    """
    ``kaokore/labels.csv`` (image, set train|dev|test, gender 0..1, status 0..3) +
    ``kaokore/images_256/<image>``; label = gender * 4 + status. Rows whose image did not download
    are skipped (with a warning), as the official data loader does.
    """
    path = os.path.join(root, "labels.csv")
    dicts, missing, set_counts = [], 0, {}
    for line, row in _csv_rows(path, ["image", "set", "gender", "status"]):
        set_counts[row["set"]] = set_counts.get(row["set"], 0) + 1
        if row["set"] != split:
            continue
        where = f"{path}:{line}"
        label = _label_from(where, row["gender"], 2) * 4 + _label_from(where, row["status"], 4)
        file_name = os.path.join(root, "images_256", row["image"])
        if not os.path.isfile(file_name):
            missing += 1
            continue
        dicts.append(_item(file_name, row["image"], label, classes))
    _report_kaokore_version(path, set_counts)
    if missing:
        logger.warning(
            f"KaoKore {split}: {missing} image(s) of {path} are not in {root}/images_256/; skipped"
        )
    assert len(classes) == len(KAOKORE_CLASSES)
    return dicts


# ----------------------------------------------------------------------------------------------
# Sets with an official split
# ----------------------------------------------------------------------------------------------
def dtd_classes(root):
    return class_folder_names(os.path.join(root, "images"))


def read_dtd(root, split, classes):
    """``dtd/labels/<split>1.txt`` lines ``<class>/<class>_<nnnn>.jpg`` -> ``dtd/images/<line>``."""
    path = os.path.join(root, "labels", f"{split}1.txt")
    index = {c: i for i, c in enumerate(classes)}
    dicts = []
    for line, text in _lines(path):
        cls = text.split("/")[0]
        if cls not in index or "/" not in text:
            raise DatasetLayoutError(
                f"{path}:{line}: {text!r} is not '<class>/<image>' of a class of images/"
            )
        dicts.append(_item(os.path.join(root, "images", text), text, index[cls], classes))
    return dicts


def read_svhn(root, split, classes):
    """``svhn/<split>_32x32.mat`` (X: 32x32x3xN uint8, y: Nx1 with 10 for the digit 0);
    array-stored."""
    path = os.path.join(root, f"{split}_32x32.mat")
    mat = _mat(path, variable_names=["y"])
    if "y" not in mat:
        raise DatasetLayoutError(f"{path} has no variable 'y'")
    dicts = []
    for i, y in enumerate(_flat(mat["y"]).tolist()):
        y = _one_based(y, 10, f"{path}: y[{i}]") + 1  # 1..10, where 10 is the digit 0
        dicts.append(_item(path, f"{split}_32x32/{i}", y % 10, classes, array_index=i))
    return dicts


def read_flowers102(root, split, classes):
    """``flowers-102/jpg/image_<nnnnn>.jpg`` with imagelabels.mat (labels 1..102) and setid.mat."""
    key = {"train": "trnid", "val": "valid", "test": "tstid"}[split]
    labels = _flat(
        _mat(os.path.join(root, "imagelabels.mat"), squeeze_me=True).get("labels", [])
    ).tolist()
    setid = _mat(os.path.join(root, "setid.mat"), squeeze_me=True)
    if key not in setid:
        raise DatasetLayoutError(f"{os.path.join(root, 'setid.mat')} has no variable {key!r}")
    dicts = []
    for image_id in _flat(setid[key]).tolist():
        image_id = int(image_id)
        if not 1 <= image_id <= len(labels):
            raise DatasetLayoutError(
                f"setid.mat {key} lists image {image_id}, imagelabels.mat has {len(labels)}"
            )
        name = f"image_{image_id:05d}"
        label = _one_based(labels[image_id - 1], len(classes), f"imagelabels.mat, label of {name}")
        dicts.append(_item(os.path.join(root, "jpg", f"{name}.jpg"), name, label, classes))
    return dicts


def food101_classes(root):
    return [text for _, text in _lines(os.path.join(root, "meta", "classes.txt"))]


def read_food101(root, split, classes):
    """``food-101/meta/<split>.txt`` lines ``<class>/<id>`` ->
    ``food-101/images/<class>/<id>.jpg``."""
    path = os.path.join(root, "meta", f"{split}.txt")
    index = {c: i for i, c in enumerate(classes)}
    dicts = []
    for line, text in _lines(path):
        cls = text.split("/")[0]
        if cls not in index or "/" not in text:
            raise DatasetLayoutError(
                f"{path}:{line}: {text!r} is not '<class>/<id>' of a class of meta/classes.txt"
            )
        dicts.append(_item(os.path.join(root, "images", f"{text}.jpg"), text, index[cls], classes))
    return dicts


CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR100_FILES = {"train": ["train"], "test": ["test"]}


def _cifar_batch(path):
    try:
        return unpickle_cifar(path)
    except Exception as e:  # noqa: BLE001  (pickle raises many kinds)
        raise DatasetLayoutError(
            f"{path} is not a CIFAR python batch: {type(e).__name__}: {e}"
        ) from e


def _names(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def cifar10_classes(root):
    return _names(_cifar_batch(os.path.join(root, "batches.meta"))["label_names"])


def cifar100_classes(root):
    return _names(_cifar_batch(os.path.join(root, "meta"))["fine_label_names"])


def _read_cifar(root, files, label_key, classes):
    dicts = []
    for fname in files:
        path = os.path.join(root, fname)
        batch = _cifar_batch(path)
        if label_key not in batch or "data" not in batch:
            raise DatasetLayoutError(f"{path} has no '{label_key}' or 'data' entry")
        labels = list(batch[label_key])
        if len(labels) != len(batch["data"]):
            raise DatasetLayoutError(
                f"{path}: {len(labels)} labels for {len(batch['data'])} images"
            )
        for i, y in enumerate(labels):
            if not 0 <= int(y) < len(classes):
                raise DatasetLayoutError(
                    f"{path}: {label_key}[{i}] = {y} is outside [0, {len(classes)})"
                )
            dicts.append(_item(path, f"{fname}/{i}", int(y), classes, array_index=i))
    return dicts


def read_cifar10(root, split, classes):
    """``cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python pickles; "labels");
    array-stored."""
    return _read_cifar(root, CIFAR10_FILES[split], "labels", classes)


def read_cifar100(root, split, classes):
    """``cifar-100-python/{train,test}`` (python pickles; "fine_labels"); array-stored."""
    return _read_cifar(root, CIFAR100_FILES[split], "fine_labels", classes)


def _birdsnap_species(root):
    """[(id, common name, dir)] of species.txt (tab-separated, header "id common scientific dir"),
    by id."""
    path = os.path.join(root, "species.txt")
    rows = []
    for line, text in _lines(path)[1:]:
        cells = text.split("\t")
        if len(cells) < 4 or not cells[0].strip().isdigit():
            raise DatasetLayoutError(
                f"{path}:{line}: expected 'id<TAB>common<TAB>scientific<TAB>dir'"
            )
        rows.append((int(cells[0]), cells[1].strip(), cells[3].strip()))
    return sorted(rows)


def birdsnap_classes(root):
    return [common for _, common, _ in _birdsnap_species(root)]


def read_birdsnap(root, split, classes):
    """
    ``birdsnap/images/<dir>/<file>.jpg`` for the species of species.txt; the test split is the
    paths (``<dir>/<file>.jpg``) listed in test_images.txt, train the other images on disk (images
    that get_birdsnap.py could not download are simply absent).
    """
    test = {text for _, text in _lines(os.path.join(root, "test_images.txt"))[1:]}
    dicts = []
    for label, (_, _, folder) in enumerate(_birdsnap_species(root)):
        directory = os.path.join(root, "images", folder)
        if not os.path.isdir(directory):
            continue
        for fname in _images_in(directory):
            rel = f"{folder}/{fname}"
            if (rel in test) == (split == "test"):
                dicts.append(_item(os.path.join(directory, fname), rel, label, classes))
    return dicts


SUN397_PARTITIONS = {"train": "Partitions/Training_01.txt", "test": "Partitions/Testing_01.txt"}


def sun397_classes(root):
    """ClassName.txt lines ``/a/abbey`` -> ``abbey`` (``/b/bakery/shop`` -> ``bakery/shop``), in
    file order."""
    return [text[3:] for _, text in _lines(os.path.join(root, "ClassName.txt"))]


def read_sun397(root, split, classes):
    """``SUN397/Partitions/{Training,Testing}_01.txt`` lines ``/a/abbey/sun_<id>.jpg`` ->
    ``SUN397/a/abbey/...``."""
    path = os.path.join(root, SUN397_PARTITIONS[split])
    index = {c: i for i, c in enumerate(classes)}
    dicts = []
    for line, text in _lines(path):
        parts = text.strip("/").split("/")
        cls = "/".join(parts[1:-1])
        if len(parts) < 3 or cls not in index:
            raise DatasetLayoutError(
                f"{path}:{line}: {text!r} is not '/<letter>/<class>/<image>' of ClassName.txt"
            )
        rel = "/".join(parts)
        dicts.append(_item(os.path.join(root, *parts), rel, index[cls], classes))
    return dicts


CARS_ANNOTATIONS = {
    "train": "devkit/cars_train_annos.mat",
    "test": "cars_test_annos_withlabels.mat",
}


def cars_classes(root):
    mat = _mat(os.path.join(root, "devkit", "cars_meta.mat"), squeeze_me=True)
    if "class_names" not in mat:
        raise DatasetLayoutError(
            f"{os.path.join(root, 'devkit', 'cars_meta.mat')} has no variable 'class_names'"
        )
    return [str(c) for c in _flat(mat["class_names"]).tolist()]


def read_cars(root, split, classes):
    """
    ``stanford_cars/cars_<split>/<fname>`` with the annotations struct (fname, class 1..196) of the
    .mat file; image ids are ``cars_<split>/<fname>`` (train and test reuse the file names).
    """
    path = os.path.join(root, CARS_ANNOTATIONS[split])
    mat = _mat(path, squeeze_me=True)
    if "annotations" not in mat:
        raise DatasetLayoutError(f"{path} has no variable 'annotations'")
    images = os.path.join(root, f"cars_{split}")
    dicts = []
    for i, ann in enumerate(_flat(mat["annotations"])):
        try:
            fname, value = str(ann["fname"]), int(ann["class"])
        except (KeyError, ValueError, IndexError) as e:
            raise DatasetLayoutError(
                f"{path}: annotation {i} has no 'fname'/'class' ({e})"
            ) from None
        label = _one_based(value, len(classes), f"{path}: annotation {i} ({fname})")
        dicts.append(_item(os.path.join(images, fname), f"cars_{split}/{fname}", label, classes))
    return dicts


def aircraft_classes(root):
    return [text for _, text in _lines(os.path.join(root, "data", "variants.txt"))]


def read_aircraft(root, split, classes):
    """``fgvc-aircraft-2013b/data/images_variant_<split>.txt`` lines ``<id> <variant>`` ->
    ``data/images/<id>.jpg``."""
    path = os.path.join(root, "data", f"images_variant_{split}.txt")
    index = {c: i for i, c in enumerate(classes)}
    dicts = []
    for line, text in _lines(path):
        image_id, _, variant = text.partition(" ")
        if variant not in index:
            raise DatasetLayoutError(
                f"{path}:{line}: variant {variant!r} is not in data/variants.txt"
            )
        dicts.append(
            _item(
                os.path.join(root, "data", "images", f"{image_id}.jpg"),
                image_id,
                index[variant],
                classes,
            )
        )
    return dicts


def pets_classes(root):
    """Breed names by class id (annotations/trainval.txt), as torchvision: "american_bulldog" ->
    "American Bulldog"."""
    path = os.path.join(root, "annotations", "trainval.txt")
    names = {}
    for line, text in _lines(path):
        if text.startswith("#"):
            continue
        cells = text.split()
        if len(cells) < 2 or not cells[1].isdigit():
            raise DatasetLayoutError(
                f"{path}:{line}: expected '<image> <class id> <species> <breed id>'"
            )
        breed = " ".join(part.title() for part in cells[0].rsplit("_", 1)[0].split("_"))
        names.setdefault(int(cells[1]), breed)
    if sorted(names) != list(range(1, len(names) + 1)):
        raise DatasetLayoutError(
            f"{path}: class ids {sorted(names)[:5]}... are not 1..{len(names)}"
        )
    return [names[i] for i in range(1, len(names) + 1)]


def read_pets(root, split, classes):
    """``oxford-iiit-pet/annotations/<split>.txt`` lines ``<image> <class id 1..37> <species> <breed
    id>``."""
    path = os.path.join(root, "annotations", f"{split}.txt")
    dicts = []
    for line, text in _lines(path):
        if text.startswith("#"):
            continue
        cells = text.split()
        where = f"{path}:{line}"
        if len(cells) < 2:
            raise DatasetLayoutError(f"{where}: expected '<image> <class id> <species> <breed id>'")
        label = _label_from(where, cells[1], len(classes) + 1) - 1
        if label < 0:
            raise DatasetLayoutError(f"{where}: class id 0 (ids start at 1)")
        dicts.append(
            _item(os.path.join(root, "images", f"{cells[0]}.jpg"), cells[0], label, classes)
        )
    return dicts


def read_voc2007_cls(root, split, classes):
    """
    ``ImageSets/Main/<class>_<split>.txt`` lines ``<id> 1|0|-1`` (present, difficult only, absent)
    for the 20 classes -> multi-label dicts with ``labels`` (1), ``ignore_labels`` (0), ``label``
    -1.
    """
    assert list(classes) == list(VOC_CLASSES)
    positives, difficult, ids = {}, {}, None
    for c, cls in enumerate(classes):
        path = os.path.join(root, "ImageSets", "Main", f"{cls}_{split}.txt")
        if not os.path.isfile(path):
            raise DatasetLayoutError(f"the image set {path} is missing")
        seen = []
        for line, text in _lines(path):
            cells = text.split()
            if len(cells) != 2 or cells[1] not in ("1", "0", "-1"):
                raise DatasetLayoutError(
                    f"{path}:{line}: expected '<image id> 1|0|-1', got {text!r}"
                )
            seen.append(cells[0])
            if cells[1] == "1":
                positives.setdefault(cells[0], []).append(c)
            elif cells[1] == "0":
                difficult.setdefault(cells[0], []).append(c)
        if ids is None:
            ids, first = seen, path
        elif sorted(seen) != sorted(ids):
            raise DatasetLayoutError(f"{path} does not list the same images as {first}")
    return [
        {
            "file_name": os.path.join(root, "JPEGImages", f"{image_id}.jpg"),
            "image_id": image_id,
            "label": -1,
            "labels": positives.get(image_id, []),
            "ignore_labels": difficult.get(image_id, []),
        }
        for image_id in sorted(ids)
    ]

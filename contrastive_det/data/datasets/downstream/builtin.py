"""
Registration of the downstream classification sets by name (the role of detectron2's
``data/datasets/builtin.py``).

Each set ``K`` of :data:`DOWNSTREAM_SETS` is registered as ``K_train``, ``K_val``, ``K_trainval``
and ``K_test``. Registering reads no file (at most it checks which of a set's alternative folders
exists); a missing folder or file is reported when a name is used, by :func:`check_dataset_layout`
or by the loader, naming the path and the expected layout.

Splits (datasets/README.md has the table):

* a set with an official validation split: ``K_train`` / ``K_val`` / ``K_test`` are the official
  ones and ``K_trainval`` is train + val;
* a set with an official train (or trainval) and test split only: ``K_trainval`` is the official
  train split, ``K_val`` a class-stratified 20% of it and ``K_train`` the other 80%;
* a set without an official split: ``K_test`` is generated (a class-stratified 20% of the whole
  set, or for Caltech101 all but 30 images per class), ``K_trainval`` is the rest, and ``K_val`` /
  ``K_train`` are drawn from it as above.

Generated splits follow :func:`contrastive_det.data.datasets.downstream.splits.stratified_holdout`
(seed 0).
"""

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from detectron2.data import MetadataCatalog

from ..catalog import register_dataset
from ...checks import DatasetLayoutError, check_required_paths, layout_error, read_listed_dicts
from ...classification import LazyClassList
from ...paths import datasets_root
from . import readers as R
from .meta import (
    CHESTX_CLASSES,
    DEEPWEEDS_CLASSES,
    EUROSAT_CLASSES,
    FLOWERS102_CLASSES,
    ISIC_CLASSES,
    KAOKORE_CLASSES,
    SVHN_CLASSES,
    VOC_CLASSES,
)
from .splits import (
    ISLAM_TRAIN_FRACTION,
    SPLIT_SEED,
    TEST_FRACTION,
    VAL_FRACTION,
    fraction_held_out,
    islam_partial_split,
    keep_per_class_held_out,
    stratified_holdout,
)

SPLITS = ("train", "val", "trainval", "test", "all")  # all = trainval + test (few-shot episodes)
# Sets with Islam et al.'s own train/test split (DownstreamSet.islam) are registered also as
# K_islam_train / K_islam_test, the splits of their linear evaluation.
ISLAM_SPLITS = ("islam_train", "islam_test")
ISLAM_PARTIAL = "partial"  # DownstreamSet.islam: their 70/30 per-class draw (islam_partial_split)
METRICS = ("top1", "mean_per_class", "map11")

__all__ = [
    "DownstreamSet",
    "DOWNSTREAM_SETS",
    "SPLITS",
    "register_downstream",
    "register_all_downstream",
]


@dataclass(frozen=True)
class DownstreamSet:
    """
    How one downstream set is laid out on disk and split.

    Attributes:
        key: the name prefix (``<key>_train``, ...)
        title: the set's usual name
        folders: candidate folders under the datasets root; the first whose first ``required``
            path exists is used (the first candidate when none does)
        layout: one line describing the expected files (shown in errors)
        required: paths relative to the set folder every split needs (folders end with "/")
        split_files: official split -> the paths that split needs
        official: ``{"train": ..., "val": ..., "test": ...}`` naming the official splits the roles
            map to (``val`` absent when there is none), or ``{"all": "all"}`` for a set without any
        read: ``(root, official split, classes) -> dataset dicts``
        classes: the fixed class names, or a ``root -> names`` reader
        metric: "top1", "mean_per_class" or "map11"
        multi_label: whether dicts carry ``labels``/``ignore_labels`` instead of one ``label``
        test_held_out: sets without an official split: ``n -> k`` test images of a class of ``n``
        source: where the files come from
        papers: which transfer studies use the set
        islam: Islam et al.'s own split, registered as ``K_islam_train`` / ``K_islam_test``:
            ``"partial"`` (their 70/30 per-class draw of the whole set) or ``{"islam_train":
            official split, "islam_test": official split}`` (folders of the archive); None = they
            used ours
    """

    key: str
    title: str
    folders: tuple
    layout: str
    required: tuple
    official: dict
    read: Callable
    classes: Any
    split_files: dict = field(default_factory=dict)
    metric: str = "top1"
    multi_label: bool = False
    test_held_out: Optional[Callable] = None
    source: str = ""
    papers: str = ""
    islam: Any = None


_TEST = fraction_held_out(TEST_FRACTION)
_ALL = {"all": "all"}
_TT = {"train": "train", "test": "test"}
_TVT = {"train": "train", "val": "val", "test": "test"}
ISLAM, KORNBLITH, BOTH = (
    "Islam et al. 2021",
    "Kornblith et al. 2019",
    "Islam et al. 2021; Kornblith et al. 2019",
)


def _sets():
    sets = [
        DownstreamSet(
            "eurosat",
            "EuroSAT (RGB)",
            ("eurosat",),
            "eurosat/2750/<class>/<class>_<n>.jpg (EuroSAT.zip unpacked into eurosat/, as "
            "torchvision's EuroSAT)",
            ("2750/",),
            _ALL,
            R.read_eurosat,
            EUROSAT_CLASSES,
            test_held_out=_TEST,
            islam=ISLAM_PARTIAL,
            source="https://github.com/phelber/EuroSAT (EuroSAT.zip); torchvision.datasets.EuroSAT",
            papers=ISLAM,
        ),
        DownstreamSet(
            "cropdisease",
            "CropDisease (PlantVillage, CD-FSL)",
            ("CropDiseases",),
            "CropDiseases/dataset/train/<class>/<image> (the Kaggle 'plant-disease' archive the "
            "CD-FSL benchmark uses; its dataset/test/<class>/<image> is Islam et al.'s test split)",
            ("dataset/train/",),
            _ALL,
            R.read_cropdisease,
            R.cropdisease_classes,
            test_held_out=_TEST,
            split_files={"test": ("dataset/test/",)},
            islam={"islam_train": "train", "islam_test": "test"},
            source="https://www.kaggle.com/saroz014/plant-disease (CD-FSL benchmark)",
            papers=ISLAM,
        ),
        DownstreamSet(
            "chestx",
            "ChestX-ray14 (CD-FSL 7-class subset)",
            ("ChestX",),
            "ChestX/Data_Entry_2017.csv + ChestX/images/<Image Index> (NIH ChestX-ray14; every "
            "images_*.tar.gz unpacks into images/)",
            ("images/", R.CHESTX_CSV),
            _ALL,
            R.read_chestx,
            CHESTX_CLASSES,
            test_held_out=_TEST,
            islam=ISLAM_PARTIAL,
            source="https://nihcc.app.box.com/v/ChestXray-NIHCC (CD-FSL benchmark)",
            papers=ISLAM,
        ),
        DownstreamSet(
            "isic",
            "ISIC 2018 task 3 (HAM10000)",
            ("ISIC",),
            f"ISIC/{R.ISIC_IMAGES}/<image>.jpg + ISIC/{R.ISIC_CSV} (the two ISIC 2018 task 3 "
            f"training zips unpacked)",
            (R.ISIC_IMAGES + "/", R.ISIC_CSV),
            _ALL,
            R.read_isic,
            ISIC_CLASSES,
            test_held_out=_TEST,
            islam=ISLAM_PARTIAL,
            source="https://challenge.isic-archive.com/data/#2018 "
            "(task 3 training data; CD-FSL benchmark)",
            papers=ISLAM,
        ),
        DownstreamSet(
            "dtd",
            "Describable Textures (DTD), split 1",
            ("dtd", "dtd/dtd"),
            "dtd/images/<class>/<class>_<nnnn>.jpg + dtd/labels/{train,val,test}1.txt "
            "(dtd-r1.0.1.tar.gz unpacked; torchvision's dtd/dtd/ is accepted too)",
            ("images/", "labels/"),
            _TVT,
            R.read_dtd,
            R.dtd_classes,
            split_files={s: (f"labels/{s}1.txt",) for s in ("train", "val", "test")},
            source="https://www.robots.ox.ac.uk/~vgg/data/dtd/; torchvision.datasets.DTD",
            papers=BOTH,
        ),
        DownstreamSet(
            "omniglot",
            "Omniglot (evaluation alphabets, 659 characters)",
            ("omniglot-py",),
            "omniglot-py/images_evaluation/<alphabet>/<character>/<nnnn>_<drawer>.png "
            "(torchvision's Omniglot, background=False)",
            ("images_evaluation/",),
            _ALL,
            functools.partial(R.read_omniglot, subsets=("images_evaluation",)),
            functools.partial(R.omniglot_classes, subsets=("images_evaluation",)),
            test_held_out=_TEST,
            islam=ISLAM_PARTIAL,
            source="https://github.com/brendenlake/omniglot (images_evaluation.zip); "
            "torchvision.datasets.Omniglot",
            papers=ISLAM,
        ),
        DownstreamSet(
            "omniglot_all",
            "Omniglot (all 50 alphabets, 1623 characters)",
            ("omniglot-py",),
            "omniglot-py/{images_background,images_evaluation}/<alphabet>/<character>/"
            "<nnnn>_<drawer>.png (torchvision's Omniglot, both subsets)",
            ("images_background/", "images_evaluation/"),
            _ALL,
            functools.partial(R.read_omniglot, subsets=("images_background", "images_evaluation")),
            functools.partial(
                R.omniglot_classes, subsets=("images_background", "images_evaluation")
            ),
            test_held_out=_TEST,
            source="https://github.com/brendenlake/omniglot; torchvision.datasets.Omniglot",
            papers="(variant of Islam et al.'s Omniglot)",
        ),
        DownstreamSet(
            "resisc45",
            "NWPU-RESISC45",
            ("NWPU-RESISC45",),
            "NWPU-RESISC45/<class>/<class>_<nnn>.jpg (NWPU-RESISC45.rar unpacked: 45 class "
            "folders)",
            (),
            _ALL,
            R.read_resisc45,
            R.resisc45_classes,
            test_held_out=_TEST,
            islam=ISLAM_PARTIAL,
            source="https://gcheng-nwpu.github.io/#Datasets (NWPU-RESISC45.rar)",
            papers=ISLAM,
        ),
        DownstreamSet(
            "svhn",
            "SVHN (cropped digits)",
            ("svhn",),
            "svhn/{train,test}_32x32.mat (X: 32x32x3xN uint8, y: Nx1, 10 = digit 0; torchvision's "
            "SVHN files)",
            (),
            _TT,
            R.read_svhn,
            SVHN_CLASSES,
            split_files={"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
            source="http://ufldl.stanford.edu/housenumbers/; torchvision.datasets.SVHN",
            papers=ISLAM,
        ),
        DownstreamSet(
            "deepweeds",
            "DeepWeeds",
            ("DeepWeeds",),
            "DeepWeeds/images/<Filename>.jpg + DeepWeeds/labels.csv (Filename,Label,Species; Label "
            "0..8)",
            ("images/", "labels.csv"),
            _ALL,
            R.read_deepweeds,
            DEEPWEEDS_CLASSES,
            test_held_out=_TEST,
            islam=ISLAM_PARTIAL,
            source="https://github.com/AlexOlsen/DeepWeeds (images.zip + labels/labels.csv)",
            papers=ISLAM,
        ),
        DownstreamSet(
            "kaokore",
            "KaoKore (gender x status, 8 classes)",
            ("kaokore",),
            "kaokore/images_256/<image>.jpg + kaokore/labels.csv (image,set,gender,status; set "
            "train|dev|test), as the official download.py writes them",
            ("images_256/", "labels.csv"),
            {"train": "train", "val": "dev", "test": "test"},
            R.read_kaokore,
            KAOKORE_CLASSES,
            source="https://github.com/rois-codh/kaokore (download.py)",
            papers=ISLAM,
        ),
        DownstreamSet(
            "sketch",
            "ImageNet-Sketch",
            ("sketch",),
            "sketch/<wnid>/<n>.JPEG (ImageNet-Sketch.zip unpacked: 1000 WordNet-id folders)",
            (),
            _ALL,
            R.read_sketch,
            R.sketch_classes,
            test_held_out=_TEST,
            islam=ISLAM_PARTIAL,
            source="https://github.com/HaohanWang/ImageNet-Sketch",
            papers=ISLAM,
        ),
        DownstreamSet(
            "flowers102",
            "Oxford 102 Flowers",
            ("flowers-102",),
            "flowers-102/jpg/image_<nnnnn>.jpg + flowers-102/imagelabels.mat + "
            "flowers-102/setid.mat (torchvision's Flowers102 files)",
            ("jpg/", "imagelabels.mat", "setid.mat"),
            _TVT,
            R.read_flowers102,
            FLOWERS102_CLASSES,
            metric="mean_per_class",
            source="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/; "
            "torchvision.datasets.Flowers102",
            papers=BOTH,
        ),
        DownstreamSet(
            "food101",
            "Food-101",
            ("food-101",),
            "food-101/images/<class>/<id>.jpg + food-101/meta/{classes,train,test}.txt "
            "(food-101.tar.gz unpacked)",
            ("images/", "meta/classes.txt"),
            _TT,
            R.read_food101,
            R.food101_classes,
            split_files={"train": ("meta/train.txt",), "test": ("meta/test.txt",)},
            source="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/; "
            "torchvision.datasets.Food101",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "cifar10",
            "CIFAR-10",
            ("cifar-10-batches-py",),
            "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (cifar-10-python.tar.gz "
            "unpacked)",
            ("batches.meta",),
            _TT,
            R.read_cifar10,
            R.cifar10_classes,
            split_files={
                "train": tuple(R.CIFAR10_FILES["train"]),
                "test": tuple(R.CIFAR10_FILES["test"]),
            },
            source="https://www.cs.toronto.edu/~kriz/cifar.html; torchvision.datasets.CIFAR10",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "cifar100",
            "CIFAR-100 (fine labels)",
            ("cifar-100-python",),
            "cifar-100-python/{train,test,meta} (cifar-100-python.tar.gz unpacked)",
            ("meta",),
            _TT,
            R.read_cifar100,
            R.cifar100_classes,
            split_files={"train": ("train",), "test": ("test",)},
            source="https://www.cs.toronto.edu/~kriz/cifar.html; torchvision.datasets.CIFAR100",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "birdsnap",
            "Birdsnap",
            ("birdsnap",),
            "birdsnap/images/<dir>/<file>.jpg (get_birdsnap.py's images/) + birdsnap/species.txt + "
            "birdsnap/test_images.txt (from birdsnap.tgz)",
            ("images/", "species.txt", "test_images.txt"),
            _TT,
            R.read_birdsnap,
            R.birdsnap_classes,
            source="http://thomasberg.org/datasets/birdsnap/1.1/birdsnap.tgz (get_birdsnap.py)",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "sun397",
            "SUN397 (partition 01)",
            ("SUN397",),
            "SUN397/<letter>/<class>/sun_<id>.jpg + SUN397/ClassName.txt + "
            "SUN397/Partitions/{Training,Testing}_01.txt (SUN397.tar.gz unpacked; Partitions.zip's "
            "files in SUN397/Partitions/)",
            ("ClassName.txt",),
            _TT,
            R.read_sun397,
            R.sun397_classes,
            split_files={s: (p,) for s, p in R.SUN397_PARTITIONS.items()},
            source="https://vision.princeton.edu/projects/2010/SUN/ "
            "(SUN397.tar.gz, Partitions.zip)",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "cars",
            "Stanford Cars",
            ("stanford_cars",),
            "stanford_cars/{cars_train,cars_test}/<nnnnn>.jpg + "
            "stanford_cars/devkit/{cars_meta,cars_train_annos}.mat + "
            "stanford_cars/cars_test_annos_withlabels.mat (torchvision's StanfordCars files)",
            ("devkit/cars_meta.mat",),
            _TT,
            R.read_cars,
            R.cars_classes,
            split_files={
                "train": ("cars_train/", R.CARS_ANNOTATIONS["train"]),
                "test": ("cars_test/", R.CARS_ANNOTATIONS["test"]),
            },
            source="https://ai.stanford.edu/~jkrause/cars/car_dataset.html; "
            "torchvision.datasets.StanfordCars",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "aircraft",
            "FGVC Aircraft (variants)",
            ("fgvc-aircraft-2013b",),
            "fgvc-aircraft-2013b/data/images/<id>.jpg + fgvc-aircraft-2013b/data/{variants,"
            "images_variant_train,images_variant_val,images_variant_test}.txt "
            "(fgvc-aircraft-2013b.tar.gz unpacked)",
            ("data/images/", "data/variants.txt"),
            _TVT,
            R.read_aircraft,
            R.aircraft_classes,
            split_files={s: (f"data/images_variant_{s}.txt",) for s in ("train", "val", "test")},
            metric="mean_per_class",
            source="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/; "
            "torchvision.datasets.FGVCAircraft",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "voc2007_cls",
            "Pascal VOC 2007 classification (multi-label)",
            ("VOCdevkit/VOC2007", "VOC2007"),
            "VOCdevkit/VOC2007/ (or VOC2007/): JPEGImages/<id>.jpg + "
            "ImageSets/Main/<class>_{train,val,test}.txt (lines '<id> 1|0|-1'; the VOCtrainval and "
            "VOCtest 2007 tarballs unpacked)",
            ("JPEGImages/", "ImageSets/Main/"),
            _TVT,
            R.read_voc2007_cls,
            VOC_CLASSES,
            split_files={
                s: (f"ImageSets/Main/{VOC_CLASSES[0]}_{s}.txt",) for s in ("train", "val", "test")
            },
            metric="map11",
            multi_label=True,
            source="http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "pets",
            "Oxford-IIIT Pets",
            ("oxford-iiit-pet",),
            "oxford-iiit-pet/images/<Breed>_<n>.jpg + "
            "oxford-iiit-pet/annotations/{trainval,test}.txt (torchvision's OxfordIIITPet files)",
            ("images/", "annotations/trainval.txt"),
            {"train": "trainval", "test": "test"},
            R.read_pets,
            R.pets_classes,
            split_files={
                "trainval": ("annotations/trainval.txt",),
                "test": ("annotations/test.txt",),
            },
            metric="mean_per_class",
            source="https://www.robots.ox.ac.uk/~vgg/data/pets/; "
            "torchvision.datasets.OxfordIIITPet",
            papers=KORNBLITH,
        ),
        DownstreamSet(
            "caltech101",
            "Caltech-101",
            ("caltech101",),
            "caltech101/101_ObjectCategories/<class>/image_<nnnn>.jpg (torchvision's Caltech101 "
            "files; 102 classes, BACKGROUND_Google is one, as in ssl-transfer and VISSL)",
            ("101_ObjectCategories/",),
            _ALL,
            R.read_caltech101,
            R.caltech101_classes,
            test_held_out=keep_per_class_held_out(30),
            metric="mean_per_class",
            source="https://data.caltech.edu/records/mzrjq-6wc02; torchvision.datasets.Caltech101",
            papers=KORNBLITH,
        ),
    ]
    return {s.key: s for s in sets}


DOWNSTREAM_SETS = _sets()  # key -> DownstreamSet


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------
def _archive_split(spec, split):
    """The official split an ``islam_*`` name reads where Islam et al. used the archive's own split
    (``DownstreamSet.islam`` a mapping, e.g. CropDisease's test folder); None otherwise."""
    return spec.islam.get(split) if isinstance(spec.islam, dict) else None


def _official_used(spec, split):
    """The official splits whose files ``<key>_<split>`` reads."""
    off = spec.official
    if _archive_split(spec, split):
        return [_archive_split(spec, split)]
    if "all" in off:
        return ["all"]
    if split == "all":
        return list(dict.fromkeys(_official_used(spec, "trainval") + _official_used(spec, "test")))
    if "val" in off:
        return [off["train"], off["val"]] if split == "trainval" else [off[split]]
    return [off["test"]] if split == "test" else [off["train"]]


def split_rule(key, split):
    """One line saying how ``<key>_<split>`` is made (recorded as metadata ``split_rule``)."""
    spec = DOWNSTREAM_SETS[key]
    off = spec.official
    if _archive_split(spec, split):
        return f"Islam et al.'s: the archive's '{_archive_split(spec, split)}' split"
    if split in ISLAM_SPLITS:
        return (
            f"Islam et al.'s: {ISLAM_TRAIN_FRACTION:.0%} of each class (floor) to islam_train, the "
            "rest to islam_test; one RandomState(0) over the classes in the order they first "
            "appear"
        )
    if split == "all":
        return f"the whole set: {key}_trainval + {key}_test"
    val = (
        f"generated: {VAL_FRACTION:.0%} of each class of {key}_trainval, class-stratified "
        f"(seed {SPLIT_SEED}, salt 'val')"
    )
    if "val" in off:
        if split == "trainval":
            return f"official '{off['train']}' + '{off['val']}' splits"
        return f"official '{off[split]}' split"
    if split == "test":
        if "all" in off:
            return (
                f"generated: {spec.test_held_out.rule} of the whole set "
                f"(seed {SPLIT_SEED}, salt 'test')"
            )
        return f"official '{off['test']}' split"
    if split == "trainval":
        return (
            f"the whole set minus {key}_test"
            if "all" in off
            else f"official '{off['train']}' split"
        )
    if split == "val":
        return val
    return f"{key}_trainval minus {key}_val"


def _split_dicts(spec, root, split, classes):
    off = spec.official
    if _archive_split(spec, split):
        return list(spec.read(root, _archive_split(spec, split), classes))
    if split in ISLAM_SPLITS:  # the reader's order is the reference's index order
        train, test = islam_partial_split(list(spec.read(root, "all", classes)))
        return train if split == "islam_train" else test
    if split == "all":
        return _split_dicts(spec, root, "trainval", classes) + _split_dicts(
            spec, root, "test", classes
        )

    def read(s):
        return list(spec.read(root, s, classes))

    if "all" in off:
        pool, test = stratified_holdout(read("all"), spec.test_held_out, salt="test")
        if split == "test":
            return test
    elif "val" in off:
        if split == "trainval":
            return read(off["train"]) + read(off["val"])
        return read(off[split])
    else:
        if split == "test":
            return read(off["test"])
        pool = read(off["train"])
    if split == "trainval":
        return pool
    train, val = stratified_holdout(pool, fraction_held_out(VAL_FRACTION), salt="val")
    return train if split == "train" else val


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------
def _resolve_folder(spec, base):
    candidates = [os.path.join(base, f) for f in spec.folders]
    if len(candidates) == 1:
        return candidates[0]
    probe = spec.required[0] if spec.required else ""
    for folder in candidates:
        if os.path.exists(os.path.join(folder, probe)):
            return folder
    return candidates[0]


def _required_paths(spec, root, split=None):
    rel = list(spec.required)
    if split is not None:
        for s in _official_used(spec, split):
            rel += [p for p in spec.split_files.get(s, ()) if p not in rel]
    return [root + "/"] + [os.path.join(root, p) for p in rel]


def _classes_of(key, root):
    """The class names of set ``key`` in folder ``root`` (read from disk; the LazyClassList
    reader)."""
    spec = DOWNSTREAM_SETS[key]
    check_required_paths(key, _required_paths(spec, root), spec.layout)
    try:
        names = [str(c) for c in spec.classes(root)]
    except DatasetLayoutError as e:
        raise layout_error(key, spec.layout, e) from e
    if not names:
        raise layout_error(key, spec.layout, f"no classes found under {root}")
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise layout_error(key, spec.layout, f"class names {dup[:5]} appear twice")
    return names


def _load(key, root, name, split):
    """The dataset dicts of ``name`` = ``<key>_<split>`` (the DatasetCatalog loader)."""
    spec = DOWNSTREAM_SETS[key]
    check_required_paths(name, _required_paths(spec, root, split), spec.layout)
    classes = list(MetadataCatalog.get(name).classes)
    dicts = read_listed_dicts(
        name,
        spec.layout,
        lambda: _split_dicts(spec, root, split, classes),
        f"no images found under {root} for this split",
    )
    if spec.multi_label:
        return sorted(dicts, key=lambda d: d["image_id"])
    return sorted(dicts, key=lambda d: (d["label"], d["image_id"]))


def register_downstream(key, root=None, name_prefix=None):
    """
    Register the five splits of downstream set ``key`` (train, val, trainval, test, and all =
    trainval + test, which few-shot episodes draw from) (see :data:`DOWNSTREAM_SETS`) lazily.

    Args:
        key (str): e.g. "eurosat", "cifar10", "voc2007_cls"
        root (str or None): the datasets root holding the set's folder (default
            ``$DETECTRON2_DATASETS``, see :func:`contrastive_det.data.paths.datasets_root`)
        name_prefix (str or None): register ``<name_prefix>_<split>`` instead of ``<key>_<split>``
    Returns:
        list[str]: the registered names, in the order train, val, trainval, test, all

    Metadata of each name: ``classes`` (a list, or for sets whose names are on disk a
    :class:`LazyClassList` read on first use), ``evaluator_type`` "classification", ``metric``,
    ``multi_label``, ``image_root`` (the set's folder), ``required_paths``, ``layout``,
    ``split_rule`` and ``dataset_key``.
    """
    if key not in DOWNSTREAM_SETS:
        raise KeyError(f"Unknown downstream set {key!r}; known: {', '.join(DOWNSTREAM_SETS)}")
    spec = DOWNSTREAM_SETS[key]
    set_root = _resolve_folder(spec, os.path.expanduser(root) if root else datasets_root())
    if isinstance(spec.classes, (tuple, list)):
        classes = list(spec.classes)
    else:
        classes = LazyClassList(
            _classes_of, key, set_root, description=f"{spec.title} classes under {set_root}"
        )
    names = []
    for split in SPLITS + (ISLAM_SPLITS if spec.islam else ()):
        name = f"{name_prefix or key}_{split}"
        register_dataset(
            name,
            functools.partial(_load, key, set_root, name, split),
            classes=classes,
            evaluator_type="classification",
            metric=spec.metric,
            multi_label=spec.multi_label,
            image_root=set_root,
            required_paths=_required_paths(spec, set_root, split),
            layout=spec.layout,
            split_rule=split_rule(key, split),
            dataset_key=key,
        )
        names.append(name)
    return names


def register_all_downstream(root=None):
    """Register every set of :data:`DOWNSTREAM_SETS` (see :func:`register_downstream`); returns the
    names."""
    return [name for key in DOWNSTREAM_SETS for name in register_downstream(key, root)]

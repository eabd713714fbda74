"""
Cole et al.'s pretraining sets (contrastive_det/data/datasets/pretraining_sets.py): iNat 2021 and
Places365 built tiny in tmp_path in the layout their official archives unpack to, registered from
``$DETECTRON2_DATASETS``, and checked against hand-written goldens; the layout check's errors; the
iNat taxonomy label map; and a pretraining config naming a ``DATASETS.CUSTOM`` folder set.
"""

import json
import os

import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from contrastive_det.config import get_cfg
from contrastive_det.data import (
    DatasetLayoutError,
    check_dataset_layout,
    read_classification_image,
    register_datasets_from_config,
    register_imagenet,
    register_pretraining_sets,
    write_inat2021_label_map,
)
from contrastive_det.data.paths import datasets_root
from contrastive_det.data.pretraining import pretrain_train_dicts
from contrastive_det.data.datasets.pretraining_sets import inat2021_categories, inat2021_label_map
from contrastive_det.data.study_axes import coarse_classes, load_label_map
from contrastive_det.tasks.pretrain import PretrainTask

INAT_NAMES = ["inat2021_train", "inat2021_train_mini", "inat2021_val"]
PLACES_NAMES = ["places365_train", "places365_val"]
DICT_KEYS = {"file_name", "image_id", "label", "class_name"}


def img(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 5), (value % 256, 40, 90)).save(
        path, format="JPEG" if path.suffix == ".jpg" else "PNG"
    )


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ----------------------------------------------------------------------------------------------
# Tiny trees in the official layouts
# ----------------------------------------------------------------------------------------------
# iNat 2021 categories, listed out of id order and with ids that are not 0..C-1: labels follow the
# ids sorted (2, 5, 7, 11). The two Prunella (a bird and a plant) share a genus name.
TAXA = {
    7: (
        "Turdus merula",
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Turdidae",
        "Turdus",
        "merula",
    ),
    2: (
        "Prunella modularis",
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Prunellidae",
        "Prunella",
        "modularis",
    ),
    11: (
        "Quercus robur",
        "Plantae",
        "Tracheophyta",
        "Magnoliopsida",
        "Fagales",
        "Fagaceae",
        "Quercus",
        "robur",
    ),
    5: (
        "Prunella vulgaris",
        "Plantae",
        "Tracheophyta",
        "Magnoliopsida",
        "Lamiales",
        "Lamiaceae",
        "Prunella",
        "vulgaris",
    ),
}
INAT_CLASSES = ["Prunella modularis", "Prunella vulgaris", "Turdus merula", "Quercus robur"]
FIELDS = ("name", "kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet")


def inat_dir(category_id):
    t = TAXA[category_id]
    return f"{category_id:05d}_" + "_".join(t[1:])


# split -> [(image id, category id, file stem)], in the (shuffled) order of the JSON
INAT_IMAGES = {
    "train": [(31, 7, "e5"), (10, 2, "c1"), (22, 7, "a9"), (40, 11, "f0"), (12, 5, "b3")],
    "train_mini": [(3, 11, "m4"), (1, 5, "m2"), (2, 7, "m3"), (4, 2, "m1")],
    "val": [(900, 5, "v2"), (901, 2, "v1"), (902, 11, "v3")],
}


def inat_json(split, images=None):
    images = INAT_IMAGES[split] if images is None else images
    return {
        "info": {"year": 2021},
        "licenses": [],
        "images": [
            {"id": i, "file_name": f"{split}/{inat_dir(c)}/{stem}.jpg", "width": 6, "height": 5}
            for i, c, stem in images
        ],
        # annotations in another order than the images
        "annotations": [
            {"id": 100 + i, "image_id": i, "category_id": c} for i, c, _ in reversed(images)
        ],
        "categories": [
            dict(
                zip(FIELDS, TAXA[c]),
                id=c,
                common_name="",
                supercategory=TAXA[c][1],
                image_dir_name=inat_dir(c),
            )
            for c in TAXA
        ],
    }


def make_inat(base):
    root = base / "inat2021"
    for split, images in INAT_IMAGES.items():
        write(root / f"{split}.json", json.dumps(inat_json(split)))
        for k, (_, c, stem) in enumerate(images):
            img(root / split / inat_dir(c) / f"{stem}.jpg", k)
    return root


# The goldens: (image_id, label), sorted by label then image id.
INAT_GOLDEN = {
    "train": [
        (f"train/{inat_dir(2)}/c1.jpg", 0),
        (f"train/{inat_dir(5)}/b3.jpg", 1),
        (f"train/{inat_dir(7)}/a9.jpg", 2),
        (f"train/{inat_dir(7)}/e5.jpg", 2),
        (f"train/{inat_dir(11)}/f0.jpg", 3),
    ],
    "train_mini": [
        (f"train_mini/{inat_dir(2)}/m1.jpg", 0),
        (f"train_mini/{inat_dir(5)}/m2.jpg", 1),
        (f"train_mini/{inat_dir(7)}/m3.jpg", 2),
        (f"train_mini/{inat_dir(11)}/m4.jpg", 3),
    ],
    "val": [
        (f"val/{inat_dir(2)}/v1.jpg", 0),
        (f"val/{inat_dir(5)}/v2.jpg", 1),
        (f"val/{inat_dir(11)}/v3.jpg", 3),
    ],
}

PLACES_CATEGORIES = (
    "/a/airfield 0\n/a/apartment_building/outdoor 1\n/b/bakery/shop 2\n/c/canyon 3\n"
)
PLACES_TRAIN = [
    ("/a/airfield/00000001.jpg", 0),
    ("/c/canyon/00000001.jpg", 3),
    ("/a/apartment_building/outdoor/00000001.jpg", 1),
    ("/a/airfield/00000002.jpg", 0),
    ("/b/bakery/shop/00000001.jpg", 2),
]
PLACES_VAL = [
    ("Places365_val_00000001.jpg", 3),
    ("Places365_val_00000002.jpg", 0),
    ("Places365_val_00000003.jpg", 2),
    ("Places365_val_00000004.jpg", 0),
]
PLACES_CLASSES = ["airfield", "apartment_building/outdoor", "bakery/shop", "canyon"]
PLACES_GOLDEN = {
    "train": [
        ("a/airfield/00000001.jpg", 0),
        ("a/airfield/00000002.jpg", 0),
        ("a/apartment_building/outdoor/00000001.jpg", 1),
        ("b/bakery/shop/00000001.jpg", 2),
        ("c/canyon/00000001.jpg", 3),
    ],
    "val": [
        ("Places365_val_00000002.jpg", 0),
        ("Places365_val_00000004.jpg", 0),
        ("Places365_val_00000003.jpg", 2),
        ("Places365_val_00000001.jpg", 3),
    ],
}


def make_places(base, train_folder="data_256"):
    root = base / "places365"
    write(root / "categories_places365.txt", PLACES_CATEGORIES)
    write(root / "places365_train_standard.txt", "".join(f"{p} {c}\n" for p, c in PLACES_TRAIN))
    write(root / "places365_val.txt", "".join(f"{p} {c}\n" for p, c in PLACES_VAL))
    for k, (p, _) in enumerate(PLACES_TRAIN):
        img(root / train_folder / p.lstrip("/"), k)
    for k, (p, _) in enumerate(PLACES_VAL):
        img(root / "val_256" / p, k)
    return root


@pytest.fixture
def d2root(tmp_path, monkeypatch):
    """$DETECTRON2_DATASETS = tmp_path/d2 (the sets are registered again from it by each test);
    the import-time registration is restored afterwards."""
    before = datasets_root()
    base = tmp_path / "d2"
    base.mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(base))
    yield base
    register_pretraining_sets(before)


def golden_of(dicts):
    return [(d["image_id"], d["label"]) for d in dicts]


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------
def test_names_are_registered_at_import_without_reading_files():
    names = set(DatasetCatalog.list())
    for name in INAT_NAMES + PLACES_NAMES:
        assert name in names
        meta = MetadataCatalog.get(name)
        assert (
            meta.evaluator_type == "classification"
            and meta.metric == "top1"
            and meta.multi_label is False
        )
        assert meta.required_paths[0] == meta.image_root + "/" and "\n" not in meta.layout
        assert "classes read on first use" in repr(meta.classes)  # nothing read yet
    assert MetadataCatalog.get("inat2021_val").taxonomy_levels == (
        "kingdom",
        "phylum",
        "class",
        "order",
        "family",
        "genus",
    )


def test_inat2021_dicts_labels_and_classes(d2root):
    root = make_inat(d2root)
    assert register_pretraining_sets() == INAT_NAMES + PLACES_NAMES
    for name in INAT_NAMES:
        split = name[len("inat2021_") :]
        meta = MetadataCatalog.get(name)
        assert meta.image_root == str(root)
        assert meta.required_paths == [f"{root}/", f"{root}/{split}.json", f"{root}/{split}/"]
        check_dataset_layout(name)
        dicts = DatasetCatalog.get(name)
        assert list(meta.classes) == INAT_CLASSES
        assert golden_of(dicts) == INAT_GOLDEN[split]
        for d in dicts:
            assert set(d) == DICT_KEYS
            assert d["class_name"] == INAT_CLASSES[d["label"]]
            assert d["file_name"] == os.path.join(root, d["image_id"]) and os.path.isfile(
                d["file_name"]
            )
        assert read_classification_image(dicts[0]).size == (6, 5)


def test_places365_dicts_labels_and_classes(d2root):
    root = make_places(d2root)
    register_pretraining_sets()
    for name, folder in (("places365_train", "data_256"), ("places365_val", "val_256")):
        split = name[len("places365_") :]
        meta = MetadataCatalog.get(name)
        list_file = "places365_train_standard.txt" if split == "train" else "places365_val.txt"
        assert meta.required_paths == [
            f"{root}/",
            f"{root}/categories_places365.txt",
            f"{root}/{list_file}",
            f"{root}/{folder}/",
        ]
        check_dataset_layout(name)
        dicts = DatasetCatalog.get(name)
        assert list(meta.classes) == PLACES_CLASSES
        assert golden_of(dicts) == PLACES_GOLDEN[split]
        for d in dicts:
            assert set(d) == DICT_KEYS and d["class_name"] == PLACES_CLASSES[d["label"]]
            assert d["file_name"] == os.path.join(root, folder, d["image_id"]) and os.path.isfile(
                d["file_name"]
            )


def test_places365_large_images_are_read_when_the_256_folder_is_absent(d2root):
    root = make_places(d2root, train_folder="data_large")
    register_pretraining_sets()
    assert MetadataCatalog.get("places365_train").required_paths[-1] == f"{root}/data_large/"
    assert golden_of(DatasetCatalog.get("places365_train")) == PLACES_GOLDEN["train"]


def test_same_dict_format_as_imagenet(tmp_path, d2root):
    make_inat(d2root)
    make_places(d2root)
    register_pretraining_sets()
    for split in ("train", "val"):
        img(tmp_path / "imagenet" / split / "n01440764" / "a.JPEG")
    try:
        register_imagenet(str(tmp_path / "imagenet"))
        reference = DatasetCatalog.get("imagenet_train")
        ref_meta = MetadataCatalog.get("imagenet_train").as_dict()
        for name in ("inat2021_train", "places365_val"):
            assert set(DatasetCatalog.get(name)[0]) == set(reference[0])
            meta = MetadataCatalog.get(name).as_dict()
            for key in (
                "classes",
                "evaluator_type",
                "metric",
                "multi_label",
                "image_root",
                "required_paths",
                "layout",
            ):
                assert key in meta and type(meta[key]) is type(ref_meta[key]), key
    finally:
        register_imagenet()


# ----------------------------------------------------------------------------------------------
# Layout checks: a missing file or folder is named, with the layout
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, remove",
    [
        ("inat2021_train", "inat2021/train.json"),
        ("inat2021_train_mini", "inat2021/train_mini.json"),
        ("inat2021_val", "inat2021/val/"),
        ("inat2021_train", "inat2021/train/"),
        ("places365_train", "places365/categories_places365.txt"),
        ("places365_train", "places365/places365_train_standard.txt"),
        ("places365_val", "places365/places365_val.txt"),
        ("places365_train", "places365/data_256/"),
        ("places365_val", "places365/val_256/"),
    ],
)
def test_missing_path_is_named_by_the_layout_check(d2root, name, remove):
    import shutil

    make_inat(d2root)
    make_places(d2root)
    path = d2root / remove
    shutil.rmtree(path) if remove.endswith("/") else path.unlink()
    register_pretraining_sets()
    for call in (check_dataset_layout, DatasetCatalog.get):
        with pytest.raises(DatasetLayoutError) as err:
            call(name)
        msg = str(err.value)
        assert msg.startswith(
            f"Dataset '{name}' is missing {path}{'/' if remove.endswith('/') else ''}"
        )
        assert MetadataCatalog.get(name).layout in msg and "datasets/README.md" in msg
    other = {
        "inat2021/train.json": "inat2021_val",
        "places365/places365_val.txt": "places365_train",
    }.get(remove)
    if other:  # the other splits do not need that file
        check_dataset_layout(other)
        assert DatasetCatalog.get(other)


def test_missing_sets_raise_when_used_not_when_registered(d2root):
    # empty root: registering reads nothing
    assert register_pretraining_sets() == INAT_NAMES + PLACES_NAMES
    for name in INAT_NAMES + PLACES_NAMES:
        with pytest.raises(DatasetLayoutError, match=rf"Dataset '{name}' is missing {d2root}/"):
            check_dataset_layout(name)
    with pytest.raises(DatasetLayoutError, match="inat2021/val.json"):
        len(MetadataCatalog.get("inat2021_val").classes)
    with pytest.raises(DatasetLayoutError, match="categories_places365.txt is missing"):
        len(MetadataCatalog.get("places365_val").classes)


def test_malformed_files_are_named_with_the_line(d2root):
    root = make_places(d2root)
    register_pretraining_sets()
    # a train line whose folder is not the class of its label (e.g. an off-by-one list)
    write(
        root / "places365_train_standard.txt",
        "/a/airfield/00000001.jpg 0\n/c/canyon/00000001.jpg 2\n",
    )
    with pytest.raises(
        DatasetLayoutError,
        match=r"places365_train_standard.txt:2: '/c/canyon/00000001.jpg' is not in "
        r"the folder of class 2 \('bakery/shop'\)",
    ):
        DatasetCatalog.get("places365_train")
    write(root / "places365_val.txt", "Places365_val_00000001.jpg 365\n")
    with pytest.raises(
        DatasetLayoutError, match=r"places365_val.txt:1: class id 365 is outside \[0, 4\)"
    ):
        DatasetCatalog.get("places365_val")
    inat = make_inat(d2root)
    register_pretraining_sets()
    data = inat_json("val")
    data["annotations"] = data["annotations"][1:]  # an image without annotation
    write(inat / "val.json", json.dumps(data))
    with pytest.raises(
        DatasetLayoutError,
        match=r"Dataset 'inat2021_val': .*val.json: image val/.* has no annotation",
    ):
        DatasetCatalog.get("inat2021_val")
    data = inat_json("train_mini")
    data["categories"] = data["categories"][
        :3
    ]  # other categories than the class list (read from val.json)
    write(inat / "val.json", json.dumps(inat_json("val")))
    write(inat / "train_mini.json", json.dumps(data))
    register_pretraining_sets()
    with pytest.raises(
        DatasetLayoutError, match=r"train_mini.json: its categories differ from the class list"
    ):
        DatasetCatalog.get("inat2021_train_mini")


# ----------------------------------------------------------------------------------------------
# The taxonomy label map
# ----------------------------------------------------------------------------------------------
def test_label_map_writer_for_a_taxonomy_level(d2root, tmp_path):
    root = make_inat(d2root)
    out = tmp_path / "maps" / "order.json"
    out.parent.mkdir()
    # root from $DETECTRON2_DATASETS, val.json
    mapping = write_inat2021_label_map(str(out), "order")
    golden = {
        "Prunella modularis": "Animalia/Chordata/Aves/Passeriformes",
        "Prunella vulgaris": "Plantae/Tracheophyta/Magnoliopsida/Lamiales",
        "Turdus merula": "Animalia/Chordata/Aves/Passeriformes",
        "Quercus robur": "Plantae/Tracheophyta/Magnoliopsida/Fagales",
    }
    assert mapping == golden and list(mapping) == INAT_CLASSES
    assert json.loads(out.read_text()) == golden and load_label_map(str(out)) == golden
    assert coarse_classes(golden) == [
        "Animalia/Chordata/Aves/Passeriformes",
        "Plantae/Tracheophyta/Magnoliopsida/Fagales",
        "Plantae/Tracheophyta/Magnoliopsida/Lamiales",
    ]

    categories = inat2021_categories(str(root / "train.json"))
    assert inat2021_label_map(categories, "order", lineage=False) == {
        "Prunella modularis": "Passeriformes",
        "Prunella vulgaris": "Lamiales",
        "Turdus merula": "Passeriformes",
        "Quercus robur": "Fagales",
    }
    assert inat2021_label_map(categories, "kingdom") == {
        "Prunella modularis": "Animalia",
        "Prunella vulgaris": "Plantae",
        "Turdus merula": "Animalia",
        "Quercus robur": "Plantae",
    }
    assert inat2021_label_map(categories, "genus") == {
        "Prunella modularis": "Animalia/Chordata/Aves/Passeriformes/Prunellidae/Prunella",
        "Prunella vulgaris": "Plantae/Tracheophyta/Magnoliopsida/Lamiales/Lamiaceae/Prunella",
        "Turdus merula": "Animalia/Chordata/Aves/Passeriformes/Turdidae/Turdus",
        "Quercus robur": "Plantae/Tracheophyta/Magnoliopsida/Fagales/Fagaceae/Quercus",
    }
    with pytest.raises(ValueError, match="genus name 'Prunella' is used by two lineages"):
        inat2021_label_map(categories, "genus", lineage=False)
    with pytest.raises(ValueError, match="taxonomy level must be one of"):
        inat2021_label_map(categories, "species")


def test_pretraining_dicts_of_inat_with_a_coarse_label_map(d2root, tmp_path):
    make_inat(d2root)
    register_pretraining_sets()
    write_inat2021_label_map(str(tmp_path / "kingdom.json"), "kingdom")
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ("inat2021_train",)
    cfg.DATASETS.TEST = ("inat2021_val",)
    cfg.DATASETS.PRETRAIN.LABEL_MAP = str(tmp_path / "kingdom.json")
    assert PretrainTask.datasets_to_check(cfg, False) == [
        "inat2021_val",
        "inat2021_train",
        "inat2021_train",
    ]
    dicts, record = pretrain_train_dicts(cfg)
    # kingdoms sorted: Animalia 0, Plantae 1
    assert [(d["image_id"].split("/")[-1], d["fine_label"], d["label"]) for d in dicts] == [
        ("c1.jpg", 0, 0),
        ("b3.jpg", 1, 1),
        ("a9.jpg", 2, 0),
        ("e5.jpg", 2, 0),
        ("f0.jpg", 3, 1),
    ]
    assert record["after"]["per_coarse_class"] == {"Animalia": 3, "Plantae": 2}


# ----------------------------------------------------------------------------------------------
# A user's class-per-folder set (DATASETS.CUSTOM FORMAT folder) in a pretraining config
# ----------------------------------------------------------------------------------------------
def test_pretraining_config_can_name_a_custom_folder_set(tmp_path):
    for split, files in (
        ("train", {"cat": ["b.png", "a.png"], "bird": ["c.jpg"], "dog": ["d.png"]}),
        ("val", {"bird": ["e.png"], "cat": ["g.png"], "dog": ["f.png"]}),
    ):
        for cls, names in files.items():
            for n in names:
                img(tmp_path / "mine" / split / cls / n)
    (tmp_path / "mine" / "train" / "cat" / "notes.txt").write_text("not an image")
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = [
        {
            "NAME": "test_pt_folder_train",
            "FORMAT": "folder",
            "ROOT": str(tmp_path / "mine" / "train"),
        },
        {
            "NAME": "test_pt_folder_val",
            "FORMAT": "folder",
            "ROOT": str(tmp_path / "mine" / "val"),
            "CLASSES": ["bird", "cat", "dog"],
        },
    ]
    cfg.DATASETS.TRAIN = ("test_pt_folder_train",)
    cfg.DATASETS.TEST = ("test_pt_folder_val",)
    assert register_datasets_from_config(cfg) == ["test_pt_folder_train", "test_pt_folder_val"]
    for name in PretrainTask.datasets_to_check(cfg, False):
        check_dataset_layout(name)
    dicts, record = pretrain_train_dicts(cfg)
    assert [(d["image_id"], d["label"], d["class_name"], d["source"]) for d in dicts] == [
        ("bird/c.jpg", 0, "bird", "test_pt_folder_train"),
        ("cat/a.png", 1, "cat", "test_pt_folder_train"),
        ("cat/b.png", 1, "cat", "test_pt_folder_train"),
        ("dog/d.png", 2, "dog", "test_pt_folder_train"),
    ]
    assert record["after"]["total"] == 4
    assert list(MetadataCatalog.get("test_pt_folder_train").classes) == ["bird", "cat", "dog"]
    assert [d["label"] for d in DatasetCatalog.get("test_pt_folder_val")] == [0, 1, 2]
    # a missing folder stops the run before training, naming it
    cfg.DATASETS.CUSTOM = [
        {"NAME": "test_pt_folder_gone", "FORMAT": "folder", "ROOT": str(tmp_path / "gone")}
    ]
    register_datasets_from_config(cfg)
    with pytest.raises(DatasetLayoutError, match=rf"is missing {tmp_path}/gone/\. Expected layout"):
        check_dataset_layout("test_pt_folder_gone")

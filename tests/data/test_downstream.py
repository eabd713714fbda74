"""
Downstream classification sets (contrastive_det/data/datasets/downstream): every layout is built
tiny in tmp_path exactly as its official archive / torchvision leaves it, registered under a test
prefix, and checked for classes, labels of named files, split sizes, disjointness and determinism.
"""

import pickle

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from contrastive_det.data import (
    DatasetLayoutError,
    ImageReadError,
    check_dataset_layout,
    read_classification_image,
)
from contrastive_det.data.classification import LazyClassList, clear_array_cache
from contrastive_det.data.datasets.downstream import DOWNSTREAM_SETS, register_downstream
from contrastive_det.data.datasets.downstream import SPLITS as ALL_SPLITS

from contrastive_det.data.datasets.downstream.readers import read_cars, read_flowers102, read_svhn
from contrastive_det.data.datasets.downstream.meta import (
    CHESTX_CLASSES,
    DEEPWEEDS_CLASSES,
    EUROSAT_CLASSES,
    FLOWERS102_CLASSES,
    ISIC_CLASSES,
    KAOKORE_CLASSES,
    VOC_CLASSES,
)

SPLITS = (
    "train",
    "val",
    "trainval",
    "test",
)  # the roles; "all" = trainval + test is checked in check_contract


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def img(path, value=0, mode="RGB", size=(4, 4)):
    """A tiny image file (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode in ("L", "1") else (value % 256, 2 * value % 256, 3 * value % 256)
    Image.new(mode, size, color).save(
        path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    )
    return path


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def register(key, root, tag="t"):
    prefix = f"{tag}_{key}_{root.name}"
    register_downstream(key, root=str(root), name_prefix=prefix)
    return prefix


def load(prefix):
    return {split: DatasetCatalog.get(f"{prefix}_{split}") for split in SPLITS}


def ids(dicts):
    return {d["image_id"] for d in dicts}


def by_id(dicts):
    return {d["image_id"]: d for d in dicts}


def check_contract(prefix, splits, multi_label=False):
    """The dict contract, unique ids, and train/val/trainval/test consistency."""
    classes = list(MetadataCatalog.get(f"{prefix}_train").classes)
    for split, dicts in splits.items():
        assert dicts, split
        assert len(ids(dicts)) == len(dicts), f"duplicate image ids in {split}"
        for d in dicts:
            assert isinstance(d["file_name"], str) and isinstance(d["image_id"], str)
            if multi_label:
                assert d["label"] == -1 and all(
                    0 <= c < len(classes) for c in d["labels"] + d["ignore_labels"]
                )
            else:
                assert isinstance(d["label"], int) and 0 <= d["label"] < len(classes)
                assert d["class_name"] == classes[d["label"]]
    train, val, trainval, test = (ids(splits[s]) for s in SPLITS)
    assert not train & val and train | val == trainval
    assert not trainval & test
    assert ALL_SPLITS == SPLITS + ("all",)
    whole = DatasetCatalog.get(f"{prefix}_all")
    assert len(whole) == len(trainval) + len(test) and ids(whole) == trainval | test
    return classes


def counts(dicts):
    out = {}
    for d in dicts:
        out[d["label"]] = out.get(d["label"], 0) + 1
    return out


# ----------------------------------------------------------------------------------------------
# Registration and metadata of every set
# ----------------------------------------------------------------------------------------------
EXPECTED_METRIC = {
    "aircraft": "mean_per_class",
    "pets": "mean_per_class",
    "caltech101": "mean_per_class",
    "flowers102": "mean_per_class",
    "voc2007_cls": "map11",
}


def test_every_set_is_registered_at_import_with_its_metadata():
    names = set(DatasetCatalog.list())
    assert {
        "eurosat",
        "cropdisease",
        "chestx",
        "isic",
        "dtd",
        "omniglot",
        "resisc45",
        "svhn",
        "deepweeds",
        "kaokore",
        "sketch",
        "flowers102",
        "food101",
        "cifar10",
        "cifar100",
        "birdsnap",
        "sun397",
        "cars",
        "aircraft",
        "voc2007_cls",
        "pets",
        "caltech101",
    } <= set(DOWNSTREAM_SETS)
    for key in DOWNSTREAM_SETS:
        for split in SPLITS:
            name = f"{key}_{split}"
            assert name in names
            meta = MetadataCatalog.get(name)
            assert meta.evaluator_type == "classification"
            assert meta.metric == EXPECTED_METRIC.get(key, "top1")
            assert meta.multi_label is (key == "voc2007_cls")
            assert meta.required_paths[0] == meta.image_root + "/"
            assert all(p.startswith(meta.image_root) for p in meta.required_paths)
            assert meta.layout and "\n" not in meta.layout and meta.split_rule


@pytest.mark.parametrize("key", sorted(DOWNSTREAM_SETS))
def test_missing_folder_is_reported_when_used_not_when_registered(key, tmp_path):
    prefix = register(key, tmp_path / "empty", tag="missing")  # registering reads nothing
    meta = MetadataCatalog.get(f"{prefix}_train")
    for split in ("train", "test"):
        for call in (check_dataset_layout, DatasetCatalog.get):
            with pytest.raises(DatasetLayoutError) as err:
                call(f"{prefix}_{split}")
            msg = str(err.value)
            assert (
                meta.image_root + "/" in msg and meta.layout in msg and "datasets/README.md" in msg
            )
            assert f"{prefix}_{split}" in msg
    if isinstance(meta.classes, LazyClassList):
        with pytest.raises(DatasetLayoutError, match="is missing"):
            len(meta.classes)


# ----------------------------------------------------------------------------------------------
# Sets without an official split: generated 20% test, then 20% val
# ----------------------------------------------------------------------------------------------
def test_eurosat_generated_splits_are_stratified_and_deterministic(tmp_path):
    for cls in EUROSAT_CLASSES:
        for i in range(1, 6):
            img(tmp_path / "eurosat" / "2750" / cls / f"{cls}_{i}.jpg")
    prefix = register("eurosat", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == list(EUROSAT_CLASSES)
    every = by_id(splits["trainval"] + splits["test"])
    assert (
        every["Forest/Forest_3.jpg"]["label"] == 1 and every["SeaLake/SeaLake_5.jpg"]["label"] == 9
    )
    # 5 per class: 1 test, 4 trainval -> 1 val, 3 train
    assert [len(splits[s]) for s in SPLITS] == [30, 10, 40, 10]
    assert set(counts(splits["test"]).values()) == {1} and set(counts(splits["val"]).values()) == {
        1
    }
    # pinned by the documented rule (seed 0; salt "test" for the test split, "val" for val)
    pinned = {
        s: sorted(d["image_id"] for d in splits[s] if d["label"] in (1, 9)) for s in ("test", "val")
    }
    assert pinned == {
        "test": ["Forest/Forest_3.jpg", "SeaLake/SeaLake_4.jpg"],
        "val": ["Forest/Forest_5.jpg", "SeaLake/SeaLake_5.jpg"],
    }
    # determinism: a second registration (other name) of the same files gives the same splits
    again = load(register("eurosat", tmp_path, tag="again"))
    assert all(ids(again[s]) == ids(splits[s]) for s in SPLITS)
    assert MetadataCatalog.get(f"{prefix}_test").split_rule.startswith(
        "generated: 20% of each class"
    )


def test_cropdisease_reads_dataset_train_only(tmp_path):
    classes = ["Apple___Apple_scab", "Corn_(maize)___Common_rust_", "Tomato___healthy"]
    for cls in classes[::-1]:
        for i in range(5):
            img(tmp_path / "CropDiseases" / "dataset" / "train" / cls / f"{i}.JPG")
    img(tmp_path / "CropDiseases" / "dataset" / "test" / classes[0] / "extra.JPG")
    prefix = register("cropdisease", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == classes
    assert len(splits["trainval"]) + len(splits["test"]) == 15
    assert all("/dataset/train/" in d["file_name"] for s in SPLITS for d in splits[s])


def test_cropdisease_islam_split_is_the_archives_train_and_test_folders(tmp_path):
    classes = ["Apple___Apple_scab", "Corn_(maize)___Common_rust_", "Tomato___healthy"]
    base = tmp_path / "CropDiseases" / "dataset"
    for cls in classes:
        for i in range(4):
            img(base / "train" / cls / f"{i}.JPG")
    for cls in classes[1:]:  # the test folder lacks the first class: the others keep their labels
        img(base / "test" / cls / "t0.JPG")
        img(base / "test" / cls / "t1.JPG")
    prefix = register("cropdisease", tmp_path)
    train, test = (
        DatasetCatalog.get(f"{prefix}_islam_train"),
        DatasetCatalog.get(f"{prefix}_islam_test"),
    )
    assert len(train) == 12 and all("/dataset/train/" in d["file_name"] for d in train)
    assert counts(test) == {1: 2, 2: 2} and all("/dataset/test/" in d["file_name"] for d in test)
    assert {d["class_name"] for d in test if d["label"] == 2} == {"Tomato___healthy"}
    assert ids(train).isdisjoint(ids(test))  # same file names in both folders: distinct ids
    assert (
        MetadataCatalog.get(f"{prefix}_islam_test").split_rule
        == "Islam et al.'s: the archive's 'test' split"
    )
    # the generated splits still read dataset/train only
    assert all("/dataset/train/" in d["file_name"] for d in DatasetCatalog.get(f"{prefix}_test"))
    # a test class the training folders do not have
    img(base / "test" / "Unknown___class" / "x.JPG")
    with pytest.raises(DatasetLayoutError, match="Unknown___class"):
        DatasetCatalog.get(f"{prefix}_islam_test")


def test_cropdisease_islam_test_needs_the_test_folder(tmp_path):
    for cls in ("a", "b"):
        img(tmp_path / "CropDiseases" / "dataset" / "train" / cls / "0.JPG")
    prefix = register("cropdisease", tmp_path)
    check_dataset_layout(f"{prefix}_islam_train")
    with pytest.raises(DatasetLayoutError, match="dataset/test"):
        check_dataset_layout(f"{prefix}_islam_test")


def test_chestx_keeps_the_cd_fsl_single_label_subset(tmp_path):
    root = tmp_path / "ChestX"
    rows, expected = [], {}
    n = 0
    for label, finding in enumerate(CHESTX_CLASSES):
        for _ in range(3):
            name = f"{n:08d}_000.png"
            rows.append(f"{name},{finding},0,{n},58,M,PA,2682,2749,0.143,0.143")
            expected[name] = label
            n += 1
    for finding in ("No Finding", "Pneumonia", "Mass|Nodule", "Hernia"):
        rows.append(f"{n:08d}_000.png,{finding},0,{n},58,M,PA,2682,2749,0.143,0.143")
        n += 1
    header = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View "
        "Position,OriginalImage[Width,Height],,OriginalImagePixelSpacing[x,y],"
    )
    write(root / "Data_Entry_2017.csv", header + "\n" + "\n".join(rows) + "\n")
    for i in range(n):
        img(root / "images" / f"{i:08d}_000.png", value=i, mode="L")
    prefix = register("chestx", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == list(CHESTX_CLASSES)
    every = by_id(splits["trainval"] + splits["test"])
    assert {k: d["label"] for k, d in every.items()} == expected  # exclusions and labels
    image = read_classification_image(every["00000006_000.png"])
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (6, 6, 6)  # grayscale -> RGB


def test_isic_one_hot_csv_and_malformed_row(tmp_path):
    root = tmp_path / "ISIC"
    lines = ["image," + ",".join(ISIC_CLASSES)]
    for label in range(7):
        for j in range(3):
            hot = ",".join("1.0" if c == label else "0.0" for c in range(7))
            lines.append(f"ISIC_{label * 10 + j:07d},{hot}")
            img(root / "ISIC2018_Task3_Training_Input" / f"ISIC_{label * 10 + j:07d}.jpg")
    csv_file = write(
        root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv",
        "\n".join(lines) + "\n",
    )
    prefix = register("isic", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == list(ISIC_CLASSES)
    every = by_id(splits["trainval"] + splits["test"])
    assert every["ISIC_0000041"]["label"] == 4 and every["ISIC_0000041"]["file_name"].endswith(
        "ISIC2018_Task3_Training_Input/ISIC_0000041.jpg"
    )
    lines[3] = "ISIC_0000002,1.0,1.0,0.0,0.0,0.0,0.0,0.0"
    write(csv_file, "\n".join(lines) + "\n")
    with pytest.raises(
        DatasetLayoutError, match=r"GroundTruth\.csv:4: expected exactly one class column"
    ):
        DatasetCatalog.get(f"{prefix}_train")


def test_omniglot_evaluation_and_all_alphabets(tmp_path):
    root = tmp_path / "omniglot-py"
    for subset, alphabets in (
        ("images_evaluation", ("Angelic", "Kannada")),
        ("images_background", ("Greek",)),
    ):
        for alphabet in alphabets:
            for c in (1, 2):
                for drawer in range(1, 6):
                    img(
                        root / subset / alphabet / f"character{c:02d}" / f"0{c}09_{drawer:02d}.png",
                        mode="1",
                    )
    prefix = register("omniglot", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == [
        "Angelic/character01",
        "Angelic/character02",
        "Kannada/character01",
        "Kannada/character02",
    ]
    assert [len(splits[s]) for s in SPLITS] == [12, 4, 16, 4]
    assert read_classification_image(splits["test"][0]).mode == "RGB"  # 1-bit PNG -> RGB
    everything = load(register("omniglot_all", tmp_path))
    classes = check_contract(f"t_omniglot_all_{tmp_path.name}", everything)
    assert len(classes) == 6 and classes[2] == "Greek/character01"


def test_resisc45_and_sketch_class_folders(tmp_path):
    for i in range(5):
        for cls in ("airplane", "baseball_diamond", "wetland"):
            img(tmp_path / "NWPU-RESISC45" / cls / f"{cls}_{i:03d}.jpg")
        for wnid in ("n01440764", "n01443537"):
            img(tmp_path / "sketch" / wnid / f"sketch_{i}.JPEG")
    prefix = register("resisc45", tmp_path)
    assert check_contract(prefix, load(prefix)) == ["airplane", "baseball_diamond", "wetland"]
    prefix = register("sketch", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == ["n01440764", "n01443537"]
    assert len(splits["test"]) == 2


def test_deepweeds_labels_csv(tmp_path):
    root = tmp_path / "DeepWeeds"
    lines = ["Filename,Label,Species"]
    for label, species in enumerate(DEEPWEEDS_CLASSES):
        for j in range(3):
            name = f"2017{label}{j}-000000-0.jpg"
            lines.append(f"{name},{label},{species}")
            img(root / "images" / name)
    write(root / "labels.csv", "\n".join(lines) + "\n")
    prefix = register("deepweeds", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == list(DEEPWEEDS_CLASSES)
    assert (
        by_id(splits["trainval"] + splits["test"])["201781-000000-0.jpg"]["class_name"]
        == "Negative"
    )
    assert len(splits["test"]) == 9


def test_caltech101_keeps_30_per_class_for_trainval_and_background_as_the_102nd_class(tmp_path):
    """ssl-transfer's linear.py and VISSL's split script: 102 classes, BACKGROUND_Google
    included."""
    base = tmp_path / "caltech101" / "101_ObjectCategories"
    for cls, n in (("Faces", 32), ("accordion", 31), ("ant", 33), ("BACKGROUND_Google", 31)):
        for i in range(1, n + 1):
            img(base / cls / f"image_{i:04d}.jpg")
    prefix = register("caltech101", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == [
        "BACKGROUND_Google",
        "Faces",
        "accordion",
        "ant",
    ]  # sorted folders
    assert counts(splits["trainval"]) == {0: 30, 1: 30, 2: 30, 3: 30}
    assert counts(splits["test"]) == {0: 1, 1: 2, 2: 1, 3: 3}
    assert counts(splits["val"]) == {0: 6, 1: 6, 2: 6, 3: 6}
    assert MetadataCatalog.get(f"{prefix}_test").metric == "mean_per_class"


# ----------------------------------------------------------------------------------------------
# Sets with official splits
# ----------------------------------------------------------------------------------------------
def _dtd(base):
    classes = ["banded", "blotchy", "zigzagged"]
    for split_file in ("train1", "val1", "test1"):
        write(base / "labels" / f"{split_file}.txt", "")
    text = {"train1": [], "val1": [], "test1": []}
    for cls in classes:
        for i in range(1, 7):
            img(base / "images" / cls / f"{cls}_{i:04d}.jpg")
            text[("train1", "val1", "test1")[(i - 1) // 2]].append(f"{cls}/{cls}_{i:04d}.jpg")
    for split_file, lines in text.items():
        write(base / "labels" / f"{split_file}.txt", "\n".join(lines) + "\n")
    return classes


def test_dtd_official_split_1_and_torchvision_layout(tmp_path):
    classes = _dtd(tmp_path / "official" / "dtd")
    prefix = register("dtd", tmp_path / "official")
    splits = load(prefix)
    assert check_contract(prefix, splits) == classes
    assert [len(splits[s]) for s in SPLITS] == [6, 6, 12, 6]
    assert by_id(splits["val"])["blotchy/blotchy_0003.jpg"]["label"] == 1
    assert MetadataCatalog.get(f"{prefix}_trainval").split_rule == "official 'train' + 'val' splits"

    _dtd(tmp_path / "tv" / "dtd" / "dtd")  # torchvision.datasets.DTD's root/dtd/dtd/
    prefix = register("dtd", tmp_path / "tv")
    assert MetadataCatalog.get(f"{prefix}_test").image_root.endswith("dtd/dtd")
    assert len(DatasetCatalog.get(f"{prefix}_test")) == 6

    (tmp_path / "official" / "dtd" / "labels" / "test1.txt").unlink()
    prefix = "t_dtd_official"
    with pytest.raises(DatasetLayoutError) as err:
        check_dataset_layout(f"{prefix}_test")
    assert "labels/test1.txt" in str(err.value) and "dtd/labels/{train,val,test}1.txt" in str(
        err.value
    )
    with pytest.raises(DatasetLayoutError, match="labels/test1.txt"):
        DatasetCatalog.get(f"{prefix}_test")
    check_dataset_layout(f"{prefix}_trainval")  # the other splits do not need it
    assert len(DatasetCatalog.get(f"{prefix}_trainval")) == 12


def test_kaokore_official_train_dev_test_and_missing_downloads(tmp_path):
    root = tmp_path / "kaokore"
    lines, n = ["image,set,gender,status"], 0
    for split in ("train", "train", "train", "dev", "test", "test"):
        for gender in (0, 1):
            for status in (0, 3):
                name = f"{n:08d}.jpg"
                lines.append(f"{name},{split},{gender},{status}")
                if n != 5:
                    img(root / "images_256" / name)
                n += 1
    write(root / "labels.csv", "\n".join(lines) + "\n")
    prefix = register("kaokore", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == list(KAOKORE_CLASSES)
    assert [len(splits[s]) for s in SPLITS] == [11, 4, 15, 8]  # 00000005.jpg did not download
    assert by_id(splits["train"])["00000003.jpg"]["label"] == 1 * 4 + 3
    assert by_id(splits["val"])["00000013.jpg"]["class_name"] == "male/commoner"


@pytest.mark.parametrize(
    "counts_, version",
    [
        ((4238, 533, 527), "1.0"),
        ((6568, 826, 821), "1.1"),
        ((6756, 845, 845), "1.2"),
        ((7405, 926, 926), "1.3"),
        ((5, 1, 1), None),
    ],
)
def test_kaokore_release_is_named_from_the_row_counts(tmp_path, caplog, counts_, version):
    from contrastive_det.data.datasets.downstream.readers import kaokore_version

    assert kaokore_version(dict(zip(("train", "dev", "test"), counts_))) == version
    root = tmp_path / "kaokore"
    lines, n = ["image,gender,status,set"], 0  # the release's own column order
    for split, count in zip(("train", "dev", "test"), counts_):
        for _ in range(count):
            lines.append(f"{n:08d}.jpg,{n % 2},{n % 4},{split}")
            n += 1
    write(root / "labels.csv", "\n".join(lines) + "\n")
    for i in range(counts_[0] + counts_[1] + counts_[2]):
        if i % 500 == 0 or i >= counts_[0]:  # a few training images downloaded
            img(root / "images_256" / f"{i:08d}.jpg")
    prefix = register("kaokore", tmp_path)
    with caplog.at_level("INFO", logger="contrastive_det"):
        DatasetCatalog.get(f"{prefix}_train")
    text = caplog.text
    if version == "1.1":
        assert "version 1.1" in text and "Islam et al." not in text
    else:
        named = f"version {version} of KaoKore" if version else "no released KaoKore version"
        assert named in text and "--dataset_version 1.1" in text
        assert "/".join(map(str, counts_)) in text


def test_flowers102_mat_files(tmp_path):
    root = tmp_path / "flowers-102"
    labels = [1, 2, 102, 1, 2, 102, 1, 2, 102, 1, 2, 102]
    for i in range(1, 13):
        img(root / "jpg" / f"image_{i:05d}.jpg")
    sio.savemat(root / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    sio.savemat(
        root / "setid.mat",
        {
            "trnid": np.array([[1, 2, 3]], dtype=np.uint16),
            "valid": np.array([[4, 5, 6]], dtype=np.uint16),
            "tstid": np.array([[7, 8, 9, 10, 11, 12]], dtype=np.uint16),
        },
    )
    prefix = register("flowers102", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == list(FLOWERS102_CLASSES)
    assert [len(splits[s]) for s in SPLITS] == [3, 3, 6, 6]
    assert by_id(splits["test"])["image_00009"]["label"] == 101
    assert by_id(splits["val"])["image_00005"]["class_name"] == "hard-leaved pocket orchid"
    labels[9] = 103  # a class number past the 102 classes names the image and the range
    sio.savemat(root / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    with pytest.raises(
        DatasetLayoutError,
        match=r"imagelabels.mat, label of image_00010: class 103 is outside 1..102",
    ):
        read_flowers102(str(root), "test", FLOWERS102_CLASSES)


def test_food101_meta_files(tmp_path):
    root = tmp_path / "food-101"
    classes = ["apple_pie", "baby_back_ribs", "waffles"]
    write(root / "meta" / "classes.txt", "\n".join(classes) + "\n")
    train, test = [], []
    for cls in classes:
        for i in range(7):
            img(root / "images" / cls / f"{1000 + i}.jpg")
            (train if i < 5 else test).append(f"{cls}/{1000 + i}")
    write(root / "meta" / "train.txt", "\n".join(train) + "\n")
    write(root / "meta" / "test.txt", "\n".join(test) + "\n")
    prefix = register("food101", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == classes
    assert [len(splits[s]) for s in SPLITS] == [12, 3, 15, 6]
    assert by_id(splits["test"])["waffles/1006"]["file_name"].endswith(
        "food-101/images/waffles/1006.jpg"
    )


def _cifar_rows(n, offset):
    rng = np.random.RandomState(offset)
    return rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)


def test_cifar10_pickles_and_pixels(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    batches = {}
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = _cifar_rows(10, i)
        batches[fname] = data
        with open(root / fname, "wb") as f:  # str keys, as the Python 2 pickles load with latin1
            pickle.dump(
                {
                    "batch_label": fname,
                    "labels": list(range(10)),
                    "data": data,
                    "filenames": [f"x{j}.png" for j in range(10)],
                },
                f,
                protocol=2,
            )
    with open(root / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": names, "num_cases_per_batch": 10, "num_vis": 3072}, f, protocol=2
        )
    prefix = register("cifar10", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == names
    assert [len(splits[s]) for s in SPLITS] == [40, 10, 50, 10]
    d = by_id(splits["test"])["test_batch/7"]
    assert d["label"] == 7 and d["array_index"] == 7 and d["file_name"].endswith("test_batch")
    clear_array_cache()
    expected = batches["test_batch"][7].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(read_classification_image(d)), expected)
    d3 = by_id(splits["trainval"])["data_batch_3/2"]
    assert np.array_equal(
        np.asarray(read_classification_image(d3)),
        batches["data_batch_3"][2].reshape(3, 32, 32).transpose(1, 2, 0),
    )
    with pytest.raises(ImageReadError, match=r"test_batch \(item 99\)"):
        read_classification_image(dict(d, array_index=99))


def test_cifar100_fine_labels_bytes_keys(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    fine = [f"class{i:02d}" for i in range(5)]
    data = {}
    for fname, n in (("train", 25), ("test", 10)):
        data[fname] = _cifar_rows(n, n)
        with open(
            root / fname, "wb"
        ) as f:  # bytes keys, as pickle.load(encoding="bytes") would show them
            pickle.dump(
                {
                    b"data": data[fname],
                    b"fine_labels": [i % 5 for i in range(n)],
                    b"coarse_labels": [0] * n,
                },
                f,
            )
    with open(root / "meta", "wb") as f:
        pickle.dump(
            {b"fine_label_names": [c.encode() for c in fine], b"coarse_label_names": [b"all"]}, f
        )
    prefix = register("cifar100", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == fine
    assert [len(splits[s]) for s in SPLITS] == [20, 5, 25, 10]
    d = by_id(splits["test"])["test/4"]
    assert d["label"] == 4
    assert np.array_equal(
        np.asarray(read_classification_image(d)),
        data["test"][4].reshape(3, 32, 32).transpose(1, 2, 0),
    )


def test_svhn_mat_files_label_10_is_zero_and_pixels(tmp_path):
    root = tmp_path / "svhn"
    root.mkdir()
    rng = np.random.RandomState(0)
    xs = {}
    for split, n in (("train", 20), ("test", 6)):
        xs[split] = rng.randint(0, 256, size=(32, 32, 3, n)).astype(np.uint8)
        y = np.array([[10 if i % 10 == 0 else i % 10] for i in range(n)], dtype=np.uint8)
        sio.savemat(root / f"{split}_32x32.mat", {"X": xs[split], "y": y})
    prefix = register("svhn", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == [str(i) for i in range(10)]
    assert [len(splits[s]) for s in SPLITS] == [10, 10, 20, 6]
    d = by_id(splits["trainval"])["train_32x32/10"]
    assert d["label"] == 0 and d["array_index"] == 10
    clear_array_cache()
    assert np.array_equal(np.asarray(read_classification_image(d)), xs["train"][:, :, :, 10])
    d = by_id(splits["test"])["test_32x32/3"]
    assert d["label"] == 3
    assert np.array_equal(np.asarray(read_classification_image(d)), xs["test"][:, :, :, 3])
    for bad in (0, 11):  # SVHN's y is 1..10 (10 is the digit 0)
        sio.savemat(
            root / "test_32x32.mat", {"X": xs["test"], "y": np.array([[1], [bad]], dtype=np.uint8)}
        )
        with pytest.raises(
            DatasetLayoutError, match=rf"test_32x32.mat: y\[1\]: class {bad} is outside 1..10"
        ):
            read_svhn(str(root), "test", [str(i) for i in range(10)])


def test_birdsnap_species_and_test_list(tmp_path):
    root = tmp_path / "birdsnap"
    species = [
        (3, "Acadian Flycatcher", "Empidonax virescens", "Acadian_Flycatcher"),
        (1, "Blue Jay", "Cyanocitta cristata", "Blue_Jay"),
        (2, "Zone-tailed Hawk", "Buteo albonotatus", "Zone-tailed_Hawk"),
    ]
    write(
        root / "species.txt",
        "id\tcommon\tscientific\tdir\n" + "".join("\t".join(map(str, s)) + "\n" for s in species),
    )
    test = []
    for _, _, _, folder in species:
        for i in range(6):
            img(root / "images" / folder / f"{i}.jpg")
            if i == 0:
                test.append(f"{folder}/{i}.jpg")
    test.append("Blue_Jay/404.jpg")  # listed but not downloaded
    write(root / "test_images.txt", "path\n" + "\n".join(test) + "\n")
    prefix = register("birdsnap", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == [
        "Blue Jay",
        "Zone-tailed Hawk",
        "Acadian Flycatcher",
    ]  # by id
    assert [len(splits[s]) for s in SPLITS] == [12, 3, 15, 3]
    assert by_id(splits["test"])["Acadian_Flycatcher/0.jpg"]["label"] == 2


def test_sun397_partition_01(tmp_path):
    root = tmp_path / "SUN397"
    write(root / "ClassName.txt", "/a/abbey\n/b/bakery/shop\n/c/castle\n")
    train, test = [], []
    for cls in ("a/abbey", "b/bakery/shop", "c/castle"):
        for i in range(6):
            img(root / cls / f"sun_{cls[0]}{i}.jpg")
            (test if i >= 4 else train).append(f"/{cls}/sun_{cls[0]}{i}.jpg")
    write(root / "Partitions" / "Training_01.txt", "\n".join(train) + "\n")
    write(root / "Partitions" / "Testing_01.txt", "\n".join(test) + "\n")
    prefix = register("sun397", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == ["abbey", "bakery/shop", "castle"]
    assert [len(splits[s]) for s in SPLITS] == [9, 3, 12, 6]
    d = by_id(splits["test"])["b/bakery/shop/sun_b5.jpg"]
    assert d["label"] == 1 and d["file_name"].endswith("SUN397/b/bakery/shop/sun_b5.jpg")


def _annotations(rows):
    ann = np.zeros(
        (1, len(rows)),
        dtype=[(k, "O") for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")],
    )
    for i, (cls, fname) in enumerate(rows):
        ann[0, i] = (
            np.array([[1]]),
            np.array([[2]]),
            np.array([[3]]),
            np.array([[4]]),
            np.array([[cls]], dtype=np.uint8),
            np.array([fname]),
        )
    return ann


def test_stanford_cars_torchvision_files(tmp_path):
    root = tmp_path / "stanford_cars"
    names = np.empty((1, 3), dtype=object)
    names[0, :] = [
        "AM General Hummer SUV 2000",
        "Acura RL Sedan 2012",
        "smart fortwo Convertible 2012",
    ]
    (root / "devkit").mkdir(parents=True)
    sio.savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    train = [(1 + i % 3, f"{i + 1:05d}.jpg") for i in range(15)]
    test = [(1 + i % 3, f"{i + 1:05d}.jpg") for i in range(6)]
    for _cls, fname in train:
        img(root / "cars_train" / fname)
    for _cls, fname in test:
        img(root / "cars_test" / fname)
    sio.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": _annotations(train)})
    sio.savemat(root / "cars_test_annos_withlabels.mat", {"annotations": _annotations(test)})
    prefix = register("cars", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == list(names[0])
    assert [len(splits[s]) for s in SPLITS] == [12, 3, 15, 6]
    d = by_id(splits["test"])["cars_test/00005.jpg"]
    assert d["label"] == 1 and d["file_name"].endswith("stanford_cars/cars_test/00005.jpg")
    sio.savemat(
        root / "cars_test_annos_withlabels.mat",
        {"annotations": _annotations(test[:2] + [(4, "00003.jpg")])},
    )
    with pytest.raises(
        DatasetLayoutError, match=r"annotation 2 \(00003.jpg\): class 4 is outside 1..3"
    ):
        read_cars(str(root), "test", list(names[0]))


def test_fgvc_aircraft_variants(tmp_path):
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "Cessna 172", "F/A-18"]
    write(data / "variants.txt", "\n".join(variants) + "\n")
    lines = {"train": [], "val": [], "test": []}
    n = 1000000
    for v in variants:
        for split in ("train", "train", "val", "test", "test"):
            img(data / "images" / f"{n}.jpg")
            lines[split].append(f"{n} {v}")
            n += 1
    for split, text in lines.items():
        write(data / f"images_variant_{split}.txt", "\n".join(text) + "\n")
    prefix = register("aircraft", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == variants
    assert [len(splits[s]) for s in SPLITS] == [6, 3, 9, 6]
    assert by_id(splits["test"])["1000014"]["class_name"] == "F/A-18"
    assert by_id(splits["train"])["1000005"]["label"] == 1


def _voc(base, ids_by_split, positives, difficult):
    for split, image_ids in ids_by_split.items():
        for image_id in image_ids:
            img(base / "JPEGImages" / f"{image_id}.jpg")
        for c, cls in enumerate(VOC_CLASSES):
            rows = []
            for image_id in image_ids:
                flag = (
                    1
                    if c in positives.get(image_id, ())
                    else (0 if c in difficult.get(image_id, ()) else -1)
                )
                rows.append(f"{image_id} {flag:2d}")
            write(base / "ImageSets" / "Main" / f"{cls}_{split}.txt", "\n".join(rows) + "\n")


def test_voc2007_multi_label_from_class_image_sets(tmp_path):
    ids_by_split = {
        "train": ["000012", "000017"],
        "val": ["000005", "000007"],
        "test": ["000001", "000002", "000004"],
    }
    positives = {
        "000005": [8],
        "000007": [6],
        "000012": [6],
        "000017": [12, 14],
        "000001": [11, 14],
        "000002": [18],
        "000004": [],
    }
    difficult = {"000005": [8, 4], "000004": [6]}
    difficult["000005"] = [4]
    _voc(tmp_path / "VOCdevkit" / "VOC2007", ids_by_split, positives, difficult)
    prefix = register("voc2007_cls", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits, multi_label=True) == list(VOC_CLASSES)
    assert [len(splits[s]) for s in SPLITS] == [2, 2, 4, 3]
    d = by_id(splits["trainval"])["000017"]
    assert d["labels"] == [12, 14] and d["ignore_labels"] == [] and d["label"] == -1
    assert by_id(splits["val"])["000005"]["ignore_labels"] == [4]
    assert by_id(splits["test"])["000004"] == dict(
        by_id(splits["test"])["000004"], labels=[], ignore_labels=[6]
    )
    assert MetadataCatalog.get(f"{prefix}_test").metric == "map11"
    # the detectron2-style VOC2007/ folder (no VOCdevkit/) is found too
    _voc(tmp_path / "plain" / "VOC2007", {"test": ["000001", "000002"]}, positives, difficult)
    plain = register("voc2007_cls", tmp_path / "plain")
    assert ids(DatasetCatalog.get(f"{plain}_test")) == {"000001", "000002"}
    with pytest.raises(DatasetLayoutError, match="aeroplane_train.txt"):
        DatasetCatalog.get(f"{plain}_train")


def test_pets_trainval_test_and_breed_names(tmp_path):
    root = tmp_path / "oxford-iiit-pet"
    breeds = [
        ("Abyssinian", 1, 1, 1),
        ("american_bulldog", 2, 2, 1),
        ("yorkshire_terrier", 3, 2, 25),
    ]
    trainval, test = ["#Image CLASS-ID SPECIES BREED ID"], []
    for name, cid, species, bid in breeds:
        for i in range(1, 8):
            img(root / "images" / f"{name}_{i}.jpg")
            (trainval if i <= 5 else test).append(f"{name}_{i} {cid} {species} {bid}")
    write(root / "annotations" / "trainval.txt", "\n".join(trainval) + "\n")
    write(root / "annotations" / "test.txt", "\n".join(test) + "\n")
    prefix = register("pets", tmp_path)
    splits = load(prefix)
    assert check_contract(prefix, splits) == ["Abyssinian", "American Bulldog", "Yorkshire Terrier"]
    assert [len(splits[s]) for s in SPLITS] == [12, 3, 15, 6]
    assert by_id(splits["test"])["yorkshire_terrier_7"]["label"] == 2
    assert MetadataCatalog.get(f"{prefix}_val").split_rule.startswith(
        "generated: 20% of each class of pets_trainval"
    )


# ----------------------------------------------------------------------------------------------
# The split rule, class lists, malformed content, the image reader
# ----------------------------------------------------------------------------------------------
def test_stratified_holdout_rule_is_pinned_and_per_class():
    from contrastive_det.data.datasets.downstream import (
        fraction_held_out,
        keep_per_class_held_out,
        stratified_holdout,
    )

    cats = [{"image_id": f"img{i:02d}", "label": 0, "class_name": "cat"} for i in range(10)]
    dogs = [{"image_id": f"dog{i}", "label": 1, "class_name": "dog"} for i in range(3)]
    kept, held = stratified_holdout(dogs[::-1] + cats, fraction_held_out(0.2), salt="val")
    # documented rule (sha256 of "0/val/<class>" seeds the class's permutation): pinned values
    assert [d["image_id"] for d in held] == ["img07", "img09", "dog2"]
    assert [
        d["image_id"]
        for d in stratified_holdout(cats + dogs, fraction_held_out(0.2), salt="test")[1]
    ] == ["img05", "img08", "dog2"]
    assert len(kept) == 10 and [d["image_id"] for d in kept][:3] == ["img00", "img01", "img02"]
    # a class's split does not depend on the other classes, nor on its label index
    alone = stratified_holdout(
        [dict(d, label=5) for d in cats], fraction_held_out(0.2), salt="val"
    )[1]
    assert [d["image_id"] for d in alone] == ["img07", "img09"]
    assert [fraction_held_out(0.2)(n) for n in (0, 1, 2, 3, 7, 8, 100)] == [0, 0, 1, 1, 1, 2, 20]
    assert [keep_per_class_held_out(30)(n) for n in (1, 2, 30, 31, 40)] == [0, 1, 1, 1, 10]
    with pytest.raises(ValueError, match="single-label"):
        stratified_holdout([{"image_id": "a", "label": -1, "labels": [1]}], fraction_held_out(0.2))


def test_lazy_class_list_reads_once_and_compares_by_source(tmp_path):
    from contrastive_det.data.classification import class_folder_names

    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    lazy = LazyClassList(class_folder_names, str(tmp_path))
    assert "read on first use" in repr(lazy)
    # same source: equal without reading
    assert lazy == LazyClassList(class_folder_names, str(tmp_path))
    assert lazy._names is None
    assert len(lazy) == 2 and list(lazy) == ["a", "b"] and lazy[1] == "b" and lazy == ["a", "b"]
    (tmp_path / "c").mkdir()
    assert lazy.tolist() == ["a", "b"]  # cached
    assert lazy != LazyClassList(class_folder_names, str(tmp_path / "a"))


def test_malformed_split_files_name_file_and_line(tmp_path):
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    write(data / "variants.txt", "707-320\nA300B4\n")
    img(data / "images" / "1.jpg")
    for split in ("train", "val", "test"):
        write(data / f"images_variant_{split}.txt", "1 707-320\n")
    write(data / "images_variant_val.txt", "1 707-320\n\n1 Boeing 747\n")
    prefix = register("aircraft", tmp_path)
    assert len(DatasetCatalog.get(f"{prefix}_train")) == 1
    with pytest.raises(DatasetLayoutError) as err:
        DatasetCatalog.get(f"{prefix}_val")
    msg = str(err.value)
    assert "images_variant_val.txt:3: variant 'Boeing 747' is not in data/variants.txt" in msg
    assert f"Dataset '{prefix}_val'" in msg and "fgvc-aircraft-2013b/data/images/<id>.jpg" in msg

    for cls in EUROSAT_CLASSES[:-1]:  # "SeaLake" missing
        img(tmp_path / "eurosat" / "2750" / cls / f"{cls}_1.jpg")
    prefix = register("eurosat", tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"the class folder .*2750/SeaLake/ is missing"):
        DatasetCatalog.get(f"{prefix}_test")


def test_read_classification_image_names_bad_files(tmp_path):
    good = img(tmp_path / "a.png", value=7, mode="P")
    assert read_classification_image({"file_name": str(good)}).mode == "RGB"
    rgba = tmp_path / "b.png"
    Image.new("RGBA", (3, 2), (10, 20, 30, 0)).save(rgba)
    image = read_classification_image({"file_name": str(rgba)})
    assert image.size == (3, 2) and image.getpixel((0, 0)) == (10, 20, 30)
    deep = tmp_path / "c.png"
    Image.fromarray(np.full((2, 2), 0x1234, dtype=np.uint16)).save(deep)
    assert read_classification_image({"file_name": str(deep)}).getpixel((0, 0)) == (
        0x12,
        0x12,
        0x12,
    )
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        read_classification_image({"file_name": str(bad)})
    with pytest.raises(ImageReadError, match="gone.png"):
        read_classification_image({"file_name": str(tmp_path / "gone.png")})
    with pytest.raises(ImageReadError, match=r"bad.jpg \(item 0\)"):
        read_classification_image({"file_name": str(bad), "array_index": 0})


def test_array_containers_are_decoded_once_per_process(tmp_path):
    from contrastive_det.data.classification import _array_container

    x = np.arange(32 * 32 * 3 * 2, dtype=np.uint32).astype(np.uint8).reshape(32, 32, 3, 2)
    path = tmp_path / "test_32x32.mat"
    sio.savemat(path, {"X": x, "y": np.array([[1], [2]], dtype=np.uint8)})
    clear_array_cache()
    for i in (0, 1, 0, 1):
        assert np.array_equal(
            np.asarray(read_classification_image({"file_name": str(path), "array_index": i})),
            x[:, :, :, i],
        )
    info = _array_container.cache_info()
    assert info.misses == 1 and info.hits == 3


def test_preflight_scan_checks_array_containers(tmp_path):
    from contrastive_det.data.checks import UnreadableImagesError, scan_images

    x = np.zeros((32, 32, 3, 3), dtype=np.uint8)
    good = tmp_path / "train_32x32.mat"
    sio.savemat(good, {"X": x, "y": np.array([[1], [2], [3]], dtype=np.uint8)})
    bad = tmp_path / "data_batch_1"
    bad.write_bytes(b"not a pickle")
    clear_array_cache()
    items = [{"file_name": str(good), "array_index": i} for i in range(3)]
    assert scan_images(items, progress=False) == 1  # one container, not an "image"
    with pytest.raises(UnreadableImagesError) as err:
        scan_images(
            items
            + [
                {"file_name": str(good), "array_index": 3},
                {"file_name": str(bad), "array_index": 0},
            ],
            progress=False,
        )
    assert [f for f, _ in err.value.bad] == [str(good), str(bad)]
    assert "IndexError" in err.value.bad[0][1]


# ----------------------------------------------------------------------------------------------
# Islam et al.'s own 70/30 splits
# ----------------------------------------------------------------------------------------------
def reference_partial_split(labels, fraction=0.7, seed=0):
    """A transcription of Islam et al.'s create_partial_data on the {label: [dataset indices]} their
    loader builds by walking the dataset in index order (ours: written here from their
    description)."""
    data_dict = {}
    for i, label in enumerate(labels):
        data_dict.setdefault(label, []).append(i)
    random_state = np.random.RandomState(seed)
    train, test = [], []
    for k in data_dict:
        indices = data_dict[k]
        n_train = int(fraction * len(indices))
        random_state.shuffle(indices)
        train += indices[:n_train]
        test += indices[n_train:]
    return sorted(train), sorted(test)


def test_islam_partial_split_draws_what_their_code_draws():
    from contrastive_det.data.datasets.downstream.splits import islam_partial_split

    rng = np.random.default_rng(3)
    labels = [
        int(x) for x in rng.integers(0, 5, size=137)
    ]  # CSV-like: labels interleaved, class 3 first
    labels[0] = 3
    dicts = [
        {"image_id": f"img{i:03d}", "label": y, "file_name": f"/x/{i}.jpg"}
        for i, y in enumerate(labels)
    ]
    train, test = islam_partial_split(dicts)
    ref_train, ref_test = reference_partial_split(labels)
    assert sorted(int(d["image_id"][3:]) for d in train) == ref_train
    assert sorted(int(d["image_id"][3:]) for d in test) == ref_test
    for c in range(5):  # floor(0.7 n) per class
        n = labels.count(c)
        assert sum(d["label"] == c for d in train) == int(0.7 * n)
    # the order of the classes matters (one generator for all): sorted labels give another split
    resorted = sorted(dicts, key=lambda d: (d["label"], d["image_id"]))
    assert {d["image_id"] for d in islam_partial_split(resorted)[0]} != {
        d["image_id"] for d in train
    }


def test_eurosat_registers_islams_splits(tmp_path):
    for c, cls in enumerate(EUROSAT_CLASSES):
        for i in range(10 + c):
            img(tmp_path / "eurosat" / "2750" / cls / f"{cls}_{i}.jpg")
    prefix = register("eurosat", tmp_path, tag="islam")
    train, test = (
        DatasetCatalog.get(f"{prefix}_islam_train"),
        DatasetCatalog.get(f"{prefix}_islam_test"),
    )
    assert counts(train) == {c: int(0.7 * (10 + c)) for c in range(10)}
    assert ids(train).isdisjoint(ids(test)) and len(train) + len(test) == sum(
        10 + c for c in range(10)
    )
    ordered = [
        int(d["label"]) for d in sorted(train + test, key=lambda d: (d["label"], d["file_name"]))
    ]
    # the reference walks sorted class folders and files
    ref_train, _ = reference_partial_split(ordered)
    walk = sorted(train + test, key=lambda d: (d["label"], d["file_name"]))
    assert {walk[i]["image_id"] for i in ref_train} == ids(train)
    assert "Islam et al.'s" in MetadataCatalog.get(f"{prefix}_islam_train").split_rule

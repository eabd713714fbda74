"""
The semantic segmentation sets in their real on-disk layouts (tiny fake trees): VOC2012 splits,
train_aug from SegmentationClassAug or SBD, Cityscapes' labelTrainIds, ADE20K's raw annotations,
and a user's own set declared in YAML (contrastive_det/data/datasets/sem_seg_sets.py).
"""

import json
import os

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

from contrastive_det.config import get_cfg
from contrastive_det.data import (
    DatasetLayoutError,
    check_dataset_layout,
    register_datasets_from_config,
    register_sem_seg,
)
from contrastive_det.data.datasets import sem_seg_sets
from contrastive_det.data.sem_seg_labels import read_sem_seg_label
from contrastive_det.data.datasets.sem_seg_sets import VOC_SEM_SEG_CLASSES, register_sem_seg_sets

H, W = 6, 8


@pytest.fixture
def d2root(tmp_path, monkeypatch):
    """``$DETECTRON2_DATASETS`` = an empty tmp folder; afterwards the built-in names point back at
    the real root."""
    root = tmp_path / "d2"
    root.mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    yield root
    monkeypatch.undo()
    register_sem_seg_sets()


@pytest.fixture
def warnings_logged(monkeypatch):
    logged = []
    monkeypatch.setattr(sem_seg_sets.logger, "warning", logged.append)
    return logged


def voc_palette():
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def label_map(value):
    label = np.zeros((H, W), np.uint8)
    label[1:4, 2:6] = value
    label[-1, :] = 255
    return label


def write_palette_png(path, label):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(np.asarray(label, np.uint8), mode="P")
    image.putpalette(voc_palette())
    image.save(path)


def write_gray_png(path, label):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(label, np.uint8), mode="L").save(path)


def write_image(path, fmt="JPEG"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (W, H), (10, 20, 30)).save(path, fmt)


def write_sbd_mat(path, label):
    """SBD's cls/<id>.mat: struct GTcls with Boundaries (cell of sparse maps), Segmentation,
    CategoriesPresent."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix(np.zeros((H, W), bool))
    present = np.array([[v] for v in np.unique(label) if 0 < v < 255], dtype=np.uint8)
    scipy.io.savemat(
        path,
        {
            "GTcls": {
                "Boundaries": boundaries,
                "Segmentation": np.asarray(label, np.uint8),
                "CategoriesPresent": present,
            }
        },
    )


def write_list(path, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(f"{i}\n" for i in ids))


def make_voc(root, train, val, extra_images=()):
    """VOC2012 with segmentation lists train/val/trainval, JPEGs and palette PNGs (label = 1 +
    position)."""
    voc = root / "VOC2012"
    for k, i in enumerate(list(train) + list(val)):
        write_image(str(voc / "JPEGImages" / f"{i}.jpg"))
        write_palette_png(str(voc / "SegmentationClass" / f"{i}.png"), label_map(k + 1))
    for i in extra_images:
        write_image(str(voc / "JPEGImages" / f"{i}.jpg"))
    lists = voc / "ImageSets" / "Segmentation"
    write_list(str(lists / "train.txt"), train)
    write_list(str(lists / "val.txt"), val)
    write_list(str(lists / "trainval.txt"), list(train) + list(val))
    return voc


# ----------------------------------------------------------------------------------------------
# VOC2012 splits
# ----------------------------------------------------------------------------------------------
def test_voc_2012_splits_metadata_and_dicts(d2root, warnings_logged):
    voc = make_voc(d2root, train=["2007_000032", "2007_000005"], val=["2007_000033"])
    names = register_sem_seg_sets()
    assert names[:4] == [
        "voc_2012_sem_seg_train",
        "voc_2012_sem_seg_val",
        "voc_2012_sem_seg_trainval",
        "voc_2012_sem_seg_train_aug",
    ]
    assert set(names) >= {
        "cityscapes_sem_seg_train",
        "cityscapes_sem_seg_val",
        "ade20k_2016_sem_seg_train",
        "ade20k_2016_sem_seg_val",
    }
    meta = MetadataCatalog.get("voc_2012_sem_seg_train")
    assert list(meta.stuff_classes) == list(VOC_SEM_SEG_CLASSES) and len(meta.stuff_classes) == 21
    assert (
        meta.stuff_classes[:3] == ["background", "aeroplane", "bicycle"]
        and meta.stuff_classes[-1] == "tvmonitor"
    )
    assert meta.stuff_classes[15] == "person"
    assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
    assert meta.required_paths == [
        f"{voc}/JPEGImages/",
        f"{voc}/SegmentationClass/",
        f"{voc}/ImageSets/Segmentation/train.txt",
    ]
    assert (
        "ImageSets/Segmentation/train.txt" in meta.layout
        and "SegmentationClass/<id>.png" in meta.layout
    )

    train = DatasetCatalog.get("voc_2012_sem_seg_train")
    assert [d["image_id"] for d in train] == ["2007_000005", "2007_000032"]  # sorted
    assert train[0]["file_name"] == f"{voc}/JPEGImages/2007_000005.jpg"
    assert train[0]["sem_seg_file_name"] == f"{voc}/SegmentationClass/2007_000005.png"
    assert (train[0]["height"], train[0]["width"]) == (H, W)
    # palette indices, not luminance: 2007_000005 was written with class 2 (bicycle)
    assert set(np.unique(read_sem_seg_label(train[0])).tolist()) == {0, 2, 255}
    assert len(DatasetCatalog.get("voc_2012_sem_seg_val")) == 1
    assert [d["image_id"] for d in DatasetCatalog.get("voc_2012_sem_seg_trainval")] == [
        "2007_000005",
        "2007_000032",
        "2007_000033",
    ]
    # built-in root, counts far from the official ones: one warning per set
    assert any(
        "voc_2012_sem_seg_train' has 2 images; the official split has 1,464" in w
        for w in warnings_logged
    )
    assert any("1,449" in w for w in warnings_logged) and any("2,913" in w for w in warnings_logged)


def test_voc_count_warning_only_for_the_builtin_root(d2root, tmp_path, warnings_logged):
    voc = make_voc(tmp_path / "elsewhere", train=["a", "b"], val=["c"])
    sem_seg_sets.register_voc_2012_sem_seg(str(voc), str(tmp_path / "noSBD"))
    assert len(DatasetCatalog.get("voc_2012_sem_seg_train")) == 2
    assert warnings_logged == []


def test_voc_missing_label_names_the_file(d2root):
    voc = make_voc(d2root, train=["a", "b"], val=["c"])
    os.remove(voc / "SegmentationClass" / "b.png")
    register_sem_seg_sets()
    with pytest.raises(
        DatasetLayoutError, match=r"voc_2012_sem_seg_train.*SegmentationClass/b\.png"
    ):
        DatasetCatalog.get("voc_2012_sem_seg_train")


# ----------------------------------------------------------------------------------------------
# VOC2012 train_aug
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sbd_sub", ["", "dataset", "benchmark_RELEASE/dataset"])
def test_train_aug_from_sbd_release(d2root, sbd_sub, warnings_logged):
    # VOC: train a, b; val c, v. SBD: train x, c (a VOC val id), val y, a (also has a VOC PNG)
    voc = make_voc(d2root, train=["2007_000001", "2007_000002"], val=["2007_000003", "2007_000009"])
    sbd = d2root / "SBD" / sbd_sub if sbd_sub else d2root / "SBD"
    write_list(str(sbd / "train.txt"), ["2008_000001", "2007_000003"])
    write_list(str(sbd / "val.txt"), ["2008_000002", "2007_000001"])
    for i in ("2008_000001", "2008_000002", "2007_000003", "2007_000001"):
        write_sbd_mat(str(sbd / "cls" / f"{i}.mat"), label_map(17))
        write_image(str(sbd / "img" / f"{i}.jpg"))
    # in VOC's JPEGImages; 2008_000002 only in SBD img/
    write_image(str(voc / "JPEGImages" / "2008_000001.jpg"))
    register_sem_seg_sets()

    meta = MetadataCatalog.get("voc_2012_sem_seg_train_aug")
    assert (
        meta.sem_seg_root == str(sbd / "cls")
        and meta.evaluator_type == "sem_seg"
        and len(meta.stuff_classes) == 21
    )
    assert (
        f"{sbd}/cls/" in meta.required_paths
        and f"{voc}/ImageSets/Segmentation/val.txt" in meta.required_paths
    )
    check_dataset_layout("voc_2012_sem_seg_train_aug")
    dicts = DatasetCatalog.get("voc_2012_sem_seg_train_aug")
    by_id = {d["image_id"]: d for d in dicts}
    # (SBD train | SBD val | VOC train) - VOC val, sorted
    assert [d["image_id"] for d in dicts] == [
        "2007_000001",
        "2007_000002",
        "2008_000001",
        "2008_000002",
    ]
    # VOC preferred
    assert by_id["2007_000001"]["sem_seg_file_name"] == f"{voc}/SegmentationClass/2007_000001.png"
    assert by_id["2008_000001"]["sem_seg_file_name"] == f"{sbd}/cls/2008_000001.mat"
    assert by_id["2008_000001"]["file_name"] == f"{voc}/JPEGImages/2008_000001.jpg"
    assert by_id["2008_000002"]["file_name"] == f"{sbd}/img/2008_000002.jpg"  # SBD img/ as fallback
    # the .mat reads as written (GTcls.Segmentation), the VOC PNG as its palette indices
    assert np.array_equal(read_sem_seg_label(by_id["2008_000001"]), label_map(17).astype(np.int64))
    assert set(np.unique(read_sem_seg_label(by_id["2007_000001"])).tolist()) == {0, 1, 255}
    assert any(
        "voc_2012_sem_seg_train_aug' has 4 images; the official split has 10,582" in w
        for w in warnings_logged
    )


def test_train_aug_sbd_id_without_label_is_named(d2root):
    make_voc(d2root, train=["a1", "a2"], val=["v1"])
    sbd = d2root / "SBD"
    write_list(str(sbd / "train.txt"), ["s1", "s2"])
    write_list(str(sbd / "val.txt"), [])
    write_sbd_mat(str(sbd / "cls" / "s1.mat"), label_map(3))
    write_image(str(sbd / "img" / "s1.jpg"))
    write_image(str(sbd / "img" / "s2.jpg"))
    register_sem_seg_sets()
    with pytest.raises(
        DatasetLayoutError,
        match=r"voc_2012_sem_seg_train_aug.*1 of the 4 train_aug ids have neither "
        r".*SegmentationClass/<id>\.png nor .*SBD/cls/<id>\.mat: s2",
    ):
        DatasetCatalog.get("voc_2012_sem_seg_train_aug")


def test_train_aug_from_segmentation_class_aug(d2root):
    voc = make_voc(d2root, train=["t1", "t2"], val=["v1", "v2"], extra_images=["s1"])
    for i, value in (("t1", 1), ("t2", 2), ("v1", 3), ("v2", 4), ("s1", 5)):
        write_gray_png(str(voc / "SegmentationClassAug" / f"{i}.png"), label_map(value))
    # an SBD release too: SegmentationClassAug wins
    write_list(str(d2root / "SBD" / "train.txt"), ["zz"])
    (d2root / "SBD" / "cls").mkdir()
    register_sem_seg_sets()
    meta = MetadataCatalog.get("voc_2012_sem_seg_train_aug")
    assert meta.sem_seg_root == str(voc / "SegmentationClassAug")
    assert meta.required_paths == [
        f"{voc}/JPEGImages/",
        f"{voc}/SegmentationClassAug/",
        f"{voc}/ImageSets/Segmentation/val.txt",
    ]
    dicts = DatasetCatalog.get("voc_2012_sem_seg_train_aug")
    # every PNG of SegmentationClassAug minus the val ids
    assert [d["image_id"] for d in dicts] == ["s1", "t1", "t2"]
    assert dicts[0]["sem_seg_file_name"] == f"{voc}/SegmentationClassAug/s1.png"
    assert dicts[0]["file_name"] == f"{voc}/JPEGImages/s1.jpg"
    assert set(np.unique(read_sem_seg_label(dicts[0])).tolist()) == {0, 5, 255}

    # train_aug.txt, in DeepLab's two-column format, is used when present
    write_list(
        str(voc / "ImageSets" / "Segmentation" / "train_aug.txt"),
        [
            "/JPEGImages/t2.jpg /SegmentationClassAug/t2.png",
            "/JPEGImages/s1.jpg /SegmentationClassAug/s1.png",
        ],
    )
    register_sem_seg_sets()
    assert (
        MetadataCatalog.get("voc_2012_sem_seg_train_aug")
        .required_paths[-1]
        .endswith("train_aug.txt")
    )
    assert [d["image_id"] for d in DatasetCatalog.get("voc_2012_sem_seg_train_aug")] == ["s1", "t2"]

    # a listed id without its PNG is named
    write_image(str(voc / "JPEGImages" / "s9.jpg"))
    write_list(str(voc / "ImageSets" / "Segmentation" / "train_aug.txt"), ["t2", "s9"])
    with pytest.raises(
        DatasetLayoutError, match=r"label files .* are missing: .*SegmentationClassAug/s9\.png"
    ):
        DatasetCatalog.get("voc_2012_sem_seg_train_aug")


def test_train_aug_without_either_layout(d2root):
    make_voc(d2root, train=["a", "b"], val=["c"])
    register_sem_seg_sets()
    with pytest.raises(
        DatasetLayoutError,
        match=r"missing .*VOC2012/SegmentationClassAug/\..*Expected layout: either "
        r".*SegmentationClassAug.* or SBD's benchmark_RELEASE",
    ):
        check_dataset_layout("voc_2012_sem_seg_train_aug")


# ----------------------------------------------------------------------------------------------
# Cityscapes
# ----------------------------------------------------------------------------------------------
def make_cityscapes(root, split, frames, train_ids=True):
    cs = root / "cityscapes"
    for city, frame in frames:
        base = f"{city}_{frame}"
        write_image(str(cs / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png"), "PNG")
        gt = cs / "gtFine" / split / city
        write_gray_png(str(gt / f"{base}_gtFine_labelIds.png"), label_map(7))
        write_gray_png(str(gt / f"{base}_gtFine_instanceIds.png"), label_map(7))
        with open(gt / f"{base}_gtFine_polygons.json", "w") as f:
            json.dump({"imgHeight": H, "imgWidth": W, "objects": []}, f)
        if train_ids:
            write_gray_png(str(gt / f"{base}_gtFine_labelTrainIds.png"), label_map(0))
    return cs


def test_cityscapes_sem_seg(d2root, warnings_logged):
    cs = make_cityscapes(
        d2root,
        "train",
        [("zurich", "000001_000019"), ("aachen", "000002_000019"), ("aachen", "000000_000019")],
    )
    register_sem_seg_sets()
    meta = MetadataCatalog.get("cityscapes_sem_seg_train")
    assert (
        meta.evaluator_type == "sem_seg"
        and meta.ignore_label == 255
        and len(meta.stuff_classes) == 19
    )
    assert meta.required_paths == [f"{cs}/leftImg8bit/train/", f"{cs}/gtFine/train/"]
    assert "createTrainIdLabelImgs" in meta.layout
    dicts = DatasetCatalog.get("cityscapes_sem_seg_train")
    assert [d["image_id"] for d in dicts] == [
        "aachen_000000_000019",
        "aachen_000002_000019",
        "zurich_000001_000019",
    ]
    assert (
        dicts[0]["file_name"]
        == f"{cs}/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    )
    assert (
        dicts[0]["sem_seg_file_name"]
        == f"{cs}/gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"
    )
    assert (dicts[0]["height"], dicts[0]["width"]) == (H, W)
    assert any("2,975" in w for w in warnings_logged)


def test_cityscapes_missing_label_train_ids_names_file_and_fix(d2root):
    cs = make_cityscapes(d2root, "val", [("lindau", "000000_000019"), ("lindau", "000001_000019")])
    missing = cs / "gtFine" / "val" / "lindau" / "lindau_000001_000019_gtFine_labelTrainIds.png"
    os.remove(missing)
    register_sem_seg_sets()
    with pytest.raises(DatasetLayoutError) as e:
        DatasetCatalog.get("cityscapes_sem_seg_val")
    message = str(e.value)
    assert (
        "cityscapes_sem_seg_val" in message
        and f"1 of the 2 images have no train-id label map: {missing}" in message
    )
    assert (
        f"CITYSCAPES_DATASET={cs} python -m cityscapesscripts.preparation.createTrainIdLabelImgs"
        in message
    )
    # every file missing (not only the first, which is all detectron2 asserts on)
    os.remove(cs / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelTrainIds.png")
    with pytest.raises(DatasetLayoutError, match="2 of the 2 images have no train-id label map"):
        DatasetCatalog.get("cityscapes_sem_seg_val")


def test_detectron2_cityscapes_names_get_required_paths_and_checked_loader(d2root):
    register_sem_seg_sets()
    for split in ("train", "val", "test"):
        meta = MetadataCatalog.get(f"cityscapes_fine_sem_seg_{split}")
        assert meta.evaluator_type == "cityscapes_sem_seg"  # detectron2's, unchanged
        assert meta.required_paths == [
            meta.image_dir.rstrip("/") + "/",
            meta.gt_dir.rstrip("/") + "/",
        ]
        assert f"gtFine/{split}/" in meta.layout and "createTrainIdLabelImgs" in meta.layout
    meta = MetadataCatalog.get("cityscapes_fine_sem_seg_val")
    if os.path.isdir(meta.image_dir):
        pytest.skip("a real Cityscapes is installed at detectron2's root")
    # detectron2's own loader would fail with an AssertionError or FileNotFoundError
    with pytest.raises(
        DatasetLayoutError, match=r"cityscapes_fine_sem_seg_val' is missing .*leftImg8bit/val/"
    ):
        DatasetCatalog.get("cityscapes_fine_sem_seg_val")


# ----------------------------------------------------------------------------------------------
# ADE20K
# ----------------------------------------------------------------------------------------------
def test_ade20k_2016_reads_raw_annotations_with_reduce_zero_label(d2root):
    ade = d2root / "ADEChallengeData2016"
    for i in ("ADE_val_00000002", "ADE_val_00000001"):
        write_image(str(ade / "images" / "validation" / f"{i}.jpg"))
        label = np.zeros((H, W), np.uint8)
        label[0, :3] = [1, 150, 75]
        write_gray_png(str(ade / "annotations" / "validation" / f"{i}.png"), label)
    register_sem_seg_sets()
    meta = MetadataCatalog.get("ade20k_2016_sem_seg_val")
    assert (
        list(meta.stuff_classes) == list(ADE20K_SEM_SEG_CATEGORIES)
        and len(meta.stuff_classes) == 150
    )
    assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
    dicts = DatasetCatalog.get("ade20k_2016_sem_seg_val")
    assert [d["image_id"] for d in dicts] == ["ADE_val_00000001", "ADE_val_00000002"]
    assert dicts[0]["sem_seg_file_name"] == f"{ade}/annotations/validation/ADE_val_00000001.png"
    assert all(d["sem_seg_reduce_zero_label"] is True for d in dicts)
    label = read_sem_seg_label(dicts[0])
    assert label[0, :3].tolist() == [0, 149, 74] and (label[1:] == 255).all()  # 0 -> 255, c -> c-1

    os.remove(ade / "annotations" / "validation" / "ADE_val_00000002.png")
    with pytest.raises(
        DatasetLayoutError, match=r"1 of the 2 images .* have no label: .*ADE_val_00000002\.png"
    ):
        DatasetCatalog.get("ade20k_2016_sem_seg_val")


def test_check_dataset_layout_names_the_missing_path(d2root):
    register_sem_seg_sets()
    cases = {
        "voc_2012_sem_seg_val": r"missing .*/VOC2012/JPEGImages/ \(and 2 more\)\. "
        r"Expected layout: .*ImageSets/Segmentation/val\.txt",
        "cityscapes_sem_seg_train": r"missing .*/cityscapes/leftImg8bit/train/ \(and 1 more\)",
        "ade20k_2016_sem_seg_train": r"missing .*/ADEChallengeData2016/images/training/ "
        r"\(and 1 more\)",
    }
    for name, pattern in cases.items():
        with pytest.raises(DatasetLayoutError, match=pattern):
            check_dataset_layout(name)
    (d2root / "ADEChallengeData2016" / "images" / "training").mkdir(parents=True)
    with pytest.raises(
        DatasetLayoutError, match=r"missing .*/ADEChallengeData2016/annotations/training/\. "
    ):
        check_dataset_layout("ade20k_2016_sem_seg_train")
    with pytest.raises(
        DatasetLayoutError, match=r"ade20k_2016_sem_seg_train' is missing .*annotations/training/"
    ):
        DatasetCatalog.get("ade20k_2016_sem_seg_train")


# ----------------------------------------------------------------------------------------------
# A user's own set, from YAML
# ----------------------------------------------------------------------------------------------
def make_folder_set(root, stems_exts, labelled=None):
    images, labels = root / "images", root / "labels"
    for stem, ext in stems_exts:
        write_image(str(images / f"{stem}.{ext}"), {"jpg": "JPEG", "png": "PNG", "bmp": "BMP"}[ext])
        if labelled is None or stem in labelled:
            write_gray_png(str(labels / f"{stem}.png"), label_map(2))
    labels.mkdir(parents=True, exist_ok=True)
    return images, labels


def load_yaml_cfg(path, text):
    path.write_text(text)
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    return cfg


def test_custom_sem_seg_from_yaml(tmp_path):
    images, labels = make_folder_set(tmp_path, [("b", "png"), ("a", "jpg"), ("c", "bmp")])
    (images / "notes.txt").write_text("not an image")
    (tmp_path / "val.txt").write_text("c\n\na.jpg\n")
    cfg = load_yaml_cfg(
        tmp_path / "my.yaml",
        f"""
DATASETS:
  CUSTOM:
    - NAME: my_seg_train
      FORMAT: sem_seg
      IMAGE_ROOT: {images}
      LABEL_ROOT: {labels}
      CLASSES: [background, road, car]
    - NAME: my_seg_val
      FORMAT: sem_seg
      IMAGE_ROOT: {images}
      LABEL_ROOT: {labels}
      CLASSES: [road, car]
      LIST: {tmp_path / "val.txt"}
      IGNORE_LABEL: 255
      REDUCE_ZERO_LABEL: true
  TRAIN: ("my_seg_train",)
  TEST: ("my_seg_val",)
""",
    )
    assert register_datasets_from_config(cfg) == ["my_seg_train", "my_seg_val"]
    meta = MetadataCatalog.get("my_seg_train")
    assert meta.stuff_classes == ["background", "road", "car"] and meta.ignore_label == 255
    assert meta.evaluator_type == "sem_seg" and meta.required_paths == [f"{images}/", f"{labels}/"]
    check_dataset_layout("my_seg_train")
    train = DatasetCatalog.get("my_seg_train")
    assert [d["image_id"] for d in train] == ["a", "b", "c"]
    assert [os.path.basename(d["file_name"]) for d in train] == ["a.jpg", "b.png", "c.bmp"]
    assert (
        train[1]["sem_seg_file_name"] == f"{labels}/b.png"
        and "sem_seg_reduce_zero_label" not in train[1]
    )
    assert set(np.unique(read_sem_seg_label(train[0])).tolist()) == {0, 2, 255}

    val = DatasetCatalog.get("my_seg_val")
    assert MetadataCatalog.get("my_seg_val").required_paths[-1] == str(tmp_path / "val.txt")
    assert [d["image_id"] for d in val] == ["a", "c"] and all(
        d["sem_seg_reduce_zero_label"] for d in val
    )
    assert set(np.unique(read_sem_seg_label(val[0])).tolist()) == {1, 255}  # 0 -> 255, 2 -> 1


def test_custom_sem_seg_image_without_label_is_named(tmp_path):
    stems = [(f"img{k}", "jpg") for k in range(8)]
    images, labels = make_folder_set(tmp_path, stems, labelled={"img0"})
    cfg = load_yaml_cfg(
        tmp_path / "my.yaml",
        f"""
DATASETS:
  CUSTOM:
    - {{NAME: my_bad_seg, FORMAT: sem_seg, IMAGE_ROOT: {images}, LABEL_ROOT: {labels}, \
CLASSES: [a, b]}}
""",
    )
    register_datasets_from_config(cfg)
    with pytest.raises(DatasetLayoutError) as e:
        DatasetCatalog.get("my_bad_seg")
    message = str(e.value)
    assert "Dataset 'my_bad_seg': 7 of the 8 images have no label: " in message
    assert f"{images}/img1.jpg (no {labels}/img1.png)" in message and "(and 2 more)" in message
    assert "img6.jpg" not in message and "img0.jpg" not in message

    (tmp_path / "list.txt").write_text("img0\nghost\n")
    register_sem_seg(
        "my_bad_seg", str(images), str(labels), ["a", "b"], list_file=str(tmp_path / "list.txt")
    )
    pattern = r"1 of the 2 stems listed in .*list\.txt have no image: .*images/ghost\.\{jpg,"
    with pytest.raises(DatasetLayoutError, match=pattern):
        DatasetCatalog.get("my_bad_seg")


BASE = {
    "NAME": "bad_seg",
    "FORMAT": "sem_seg",
    "IMAGE_ROOT": "i",
    "LABEL_ROOT": "l",
    "CLASSES": ["a"],
}


@pytest.mark.parametrize(
    "changes, pattern",
    [
        (
            {"LABEL_ROOT": None},
            r"DATASETS.CUSTOM\[0\] \(FORMAT sem_seg\) is missing key\(s\) \['LABEL_ROOT'\]",
        ),
        ({"PALETTE": 1}, r"unknown key\(s\) \['PALETTE'\]"),
        ({"CLASSES": []}, r"DATASETS.CUSTOM\[0\].CLASSES must list the class names"),
        ({"CLASSES": ["a", "a"]}, r"CLASSES must list the class names \(non-empty, unique"),
        ({"CLASSES": "a"}, r"CLASSES must be a list of class names"),
        (
            {"IGNORE_LABEL": 70000},
            r"DATASETS.CUSTOM\[0\].IGNORE_LABEL must be an integer in \[0, 65535\]",
        ),
        ({"IGNORE_LABEL": -1}, r"IGNORE_LABEL must be an integer in \[0, 65535\]"),
        ({"IGNORE_LABEL": "255"}, r"IGNORE_LABEL must be an integer"),
        ({"IGNORE_LABEL": True}, r"IGNORE_LABEL must be an integer"),
        ({"CLASSES": ["a", "b"], "IGNORE_LABEL": 1}, r"IGNORE_LABEL 1 is the index of class 'b'"),
        (
            {"IGNORE_LABEL": 100, "REDUCE_ZERO_LABEL": True},
            r"REDUCE_ZERO_LABEL maps label 0 to 255, so IGNORE_LABEL",
        ),
        ({"REDUCE_ZERO_LABEL": "yes"}, r"REDUCE_ZERO_LABEL must be true or false"),
        ({"LIST": 3}, r"LIST must be the path of a text file"),
        ({"IMAGE_ROOT": "same", "LABEL_ROOT": "same/"}, r"DATASETS.CUSTOM\[0\]: .*two folders"),
    ],
)
def test_custom_sem_seg_malformed_entries(changes, pattern):
    entry = {k: v for k, v in dict(BASE, **changes).items() if v is not None}
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM = [entry]
    with pytest.raises(ValueError, match=pattern):
        register_datasets_from_config(cfg)

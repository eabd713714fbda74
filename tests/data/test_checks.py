"""The pre-flight image scan (data/checks.py): every bad file listed in one error, before
training."""

import pytest
from PIL import Image

from detectron2.data import DatasetCatalog

from contrastive_det.config import get_cfg
from contrastive_det.data import ImageReadError
from contrastive_det.data.datasets.catalog import register_coco
from contrastive_det.data.checks import (
    UnreadableImagesError,
    check_images,
    image_problem,
    scan_images,
)


def write_images(folder, n, size=(64, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.jpg"
        Image.new("RGB", size, (i * 20 % 255, 100, 200)).save(path, quality=90)
        paths.append(path)
    return paths


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def bad_folder(tmp_path):
    """6 images: 3 good JPEGs, a truncated JPEG, a text file named .jpg and a missing file."""
    paths = write_images(tmp_path / "img", 4, size=(320, 240))
    truncate(paths[1])
    (tmp_path / "img" / "notes.jpg").write_text("not an image at all")
    files = [str(p) for p in paths] + [
        str(tmp_path / "img" / "notes.jpg"),
        str(tmp_path / "img" / "gone.jpg"),
    ]
    return files


def test_image_problem_finds_truncated_non_image_and_missing_files(bad_folder):
    problems = [image_problem(f) for f in bad_folder]
    assert problems[0] is None and problems[2] is None and problems[3] is None
    assert "truncated" in problems[1]
    assert "cannot identify image file" in problems[4]
    assert "No such file" in problems[5]


def test_a_truncated_png_is_found(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (200, 100), (1, 2, 3)).save(path)
    assert image_problem(str(path)) is None
    truncate(path, keep=0.7)
    assert image_problem(str(path)) is not None


def test_scan_lists_every_bad_file_in_one_error(bad_folder):
    dicts = [{"file_name": f, "image_id": i} for i, f in enumerate(bad_folder)]
    with pytest.raises(UnreadableImagesError) as err:
        scan_images(dicts, progress=False)
    assert isinstance(err.value, ImageReadError)
    assert [f for f, _ in err.value.bad] == [bad_folder[1], bad_folder[4], bad_folder[5]]
    msg = str(err.value)
    assert msg.startswith("3 of 6 images cannot be read")
    for f in (bad_folder[1], bad_folder[4], bad_folder[5]):
        assert f in msg
    assert "DATALOADER.CHECK_IMAGES_MAX 0" in msg
    # good files only: returns the count
    assert scan_images([d for i, d in enumerate(dicts) if i in (0, 2, 3)], progress=False) == 3


def test_long_lists_are_cut_with_a_count(tmp_path):
    files = [tmp_path / f"{i}.jpg" for i in range(30)]
    for f in files:
        f.write_bytes(b"\xff\xd8 garbage")
    with pytest.raises(UnreadableImagesError) as err:
        scan_images([{"file_name": str(f)} for f in files], max_listed=5, progress=False)
    msg = str(err.value)
    assert len(err.value.bad) == 30  # all collected
    assert sum(str(f) in msg for f in files) == 5 and "... and 25 more" in msg


def _register_with_files(name, tmp_path, files):
    register_coco(name, str(tmp_path / "unused.json"), str(tmp_path))
    DatasetCatalog.remove(name)
    DatasetCatalog.register(
        name, lambda: [{"file_name": f, "image_id": i} for i, f in enumerate(files)]
    )


def test_check_images_follows_the_config_limit(bad_folder, tmp_path):
    _register_with_files("test_checks_bad", tmp_path, bad_folder)
    cfg = get_cfg()
    assert cfg.DATALOADER.CHECK_IMAGES_MAX > 20000  # on by default for VOC-sized sets
    with pytest.raises(UnreadableImagesError, match="3 of 6 images"):
        check_images(cfg, ["test_checks_bad"])
    cfg.DATALOADER.CHECK_IMAGES_MAX = 5  # the datasets hold 6 images: too many, not scanned
    assert check_images(cfg, ["test_checks_bad"]) == 0
    cfg.DATALOADER.CHECK_IMAGES_MAX = 0  # off
    assert check_images(cfg, ["test_checks_bad"]) == 0


def test_check_images_on_good_registered_data(toy_root):
    cfg = get_cfg()
    # the same files in two datasets are checked once
    assert (
        check_images(cfg, ["toy_digits_trainval", "toy_digits_coco_trainval", "toy_digits_test"])
        == 14
    )


def test_required_paths_are_checked_in_order_with_the_layout(tmp_path):
    """Metadata ``required_paths`` (folders end with "/"): the first missing one is named, with the
    layout line."""
    from detectron2.data import MetadataCatalog

    from contrastive_det.data import DatasetLayoutError, check_dataset_layout

    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "labels.txt").write_text("x\n")
    (tmp_path / "set" / "images").write_text("a file where a folder is expected")
    name = "test_checks_required"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, list)
    required = [
        f"{tmp_path}/set/",
        f"{tmp_path}/set/labels.txt",
        f"{tmp_path}/set/images/",
        f"{tmp_path}/set/x.csv",
    ]
    MetadataCatalog.get(name).set(
        required_paths=required, layout="set/images/<file> + set/labels.txt + set/x.csv"
    )
    with pytest.raises(DatasetLayoutError) as err:
        check_dataset_layout(name)
    msg = str(err.value)
    assert msg.startswith(f"Dataset '{name}' is missing {tmp_path}/set/images/ (and 1 more).")
    assert (
        "Expected layout: set/images/<file> + set/labels.txt + set/x.csv." in msg
        and "datasets/README.md" in msg
    )
    (tmp_path / "set" / "images").unlink()
    (tmp_path / "set" / "images").mkdir()
    (tmp_path / "set" / "x.csv").mkdir()  # a folder where a file is expected
    with pytest.raises(DatasetLayoutError, match=r"is missing .*set/x\.csv\. Expected"):
        check_dataset_layout(name)
    (tmp_path / "set" / "x.csv").rmdir()
    (tmp_path / "set" / "x.csv").write_text("")
    check_dataset_layout(name)


def test_label_maps_are_checked_against_their_images_before_training(tmp_path):
    """An RGB label PNG, or one of another size than its image, is listed with the images (not
    found mid-training by the mapper, or after training by the evaluator)."""
    from contrastive_det.data.checks import scan_images

    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    Image.new("P", (64, 48)).save(tmp_path / "a.png")  # fine
    Image.new("RGB", (64, 48)).save(tmp_path / "b.jpg")
    Image.new("RGB", (64, 48)).save(tmp_path / "b.png")  # colour-coded
    Image.new("RGB", (64, 48)).save(tmp_path / "c.jpg")
    Image.new("L", (60, 40)).save(tmp_path / "c.png")  # another size
    rotated = Image.new("RGB", (64, 48))
    exif = rotated.getexif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: detectron2 reads it as 48x64
    rotated.save(tmp_path / "d.jpg", exif=exif)
    Image.new("P", (48, 64)).save(tmp_path / "d.png")  # fine: the image as read is 48 wide
    dicts = [
        {"file_name": str(tmp_path / f"{k}.jpg"), "sem_seg_file_name": str(tmp_path / f"{k}.png")}
        for k in "abcd"
    ]
    with pytest.raises(UnreadableImagesError) as info:
        scan_images(dicts, progress=False)
    bad = dict(info.value.bad)
    assert sorted(bad) == [str(tmp_path / "b.png"), str(tmp_path / "c.png")]
    assert "RGB image; expected class indices" in bad[str(tmp_path / "b.png")]
    assert "60x40 but its image" in bad[str(tmp_path / "c.png")]
    assert "2 of 8 files (images and label maps) cannot be read" in str(info.value)

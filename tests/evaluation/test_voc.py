"""VOCDetectionEvaluator on a hand-written 2-image VOC set with hand-computed 11-point APs."""

import pytest
import torch

from detectron2.structures import Boxes, Instances

from contrastive_det.data.datasets.catalog import register_voc
from contrastive_det.evaluation import VOCDetectionEvaluator

XML = (
    "<annotation><filename>{id}.jpg</filename>"
    "<size><width>100</width><height>100</height><depth>3</depth></size>\n"
    "{objects}</annotation>"
)
OBJ = (
    "<object><name>{name}</name><pose>Unspecified</pose>"
    "<truncated>0</truncated><difficult>{difficult}</difficult>\n"
    "<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
)


def write_voc(root, images):
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for image_id, objects in images.items():
        body = "".join(
            OBJ.format(name=n, difficult=d, x0=b[0], y0=b[1], x1=b[2], y1=b[3])
            for n, b, d in objects
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(XML.format(id=image_id, objects=body))
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(images) + "\n")


def prediction(boxes, scores, classes):
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.scores = torch.tensor(scores)
    inst.pred_classes = torch.tensor(classes)
    return {"instances": inst}


def test_hand_computed_ap_and_absent_class(tmp_path):
    # VOC boxes are 1-based inclusive; the evaluator writes predictions as xmin+1, ymin+1, xmax,
    # ymax, so the 0-based prediction [x0-1, y0-1, x1, y1] matches the ground truth exactly.
    write_voc(
        tmp_path,
        {
            "img1": [("a", (11, 11, 40, 40), 0), ("b", (51, 51, 90, 90), 0)],
            "img2": [
                ("b", (21, 21, 60, 60), 1)
            ],  # difficult: neither a positive nor a false positive
        },
    )
    register_voc("test_voc_golden", str(tmp_path), "test", ["a", "b", "c"], year=2007)
    evaluator = VOCDetectionEvaluator("test_voc_golden")
    evaluator.reset()
    # class a: one exact detection -> AP 100 at every IoU.
    # class b: a false positive (score .9) ranked above the exact detection (score .8):
    #   precision/recall after each detection: (0, 0), (0.5, 1) -> 11-point AP = 0.5 -> 50.
    #   The detection on the difficult box in img2 is ignored.
    evaluator.process(
        [{"image_id": "img1"}],
        [
            prediction(
                [[10, 10, 40, 40], [0, 0, 8, 8], [50, 50, 90, 90]], [0.95, 0.9, 0.8], [0, 1, 1]
            )
        ],
    )
    evaluator.process([{"image_id": "img2"}], [prediction([[20, 20, 60, 60]], [0.99], [1])])
    bbox = evaluator.evaluate()["bbox"]
    assert bbox["AP50-a"] == pytest.approx(100.0)
    assert bbox["AP50-b"] == pytest.approx(50.0)
    assert "AP50-c" not in bbox  # no ground truth for c: left out instead of averaging a NaN
    assert bbox["AP50"] == pytest.approx(75.0)
    assert bbox["AP75"] == pytest.approx(75.0)
    assert bbox["AP"] == pytest.approx(75.0)


def test_shifted_box_counts_only_at_low_iou(tmp_path):
    write_voc(tmp_path, {"img1": [("a", (1, 1, 100, 100), 0)]})
    register_voc("test_voc_shift", str(tmp_path), "test", ["a"], year=2007)
    evaluator = VOCDetectionEvaluator("test_voc_shift")
    evaluator.reset()
    # The prediction is written as (x0+1, y0+1, x1, y1) = (1, 1, 100, 62): 100 x 62 pixels inside
    # the 100 x 100 ground truth, IoU 0.62; voc_eval matches when IoU > threshold (strictly).
    evaluator.process([{"image_id": "img1"}], [prediction([[0, 0, 100, 62]], [0.9], [0])])
    bbox = evaluator.evaluate()["bbox"]
    assert bbox["AP50"] == pytest.approx(100.0)
    assert bbox["AP75"] == pytest.approx(0.0)
    # matched at IoU .50, .55, .60 of 10 thresholds
    assert bbox["AP"] == pytest.approx(100.0 * 3 / 10)


# One class, 2 ground-truth boxes, 1 exact detection (score 1): the PR curve is precision 1 up to
# recall 0.5, then nothing.
#   11-point (VOC2007): recall thresholds 0, .1, ..., .5 reach precision 1 -> 6/11 = 54.545...
#   area (VOC2010+):    precision 1 over recall [0, .5]                  -> 0.5    = 50.0
AP_11_POINT, AP_AREA = 100.0 * 6 / 11, 50.0


def evaluate_half_recall(dataset_name, voc_root, class_name="aeroplane"):
    """
    Score the golden case with ``dataset_name``'s registered metadata (its year decides the
    metric, its class list the classes): only its files are swapped for the golden ones.
    """
    if not (voc_root / "Annotations").exists():
        write_voc(
            voc_root,
            {"img1": [(class_name, (11, 11, 40, 40), 0), (class_name, (51, 51, 90, 90), 0)]},
        )
    evaluator = VOCDetectionEvaluator(dataset_name)
    evaluator._anno_file_template = str(voc_root / "Annotations" / "{}.xml")
    evaluator._image_set_path = str(voc_root / "ImageSets" / "Main" / "test.txt")
    evaluator.reset()
    cls = evaluator._class_names.index(class_name)
    evaluator.process([{"image_id": "img1"}], [prediction([[10, 10, 40, 40]], [1.0], [cls])])
    return evaluator.evaluate()["bbox"]


def test_11_point_and_area_metrics_differ_on_the_golden_case(tmp_path):
    write_voc(tmp_path, {"img1": [("a", (11, 11, 40, 40), 0), ("a", (51, 51, 90, 90), 0)]})
    register_voc("test_voc_half_2007", str(tmp_path), "test", ["a"], year=2007)
    register_voc("test_voc_half_2012", str(tmp_path), "test", ["a"], year=2012)
    assert evaluate_half_recall("test_voc_half_2007", tmp_path, "a")["AP50"] == pytest.approx(
        AP_11_POINT
    )
    assert evaluate_half_recall("test_voc_half_2012", tmp_path, "a")["AP50"] == pytest.approx(
        AP_AREA
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("voc_2007_test", AP_11_POINT),
        ("voc_2007_trainval", AP_11_POINT),
        ("voc_2012_trainval", AP_AREA),
    ],
)
def test_registered_voc_sets_use_their_years_metric(name, expected, tmp_path):
    """voc_2007_test (the VOC0712 protocol's test set) is scored 11-point; a 2012 set by area."""
    from detectron2.data import MetadataCatalog

    assert MetadataCatalog.get(name).year == int(name.split("_")[1])
    bbox = evaluate_half_recall(name, tmp_path)
    assert bbox["AP50"] == pytest.approx(expected)
    assert [k for k in bbox if k.startswith("AP50-")] == [
        "AP50-aeroplane"
    ]  # 19 classes without GT left out


def test_toy_digits_are_scored_as_voc2007(toy_root, tmp_path):
    from detectron2.data import MetadataCatalog

    assert MetadataCatalog.get("toy_digits_test").year == 2007
    assert evaluate_half_recall("toy_digits_test", tmp_path, "3")["AP50"] == pytest.approx(
        AP_11_POINT
    )


def test_float_coordinates_and_missing_tags_score_as_their_integer_twin(tmp_path):
    """CVAT and Label Studio write float coordinates and may leave out <pose>, <truncated>,
    <difficult>; detectron2's parse_rec stops on them (int('3.0'), None.text) after training."""
    from contrastive_det.data.datasets.voc_detection import parse_voc_record

    write_voc(tmp_path / "int", {"img1": [("a", (11, 11, 40, 40), 0)]})
    write_voc(tmp_path / "flt", {"img1": [("a", (11, 11, 40, 40), 0)]})
    xml = tmp_path / "flt" / "Annotations" / "img1.xml"
    text = xml.read_text().replace("<xmin>11</xmin>", "<xmin>11.0</xmin>")
    text = text.replace(
        "<pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>", ""
    )
    xml.write_text(text)
    rec = parse_voc_record(str(xml))
    assert rec == [
        {
            "name": "a",
            "pose": "Unspecified",
            "bbox": [11.0, 11.0, 40.0, 40.0],
            "truncated": 0,
            "difficult": 0,
        }
    ]
    scores = []
    for kind in ("int", "flt"):
        register_voc(f"test_voc_{kind}", str(tmp_path / kind), "test", ["a"], year=2007)
        ev = VOCDetectionEvaluator(f"test_voc_{kind}")
        ev.reset()
        ev.process([{"image_id": "img1"}], [prediction([[10, 10, 40, 30]], [0.9], [0])])
        scores.append(ev.evaluate()["bbox"])
    assert scores[0] == scores[1] and scores[0]["AP50"] == pytest.approx(100.0)
    assert scores[0]["AP75"] == pytest.approx(0.0)


def test_a_broken_annotation_is_named_before_training(tmp_path):
    from contrastive_det.data.datasets.voc_detection import check_voc_annotations

    write_voc(tmp_path, {"img1": [("a", (1, 1, 4, 4), 0)], "img2": [("car", (1, 1, 4, 4), 0)]})
    xml = tmp_path / "Annotations" / "img1.xml"
    xml.write_text(xml.read_text().replace("<ymax>4</ymax>", ""))
    with pytest.raises(ValueError) as info:
        check_voc_annotations(str(tmp_path), "test", ["a"])
    message = str(info.value)
    assert "img1.xml: an <object> has no <ymax>" in message
    assert "img2.xml: class(es) ['car'] not among the dataset's classes" in message
    register_voc("test_voc_unknown_class", str(tmp_path), "test", ["a"], year=2007)
    from detectron2.data import DatasetCatalog

    with pytest.raises(ValueError, match="img2.xml: class"):  # not detectron2's bare "not in list"
        DatasetCatalog.get("test_voc_unknown_class")


def test_each_annotation_is_parsed_once_per_evaluation_and_afresh_in_the_next(
    tmp_path, monkeypatch
):
    """voc_eval reads every annotation for each class and IoU threshold (10 x classes times)."""
    from contrastive_det.evaluation import voc

    write_voc(tmp_path, {"img1": [("a", (11, 11, 40, 40), 0)], "img2": [("b", (5, 5, 9, 9), 0)]})
    register_voc("test_voc_parse_count", str(tmp_path), "test", ["a", "b"], year=2007)
    original, calls = voc.parse_voc_record, []

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(voc, "parse_voc_record", counting)
    for expected in (2, 4):  # two files; a second evaluation reads them again
        ev = VOCDetectionEvaluator("test_voc_parse_count")
        ev.reset()
        ev.process([{"image_id": "img1"}], [prediction([[10, 10, 40, 40]], [0.9], [0])])
        ev.evaluate()
        assert len(calls) == expected

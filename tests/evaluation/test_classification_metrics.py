"""evaluation/classification.py: the metrics by hand, and the evaluator."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from contrastive_det.evaluation import (
    ClassificationEvaluator,
    classification_scores,
    mean_per_class_accuracy,
    top1_accuracy,
    voc11_map,
)


def onehot_scores(pred, num_classes):
    """Scores whose argmax is ``pred``."""
    return torch.nn.functional.one_hot(torch.tensor(pred), num_classes).float()


def test_top1_and_mean_per_class_differ_on_imbalanced_labels():
    labels = torch.tensor([0, 0, 0, 0, 1])
    scores = onehot_scores([0, 0, 0, 0, 0], 3)  # always class 0
    assert top1_accuracy(scores, labels) == pytest.approx(80.0)  # 4 of 5
    # class 0: 4/4, class 1: 0/1; class 2 has no test image and is not averaged in as 0
    assert mean_per_class_accuracy(scores, labels, 3) == pytest.approx(50.0)


def test_mean_per_class_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    scores = onehot_scores([0, 1, 1, 0, 0, 2], 3)
    # class 0: 1/2, class 1: 1/3, class 2: 1/1 -> (50 + 33.33 + 100) / 3
    assert mean_per_class_accuracy(scores, labels, 3) == pytest.approx((50 + 100 / 3 + 100) / 3)
    assert top1_accuracy(scores, labels) == pytest.approx(50.0)


def test_argmax_ties_go_to_the_lowest_class():
    assert top1_accuracy(torch.tensor([[1.0, 1.0]]), torch.tensor([0])) == 100.0


def test_single_label_errors():
    with pytest.raises(ValueError, match=r"\[0, 3\).*\[0, 3\]"):
        top1_accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="N=2"):
        top1_accuracy(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="num_classes=4"):
        mean_per_class_accuracy(torch.zeros(2, 3), torch.tensor([0, 1]), 4)


# One class ranked P N P N (scores 4 > 3 > 2 > 1), 2 positives:
#   precision 1, 1/2, 2/3, 1/2 at recall .5, .5, 1, 1
#   11-point: t = 0 .. .5 (6 points) -> 1; t = .6 .. 1 (5 points) -> 2/3; AP = (6 + 5 * 2/3) / 11
PNPN_SCORES = [4.0, 3.0, 2.0, 1.0]
PNPN_TARGETS = [1, 0, 1, 0]
PNPN_AP11 = (6 + 5 * 2 / 3) / 11 * 100  # 84.85


def test_voc11_golden_differs_from_area_under_curve():
    scores = torch.tensor(PNPN_SCORES)[:, None]
    targets = torch.tensor(PNPN_TARGETS)[:, None]
    assert voc11_map(scores, targets) == pytest.approx(PNPN_AP11)
    # the all-point (area) AP: .5 * 1 + .5 * 2/3 = 83.33, not what VOC2007 reports
    area = average_precision_score(PNPN_TARGETS, PNPN_SCORES) * 100
    assert area == pytest.approx(250 / 3)
    assert abs(voc11_map(scores, targets) - area) > 1.0


def test_voc11_ignores_difficult_entries_and_classes_without_positives():
    # column 0: PNPN with an ignored entry at the top score and one in the middle;
    # column 1: P P N (AP 100); column 2: only negatives and ignores (not averaged)
    scores = torch.tensor(
        [
            [9.0, 3.0, 1.0],
            [4.0, 2.0, 2.0],
            [3.0, 1.0, 3.0],
            [2.5, 0.0, 4.0],
            [2.0, 0.0, 5.0],
            [1.0, 0.0, 6.0],
        ]
    )
    targets = torch.tensor(
        [[-1, 1, 0], [1, 1, 0], [0, 0, -1], [-1, -1, 0], [1, -1, 0], [0, -1, -1]]
    )
    assert voc11_map(scores, targets) == pytest.approx((PNPN_AP11 + 100.0) / 2)
    # the same as if the ignored entries were absent; as negatives they would lower column 0
    as_negative = targets.clamp(min=0)
    assert voc11_map(scores, as_negative) < (PNPN_AP11 + 100.0) / 2 - 1.0


def test_voc11_recall_thresholds_are_the_devkits():
    # 10 positives: P P P (recall exactly 3/10, precision 1), then N N N, then 7 P.
    # The devkit's t = np.arange(0, 1.1, 0.1)[3] = 0.30000000000000004: recall 0.3 does not reach
    # it, so t[3] gets the best precision at recall >= 0.4, max_k k/(k+3) for k = 4..10 = 10/13.
    # (Exact decimals, t = 0.3, would give (4 + 7 * 10/13) / 11 instead.)
    ranked = [1, 1, 1, 0, 0, 0] + [1] * 7
    scores = torch.arange(len(ranked), 0, -1).double()[:, None]
    targets = torch.tensor(ranked)[:, None]
    assert voc11_map(scores, targets) == pytest.approx((3 + 8 * 10 / 13) / 11 * 100)
    assert voc11_map(scores, targets) == pytest.approx(devkit_ap11(ranked) * 100)


def devkit_ap11(ranked):
    """A slow transcription of VOCevalcls's 11-point AP (MATLAB devkit) for one ranked class."""
    tp = np.cumsum(ranked)
    fp = np.cumsum([1 - r for r in ranked])
    rec, prec = tp / sum(ranked), tp / (tp + fp)
    ap = 0.0
    for t in np.arange(0, 1.1, 0.1):
        p = prec[rec >= t].max() if (rec >= t).any() else 0.0
        ap += p / 11
    return ap


def test_voc11_errors():
    with pytest.raises(ValueError, match="1 \\(positive\\), 0 \\(negative\\) or -1"):
        voc11_map(torch.zeros(2, 1), torch.tensor([[2], [0]]))
    with pytest.raises(ValueError, match="at least one class with a positive"):
        voc11_map(torch.zeros(2, 2), torch.tensor([[0, -1], [0, 0]]))


def test_classification_scores_keys_and_unknown_metric():
    labels = torch.tensor([0, 0, 0, 0, 1])
    scores = onehot_scores([0, 0, 0, 0, 0], 2)
    top1 = classification_scores("top1", scores, labels, 2)
    assert top1 == pytest.approx({"score": 80.0, "top1": 80.0, "mean_per_class": 50.0})
    mpc = classification_scores("mean_per_class", scores, labels, 2)
    assert mpc == pytest.approx({"score": 50.0, "top1": 80.0, "mean_per_class": 50.0})
    m = classification_scores(
        "map11", torch.tensor(PNPN_SCORES)[:, None], torch.tensor(PNPN_TARGETS)[:, None], 1
    )
    assert m == pytest.approx({"score": PNPN_AP11, "map11": PNPN_AP11})
    with pytest.raises(ValueError, match="top1, mean_per_class, map11"):
        classification_scores("top5", scores, labels, 2)


def test_evaluator_single_label():
    ev = ClassificationEvaluator("mean_per_class", 3)
    ev.reset()
    preds, labels = [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]
    logits = onehot_scores(preds, 3)
    ev.process(
        [{"image_id": i, "label": y} for i, y in enumerate(labels)],
        [{"logits": logits[i]} for i in range(5)],
    )
    assert ev.evaluate() == {
        "classification": pytest.approx({"score": 50.0, "top1": 80.0, "mean_per_class": 50.0})
    }


def test_evaluator_multi_label_with_ignores():
    ev = ClassificationEvaluator("map11", 2)
    ev.reset()
    # column 0 is PNPN; column 1: the first image positive, the others ignored or negative
    inputs = [
        {"image_id": "a", "labels": [0, 1], "ignore_labels": []},
        {"image_id": "b", "labels": [], "ignore_labels": [1]},
        {"image_id": "c", "labels": [0], "ignore_labels": [0, 1]},  # positive wins over ignore
        {"image_id": "d", "labels": [], "ignore_labels": []},
    ]
    outputs = [{"logits": torch.tensor([s, 1.0])} for s in PNPN_SCORES]
    ev.process(inputs, outputs)
    assert ev.evaluate()["classification"] == pytest.approx(
        {"score": (PNPN_AP11 + 100) / 2, "map11": (PNPN_AP11 + 100) / 2}
    )


def test_evaluator_orders_by_image_id():
    # equal scores: ranked by image id ("a": negative first) -> precision 1/2 at recall 1 -> AP 50,
    # whichever order the images arrived in (e.g. from different processes)
    inputs = [{"image_id": "b", "labels": [0]}, {"image_id": "a", "labels": []}]
    outputs = [{"logits": torch.tensor([0.5])}, {"logits": torch.tensor([0.5])}]
    for order in ([0, 1], [1, 0]):
        ev = ClassificationEvaluator("map11", 1)
        ev.reset()
        ev.process([inputs[i] for i in order], [outputs[i] for i in order])
        assert ev.evaluate()["classification"]["map11"] == pytest.approx(50.0)


def test_evaluator_errors_name_the_image():
    ev = ClassificationEvaluator("top1", 3)
    ev.reset()
    with pytest.raises(ValueError, match=r"'img_7'.*class id 3 is outside the range \[0, 3\)"):
        ev.process([{"image_id": "img_7", "label": 3}], [{"logits": torch.zeros(3)}])
    ml = ClassificationEvaluator("map11", 3)
    with pytest.raises(ValueError, match=r"'x'.*class id -1 is outside the range \[0, 3\)"):
        ml.process(
            [{"image_id": "x", "labels": [0], "ignore_labels": [-1]}], [{"logits": torch.zeros(3)}]
        )
    with pytest.raises(ValueError, match=r"logits must have shape \(3,\)"):
        ev.process([{"image_id": 1, "label": 0}], [{"logits": torch.zeros(4)}])
    with pytest.raises(ValueError, match="known metrics: top1, mean_per_class, map11"):
        ClassificationEvaluator("accuracy", 3)

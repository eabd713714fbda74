"""Claims of a study file, checked: intervals computed by hand, paired vs Welch, over datasets,
verdicts, NaN, the study file's validation and the report's claims table."""

import csv
import json
import math

import pytest
import yaml

from contrastive_det.studies import StudyError, load_study
from contrastive_det.studies.claims import check_claims, difference_interval
from contrastive_det.studies.report import write_report

from test_report import fake_study

T975 = {2: 4.302652729911275, 3: 3.182446305284263}  # Student t quantiles (tables)


def rec(transfer, row, seed, value, dataset="toy_test", metric="linear/score", pretrain_seed=None):
    return {
        "transfer": transfer,
        "dataset": dataset,
        "row": row,
        "seed": seed,
        "pretrain_seed": pretrain_seed,
        "metrics": {metric: value},
    }


CLAIM = {
    "better": "supcon",
    "than": "supervised",
    "metric": "linear/score",
    "transfers": ["linear_*"],
    "over": "seeds",
    "name": None,
}


def test_paired_interval_by_hand():
    # differences 1, 2, 3: mean 2, sample sd 1, half-width t(0.975, 2) * 1 / sqrt(3)
    diff, half, test, n = difference_interval(
        {0: 10.0, 1: 12.0, 2: 14.0}, {0: 9.0, 1: 10.0, 2: 11.0}
    )
    assert (diff, test, n) == (2.0, "paired t over seeds", "n = 3")
    # 2.484; Welch on the same numbers gives 4.1
    assert half == pytest.approx(T975[2] / math.sqrt(3))


def test_welch_interval_when_seeds_do_not_pair():
    from scipy import stats

    a, b = {0: 10.0, 1: 12.0, 2: 14.0}, {3: 9.0, 4: 10.0, 5: 11.0}
    diff, half, test, n = difference_interval(a, b)
    ref = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False).confidence_interval(
        0.95
    )
    assert test == "Welch t" and n == "n = 3, 3" and diff == 2.0
    assert (diff - half, diff + half) == pytest.approx((ref.low, ref.high))
    assert half > T975[2] / math.sqrt(3) + 1  # not the paired interval


@pytest.mark.parametrize(
    "better,verdict",
    [
        ([11.0, 12.1, 12.9], "supported"),  # differences 1.0, 1.1, 0.9: [0.75, 1.25]
        ([9.0, 9.9, 11.1], "contradicted"),  # -1.0, -1.1, -0.9
        ([10.0, 12.0, 14.0], "inconclusive at n = 3"),  # 0, 1, 2: [-1.48, 3.48]
    ],
)
def test_verdicts_over_seeds(better, verdict):
    records = [rec("linear_dtd", "supcon", s, v) for s, v in enumerate(better)]
    records += [rec("linear_dtd", "supervised", s, v) for s, v in enumerate([10.0, 11.0, 12.0])]
    records += [
        rec("finetune_dtd", row, 0, 0.0) for row in ("supcon", "supervised")
    ]  # not matched by linear_*
    (result,) = check_claims([CLAIM], records)
    assert result["verdict"] == verdict and (result["transfer"], result["dataset"]) == (
        "linear_dtd",
        "toy_test",
    )


def test_one_verdict_per_matched_transfer_over_seeds_and_one_over_datasets():
    # per-dataset differences of the means: 2, 3, 4 -> mean 3, sd 1, half t(0.975, 2) / sqrt(3) =
    # 2.48: supported
    records = []
    for transfer, gap in (("linear_a", 2.0), ("linear_b", 3.0), ("linear_c", 4.0)):
        records += [rec(transfer, "supcon", s, 50.0 + gap + s) for s in range(2)]
        records += [rec(transfer, "supervised", s, 50.0 + s) for s in range(2)]
    per_seed = check_claims([CLAIM], records)
    assert [r["transfer"] for r in per_seed] == ["linear_a", "linear_b", "linear_c"]
    (mean,) = check_claims([dict(CLAIM, over="datasets")], records)
    assert mean["difference"] == pytest.approx(3.0) and mean["ci95"] == pytest.approx(
        T975[2] / math.sqrt(3)
    )
    assert (mean["test"], mean["n"], mean["verdict"]) == (
        "paired t over datasets",
        "n = 3 datasets",
        "supported",
    )


def test_several_pretraining_seeds_are_the_unit():
    """Two pretraining seeds x two transfer seeds per row: the units are the pretraining seeds
    (means of their transfer seeds), so n = 2, never 4 pooled runs."""
    records = [
        rec("linear_a", "supcon", t, v, pretrain_seed=p)
        for p, t, v in [(0, 0, 10), (0, 1, 12), (1, 0, 14), (1, 1, 16)]
    ]
    records += [
        rec("linear_a", "supervised", t, v, pretrain_seed=p)
        for p, t, v in [(0, 0, 9), (0, 1, 9), (1, 0, 10), (1, 1, 10)]
    ]
    (r,) = check_claims([CLAIM], records)
    # units: supcon 11, 15; supervised 9, 10 -> paired differences 2, 5: mean 3.5, sd 2.12, t(0.975,
    # 1) = 12.71
    assert r["n"] == "n = 2" and r["difference"] == pytest.approx(3.5)
    assert r["ci95"] == pytest.approx(12.706204736174698 * math.sqrt(4.5) / math.sqrt(2))


def test_nan_and_missing_rows():
    records = [rec("linear_a", "supcon", 0, float("nan")), rec("linear_a", "supervised", 0, 1.0)]
    assert check_claims([CLAIM], records)[0]["verdict"] == "n/a (NaN in a run)"
    assert check_claims([dict(CLAIM, than="mocov2")], records)[0]["verdict"] == "not measured"
    one_each = [rec("linear_a", "supcon", 0, 5.0), rec("linear_a", "supervised", 0, 1.0)]
    assert check_claims([CLAIM], one_each)[0]["verdict"] == "inconclusive at n = 1, 1"


def write_study(tmp_path, claims, extra=None):
    study = {
        "name": "c",
        "output_dir": str(tmp_path / "out"),
        "pretrain": {
            "methods": {
                "simclr": {"config": "configs/toy/pretrain_simclr_R18.yaml"},
                "supcon": {"config": "configs/toy/pretrain_supcon_R18.yaml"},
            },
            "axes": {"images": {"key": "DATASETS.PRETRAIN.SUBSET_COUNT", "values": [20, 40]}},
        },
        "transfer": {"runs": {"lbfgs": {"config": "configs/toy/cls_linear_lbfgs_R18.yaml"}}},
        "claims": claims,
        **(extra or {}),
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return str(path)


@pytest.mark.parametrize(
    "claim,message",
    [
        (
            {"better": "mocov2", "than": "simclr", "metric": "linear/score"},
            r"claims\[0\]\.better: 'mocov2' is not a row",
        ),
        (
            {"better": "simclr__jpeg-10", "than": "supcon", "metric": "linear/score"},
            r"names axes \['jpeg'\]",
        ),
        ({"better": "simclr", "than": "simclr", "metric": "linear/score"}, "with itself"),
        (
            {"better": "simclr", "than": "supcon", "metric": "linear/score", "over": "tasks"},
            r"claims\[0\]\.over",
        ),
        ({"better": "simclr", "than": "supcon"}, r"claims\[0\]\.metric"),
        (
            {"better": "simclr", "than": "supcon", "metric": "x", "since": 2020},
            r"unknown keys \['since'\]",
        ),
    ],
)
def test_bad_claims_name_the_key(tmp_path, claim, message):
    with pytest.raises(StudyError, match=message):
        load_study(write_study(tmp_path, [claim]))


def test_claims_load_and_follow_no_pretrain(tmp_path):
    path = write_study(
        tmp_path,
        [
            {
                "better": "supcon__images-40",
                "than": "random-init",
                "metric": "linear/score",
                "transfers": "lbfgs",
            },
            {"better": "brought", "than": "random-init", "metric": "linear/score"},
        ],
    )
    from test_checkpoint_rows import tv_checkpoint

    ckpt = tv_checkpoint(str(tmp_path / "m.pth"))
    study = load_study(path, checkpoints={"brought": ckpt})
    assert study.claims[0] == {
        "better": "supcon__images-40",
        "than": "random-init",
        "metric": "linear/score",
        "transfers": ["lbfgs"],
        "over": "seeds",
        "name": None,
    }
    # the supcon claim cannot be checked
    only = load_study(path, checkpoints={"brought": ckpt}, no_pretrain=True)
    assert [c["better"] for c in only.claims] == ["brought"]


def test_the_report_ends_with_the_claims_table(tmp_path):
    results = [
        ("linear_dtd", row, row, {}, s, {"linear/score": v})
        for row, vals in (("supcon", [11.0, 12.1, 12.9]), ("supervised", [10.0, 11.0, 12.0]))
        for s, v in enumerate(vals)
    ]
    fake_study(str(tmp_path), results, axes={})
    plan = json.load(open(tmp_path / "plan.json"))
    plan["claims"] = [dict(CLAIM, name="SupCon transfers better")]
    json.dump(plan, open(tmp_path / "plan.json", "w"))
    path = write_report(str(tmp_path), pictures=False, log=lambda line: None)
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert (
        "| SupCon transfers better: supcon > supervised on linear/score (linear_*) | linear_dtd | "
        "toy_test | +1.00 | [+0.75, +1.25] | paired t over seeds | n = 3 | **supported** |"
    ) in tables
    assert "#### Claims" in open(path).read()
    (row,) = list(csv.DictReader(open(tmp_path / "report" / "claims.csv")))
    assert row["verdict"] == "supported" and float(row["ci95"]) == pytest.approx(
        T975[2] * 0.1 / math.sqrt(3)
    )


def test_a_claim_can_compare_two_transfers_of_one_row():
    """Rows = tuning methods (Core-tuning's table): core_tuning_<set> against ce_finetune_<set> of
    the MoCo v2 row, paired by set; mean differences 2.25, 3.25, 4.25 over three sets -> mean 3.25,
    half t(0.975, 2) / sqrt(3)."""
    records = []
    for s, gap in (("dtd", 2.0), ("cars", 3.0), ("pets", 4.0)):
        records += [rec(f"core_tuning_{s}", "mocov2", t, 60.0 + gap + 1.5 * t) for t in range(2)]
        records += [rec(f"ce_finetune_{s}", "mocov2", t, 60.0 + t) for t in range(2)]
        records += [
            rec(f"core_tuning_{s}", "random-init", t, 0.0) for t in range(2)
        ]  # another row: not compared
    claim = {
        "row": "mocov2",
        "better": "core_tuning_*",
        "than": "ce_finetune_*",
        "metric": "linear/score",
        "over": "seeds",
        "name": None,
    }
    per_set = check_claims([claim], records)
    assert [r["transfer"] for r in per_set] == [
        "core_tuning_cars vs ce_finetune_cars",
        "core_tuning_dtd vs ce_finetune_dtd",
        "core_tuning_pets vs ce_finetune_pets",
    ]
    assert [r["difference"] for r in per_set] == [3.25, 2.25, 4.25] and per_set[0][
        "test"
    ] == "paired t over seeds"
    (mean,) = check_claims([dict(claim, over="datasets")], records)
    assert mean["difference"] == pytest.approx(3.25) and mean["ci95"] == pytest.approx(
        T975[2] / math.sqrt(3)
    )
    assert (
        mean["verdict"] == "supported"
        and mean["claim"]
        == "core_tuning_* > ce_finetune_* for mocov2 on linear/score (mean over datasets)"
    )


@pytest.mark.parametrize(
    "claim,message",
    [
        (
            {"row": "simclr", "better": "lbfgs*", "than": "nothing_*", "metric": "x"},
            r"claims\[0\]\.than: 'nothing_\*' matches no transfer",
        ),
        (
            {"row": "simclr", "better": "lbfgs*", "than": "lbfgs", "metric": "x"},
            "must both have one",
        ),
        (
            {"row": "mocov2", "better": "lbfgs", "than": "lbfgs", "metric": "x"},
            r"claims\[0\]\.row: 'mocov2' is not a row",
        ),
        (
            {
                "row": "simclr",
                "better": "lbfgs",
                "than": "lbfgs",
                "metric": "x",
                "transfers": ["a"],
            },
            "does not apply",
        ),
    ],
)
def test_bad_row_claims_name_the_key(tmp_path, claim, message):
    with pytest.raises(StudyError, match=message):
        load_study(write_study(tmp_path, [claim]))


def test_a_claim_naming_a_row_the_study_does_not_make_is_refused(tmp_path):
    from contrastive_det.studies import expand

    study = load_study(
        write_study(
            tmp_path,
            [
                {
                    "better": "simclr__images-30",
                    "than": "supcon__images-40",
                    "metric": "linear/score",
                }
            ],
        )
    )
    with pytest.raises(StudyError, match=r"claims\[0\]\.better: no row 'simclr__images-30'"):
        expand(study)


def test_a_claim_whose_rows_never_run_on_its_transfers_is_refused(tmp_path):
    """A transfer's methods: that leaves out a row of the claim: it could only ever be "not
    measured"."""
    from contrastive_det.studies import expand

    runs = {
        "transfer": {
            "runs": {
                "lbfgs": {"config": "configs/toy/cls_linear_lbfgs_R18.yaml"},
                "det": {"config": "configs/toy/digits_R_50_C4.yaml", "methods": ["supcon"]},
            }
        }
    }
    bad = load_study(
        write_study(
            tmp_path,
            [
                {
                    "better": "supcon__images-40",
                    "than": "simclr__images-40",
                    "metric": "bbox/AP",
                    "transfers": ["det"],
                }
            ],
            runs,
        )
    )
    with pytest.raises(
        StudyError,
        match=r"claims\[0\]: no transfer of \['det'\] runs both 'supcon__images-40' and "
        r"'simclr__images-40' \(det runs \['supcon'\]\)",
    ):
        expand(bad)
    fine = load_study(
        write_study(
            tmp_path,
            [
                {
                    "better": "supcon__images-40",
                    "than": "simclr__images-40",
                    "metric": "linear/score",
                }
            ],
            runs,
        )
    )  # lbfgs runs both
    assert expand(fine)
    row_bad = load_study(
        write_study(
            tmp_path,
            [{"row": "simclr__images-40", "better": "det", "than": "lbfgs", "metric": "x"}],
            runs,
        )
    )
    with pytest.raises(
        StudyError, match=r"row 'simclr__images-40' runs on no pair of transfers 'det' / 'lbfgs'"
    ):
        expand(row_bad)


def test_seeds_that_replicate_nothing_give_no_verdict():
    """A deterministic probe gives every transfer seed the same value: a difference of 5 with zero
    spread is not evidence of anything (a t interval of width 0 would call it supported)."""
    records = [rec("linear_a", "supcon", s, 15.0) for s in range(3)] + [
        rec("linear_a", "supervised", s, 10.0) for s in range(3)
    ]
    (r,) = check_claims([CLAIM], records)
    assert r["difference"] == 5.0 and r["ci95"] is None and r["verdict"] == "inconclusive at n = 3"
    assert "no spread" in r["test"]
    unpaired = records[:3] + [rec("linear_a", "supervised", s, 10.0) for s in (7, 8, 9)]
    assert check_claims([CLAIM], unpaired)[0]["verdict"] == "inconclusive at n = 3, 3"

"""One chain without a study file: tools/run_chain.py end to end with tiny settings, and its summary table."""
import json
import os

import pytest

from contrastive_det.apps.chain import summarize

from conftest import FAST, run_cli


def write_results(path, metrics, dataset="toy_digits_test"):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump({"metrics": {dataset: metrics}}, f)


def test_summary_table_from_results_files(tmp_path):
    write_results(tmp_path / "detect_simclr", {"bbox/AP50": 12.345, "bbox/AP": 4.0, "bbox/AP75": 2.5})
    write_results(tmp_path / "pretrain_simclr", {"knn/top1": 91.25}, dataset="toy_digits_cls_test")
    write_results(tmp_path / "detect_random-init", {"bbox/AP50": 1.0, "bbox/AP": 0.5, "bbox/AP75": 0.0})
    text = summarize(str(tmp_path), ["simclr", "random-init"])
    assert "| simclr | 91.2 | 12.35 | 4.00 | 2.50 |" in text  # 91.25 rounds half to even
    assert "| random-init | - | 1.00 | 0.50 | 0.00 |" in text
    assert json.load(open(tmp_path / "summary.json"))["simclr"]["bbox/AP50"] == pytest.approx(12.345)
    assert (tmp_path / "summary.md").read_text() == text


def test_missing_results_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="detect_supcon"):
        summarize(str(tmp_path), ["supcon"])


def test_chain_end_to_end_tiny(toy_root, tmp_path):
    out = tmp_path / "chain"
    proc = run_cli("run_chain.py", ["--methods", "simclr", "--pretrain-iters", "2", "--detect-iters", "1",
                                    "--output", str(out), *FAST], toy_root)
    log = proc.stdout + proc.stderr
    assert "100/100 detectron2 backbone tensors matched" in log and "tolerance 0.0001: OK" in log  # R18 converted
    table = json.load(open(out / "summary.json"))
    assert set(table) == {"simclr", "random-init"}
    assert 20.0 <= table["simclr"]["knn_top1"] <= 100.0  # a percentage, above chance (10 classes)
    simclr = json.load(open(out / "detect_simclr" / "results.json"))
    assert simclr["weights"].endswith("simclr_R18.pkl") and simclr["method"] == "simclr"
    assert json.load(open(out / "detect_random-init" / "results.json"))["method"] == "random-init"
    assert "| simclr |" in (out / "summary.md").read_text()

"""
One chain on the toy data, end to end, without a study file: contrastive pretraining -> backbone export -> verified
conversion to detectron2 -> Faster R-CNN transfer on the digit scenes, against random init, and
a table of AP50 / AP / AP75. Each stage runs the real CLI (tools/*.py) in its own process.
"""
import os
import subprocess
import sys
import time

from ..engine.results import RESULTS_FILE, read_results
from ..utils.atomic import atomic_open, atomic_write_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DETECTION_BASE = os.path.join(REPO, "configs", "toy", "digits_R_50_FPN.yaml")
METRICS = ("bbox/AP50", "bbox/AP", "bbox/AP75")


def pretrain_config(method):
    path = os.path.join(REPO, "configs", "toy", f"pretrain_{method}_R18.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No toy pretraining config for method {method!r}: {path}")
    return path


def _print(line):
    print(line, flush=True)  # interleave with the stages' own output, also when piped to a file


def run_stage(name, argv, log):
    """Run one CLI stage, streaming its output; raise naming the stage and command when it fails."""
    log(f"==> {name}: {' '.join(argv)}")
    start = time.time()
    proc = subprocess.run([sys.executable, *argv], cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"stage '{name}' failed (exit {proc.returncode}): {' '.join(argv)}")
    log(f"<== {name}: {time.time() - start:.0f} s")


def chain_stages(methods, output_dir, pretrain_iters, detect_iters, extra_detect=()):
    """
    The stages as (name, argv) pairs. Each method: pretrain -> convert (writes the detection config
    inheriting the toy FPN protocol with the weights' depth and input keys) -> detect. The random-init
    baseline uses the first method's detection config with MODEL.WEIGHTS emptied, so that only the
    weights differ between rows.
    """
    tools = os.path.join(REPO, "tools")
    stages, first_cfg = [], None
    for m in methods:
        pre_dir = os.path.join(output_dir, f"pretrain_{m}")
        pkl, det_cfg = os.path.join(output_dir, f"{m}_R18.pkl"), os.path.join(output_dir, f"detect_{m}.yaml")
        first_cfg = first_cfg or det_cfg
        stages += [
            (f"pretrain {m}", [os.path.join(tools, "pretrain_net.py"), "--config-file", pretrain_config(m),
                               "SOLVER.MAX_ITER", str(pretrain_iters), "OUTPUT_DIR", pre_dir]),
            (f"convert {m}", [os.path.join(tools, "convert_to_detectron2.py"), os.path.join(pre_dir, "backbone.pth"),
                              pkl, "--write-config", det_cfg, "--base", DETECTION_BASE]),
            (f"detect {m}", [os.path.join(tools, "train_net.py"), "--config-file", det_cfg,
                             "SOLVER.MAX_ITER", str(detect_iters), "RESULTS.METHOD", m, *extra_detect,
                             "OUTPUT_DIR", os.path.join(output_dir, f"detect_{m}")]),
        ]
    stages.append(("detect random-init", [os.path.join(tools, "train_net.py"), "--config-file", first_cfg,
                                          "MODEL.WEIGHTS", "", "SOLVER.MAX_ITER", str(detect_iters), *extra_detect,
                                          "OUTPUT_DIR", os.path.join(output_dir, "detect_random-init")]))
    return stages


def summarize(output_dir, rows):
    """
    Read ``<output_dir>/detect_<row>/results.json`` for each row; write summary.json and summary.md
    (atomically) and return the markdown table.
    """
    table = {}
    for row in rows:
        res = read_results(os.path.join(output_dir, f"detect_{row}"))
        (dataset, metrics), = res["metrics"].items()
        knn = None
        pre = os.path.join(output_dir, f"pretrain_{row}")
        if os.path.isfile(os.path.join(pre, RESULTS_FILE)):
            knn = next(iter(read_results(pre)["metrics"].values())).get("knn/top1")
        table[row] = {"dataset": dataset, "knn_top1": knn, **{k: metrics[k] for k in METRICS}}
    atomic_write_json(os.path.join(output_dir, "summary.json"), table)
    lines = ["| pretraining | kNN top-1 (crops) | AP50 | AP | AP75 |", "|---|---|---|---|---|"]
    for row, t in table.items():
        knn = "-" if t["knn_top1"] is None else f"{t['knn_top1']:.1f}"
        lines.append(f"| {row} | {knn} | " + " | ".join(f"{t[k]:.2f}" for k in METRICS) + " |")
    text = "\n".join(lines) + "\n"
    with atomic_open(os.path.join(output_dir, "summary.md")) as f:
        f.write(text)
    return text


def run_chain(methods, output_dir, pretrain_iters, detect_iters, extra_detect=(), log=_print):
    os.makedirs(output_dir, exist_ok=True)
    start = time.time()
    for name, argv in chain_stages(methods, output_dir, pretrain_iters, detect_iters, extra_detect):
        run_stage(name, argv, log)
    text = summarize(output_dir, list(methods) + ["random-init"])
    log(f"\nFaster R-CNN R18-FPN on the toy digit scenes ({detect_iters} iterations), "
        f"after {pretrain_iters} pretraining iterations ({time.time() - start:.0f} s in all):\n{text}")
    log(f"summary: {os.path.join(output_dir, 'summary.md')}")
    return text

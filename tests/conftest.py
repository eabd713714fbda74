"""Shared fixtures: a tiny toy digit-scenes dataset generated once per test session."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

# One torch (OpenMP) thread per process unless the caller chose: `make test` runs two pytest workers
# on the 2-core CI machine and many tests start 2-process runs; more threads than cores spin and
# stall (measured: the suite took 21.5 min with torch's default threads, 18 min with one).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TOY_CONFIG = os.path.join(REPO, "configs", "toy", "digits_R_50_C4.yaml")

# Overrides that make a toy run take seconds on 2 CPU cores (every test run uses them).
FAST = [
    "SOLVER.IMS_PER_BATCH",
    "1",
    "INPUT.MIN_SIZE_TRAIN",
    "(128,)",
    "INPUT.MIN_SIZE_TEST",
    "128",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "16",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "20",
    "TEST.PRECISE_BN.NUM_ITER",
    "1",
    "DATALOADER.NUM_WORKERS",
    "0",
]


@pytest.fixture(autouse=True)
def at_repository_root(monkeypatch):
    """Every test runs in the repository root, as the README's commands do: study files' relative
    paths (configs/...) start at the working directory."""
    monkeypatch.chdir(REPO)


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored afterwards: tiny fits and convolutions stall at
    random on a busy 2-core machine with two. A module opts in with ``pytestmark =
    pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    """``$DETECTRON2_DATASETS`` holding toy_digits/ (10 trainval, 4 test images), registered."""
    from contrastive_det.data import register_toy_digits
    from contrastive_det.data.toy import generate_toy_digits

    root = tmp_path_factory.mktemp("d2datasets")
    generate_toy_digits(
        str(root / "toy_digits"), num_trainval=10, num_test=4, seed=0, progress=False
    )
    register_toy_digits(str(root / "toy_digits"))
    return root


def copy_crops(toy_root, dest, per_class, subdir="crops"):
    """
    Copy the first ``per_class[split]`` toy digit crops of each class into ``dest/<split>/<class>/``
    (``subdir`` "crops_textured" for the second toy domain).
    """
    for split, n in per_class.items():
        for cls in range(10):
            src = toy_root / "toy_digits" / subdir / split / str(cls)
            (dest / split / str(cls)).mkdir(parents=True)
            for name in sorted(os.listdir(src))[:n]:
                shutil.copy(src / name, dest / split / str(cls) / name)
    return dest


def folder_sets(prefix, root, splits=("train", "test")):
    """A ``DATASETS.CUSTOM`` value declaring ``root/<split>`` as class-per-folder sets
    ``<prefix>_<split>``."""
    return (
        "["
        + ", ".join(
            f"{{'NAME': '{prefix}_{s}', 'FORMAT': 'folder', 'ROOT': '{root / s}'}}" for s in splits
        )
        + "]"
    )


def option_list(values):
    """``{KEY: value}`` as the flat ``KEY value ...`` list of a command line."""
    return [str(x) for kv in values.items() for x in kv]


def tiny_probe_opts(custom, prefix, out, cache, **extra):
    """
    Overrides for a classification run on the folder sets ``custom`` (:func:`folder_sets`) that
    takes
    seconds: 32-pixel crops, a 4-point L-BFGS grid of 100 iterations, no loader workers, seed 5.
    """
    values = {
        "DATASETS.CUSTOM": custom,
        "DATASETS.TRAIN": f"('{prefix}_train',)",
        "DATASETS.TEST": f"('{prefix}_test',)",
        "INPUT.CLS.CROP_SIZE": "32",
        "INPUT.CLS.TEST_RESIZE": "32",
        "DATALOADER.NUM_WORKERS": "0",
        "SEED": "5",
        "CLASSIFICATION.FEATURE_CACHE": str(cache),
        "CLASSIFICATION.LBFGS.NUM_REGS": "4",
        "CLASSIFICATION.LBFGS.MAX_ITER": "100",
        "OUTPUT_DIR": str(out),
    }
    values.update(extra)
    return option_list(values)


def run_config(config_file, opts, seed=5):
    """The config ``tools/train_net.py --config-file config_file --eval-only opts`` would run
    with."""
    import argparse

    from contrastive_det.engine.defaults import build_run_config

    args = argparse.Namespace(
        config_file=str(config_file), eval_only=True, resume=False, opts=list(opts)
    )
    return build_run_config(args, seed=seed)[0]


NCCL_SIM_DIR = os.path.join(REPO, "tests", "nccl_sim")


def simulated_nccl_env(env):
    """``env`` with NCCL's device rule simulated in every process
    (tests/nccl_sim/simulated_nccl.py)."""
    path = os.pathsep.join(p for p in (NCCL_SIM_DIR, env.get("PYTHONPATH", "")) if p)
    return dict(env, PYTHONPATH=path, CDET_SIMULATE_NCCL="1")


def _multi_process(args):
    """The command starts several processes (--num-gpus N > 1 or --num-machines N > 1)."""
    for flag in ("--num-gpus", "--num-machines"):
        if flag in args and int(args[args.index(flag) + 1]) > 1:
            return True
    return False


def start_cli(script, args, datasets_root, *, simulate_nccl=None, **popen_kwargs):
    """
    Start ``tools/<script>`` in a subprocess with ``DETECTRON2_DATASETS`` set; return the Popen.
    A command of several processes runs under the simulated NCCL device rule (``simulate_nccl``
    None = decide from the arguments): gloo takes CPU tensors that NCCL, which detectron2's launcher
    picks on every GPU machine, refuses.
    """
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets_root), PYTHONWARNINGS="ignore")
    if simulate_nccl or (simulate_nccl is None and _multi_process(list(args))):
        env = simulated_nccl_env(env)
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tools", script), *args],
        cwd=REPO,
        env=env,
        text=True,
        **popen_kwargs,
    )


def free_port():
    """A TCP port on 127.0.0.1 that is free now (for --dist-url)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(script, args, datasets_root, check=True, timeout=900):
    """Run ``tools/<script>`` (see :func:`start_cli`) to the end; return its CompletedProcess."""
    proc = start_cli(script, args, datasets_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed "
            f"({done.returncode}):\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}"
        )
    return done

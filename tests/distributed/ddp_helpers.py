"""Run a function on W CPU processes joined by gloo over tcp://127.0.0.1 (what --num-gpus W does on
CPU)."""

import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import NCCL_SIM_DIR, free_port  # noqa: F401  (the CLI tests import free_port from here)

sys.path.insert(0, NCCL_SIM_DIR)
import simulated_nccl  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _entry(rank, fn, world, url, result_file, args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=url, rank=rank, world_size=world)
    # the package's collectives must take what NCCL takes (see tests/nccl_sim)
    simulated_nccl.install()
    try:
        out = fn(rank, world, *args)
        gathered = [None] * world
        dist.all_gather_object(gathered, out)
        if rank == 0:
            torch.save(gathered, result_file)
    finally:
        dist.destroy_process_group()


def run_on_processes(fn, world, tmp_path, *args, timeout=240):
    """``fn(rank, world, *args)`` on ``world`` gloo processes; returns the list of its per-rank
    results (objects torch.save can store). The processes are forked (no re-import of torch and
    detectron2: seconds per process on a busy 2-core machine) and killed if they outlive ``timeout``
    seconds."""
    result_file = str(tmp_path / f"result_{fn.__name__}.pt")
    url = f"tcp://127.0.0.1:{free_port()}"
    ctx = mp.start_processes(
        _entry,
        args=(fn, world, url, result_file, args),
        nprocs=world,
        join=False,
        start_method="fork",
    )
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            raise TimeoutError(f"{fn.__name__} on {world} processes did not finish in {timeout} s")
    return torch.load(result_file, weights_only=False)


def two_view_batch(labels, size, seed=0):
    """Pretraining inputs: one dict per label with two random uint8 views (3 x size x size)."""
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "views": [
                torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
                for _ in range(2)
            ],
            "label": label,
        }
        for label in labels
    ]

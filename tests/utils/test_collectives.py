"""The package's collectives choose the device the process group's backend serves."""

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from contrastive_det.utils import collectives

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_single_process_is_the_identity():
    t = torch.arange(3.0)
    assert collectives.all_reduce(t) is t and collectives.broadcast(t) is t
    assert collectives.all_gather(t)[0] is t and collectives.shared_value(5) == 5
    assert collectives.backend_device(t) == torch.device("cpu") and collectives.on_backend(t) is t


@pytest.mark.parametrize(
    "backend, expected", [("nccl", torch.device("cuda", 3)), ("gloo", torch.device("cpu"))]
)
def test_backend_device_is_the_current_cuda_device_under_nccl_only(monkeypatch, backend, expected):
    monkeypatch.setattr(collectives, "_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: backend)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert collectives.backend_device(torch.zeros(1)) == expected


def test_all_reduce_under_nccl_moves_the_flag_and_hands_it_back(monkeypatch):
    """What the non-finite check does: a CPU flag reaches the collective on the CUDA device and the
    result comes back into the CPU tensor."""
    seen = []
    monkeypatch.setattr(collectives, "_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        collectives, "_to", lambda t, device: (seen.append(torch.device(device)), t.clone())[1]
    )

    def fake_all_reduce(t, op=None, group=None):
        seen.append("reduce")
        t.fill_(0.0)

    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    flag = torch.tensor([1.0])
    assert collectives.all_reduce(flag, op=dist.ReduceOp.MIN) is flag and flag.item() == 0.0
    assert seen == [torch.device("cuda", 0), "reduce", torch.device("cpu")]


def test_no_module_calls_torch_distributed_tensor_collectives_itself():
    """Only utils/collectives.py reaches torch.distributed's tensor collectives (NCCL's device rule
    is kept in one place); objects go through detectron2's comm."""
    names = (
        "all_reduce",
        "broadcast",
        "all_gather",
        "all_gather_into_tensor",
        "reduce_scatter",
        "reduce_scatter_tensor",
        "reduce",
        "gather",
        "scatter",
        "all_to_all",
        "all_to_all_single",
    )
    offenders = []
    package = os.path.join(REPO, "contrastive_det")
    for folder, _, files in os.walk(package):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path.endswith(os.path.join("utils", "collectives.py")):
                continue
            for number, line in enumerate(open(path), 1):
                code = line.split("#")[0]
                if any(f"dist.{n}(" in code or f"distributed.{n}(" in code for n in names):
                    offenders.append(f"{os.path.relpath(path, REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_simulated_nccl_refuses_a_cpu_tensor_from_the_package(tmp_path):
    """The test harness itself (tests/nccl_sim): a package collective on a CPU tensor that did not
    go through collectives.on_backend fails as NCCL fails; the same through the helpers passes."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, torch, torch.distributed as dist\n"
        "import simulated_nccl\n"
        "os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=os.environ['PORT'])\n"
        "dist.init_process_group('gloo', rank=0, world_size=1)\n"
        "simulated_nccl.install()\n"
        "from contrastive_det.utils import collectives\n"
        "collectives._distributed = lambda: True\n"
        "flag = torch.tensor([1.0])\n"
        "collectives.all_reduce(flag)\n"
        "print('helper ok', dist.get_backend())\n"
        "g = {'__name__': 'contrastive_det.fake'}\n"
        "exec('import torch.distributed as dist\\ndef f(t):\\n    dist.all_reduce(t)', g)\ntry:\n"
        "    g['f'](torch.tensor([1.0]))\n"
        "except RuntimeError as e:\n"
        "    print('refused:', e)\n"
    )
    from conftest import NCCL_SIM_DIR, free_port

    env = dict(os.environ, PYTHONPATH=NCCL_SIM_DIR, PORT=str(free_port()))
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "helper ok nccl" in out.stdout
    assert "refused: No backend type associated with device type cpu" in out.stdout

"""What a GPU run repeats: the CUDA generators follow (SEED, iteration, rank) like the CPU one, and
DETERMINISTIC switches on torch's and cuDNN's deterministic kernels."""

import torch

from contrastive_det.config import get_cfg
from contrastive_det.engine import defaults
from contrastive_det.utils import seeding


def test_step_seeding_reseeds_the_cuda_generators_once_cuda_is_in_use(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda s: calls.append(s))
    seed = seeding.derive_seed(7, 120, 1)
    seeding.seed_global_rngs(seed)
    assert calls == [seed]  # a resumed run at iteration 120 draws what the first run drew there
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    seeding.seed_global_rngs(seed)
    assert calls == [seed]  # a CPU run never initialises CUDA for it


def test_deterministic_switches_on_the_deterministic_kernels(monkeypatch):
    assert get_cfg().DETERMINISTIC is False
    chosen = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda flag: chosen.append(flag))
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    defaults.set_deterministic()
    assert (
        chosen == [True]
        and torch.backends.cudnn.deterministic
        and not torch.backends.cudnn.benchmark
    )
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"

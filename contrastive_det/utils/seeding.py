"""Randomness as a pure function of integers, so that a resumed run draws what the first run drew."""
import random

import numpy as np
import torch


def derive_seed(*keys):
    """
    A 63-bit seed determined by ``keys`` (non-negative ints), e.g. ``(seed, iteration, rank)``.
    Different keys give statistically independent streams (numpy's ``SeedSequence``).
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seed_global_rngs(seed):
    """Seed python's ``random``, numpy's global generator and torch's CPU (and, once initialised, CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    # the CPU generator directly: torch.manual_seed also queues lazy CUDA/XPU/MTIA seeding (with a
    # stack trace each call) on CUDA builds, ~30% of the per-image cost of the two-view mapper
    torch.random.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


class isolated_global_rngs:
    """
    Context manager: seed the global generators with ``seed`` inside the block and restore their
    previous states on exit, so that code run in the main process (a data loader with
    ``num_workers 0``) does not change the randomness of the training step around it.
    """

    def __init__(self, seed):
        self._seed = seed

    def __enter__(self):
        self._states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
        seed_global_rngs(self._seed)
        return self

    def __exit__(self, *exc):
        py, np_state, torch_state = self._states
        random.setstate(py)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)
        return False

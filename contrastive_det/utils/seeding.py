"""Randomness as a pure function of integers, so that a resumed run draws what the first run
drew."""

import random

import numpy as np
import torch


_MASK64 = (1 << 64) - 1


def _splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*keys):
    """
    A 63-bit seed determined by ``keys`` (non-negative ints), e.g. ``(seed, iteration, rank)``:
    the keys are folded through the splitmix64 mixer, so neighbouring keys give unrelated seeds.
    Pure python and about 2 us (it runs once per training image).
    """
    h = 0x243F6A8885A308D3
    for k in keys:
        h = _splitmix64(h ^ (int(k) & _MASK64))
    return h >> 1


def seed_global_rngs(seed):
    """Seed python's ``random``, numpy's global generator and torch's CPU (and, once initialised,
    CUDA) generators."""
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

"""Installs the simulated NCCL device rule (simulated_nccl.py) in every process when
CDET_SIMULATE_NCCL=1."""

import os

if os.environ.get("CDET_SIMULATE_NCCL") == "1":
    import simulated_nccl

    simulated_nccl.install()

"""Shared by the evaluation tests (import the fixture): they fit small models: one torch thread each (a busy 2-core machine stalls tiny fits at random)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

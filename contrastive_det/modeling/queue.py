"""A FIFO queue of keys (and their labels) kept as buffers, so it is checkpointed and resumed."""

import torch
from torch import nn
from torch.nn import functional as F


class KeyQueue(nn.Module):
    """
    ``size`` x ``dim`` L2-normalised keys with integer labels (-1 = no label) and a write pointer.
    Starts with random unit keys, as MoCo does. ``enqueue`` takes the global batch (already
    gathered across processes); ``size`` must be a multiple of the global batch.
    """

    def __init__(self, size, dim):
        super().__init__()
        if size < 1:
            raise ValueError(f"MODEL.CONTRASTIVE.QUEUE_SIZE must be >= 1, got {size}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))  # KxD
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))  # K
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self):
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys, labels=None):
        n = keys.shape[0]  # global batch
        if self.size % n:
            raise ValueError(
                f"MODEL.CONTRASTIVE.QUEUE_SIZE={self.size} must be a multiple of the global batch "
                f"size {n}"
            )
        p = int(self.ptr)
        self.keys[p : p + n] = keys.detach().to(self.keys.dtype)
        if labels is not None:
            self.labels[p : p + n] = labels
        self.ptr.fill_((p + n) % self.size)

"""Collectives used by the pretrainers; each is the identity in a single process. Tensors reach the
process group through :mod:`contrastive_det.utils.collectives` (NCCL takes CUDA tensors only)."""

import torch

from detectron2.utils import comm

from ..utils import collectives


class _GatherWithGrad(torch.autograd.Function):
    """
    all_gather whose backward sums the incoming gradients over processes and returns this process's
    slice. With every process computing the same loss on the gathered batch, and DDP averaging
    parameter gradients, the gradients equal those of one process on the concatenated batch.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.batch = x.shape[0]
        return torch.cat(collectives.all_gather(x), dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = collectives.all_reduce(grad.contiguous().clone())
        rank = comm.get_rank()
        return grad[rank * ctx.batch : (rank + 1) * ctx.batch]


def gather_with_grad(x):
    """NxD on each of W processes -> (W*N)xD, in rank order, differentiable."""
    if comm.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x):
    """NxD on each of W processes -> (W*N)xD, in rank order, without gradient."""
    if comm.get_world_size() == 1:
        return x
    return torch.cat(collectives.all_gather(x), dim=0)


@torch.no_grad()
def batch_shuffle(x):
    """
    MoCo's shuffled BN: permute the global batch across processes so that each process's BN
    statistics for the keys come from other processes' images. Returns (local shuffled x,
    index to undo). Requires the same local batch size on every process.
    """
    world = comm.get_world_size()
    if world == 1:
        return x, None
    x_all = gather_no_grad(x)  # (W*N)x...
    perm = torch.randperm(x_all.shape[0], device=x.device)
    collectives.broadcast(perm, src=0)
    unshuffle = torch.argsort(perm)
    n = x.shape[0]
    rank = comm.get_rank()
    return x_all[perm[rank * n : (rank + 1) * n]], unshuffle


@torch.no_grad()
def batch_unshuffle(x, unshuffle):
    """Undo :func:`batch_shuffle` on the per-process outputs x (NxD)."""
    if unshuffle is None:
        return x
    x_all = gather_no_grad(x)
    n = x.shape[0]
    rank = comm.get_rank()
    return x_all[unshuffle[rank * n : (rank + 1) * n]]

"""Collectives used by the pretrainers; each is the identity in a single process."""
import torch
import torch.distributed as dist

from detectron2.utils import comm


class _GatherWithGrad(torch.autograd.Function):
    """
    all_gather whose backward sums the incoming gradients over processes and returns this process's
    slice. With every process computing the same loss on the gathered batch, and DDP averaging
    parameter gradients, the gradients equal those of one process on the concatenated batch.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.batch = x.shape[0]
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        rank = dist.get_rank()
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
    out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


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
    dist.broadcast(perm, src=0)
    unshuffle = torch.argsort(perm)
    n = x.shape[0]
    rank = dist.get_rank()
    return x_all[perm[rank * n : (rank + 1) * n]], unshuffle


@torch.no_grad()
def batch_unshuffle(x, unshuffle):
    """Undo :func:`batch_shuffle` on the per-process outputs x (NxD)."""
    if unshuffle is None:
        return x
    x_all = gather_no_grad(x)
    n = x.shape[0]
    rank = dist.get_rank()
    return x_all[unshuffle[rank * n : (rank + 1) * n]]

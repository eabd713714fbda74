"""
The package's tensor collectives, on the device the process group's backend serves.

detectron2's ``launch`` starts NCCL whenever CUDA is available, and NCCL reduces CUDA tensors only:
a flag made with ``torch.tensor([...])`` on the CPU fails there ("No backend type associated with
device type cpu") while the same call passes on gloo, which is all a CPU test ever sees. So no
module of the package calls ``torch.distributed``'s tensor collectives itself: it calls the
functions here, which move the tensor to :func:`backend_device` (a no-op when it is there already),
run the collective and hand the result back on the tensor's own device. Small Python objects go
through detectron2's ``comm`` (``all_gather``, ``gather``), which uses a gloo group on every
backend.

Every function is the identity (or a copy) in a single process.
"""

import torch
import torch.distributed as dist

from detectron2.utils import comm

__all__ = ["backend_device", "on_backend", "all_reduce", "broadcast", "all_gather", "shared_value"]

# backends whose collectives take tensors on CUDA devices only
_CUDA_ONLY_BACKENDS = ("nccl",)


def _distributed():
    return dist.is_available() and dist.is_initialized() and comm.get_world_size() > 1


def backend_device(tensor=None, group=None):
    """
    The device on which ``group``'s (default: the world's) backend reduces tensors: this process's
    current CUDA device under NCCL; elsewhere (gloo, which reduces CPU and CUDA tensors) the
    tensor's own device, or the CPU without a tensor.
    """
    if _distributed() and str(dist.get_backend(group)).lower() in _CUDA_ONLY_BACKENDS:
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device if tensor is not None else torch.device("cpu")


def _to(tensor, device):
    """The one place a tensor moves for a collective (kept separate so that tests can watch it)."""
    return tensor.to(device)


def on_backend(tensor, group=None):
    """``tensor`` on :func:`backend_device` (the same tensor when it is there already)."""
    device = backend_device(tensor, group)
    return tensor if tensor.device == device else _to(tensor, device)


def all_reduce(tensor, op=None, group=None):
    """In place on ``tensor`` (any device): the reduction over processes (``op`` default SUM);
    returns it."""
    if not _distributed():
        return tensor
    op = dist.ReduceOp.SUM if op is None else op
    moved = on_backend(tensor, group)
    dist.all_reduce(moved, op=op, group=group)
    if moved is not tensor:
        tensor.copy_(_to(moved, tensor.device))
    return tensor


def broadcast(tensor, src=0, group=None):
    """In place on ``tensor`` (any device): process ``src``'s values on every process; returns
    it."""
    if not _distributed():
        return tensor
    moved = on_backend(tensor, group)
    dist.broadcast(moved, src=src, group=group)
    if moved is not tensor:
        tensor.copy_(_to(moved, tensor.device))
    return tensor


def all_gather(tensor, group=None):
    """
    [tensor of each process] in rank order, on ``tensor``'s device, without gradient. Every process
    must pass the same shape.
    """
    if not _distributed():
        return [tensor]
    moved = on_backend(tensor.contiguous(), group)
    out = [torch.empty_like(moved) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, moved, group=group)
    return [t if t.device == tensor.device else _to(t, tensor.device) for t in out]


def shared_value(value):
    """The main process's ``value`` (any picklable object) on every process, through detectron2's
    gloo group."""
    if comm.get_world_size() == 1:
        return value
    return comm.all_gather(value)[0]

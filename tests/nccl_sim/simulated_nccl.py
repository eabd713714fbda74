"""
NCCL's device rule on CPU-only machines, for the multi-process tests.

detectron2's ``launch`` starts NCCL whenever CUDA is available, and NCCL reduces CUDA tensors only;
gloo, which every CPU test runs on, takes CPU tensors too, so a collective on a CPU tensor passes
every CPU test and stops every multi-GPU run ("No backend type associated with device type cpu").
:func:`install` makes the processes of a gloo run behave, for the package's own collectives, as
NCCL would:

* ``torch.distributed.get_backend()`` of the default group answers "nccl" (so detectron2's ``comm``
  builds its separate gloo group for objects, as it does under NCCL, and the package chooses the
  device NCCL serves);
* the one function through which the package moves a tensor for a collective
  (``contrastive_det.utils.collectives._to``) marks the copies it makes for "cuda" (they stay CPU
  tensors: there is no GPU);
* a tensor collective on the default group called from the package with a tensor that was not
  moved there is refused with NCCL's error.

Collectives that detectron2 or torch make themselves (DDP, naiveSyncBN) act on the model's tensors,
which live on the GPU in a real NCCL run, and are left alone. Installed by ``sitecustomize`` (this
folder on ``PYTHONPATH`` and ``CDET_SIMULATE_NCCL=1``) in every process a CLI launches.
"""

import inspect
import weakref

ENV_FLAG = "CDET_SIMULATE_NCCL"
ERROR = "No backend type associated with device type cpu"

_on_device = {}  # id -> weak reference of the tensors moved to the simulated CUDA device


def _mark(tensor):
    _on_device[id(tensor)] = weakref.ref(tensor)


def _marked(tensor):
    ref = _on_device.get(id(tensor))
    return ref is not None and ref() is tensor


_installed = False


def _is_default(group):
    import torch.distributed as dist

    return group is None or group is dist.group.WORLD or group is dist.GroupMember.WORLD


def _from_package(depth=2):
    frame = inspect.currentframe()
    for _ in range(depth):
        frame = frame.f_back
    name = frame.f_globals.get("__name__", "")
    return name == "contrastive_det" or name.startswith("contrastive_det.")


def install():
    """Patch torch.distributed and the package's move function in this process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    import torch
    import torch.distributed as dist
    from torch.distributed import distributed_c10d as c10d

    from contrastive_det.utils import collectives

    real_get_backend = c10d.get_backend

    def get_backend(group=None):
        backend = real_get_backend(group)
        return "nccl" if str(backend) == "gloo" and _is_default(group) else backend

    dist.get_backend = c10d.get_backend = get_backend
    torch.cuda.current_device = lambda: 0

    real_barrier = dist.barrier

    # NCCL's device_ids mean nothing to gloo
    def barrier(group=None, async_op=False, device_ids=None, **kwargs):
        return real_barrier(group=group, async_op=async_op, **kwargs)

    dist.barrier = barrier

    real_to = collectives._to

    def to(tensor, device):
        if torch.device(device).type == "cuda":
            moved = tensor.detach().clone()
            _mark(moved)
            return moved
        if _marked(tensor):
            return tensor.clone()
        return real_to(tensor, device)

    collectives._to = to

    def guard(name, tensor_arg):
        real = getattr(dist, name)

        def checked(*args, **kwargs):
            group = kwargs.get("group")
            if _is_default(group) and _from_package():
                tensor = args[tensor_arg] if len(args) > tensor_arg else kwargs.get("tensor")
                if tensor is not None and tensor.device.type == "cpu" and not _marked(tensor):
                    raise RuntimeError(
                        f"{ERROR} (simulated NCCL: dist.{name} got a CPU tensor of shape "
                        f"{tuple(tensor.shape)} from {inspect.stack()[1].filename})"
                    )
            return real(*args, **kwargs)

        setattr(dist, name, checked)

    for name, index in (
        ("all_reduce", 0),
        ("broadcast", 0),
        ("reduce", 0),
        ("all_gather", 1),
        ("all_gather_into_tensor", 1),
        ("reduce_scatter_tensor", 1),
        ("gather", 0),
        ("scatter", 0),
        ("all_to_all_single", 1),
    ):
        guard(name, index)

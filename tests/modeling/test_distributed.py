"""Two CPU processes on gloo versus one process on the concatenated batch."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F

from contrastive_det.losses import nt_xent_loss, supcon_loss
from contrastive_det.modeling.distributed import gather_no_grad, gather_with_grad
from contrastive_det.modeling.queue import KeyQueue

WORLD, N, D_IN, D = 2, 4, 6, 5  # processes, images per process, input and embedding dims


def global_batch():
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(WORLD * N, D_IN, generator=g), torch.randn(WORLD * N, D_IN, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 1, 3, 2])  # (W*N)
    weight = torch.randn(D, D_IN, generator=g)
    return x1, x2, labels, weight


def losses_and_grads(x1, x2, labels, weight, gather):
    """SimCLR and SupCon losses of the (gathered) batch and their gradients w.r.t. the shared
    weight."""
    out = {}
    for name in ("simclr", "supcon"):
        w = weight.clone().requires_grad_(True)
        z1, z2 = (
            gather(F.normalize(x1 @ w.T, dim=1)),
            gather(F.normalize(x2 @ w.T, dim=1)),
        )  # (W*N)xD
        if name == "simclr":
            loss = nt_xent_loss(z1, z2, temperature=0.5)
        else:
            loss = supcon_loss(
                torch.stack([z1, z2], dim=1), labels=gather_no_grad(labels), temperature=0.1
            )
        loss.backward()
        out[name] = (loss.detach(), w.grad)
    return out


def worker(rank, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    x1, x2, labels, weight = global_batch()
    local = slice(rank * N, (rank + 1) * N)
    out = losses_and_grads(x1[local], x2[local], labels[local], weight, gather_with_grad)
    for name, (loss, grad) in out.items():
        dist.all_reduce(grad)  # what DDP does: average the parameter gradients over processes
        out[name] = (loss, grad / WORLD)
    queue = KeyQueue(size=3 * WORLD * N, dim=D)
    # same start on every process
    queue.keys.copy_(F.normalize(torch.ones(3 * WORLD * N, D), dim=1))
    keys = F.normalize(x1[local] @ weight.T, dim=1)
    queue.enqueue(gather_no_grad(keys), gather_no_grad(labels[local]))
    out["queue"] = (queue.keys.clone(), queue.labels.clone(), int(queue.ptr))
    gathered = [None] * WORLD
    dist.all_gather_object(gathered, out)
    if rank == 0:
        torch.save(gathered, result_file)
    dist.destroy_process_group()


def test_two_gloo_processes_match_one_process_on_the_concatenated_batch(tmp_path):
    result_file = str(tmp_path / "result.pt")
    mp.spawn(worker, args=(str(tmp_path / "init"), result_file), nprocs=WORLD, join=True)
    per_rank = torch.load(result_file, weights_only=False)

    x1, x2, labels, weight = global_batch()
    reference = losses_and_grads(x1, x2, labels, weight, lambda z: z)
    for name in ("simclr", "supcon"):
        for rank_out in per_rank:
            loss, grad = rank_out[name]
            torch.testing.assert_close(loss, reference[name][0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(grad, reference[name][1], rtol=1e-5, atol=1e-6)
        assert reference[name][1].abs().sum() > 0

    single = KeyQueue(size=3 * WORLD * N, dim=D)
    single.keys.copy_(F.normalize(torch.ones(3 * WORLD * N, D), dim=1))
    single.enqueue(F.normalize(x1 @ weight.T, dim=1), labels)
    for keys, qlabels, ptr in (r["queue"] for r in per_rank):
        torch.testing.assert_close(keys, single.keys)
        assert torch.equal(qlabels, single.labels) and ptr == int(single.ptr) == WORLD * N

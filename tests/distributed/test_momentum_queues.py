"""MoCo-style methods on 2 gloo processes: shuffled BN pairs every key with its own query, and the
queues (keys, labels, pointer) receive the GLOBAL batch: identical on both processes and equal to
what one process enqueues for the concatenated batch."""

import os

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.utils import comm

import contrastive_det  # noqa: F401
from contrastive_det.config import get_cfg
from contrastive_det.modeling.distributed import batch_shuffle, batch_unshuffle
from ddp_helpers import REPO, run_on_processes, two_view_batch

WORLD, N, SIZE = 2, 4, 32
LABELS = [0, 1, 1, 2, 2, 0, 3, 1]  # global batch; rank r holds LABELS[r*N:(r+1)*N]
ARCHS = ["MoCoV2", "SupConSelfSupCon", "SCAN"]


# ------------------------------------------------------------------ batch_shuffle / batch_unshuffle
def shuffle_round_trip(x):
    """shuffle -> a per-sample function -> unshuffle; returns (local shuffled input, output brought
    back)."""
    shuffled, unshuffle = batch_shuffle(x)
    return shuffled, batch_unshuffle(shuffled * 10 + 1, unshuffle)


def test_batch_shuffle_is_the_identity_round_trip_in_one_process():
    assert comm.get_world_size() == 1
    x = torch.arange(12.0).view(6, 2)
    shuffled, back = shuffle_round_trip(x)
    assert torch.equal(shuffled, x) and torch.equal(back, x * 10 + 1)


def encoded(rank, n=8):
    """Local batch whose rows encode their global index: row i of rank r is (g, -g), g = r*n + i."""
    g = torch.arange(rank * n, (rank + 1) * n, dtype=torch.float64)
    return torch.stack([g, -g], dim=1)  # nx2


def shuffle_worker(rank, world):
    # processes draw different permutations unless the broadcast aligns them
    torch.manual_seed(rank)
    x = encoded(rank)
    shuffled, back = shuffle_round_trip(x)
    return x, shuffled, back


# ------------------------------------------------------------------ queues of the momentum methods
def momentum_cfg(arch):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/toy/pretrain_supcon_selfsupcon_R18.yaml"))
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.DEVICE = "cpu"
    # synchronised BN makes the keys independent of how the batch is split (and of the shuffle), so
    # the 2-process keys can be compared with one process's; SHUFFLE_BN stays on (the recipe's).
    cfg.MODEL.TV_RESNET.NORM = "naiveSyncBN"
    cfg.MODEL.CONTRASTIVE.SHUFFLE_BN = True
    cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = 16
    cfg.MODEL.CONTRASTIVE.PROJ_DIM = 8
    cfg.MODEL.CONTRASTIVE.QUEUE_SIZE = 3 * WORLD * N
    cfg.MODEL.SCAN.NUM_NEIGHBORS = 4
    cfg.MODEL.CONTRASTIVE.MOMENTUM = 0.9
    return cfg


def global_batch():
    return two_view_batch(LABELS, SIZE)


def queues_after_one_step(model, batch):
    model.train()
    sum(model(batch).values()).backward()
    return {
        name: (q.keys.clone(), q.labels.clone(), int(q.ptr)) for name, q in model.queues.items()
    }


def queue_worker(rank, world, state_files):
    torch.manual_seed(100 + rank)
    out = {}
    for arch, path in state_files.items():
        model = build_model(momentum_cfg(arch)).double()
        model.load_state_dict(torch.load(path, weights_only=True))
        out[arch] = queues_after_one_step(model, global_batch()[rank * N : (rank + 1) * N])
    return out


# ------------------------------------------------------------------ one set of 2 processes for all
# tests
def both_workers(rank, world, state_files):
    return {
        "shuffle": shuffle_worker(rank, world),
        "queues": queue_worker(rank, world, state_files),
    }


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("momentum_queues")
    references, state_files = {}, {}
    for arch in ARCHS:
        torch.manual_seed(0)
        model = build_model(momentum_cfg(arch)).double()
        state_files[arch] = str(tmp / f"{arch}.pth")
        torch.save(model.state_dict(), state_files[arch])
        references[arch] = model
    per_rank = run_on_processes(both_workers, WORLD, tmp, state_files)
    single = {arch: queues_after_one_step(m, global_batch()) for arch, m in references.items()}
    return per_rank, single


def test_batch_shuffle_on_two_processes_pairs_each_key_with_its_query(two_processes):
    per_rank, _ = two_processes
    shuffled_all = torch.cat([r["shuffle"][1] for r in per_rank])  # every process's shuffled batch
    # one permutation of the global batch, shared by the processes: each sample exactly once
    assert sorted(shuffled_all[:, 0].tolist()) == list(range(WORLD * 8))
    assert torch.equal(shuffled_all[:, 1], -shuffled_all[:, 0])  # rows moved whole
    # and it really mixes the processes: rank 0 computes keys of some of rank 1's images
    assert (per_rank[0]["shuffle"][1][:, 0] >= 8).any()
    for x, _, back in (r["shuffle"] for r in per_rank):
        # unshuffle(f(shuffle(x))) == f(x): each key back with its query
        assert torch.equal(back, x * 10 + 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_queues_hold_the_global_batch_on_every_process(two_processes, arch):
    per_rank, single = two_processes
    rank0, rank1 = (r["queues"][arch] for r in per_rank)
    assert set(rank0) == set(single[arch]) and (
        arch != "SupConSelfSupCon" or set(rank0) == {"instance", "supervised"}
    )
    for name, (keys, labels, ptr) in single[arch].items():
        assert ptr == WORLD * N and labels[:ptr].tolist() == LABELS and (labels[ptr:] == -1).all()
        for rank_queue in (rank0, rank1):
            k, lab, p = rank_queue[name]
            assert p == ptr and torch.equal(lab, labels), (arch, name)
            torch.testing.assert_close(k, keys, rtol=1e-9, atol=1e-12, msg=f"{arch} {name}")
        assert torch.equal(rank0[name][0], rank1[name][0])  # bit-identical on both processes

"""The resumable training loader: batches and augmentations are functions of (seed, iteration,
rank)."""

import itertools
import random

import numpy as np
import pytest
import torch

from contrastive_det.data.samplers import (
    ResumableBatchSampler,
    SeededMapDataset,
    aspect_ratio_groups,
    build_resumable_train_loader,
)
from contrastive_det.utils.seeding import derive_seed


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


@pytest.mark.parametrize("groups", [None, [0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0]])
def test_starting_at_an_iteration_gives_the_tail_of_the_uninterrupted_stream(groups):
    full = take(ResumableBatchSampler(11, 3, seed=5, rank=0, world_size=1, group_ids=groups), 12)
    for start in (1, 4, 7):
        s = ResumableBatchSampler(11, 3, seed=5, rank=0, world_size=1, group_ids=groups)
        s.set_start_iter(start)
        assert take(s, 12 - start) == full[start:]


def test_each_epoch_is_a_permutation_and_epochs_differ():
    s = ResumableBatchSampler(10, 5, seed=1, rank=0, world_size=1)
    indices = [i for batch in take(s, 6) for i, _ in batch]
    epochs = [indices[k : k + 10] for k in range(0, 30, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]


def test_seed_changes_the_order_and_the_sample_seeds():
    a = take(ResumableBatchSampler(20, 4, seed=1, rank=0, world_size=1), 2)
    b = take(ResumableBatchSampler(20, 4, seed=2, rank=0, world_size=1), 2)
    assert [i for batch in a for i, _ in batch] != [i for batch in b for i, _ in batch]
    assert a[0][0][1] == derive_seed(1, 0)  # the first item's seed comes from its stream position


def test_ranks_split_the_global_stream_like_detectron2():
    # rank r takes positions r, r + w, ...: 2 ranks of batch 2 cover the stream of 1 rank of batch 4
    one = take(ResumableBatchSampler(8, 4, seed=3, rank=0, world_size=1), 2)
    r0 = take(ResumableBatchSampler(8, 2, seed=3, rank=0, world_size=2), 2)
    r1 = take(ResumableBatchSampler(8, 2, seed=3, rank=1, world_size=2), 2)
    for it in range(2):
        merged = [x for pair in zip(r0[it], r1[it]) for x in pair]
        assert merged == one[it]


def test_grouped_batches_hold_one_group_each():
    groups = [0, 1] * 6 + [1, 1, 1]
    for batch in take(
        ResumableBatchSampler(15, 3, seed=0, rank=0, world_size=1, group_ids=groups), 10
    ):
        assert len({groups[i] for i, _ in batch}) == 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        ResumableBatchSampler(0, 2, seed=0, rank=0, world_size=1)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        ResumableBatchSampler(4, 2, seed=-1, rank=0, world_size=1)
    with pytest.raises(ValueError, match="group_ids has 3 entries"):
        ResumableBatchSampler(4, 2, seed=0, rank=0, world_size=1, group_ids=[0, 1, 0])


def noisy_mapper(d):
    # draws from all three global generators, like detectron2 augmentations and transforms.v2 do
    return {
        "id": d["id"],
        "r": random.random(),
        "n": float(np.random.rand()),
        "t": torch.rand(1).item(),
    }


def test_mapped_items_depend_on_the_key_not_on_the_generators_around_them():
    ds = SeededMapDataset([{"id": i} for i in range(4)], noisy_mapper)
    torch.manual_seed(0)
    a = ds[(2, 99)]
    before = torch.random.get_rng_state()
    torch.manual_seed(123)
    np.random.seed(7)
    b = ds[(2, 99)]
    assert a == b and a["id"] == 2
    assert ds[(2, 100)] != a  # another seed, another augmentation
    # the caller's generators are left where they were
    torch.manual_seed(0)
    ds[(1, 5)]
    assert torch.equal(torch.random.get_rng_state(), before)


def test_none_from_the_mapper_retries_deterministically():
    ds = SeededMapDataset([{"id": i} for i in range(6)], lambda d: None if d["id"] == 3 else d)
    first = ds[(3, 42)]
    assert first["id"] != 3 and ds[(3, 42)] == first
    with pytest.raises(RuntimeError, match="returned nothing"):
        SeededMapDataset([{"id": 0}], lambda d: None)[(0, 1)]


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_do_not_depend_on_worker_count_or_global_state(workers):
    dicts = [{"id": i, "width": 10, "height": 5 + i} for i in range(9)]
    reference = take(
        build_resumable_train_loader(dicts, noisy_mapper, seed=4, total_batch_size=3), 5
    )
    torch.manual_seed(99)
    loader = build_resumable_train_loader(
        dicts, noisy_mapper, seed=4, total_batch_size=3, num_workers=workers
    )
    state = torch.random.get_rng_state()
    loader.batch_sampler.set_start_iter(2)
    assert take(loader, 3) == reference[2:]
    # starting an iterator must not draw from the global generator (a resumed run starts it later)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_aspect_ratio_groups():
    assert aspect_ratio_groups(
        [{"width": 4, "height": 3}, {"width": 3, "height": 4}, {"width": 2, "height": 2}]
    ) == [0, 1, 0]

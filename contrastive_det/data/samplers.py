"""
Training loaders whose every batch is a pure function of (seed, iteration, rank): a run resumed
at iteration ``s`` (after ``kill -9``) reads exactly the images, in exactly the augmentations,
that the uninterrupted run read from iteration ``s`` on.

* :class:`ResumableBatchSampler` decides which dataset items form the batch of iteration ``i``
  on this rank, and gives each item a seed derived from its position in the stream;
* :class:`SeededMapDataset` maps an item with python/numpy/torch randomness seeded from that
  seed, so augmentations do not depend on which worker process mapped it;
* :func:`build_resumable_train_loader` puts them in a torch ``DataLoader`` (map-style dataset +
  batch sampler: batches arrive in the sampler's order whatever the number of workers).

The trainer calls ``loader.batch_sampler.set_start_iter(start_iter)`` after ``resume_or_load``.
"""

import logging

import numpy as np
import torch
import torch.utils.data as torchdata

from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm

from ..utils.seeding import derive_seed, isolated_global_rngs, seed_global_rngs
from .loader_signals import shield_workers

logger = logging.getLogger(__name__)


class ResumableBatchSampler(torchdata.Sampler):
    """
    Infinite sampler of per-rank batches. The global stream of positions 0, 1, 2, ... walks
    through one random permutation of the dataset per epoch (``permutation(seed, epoch)``);
    rank ``r`` of ``w`` takes positions ``r, r + w, r + 2w, ...`` (as detectron2's
    ``TrainingSampler`` does) and cuts them into batches of ``batch_size``. With ``group_ids``
    (aspect-ratio grouping), items wait in one bucket per group and a batch is emitted when a
    bucket is full, like detectron2's ``AspectRatioGroupedDataset``.

    Each yielded batch is a list of ``(dataset_index, sample_seed)`` pairs with
    ``sample_seed = derive_seed(seed, position)``.

    Resuming at iteration ``s`` (:meth:`set_start_iter`) skips ``s`` batches: in O(1) without
    grouping, by replaying the (cheap, index-only) bucket filling with grouping.
    """

    def __init__(
        self, size, batch_size, seed, *, rank=None, world_size=None, group_ids=None, shuffle=True
    ):
        """
        Args:
            size (int): number of dataset items (> 0).
            batch_size (int): items per batch on this rank.
            seed (int): the run's seed (``cfg.SEED``, >= 0).
            rank, world_size (int): default: the current process group's.
            group_ids (sequence[int] or None): a group per item (e.g. 0 = wide, 1 = tall images).
            shuffle (bool): False walks the dataset in order (for tests and debugging).
        """
        if size <= 0:
            raise ValueError(f"ResumableBatchSampler needs a non-empty dataset, got size {size}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(
                f"seed must be >= 0 (SEED is resolved before the loader is built), got {seed}"
            )
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = comm.get_rank() if rank is None else int(rank)
        self.world_size = comm.get_world_size() if world_size is None else int(world_size)
        self.group_ids = None if group_ids is None else np.asarray(group_ids, dtype=np.int64)
        if self.group_ids is not None and len(self.group_ids) != self.size:
            raise ValueError(f"group_ids has {len(self.group_ids)} entries for {self.size} items")
        self.shuffle = shuffle
        self.start_iter = 0
        self._epoch, self._perm = None, None

    def set_start_iter(self, start_iter):
        """The next ``iter(self)`` starts with the batch of iteration ``start_iter``."""
        self.start_iter = int(start_iter)

    def _index(self, position):
        epoch, offset = divmod(position, self.size)
        if epoch != self._epoch:
            if self.shuffle:
                self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            else:
                self._perm = np.arange(self.size)
            self._epoch = epoch
        return int(self._perm[offset])

    def _item(self, position):
        return self._index(position), derive_seed(self.seed, position)

    def _rank_position(self, k):
        """Global stream position of this rank's ``k``-th item."""
        return self.rank + k * self.world_size

    def __iter__(self):
        if self.group_ids is None:
            k = self.start_iter * self.batch_size
            while True:
                yield [self._item(self._rank_position(k + j)) for j in range(self.batch_size)]
                k += self.batch_size
        yield from self._grouped()

    def _grouped(self):
        buckets = {}
        emitted = 0
        k = 0
        while True:
            position = self._rank_position(k)
            k += 1
            index = self._index(position)
            bucket = buckets.setdefault(int(self.group_ids[index]), [])
            bucket.append((index, position))
            if len(bucket) == self.batch_size:
                items = bucket[:]
                del bucket[:]
                if emitted >= self.start_iter:
                    yield [(i, derive_seed(self.seed, p)) for i, p in items]
                emitted += 1


class SeededMapDataset(torchdata.Dataset):
    """
    Map-style dataset over ``(index, sample_seed)`` keys: ``mapper(dicts[index])`` with the global
    python/numpy/torch generators seeded from ``sample_seed`` (and restored afterwards), so the
    augmentation an item gets depends on its place in the stream only. A mapper returning None
    (e.g. an image left without annotations) is retried on other items chosen from the same seed.
    """

    MAX_RETRIES = 10

    def __init__(self, dicts, mapper):
        self._dataset = DatasetFromList(dicts, copy=True, serialize=True)
        self._mapper = mapper

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, key):
        index, sample_seed = key
        # in a loader worker the global generators belong to this dataset alone: seed them, no
        # need to save and restore them (in the main process they must be restored)
        in_worker = torchdata.get_worker_info() is not None
        for attempt in range(self.MAX_RETRIES):
            seed = sample_seed if attempt == 0 else derive_seed(sample_seed, attempt)
            if in_worker:
                seed_global_rngs(seed)
                out = self._mapper(self._dataset[index])
            else:
                with isolated_global_rngs(seed):
                    out = self._mapper(self._dataset[index])
            if out is not None:
                return out
            retry = np.random.default_rng([sample_seed, attempt]).integers(len(self._dataset))
            logger.warning(f"Mapper returned nothing for item {index}; retrying with item {retry}")
            index = int(retry)
        raise RuntimeError(
            f"The mapper returned nothing for {self.MAX_RETRIES} items in a row (last: item "
            f"{index})"
        )


def aspect_ratio_groups(dicts):
    """0 for images at least as wide as tall, 1 for the others (detectron2's two buckets)."""
    return [0 if d["width"] >= d["height"] else 1 for d in dicts]


def build_resumable_train_loader(
    dicts, mapper, *, seed, total_batch_size, num_workers=0, aspect_ratio_grouping=False
):
    """
    A training ``DataLoader`` whose batches (lists of mapped dicts, detectron2's format) are a pure
    function of ``(seed, iteration, rank)``; see the module docstring.

    Args:
        dicts (list[dict]): the dataset dicts (``width``/``height`` needed for grouping).
        mapper (callable): dataset dict -> model input dict (or None to skip the item).
        seed (int): the run's seed (< 0: one drawn at random, shared by all processes).
        total_batch_size (int): images per iteration over all processes (divisible by them).
        num_workers (int): loader worker processes.
        aspect_ratio_grouping (bool): batch wide and tall images separately.
    """
    world_size = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total_batch_size}) must be a positive multiple of the number "
            f"of processes ({world_size})"
        )
    if seed < 0:  # library use with detectron2's default SEED -1 (the CLIs always resolve it)
        seed = comm.shared_random_seed()
        logger.warning(
            f"SEED < 0: training data order drawn from seed {seed}; set SEED for a reproducible run"
        )
    groups = aspect_ratio_groups(dicts) if aspect_ratio_grouping else None
    sampler = ResumableBatchSampler(
        len(dicts), total_batch_size // world_size, seed, group_ids=groups
    )
    loader = torchdata.DataLoader(
        SeededMapDataset(dicts, mapper),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
        # its own generator: starting an iterator draws a base seed, which must not come from the
        # global generator (a resumed run starts its iterator at a different iteration)
        generator=torch.Generator().manual_seed(derive_seed(seed, comm.get_rank())),
    )
    return shield_workers(loader)  # a stop signal reaches the training process alone

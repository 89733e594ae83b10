"""Deterministic, resumable, distributed samplers and per-sample seeding for exact resume.

* :class:`ResumableDistributedSampler`: a ``DistributedSampler`` whose epoch order depends only on
  ``(seed, epoch)`` and that can skip the samples already consumed in the current epoch.
* :class:`GroupedBatchSampler`: batches that each come from a single dataset of a ``ConcatDataset``
  (per-dataset crop sizes cannot be mixed in one batch), datasets drawn in proportion to
  ``size * repeat``, sharded across ranks, resumable at a batch index.
* :func:`sample_seed` and :func:`seeded_rngs`: the one per-sample seeding mechanism. Training's
  :class:`mcjepa.train.streams.PerSampleSeeded` runs every ``__getitem__`` under
  ``seeded_rngs(sample_seed(run seed, stream, epoch, position))``, so a resumed run sees exactly
  the same crops and flips whatever the number of DataLoader workers.
* :func:`sample_rng`: the same mechanism for a dataset used on its own (``MotionPairs`` /
  ``TwoViewDataset`` with ``seed=`` set, outside training): ``seeded_rngs(sample_seed(seed, 0,
  epoch, index))``. Training builds its datasets with ``seed=None``, where it does nothing.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = [
    "EpochSeeded",
    "GroupedBatchSampler",
    "ResumableDistributedSampler",
    "sample_rng",
    "sample_seed",
    "seeded_rngs",
]


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def _generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0] >> 1))
    return g


class ResumableDistributedSampler(Sampler[int]):
    """Shuffled (or ordered) per-rank shard of ``range(dataset_len)``, deterministic by ``(seed, epoch)``.

    Every rank draws the same permutation and takes every ``world_size``-th element from ``rank``
    (as ``torch.utils.data.DistributedSampler``). ``drop_last=True`` truncates the permutation to a
    multiple of ``world_size``; ``False`` pads it by wrapping around. ``set_start(k)`` skips the first
    ``k`` samples of this rank's current epoch; ``set_epoch`` resets the start to 0, so call
    ``set_start`` after ``set_epoch`` when resuming.
    """

    def __init__(
        self,
        dataset_len: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        _check_rank(rank, world_size)
        if dataset_len < 1:
            raise ValueError(f"dataset_len must be >= 1, got {dataset_len}")
        if drop_last and dataset_len < world_size:
            raise ValueError(f"a dataset of {dataset_len} samples cannot be sharded over {world_size} ranks")
        self.dataset_len, self.shuffle, self.seed = int(dataset_len), bool(shuffle), int(seed)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        self.epoch, self.start = 0, 0
        if drop_last:
            self.num_samples = dataset_len // world_size
        else:
            self.num_samples = -(-dataset_len // world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order is produced next; resets the start to 0."""
        self.epoch, self.start = int(epoch), 0

    def set_start(self, index: int) -> None:
        """Skip the first ``index`` samples of this rank's current epoch (0 <= index <= num_samples)."""
        if not 0 <= index <= self.num_samples:
            raise ValueError(f"start index must be in [0, {self.num_samples}], got {index}")
        self.start = int(index)

    def epoch_indices(self, epoch: int | None = None) -> list[int]:
        """Return this rank's full index list for ``epoch`` (default: the current one), ignoring the start."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            order = torch.randperm(self.dataset_len, generator=_generator(self.seed, epoch)).tolist()
        else:
            order = list(range(self.dataset_len))
        total = self.num_samples * self.world_size
        if total > len(order):
            order = (order * (-(-total // len(order))))[:total]
        return order[:total][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of global indices into ``ConcatDataset(datasets)``, each batch from a single dataset.

    Per epoch (deterministic by ``(seed, epoch)``): dataset ``d`` contributes ``repeats[d]``
    independent permutations of its indices (repetition is virtual: nothing is copied), cut into
    full batches of ``batch_size`` (the remainder is dropped); all batches of all datasets are then
    shuffled together, so a dataset's share of batches is proportional to ``size * repeat``. The
    batch list is truncated to a multiple of ``world_size`` and rank ``r`` takes batches
    ``r, r + world_size, ...``: disjoint shards, the same number of batches on every rank.
    ``batch_size`` is the per-rank batch. ``set_start(k)`` skips this rank's first ``k`` batches of the
    current epoch; ``set_epoch`` resets it to 0.
    """

    def __init__(
        self,
        dataset_sizes: Sequence[int],
        repeats: Sequence[int],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_rank(rank, world_size)
        if len(dataset_sizes) != len(repeats) or not dataset_sizes:
            raise ValueError(
                f"need one repeat per dataset and at least one dataset, got {len(dataset_sizes)} sizes "
                f"and {len(repeats)} repeats"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for d, (n, r) in enumerate(zip(dataset_sizes, repeats)):
            if int(r) != r or r < 1:
                raise ValueError(f"repeats[{d}] must be an integer >= 1, got {r}")
            if n * r < batch_size:
                raise ValueError(
                    f"dataset {d} has size * repeat = {n} * {r} = {n * r} samples, fewer than one batch of {batch_size}"
                )
        self.sizes, self.repeats = [int(n) for n in dataset_sizes], [int(r) for r in repeats]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int).tolist()
        self.batch_size, self.seed, self.rank, self.world_size = int(batch_size), int(seed), int(rank), int(world_size)
        total = sum((n * r) // batch_size for n, r in zip(self.sizes, self.repeats))
        self.num_batches = total // world_size
        if self.num_batches == 0:
            raise ValueError(f"{total} batches per epoch cannot be sharded over {world_size} ranks")
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches are produced next; resets the start to 0."""
        self.epoch, self.start = int(epoch), 0

    def set_start(self, batch_index: int) -> None:
        """Skip the first ``batch_index`` batches of this rank's current epoch."""
        if not 0 <= batch_index <= self.num_batches:
            raise ValueError(f"start batch index must be in [0, {self.num_batches}], got {batch_index}")
        self.start = int(batch_index)

    def epoch_batches(self, epoch: int | None = None) -> list[tuple[int, list[int]]]:
        """Return this rank's ``(dataset index, global indices)`` batches for ``epoch``, ignoring the start."""
        g = _generator(self.seed, self.epoch if epoch is None else epoch)
        batches: list[tuple[int, list[int]]] = []
        for d, (n, r, off) in enumerate(zip(self.sizes, self.repeats, self.offsets)):
            pool = torch.cat([torch.randperm(n, generator=g) for _ in range(r)]) + off
            full = (len(pool) // self.batch_size) * self.batch_size
            batches += [(d, b.tolist()) for b in pool[:full].split(self.batch_size)]
        order = torch.randperm(len(batches), generator=g).tolist()
        batches = [batches[i] for i in order][: self.num_batches * self.world_size]
        return batches[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        for _, batch in self.epoch_batches()[self.start :]:
            yield batch

    def __len__(self) -> int:
        return self.num_batches - self.start


def sample_seed(run_seed: int, stream: int, epoch: int, position: int) -> int:
    """A 63-bit seed that is a fixed function of its arguments."""
    x = (run_seed * 0x9E3779B1 + stream * 0x85EBCA77 + epoch * 0xC2B2AE3D + position * 0x27D4EB2F) & (2**63 - 1)
    x ^= x >> 29
    x = (x * 0xBF58476D1CE4E5B9) & (2**63 - 1)
    return x ^ (x >> 32)


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Within the block, torch's CPU generator, NumPy's and Python's global RNGs are seeded from
    ``seed``; their previous states come back afterwards, so loading in the main process
    (``num_workers = 0``) leaves the training RNG streams (dropout, drop path) untouched."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed would also reseed every CUDA device
            # (which fork_rng(devices=[]) does not restore) and costs a stack trace per call
            torch.default_generator.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextlib.contextmanager
def sample_rng(seed: int | None, epoch: int, index: int) -> Iterator[None]:
    """Within the block, the RNGs are seeded from ``(seed, epoch, index)`` with
    :func:`seeded_rngs` and :func:`sample_seed` (stream 0); restored afterwards.

    With ``seed=None`` this does nothing (the ambient RNG is used: a DataLoader worker's, or the
    per-sample seed that :class:`mcjepa.train.streams.PerSampleSeeded` set, as in training).
    """
    if seed is None:
        yield
        return
    with seeded_rngs(sample_seed(int(seed), 0, int(epoch), int(index))):
        yield


class EpochSeeded(Dataset):
    """A view of ``base`` (same length) whose item ``i`` is drawn under :func:`sample_rng` of
    ``(seed, epoch, i)``: with ``seed`` set, an item's random choices depend only on those three
    (exact resume); with ``seed=None`` the ambient RNG is used. Subclasses draw inside
    ``with self.rng(index):``."""

    def __init__(self, base: Dataset, seed: int | None) -> None:
        self.base, self.seed, self.epoch = base, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that seeds the random choices when ``seed`` is set."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def rng(self, index: int) -> contextlib.AbstractContextManager[None]:
        """The seeded-RNG block of item ``index`` (:func:`sample_rng`)."""
        return sample_rng(self.seed, self.epoch, index)

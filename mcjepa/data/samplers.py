"""Deterministic, resumable, distributed samplers and per-sample seeding for exact resume.

* :class:`ResumableDistributedSampler`: a ``DistributedSampler`` whose epoch order depends only on
  ``(seed, epoch)`` and that can skip the samples already consumed in the current epoch.
* :class:`GroupedBatchSampler`: batches that each come from a single dataset of a ``ConcatDataset``
  (per-dataset crop sizes cannot be mixed in one batch), datasets drawn in proportion to
  ``size * repeat``, sharded across ranks, resumable at a batch index.
* :func:`sample_rng` / :func:`set_dataset_epoch`: seed a dataset's random augmentation from
  ``(seed, epoch, index)`` so a resumed run sees exactly the same crops and flips.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ResumableDistributedSampler", "GroupedBatchSampler", "sample_rng", "set_dataset_epoch"]


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


@contextlib.contextmanager
def sample_rng(seed: int | None, epoch: int, index: int) -> Iterator[None]:
    """Within the block, torch's CPU RNG is seeded from ``(seed, epoch, index)``; restored afterwards.

    With ``seed=None`` this does nothing (the ambient RNG is used, e.g. a DataLoader worker's).
    """
    if seed is None:
        yield
        return
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1, np.uint64)[0] >> 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(state))
        yield


def set_dataset_epoch(dataset, epoch: int) -> None:
    """Call ``set_epoch(epoch)`` on ``dataset`` and every dataset nested in it (ConcatDataset, Subset, wrappers)."""
    seen: set[int] = set()
    stack = [dataset]
    while stack:
        ds = stack.pop()
        if ds is None or id(ds) in seen:
            continue
        seen.add(id(ds))
        if callable(getattr(ds, "set_epoch", None)):
            ds.set_epoch(epoch)
        stack.extend(getattr(ds, "datasets", []) or [])
        stack.append(getattr(ds, "dataset", None))
        stack.append(getattr(ds, "base", None))

"""Endless, resumable data streams over a DataLoader.

Each stream remembers its epoch and how many items of that epoch the training loop has taken,
so a checkpoint can record the exact data position. Every sample is produced under its own RNG
seed, derived from (run seed, stream, epoch, position), so random augmentations are the same
after a resume whatever the number of DataLoader workers. Seeds come from
:func:`mcjepa.data.samplers.sample_seed` and the RNG context from :func:`~mcjepa.data.samplers.seeded_rngs`,
the project's one per-sample seeding mechanism (``sample_seed`` is re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from mcjepa.data.samplers import sample_seed, seeded_rngs

__all__ = ["PerSampleSeeded", "ResumableStream", "sample_seed"]


class PerSampleSeeded(Dataset):
    """Dataset wrapper whose items are addressed as ``(index, seed)``; that seed is applied to
    torch, NumPy and Python's RNGs while the base dataset's ``__getitem__`` runs, and the previous
    states come back afterwards, so loading in the main process (``num_workers = 0``) leaves the
    training RNG streams (dropout, drop path) untouched."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with seeded_rngs(seed):
            return self.base[index]


class _SeededIndices:
    """Iterates a sampler (or batch sampler) from its start position, attaching seeds."""

    def __init__(self, sampler: Any, run_seed: int, stream: int, epoch: int, start: int, batched: bool) -> None:
        self.sampler, self.run_seed, self.stream = sampler, run_seed, stream
        self.epoch, self.start, self.batched = epoch, start, batched

    def __iter__(self) -> Iterator[Any]:
        for k, item in enumerate(self.sampler):
            pos = self.start + k
            if self.batched:
                yield [
                    (i, sample_seed(self.run_seed, self.stream, self.epoch, pos * 100_003 + j))
                    for j, i in enumerate(item)
                ]
            else:
                yield (item, sample_seed(self.run_seed, self.stream, self.epoch, pos))

    def __len__(self) -> int:
        return len(self.sampler)


class _EndlessBatches:
    """Every epoch's seeded batches from (``epoch``, ``consumed`` batches) on, one epoch after
    the other, without end: the batch sampler of the stream's one DataLoader, so its workers start
    once per run instead of once per epoch. A per-sample sampler's items are grouped into
    ``batch_size`` batches per epoch (the remainder dropped, as ``drop_last`` did)."""

    def __init__(self, sampler: Any, batch_size: int | None, run_seed: int, stream: int, epoch: int, consumed: int):
        self.sampler, self.batch_size = sampler, batch_size
        self.run_seed, self.stream, self.epoch, self.consumed = run_seed, stream, epoch, consumed

    def __iter__(self) -> Iterator[list[Any]]:
        epoch, start = self.epoch, self.consumed
        batched = self.batch_size is None
        while True:
            start_items = start if batched else start * self.batch_size  # type: ignore[operator]
            self.sampler.set_epoch(epoch)
            self.sampler.set_start(start_items)
            items = _SeededIndices(self.sampler, self.run_seed, self.stream, epoch, start_items, batched)
            produced = 0
            if batched:
                for batch in items:
                    produced += 1
                    yield batch
            else:
                group: list[Any] = []
                for item in items:
                    group.append(item)
                    if len(group) == self.batch_size:
                        produced += 1
                        yield group
                        group = []
            if produced == 0 and start == 0:
                raise RuntimeError(
                    "the data stream produced no batch in a whole epoch: is the dataset smaller than a batch?"
                )
            epoch, start = epoch + 1, 0


class ResumableStream:
    """An endless iterator of batches with a checkpointable position.

    Args:
        dataset: the base dataset.
        sampler: an object with ``set_epoch(e)``, ``set_start(k)``, ``__iter__`` and ``__len__``;
            either a per-sample sampler (then ``batch_size`` groups samples) or a batch sampler
            (``batch_size=None``) yielding lists of indices.
        batch_size: per-rank batch size for a per-sample sampler, None for a batch sampler.
        run_seed: the run's seed; ``stream``: a small integer distinguishing the streams.
        num_workers, pin_memory: DataLoader settings. One DataLoader serves the whole run (its
            workers persist across epochs); it is rebuilt only by :meth:`load_state_dict`.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: Any,
        batch_size: int | None,
        run_seed: int,
        stream: int,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = PerSampleSeeded(dataset)
        self.sampler = sampler
        self.batch_size = batch_size
        self.run_seed, self.stream = run_seed, stream
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.epoch = 0
        self.consumed = 0  # batches taken from this epoch
        self._it: Iterator[Any] | None = None
        sampler.set_epoch(0)
        sampler.set_start(0)
        self.batches_per_epoch = len(sampler) if batch_size is None else len(sampler) // batch_size

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._it = None

    def _start(self) -> None:
        batches = _EndlessBatches(self.sampler, self.batch_size, self.run_seed, self.stream, self.epoch, self.consumed)
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            # the loader's own generator (it draws its workers' base seed from it): creating a
            # loader must not consume the global RNG, or a resumed run, which creates its loader
            # at another moment, would draw different dropout masks from then on
            generator=torch.Generator().manual_seed(sample_seed(self.run_seed, self.stream, self.epoch, -1)),
        )
        self._it = iter(loader)

    def __iter__(self) -> ResumableStream:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._start()
        batch = next(self._it)  # type: ignore[arg-type]
        self.consumed += 1
        if self.consumed >= self.batches_per_epoch:
            self.epoch, self.consumed = self.epoch + 1, 0
        return batch

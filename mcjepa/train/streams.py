"""Endless, resumable data streams over a DataLoader.

Each stream remembers its epoch and how many items of that epoch the training loop has taken,
so a checkpoint can record the exact data position. Every sample is produced under its own RNG
seed, derived from (run seed, stream, epoch, position), so random augmentations are the same
after a resume whatever the number of DataLoader workers. The seed function and the RNG
context are :func:`mcjepa.data.samplers.sample_seed` and :func:`~mcjepa.data.samplers.seeded_rngs`,
the project's one per-sample seeding mechanism (``sample_seed`` is re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.samplers import sample_seed, seeded_rngs

__all__ = ["PerSampleSeeded", "ResumableStream", "sample_seed"]


class PerSampleSeeded(Dataset):
    """Dataset wrapper whose items are addressed as ``(index, seed)``; the seed is applied to
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


class ResumableStream:
    """An endless iterator of batches with a checkpointable position.

    Args:
        dataset: the base dataset.
        sampler: an object with ``set_epoch(e)``, ``set_start(k)`` and ``__iter__``; either a
            per-sample sampler (then ``batch_size`` groups samples) or a batch sampler
            (``batch_size=None``) yielding lists of indices.
        batch_size: per-rank batch size for a per-sample sampler, None for a batch sampler.
        run_seed: the run's seed; ``stream``: a small integer distinguishing the streams.
        num_workers, pin_memory: DataLoader settings.
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

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._it = None

    def _start_epoch(self) -> None:
        batched = self.batch_size is None
        start_items = self.consumed if batched else self.consumed * self.batch_size
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(start_items)
        indices = _SeededIndices(self.sampler, self.run_seed, self.stream, self.epoch, start_items, batched)
        common = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": False,
            # the loader's own generator (it draws its workers' base seed from it): creating a
            # loader must not consume the global RNG, or a resumed run, which creates loaders at
            # other moments, would draw different dropout masks from then on
            "generator": torch.Generator().manual_seed(sample_seed(self.run_seed, self.stream, self.epoch, -1)),
        }
        if batched:
            loader = DataLoader(self.dataset, batch_sampler=indices, **common)
        else:
            loader = DataLoader(self.dataset, sampler=indices, batch_size=self.batch_size, drop_last=True, **common)
        self._it = iter(loader)

    def __iter__(self) -> ResumableStream:
        return self

    def __next__(self) -> Any:
        for _ in range(2):
            if self._it is None:
                self._start_epoch()
            try:
                batch = next(self._it)  # type: ignore[arg-type]
            except StopIteration:
                self.epoch, self.consumed, self._it = self.epoch + 1, 0, None
                continue
            self.consumed += 1
            return batch
        raise RuntimeError("the data stream produced no batch in a whole epoch: is the dataset smaller than a batch?")

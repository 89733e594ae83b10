"""Global batches for any number of processes: per-process batches and gradient accumulation.

A config states each stream's *global* batch (the paper's 384 content images and 8 frame pairs,
arXiv 2307.12698) and, optionally, the most samples one device may hold in one forward pass
(``data.content_max_per_device``, ``data.motion_max_per_device``). :func:`split_batch` derives
how a world of ``W`` processes trains that global batch: each process takes ``global / W``
samples per step, in ``accumulation`` micro-batches of ``micro`` samples when the cap asks for it.
Batch statistics stay global whatever the split (:mod:`mcjepa.train.global_stats`), so 1, 8 or
16 processes train the same objective. A split that cannot give the global batch (a world size
that does not divide it, a cap that no whole micro-batch meets) is a :class:`ConfigError` naming
the key to change.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcjepa.utils.schema import ConfigError

__all__ = ["BatchSplit", "StepSplit", "split_batch", "split_step"]


@dataclass(frozen=True)
class BatchSplit:
    """How one stream's global batch is shared: ``world_size * accumulation * micro == global_batch``."""

    global_batch: int  # samples per optimisation step, all processes together
    world_size: int  # processes
    per_rank: int  # samples per process and step
    micro: int  # samples per process in one forward / backward pass
    accumulation: int  # micro-batches per process and step

    def describe(self) -> str:
        """``"384 = 8 processes x 1 x 48"``: processes x micro-batches x samples per micro-batch."""
        return (
            f"{self.global_batch} = {self.world_size} process(es) x {self.accumulation} micro-batch(es) "
            f"x {self.micro} sample(s)"
        )


@dataclass(frozen=True)
class StepSplit:
    """Both streams' splits; ``micro_steps``: forward / backward passes per optimisation step."""

    content: BatchSplit
    motion: BatchSplit

    @property
    def micro_steps(self) -> int:
        return max(self.content.accumulation, self.motion.accumulation)


def split_batch(global_batch: int, world_size: int, max_per_device: int, key: str, cap_key: str) -> BatchSplit:
    """Share ``global_batch`` samples over ``world_size`` processes, at most ``max_per_device``
    per forward pass (0: no cap), with the fewest micro-batches that divide each process's share.

    Args:
        key, cap_key: the config keys of the global batch and of the cap, named in errors.

    Raises:
        ConfigError: ``world_size`` does not divide ``global_batch`` (naming ``key``), or the cap
            is negative.
    """
    if global_batch < 1:
        raise ConfigError(f"{key} must be >= 1, got {global_batch}")
    if max_per_device < 0:
        raise ConfigError(f"{cap_key} must be >= 0 (0: no cap), got {max_per_device}")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if global_batch % world_size:
        multiple = -(-global_batch // world_size) * world_size
        raise ConfigError(
            f"{key} = {global_batch} cannot be shared by {world_size} processes (each needs the same whole "
            f"number of samples): set {key} to a multiple of {world_size} (e.g. {multiple}), or run on a "
            f"number of processes that divides {global_batch}"
        )
    per_rank = global_batch // world_size
    accumulation = 1
    if max_per_device and per_rank > max_per_device:
        accumulation = -(-per_rank // max_per_device)
        while per_rank % accumulation:  # the fewest equal micro-batches that respect the cap
            accumulation += 1
    return BatchSplit(global_batch, world_size, per_rank, per_rank // accumulation, accumulation)


def split_step(
    content_batch: int,
    motion_batch: int,
    world_size: int,
    content_cap: int,
    motion_cap: int,
    *,
    content: bool = True,
    motion: bool = True,
) -> StepSplit:
    """Both streams' :func:`split_batch` under their ``data.*`` keys; a disabled stream is not
    checked (its split is reported as one sample per process, one micro-batch)."""
    off = BatchSplit(world_size, world_size, 1, 1, 1)
    c = (
        split_batch(content_batch, world_size, content_cap, "data.content_batch_size", "data.content_max_per_device")
        if content
        else off
    )
    m = (
        split_batch(motion_batch, world_size, motion_cap, "data.motion_batch_size", "data.motion_max_per_device")
        if motion
        else off
    )
    return StepSplit(c, m)

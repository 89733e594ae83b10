"""torch.distributed set-up for ``torchrun`` (DDP) and single-process runs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mcjepa.train.config import ConfigError
from mcjepa.utils.devices import DeviceError, resolve_device

__all__ = ["DistInfo", "init_distributed", "shutdown_distributed"]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Uses NCCL on CUDA and Gloo on the CPU. Returns the rank information and this rank's device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = resolve_device(device_name, local_rank, option="run.device")
    except DeviceError as exc:
        raise ConfigError(str(exc)) from None
    if device.type == "cuda":
        torch.cuda.set_device(device)  # also for one process on cuda:N, N > 0
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank), device


def shutdown_distributed() -> None:
    """Destroy the process group, if one was started (every rank, once the run has finished).

    Without it gloo's worker threads outlive the interpreter's shutdown, and a rank can abort
    with SIGABRT ("terminate called without an active exception") after a successful run."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

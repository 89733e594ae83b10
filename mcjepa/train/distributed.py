"""torch.distributed set-up for ``torchrun`` (DDP) and single-process runs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import ConfigError

__all__ = ["DistInfo", "all_finite", "available_devices", "init_distributed", "resolve_device"]


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


def available_devices() -> list[str]:
    """The devices this process can train on: ``cpu``, then ``cuda:0`` ... and ``mps`` when present."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks ``cuda:<local_rank>`` when CUDA is available, else the CPU.

    Raises:
        ConfigError: an unknown device name, or a device this machine does not have (the message
            lists the available ones).
    """
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"run.device={name!r}: expected auto, cpu, cuda, cuda:N or mps")
    available = available_devices()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"run.device={name!r} but CUDA is not available on this machine; "
                f"available devices: {', '.join(available)} (use run.device=cpu or auto)"
            )
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.index != local_rank:
            raise ConfigError(
                f"run.device={name!r} under torchrun: each process must use its own GPU; "
                f"use run.device=cuda or auto (this process is LOCAL_RANK {local_rank})"
            )
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"run.device={name!r}: no such GPU; available devices: {', '.join(available)}")
    elif device.type == "mps" and "mps" not in available:
        raise ConfigError(f"run.device={name!r}: MPS is not available; available devices: {', '.join(available)}")
    return device


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Uses NCCL on CUDA and Gloo on the CPU. Returns the rank information and this rank's device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # also for one process on cuda:N, N > 0
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank), device


def all_finite(value: torch.Tensor) -> bool:
    """True when ``value`` is finite on every rank (so all ranks skip a bad step together)."""
    flag = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)

"""The one device resolver: training (``run.device``), ``mcjepa-eval``, ``mcjepa-flow`` and the
benchmarks (``--device``) all turn a device name into a :class:`torch.device` here."""

from __future__ import annotations

import os

import torch

__all__ = ["DeviceError", "available_devices", "resolve_device"]


class DeviceError(ValueError):
    """A device name is unknown, or names a device this machine does not have; the message lists
    the available ones."""


def available_devices() -> list[str]:
    """The devices this process can use: ``cpu``, then ``cuda:0`` ... and ``mps`` when present."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(
    name: str | torch.device | None = "auto", local_rank: int | None = None, *, option: str = "--device"
) -> torch.device:
    """Return the device for ``name``: ``auto`` (or None) picks CUDA when available, else the CPU;
    ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked against this machine.

    ``local_rank`` (training under ``torchrun``) makes ``auto`` and a bare ``cuda`` mean
    ``cuda:<local_rank>``; without it they stay the plain ``cuda`` device. ``option`` is the
    setting named in the error messages (``run.device`` for training).

    Raises:
        DeviceError: an unknown device name, or a device this machine does not have (the message
            lists the available ones).
    """
    if name is None or name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda" if local_rank is None else f"cuda:{local_rank}")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"{option}={name!r}: expected auto, cpu, cuda, cuda:N or mps")
    available = available_devices()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"{option}={name!r} but CUDA is not available on this machine; "
                f"available devices: {', '.join(available)} (use {option}=cpu or auto)"
            )
        if device.index is None:
            if local_rank is not None:
                device = torch.device(f"cuda:{local_rank}")
        elif local_rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.index != local_rank:
            raise DeviceError(
                f"{option}={name!r} under torchrun: each process must use its own GPU; "
                f"use {option}=cuda or auto (this process is LOCAL_RANK {local_rank})"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{option}={name!r}: no such GPU; available devices: {', '.join(available)}")
    elif device.type == "mps" and "mps" not in available:
        raise DeviceError(f"{option}={name!r}: MPS is not available; available devices: {', '.join(available)}")
    return device

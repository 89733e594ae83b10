"""Atomic training checkpoints that resume exactly.

A checkpoint holds the model, optimiser, step, data positions and every RNG state. Files are
written with :func:`mcjepa.utils.atomic.atomic_writer` (a temporary file, fsynced and renamed), so
a crash never leaves a partial checkpoint, and only the last ``keep_last`` are kept. Loading
uses ``torch.load(weights_only=True)``: no arbitrary objects are unpickled. A file that still
fails to load (truncated by a full disk, a copy cut short) raises :class:`CheckpointError`; the
trainer then falls back to the next newest.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcjepa.utils.atomic import atomic_writer

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "capture_rng_state",
    "check_resumable",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

_PATTERN = "ckpt_{step:09d}.pt"
CHECKPOINT_FORMAT = "mcjepa-train-checkpoint-v1"
_REQUIRED_KEYS = ("format", "step", "model", "optimizer", "rank_rng")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read (truncated, corrupt, or not an mcjepa training checkpoint)."""


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Return the Python, NumPy, torch CPU and (for a CUDA ``device``) that GPU's RNG states as
    tensors / plain values. Only this process's GPU: a run resumed on a machine with another
    number of visible GPUs must still restore."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] if random.getstate()[2] is not None else -1],
        "python_version": random.getstate()[0],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_meta": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Inverse of :func:`capture_rng_state`. Accepts states loaded with any ``map_location``
    (RNG states must be CPU byte tensors, so they are moved back to the CPU)."""
    py = state["python"]
    gauss = None if py[-1] == -1 else py[-1]
    random.setstate((state["python_version"], tuple(int(v) for v in py[:-1]), gauss))
    meta = state["numpy_meta"]
    np.random.set_state(("MT19937", state["numpy_keys"].cpu().numpy().astype(np.uint32), meta[0], meta[1], meta[2]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def save_checkpoint(run_dir: str | Path, step: int, payload: dict[str, Any], keep_last: int = 3) -> Path:
    """Write ``payload`` as ``checkpoints/ckpt_<step>.pt`` atomically; prune to ``keep_last``.

    Returns the checkpoint path.
    """
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _PATTERN.format(step=step)
    with atomic_writer(path) as fh:
        torch.save(payload, fh)
    if keep_last > 0:
        for old in sorted(folder.glob("ckpt_*.pt"))[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every checkpoint file in ``run_dir/checkpoints``, newest first (temporary files excluded)."""
    folder = Path(run_dir) / "checkpoints"
    return sorted(folder.glob("ckpt_*.pt"), reverse=True) if folder.is_dir() else []


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Return the newest checkpoint file in ``run_dir/checkpoints``, or None (not loaded: see
    :func:`list_checkpoints` to fall back past an unreadable one)."""
    found = list_checkpoints(run_dir)
    return found[0] if found else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        CheckpointError: the file cannot be loaded, or is not an mcjepa training checkpoint.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the path and a hint
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"could not load checkpoint {path}: {reason} (is the file complete?)") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not an mcjepa training checkpoint (it holds a {type(state).__name__})")
    return state


def check_resumable(path: str | Path, state: dict[str, Any]) -> None:
    """Raise :class:`CheckpointError` unless ``state`` holds everything a resume needs."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an mcjepa training checkpoint (format {state.get('format')!r})")
    missing = [k for k in _REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {missing}")

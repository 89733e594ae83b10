"""Verification: a file's sha256, and the size / sha256 / safetensors-header check done before any
weight file is read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from safetensors import SafetensorError, safe_open

from mcjepa.release.errors import WeightsIntegrityError, WeightsUnavailableError

__all__ = ["REDO", "REDO_GIVEN", "pickle_kind", "sha256_file", "verify_file"]

REDO = (
    "Delete it and download it again (for the Hugging Face cache: `hf cache rm model/ORG/REPO`), "
    "or re-create the release with mcjepa.release.save_release."
)
REDO_GIVEN = (
    "Check the sha256 you passed (weights='FILE#sha256=<hex>' or sha256=) against where the file came from, "
    "or get the file again."
)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def pickle_kind(path: Path) -> str | None:
    """What ``torch.save`` wrote, judged by the first bytes (``"a zip archive ..."``, ``"a pickle
    ..."``), or ``None`` for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (what torch.save writes)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]}, what older torch.save writes)"
    return None


def verify_file(path: Path, expected: str | None, size: int | None, what: str, redo: str = REDO) -> None:
    """Check size (bytes), then sha256 (when known), then the safetensors header of ``path``; raise
    :class:`WeightsIntegrityError` on any mismatch (:class:`WeightsUnavailableError` when missing).

    ``what`` names the file in messages (``"encoder weights file"``); ``redo`` says what to do."""
    if not path.is_file():
        raise WeightsUnavailableError(f"{what} {path} does not exist")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise WeightsIntegrityError(
            f"{what} {path} is {actual_size} bytes, expected {size} bytes "
            f"({'truncated' if actual_size < size else 'too long'}). {redo}"
        )
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected.lower():
            raise WeightsIntegrityError(
                f"{what} {path} has sha256 {actual}, expected {expected}: "
                f"the file is corrupted or is not the expected file. {redo}"
            )
    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        kind = pickle_kind(path)
        if kind:
            raise WeightsIntegrityError(
                f"{what} {path} is {kind}, not a safetensors file: a PyTorch checkpoint renamed to .safetensors. "
                "Refusing to read it: pickles can run arbitrary code. Convert a model you trust with "
                "mcjepa.release.save_release(model, out_dir) and pass that folder as weights=."
            ) from None
        raise WeightsIntegrityError(
            f"{what} {path} is not a valid safetensors file (truncated or corrupted: {exc}). {redo}"
        ) from None

"""The one atomic file writer (checkpoints, releases, manifests and the download cache use it),
and the JSON helpers that go with it (:func:`json_bytes` for release and manifest files,
:func:`read_json` for reading them back).

A file is written to a temporary file in the same folder (``.<name>.<random hex>.tmp``, created
with ``O_EXCL`` and mode ``0o666`` so that it gets the usual mode of a new file,
``0o666 & ~umask``; ``tempfile.mkstemp`` would leave it ``0o600``), flushed and fsynced, renamed
over the target with :func:`os.replace`, and then the folder is fsynced where the platform allows
it (POSIX), so that the rename itself survives a crash. A reader sees the old file or the new one,
never a partial one; on any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write_bytes", "atomic_writer", "fsync_dir", "json_bytes", "read_json"]


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync ``folder`` so that a rename inside it is durable; a no-op where folders cannot be
    opened or fsynced (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for binary writing; when the ``with`` block ends
    without an error it is flushed, fsynced and renamed over ``path`` (then the folder is fsynced).
    An exception in the block removes the temporary file and leaves ``path`` as it was."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # O_EXCL: never write through an existing file or link; mode 0o666 is reduced by the umask
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview | Sequence[bytes | memoryview]) -> None:
    """Write ``data`` (bytes, or a sequence of chunks) to ``path`` atomically (see the module)."""
    chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
    with atomic_writer(path) as fh:
        for chunk in chunks:
            fh.write(chunk)


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the JSON bytes written for release, config and manifest files: indented by 2,
    keys sorted, one trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def read_json(path: str | os.PathLike, what: str, error: type[Exception] = ValueError) -> Any:
    """Read the JSON file ``path``; raise ``error`` (naming ``what`` and the path) when it cannot
    be read or parsed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} ({path}) is not readable JSON: {exc}") from None

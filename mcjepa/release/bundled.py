"""Bundled releases: release folders that ship inside the package, under ``mcjepa/bundled/<name>/``.

A bundled release is an ordinary release folder (``<component>.safetensors``, ``config.json``,
``release.json``, as :func:`mcjepa.release.save_release` and ``mcjepa-export`` write it) plus a
manifest entry with ``"status": "bundled"`` and ``"path": "<name>"`` that gives each file's sha256
and size. It is read from the installed package, never from the network (``MCJEPA_OFFLINE=1``
changes nothing), and verified against the entry like any release. :data:`DEFAULT_MODEL` is the
model that ``mcjepa.flow.load()`` (no weights), ``mcjepa-flow`` (no ``--weights``) and the
``mcjepa_small`` / ``mcjepa_small_flow`` hub entries load. ``python -m mcjepa.cli.bundle`` puts a release there.

``$MCJEPA_BUNDLED_DIR`` replaces the package's ``bundled/`` folder (tests point it at a temporary one);
files are still checked against the manifest entry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcjepa.release.errors import WeightsIntegrityError

__all__ = [
    "BUNDLED_DIR_ENV",
    "BUNDLED_SCHEME",
    "DEFAULT_MODEL",
    "bundled_folder",
    "bundled_root",
    "check_bundled_name",
    "packaged_bundled_root",
]

DEFAULT_MODEL = "mcjepa_small_real"  # the trained `small` model flow.load() uses when given no weights
BUNDLED_SCHEME = "bundled://"  # weights="bundled://NAME": that bundled entry and nothing else
BUNDLED_DIR_ENV = "MCJEPA_BUNDLED_DIR"
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def packaged_bundled_root() -> Path:
    """Return the package's own ``bundled/`` folder (``<mcjepa package>/bundled``)."""
    return Path(__file__).resolve().parents[1] / "bundled"


def bundled_root() -> Path:
    """Return the folder bundled releases are read from: ``$MCJEPA_BUNDLED_DIR`` or :func:`packaged_bundled_root`."""
    env = os.environ.get(BUNDLED_DIR_ENV)
    return Path(env).expanduser() if env else packaged_bundled_root()


def check_bundled_name(name: str, what: str = "a bundled release name") -> str:
    """Return ``name`` when it is a plain folder name (letters, digits, ``_.-``; no path); raise ``ValueError`` otherwise."""
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"{what} must be a plain folder name (letters, digits, '_', '.', '-'), got {name!r}")
    return name


def bundled_folder(name: str, entry: Mapping[str, Any]) -> Path:
    """Return the folder of the bundled entry ``name``: ``bundled_root() / entry["path"]`` (``path``
    defaults to ``name``). Raises :class:`WeightsIntegrityError` when ``path`` is not a plain folder name."""
    path = entry.get("path", name)
    try:
        check_bundled_name(path, f"weights_manifest.json[{name!r}].path")
    except ValueError as exc:
        raise WeightsIntegrityError(str(exc)) from None
    return bundled_root() / path

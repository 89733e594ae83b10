"""What a source resolves to: a release's local, not yet verified files and their expected digests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcjepa.architecture import ModelConfig
from mcjepa.release.format import check_entry, entry_config

__all__ = ["ResolvedRelease", "no_hash_for_a_release", "release_from_entry"]


@dataclass
class ResolvedRelease:
    """Local, not yet verified files of a release.

    ``files`` maps component name to a local path; ``expected`` to its sha256 (``None`` when
    unknown); ``sizes`` to its size in bytes (``None`` when unknown); ``config`` is the
    release's architecture when it records one; ``source`` says where it came from; ``name`` is
    the manifest key or the release's own name (``None`` for a bare file); ``kind`` is one of
    ``bundled``, ``published``, ``local`` (manifest entries), ``hf``, ``url``, ``folder``, ``file``.
    """

    config: ModelConfig | None
    files: dict[str, Path]
    expected: dict[str, str | None]
    sizes: dict[str, int | None] = field(default_factory=dict)
    source: str = ""
    entry: dict[str, Any] | None = None
    # whole-model files hold several components under prefixed keys: {component: prefix}
    prefixes: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    kind: str = ""


def release_from_entry(
    entry: Any,
    where: str,
    locate: Callable[[str], Path],
    source: str,
    components: Sequence[str] | None,
    *,
    name: str | None = None,
    kind: str = "",
) -> ResolvedRelease:
    """Return the release ``entry`` describes (``where`` names it in errors), its requested
    ``components`` (``None``: all) found or fetched by ``locate(filename) -> Path``."""
    entry = check_entry(entry, where)
    wanted = [c for c in entry["files"] if components is None or c in components]
    files = {c: locate(entry["files"][c]["filename"]) for c in wanted}
    return ResolvedRelease(
        config=entry_config(entry, where),
        files=files,
        expected={c: entry["files"][c].get("sha256") for c in wanted},
        sizes={c: entry["files"][c].get("size") for c in wanted},
        source=source,
        entry=entry,
        name=name or entry.get("name"),
        kind=kind,
    )


def no_hash_for_a_release(weights: str, sha256: str | None, what: str) -> None:
    """Raise ``ValueError`` when a ``sha256`` is given for ``weights``, a release (``what`` says which
    kind): a release is checked against its own description, a given hash only checks a bare file."""
    if sha256 is not None:
        raise ValueError(
            f"sha256= (or '#sha256=') checks one bare .safetensors file, but {weights!r} is a {what}. "
            "Drop the sha256, or point weights= at the .safetensors file itself."
        )

"""The weights manifest: the one place that finds, reads, looks up and updates ``weights_manifest.json``.

The manifest ships inside the package as ``mcjepa/weights_manifest.json`` (package data, so a wheel
install sees it; the repository's top-level ``weights_manifest.json`` is a symbolic link to it).
``$MCJEPA_MANIFEST`` names another manifest, read first: its entries win over the packaged ones,
and the packaged entries (the bundled model's among them) stay visible to :func:`find_entry`.
Format: ``{"format_version": 1, "note": str, "models": {name: entry}}``, entries as in
:mod:`mcjepa.release.format`. ``mcjepa-export --update-manifest``, ``mcjepa-publish`` and
``python -m mcjepa.cli.bundle`` all write through :func:`merge_entry`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcjepa.release.errors import ManifestError
from mcjepa.release.format import FORMAT_VERSION
from mcjepa.utils.atomic import atomic_write_bytes, json_bytes

__all__ = [
    "COMMIT_SHA",
    "MANIFEST_ENV",
    "MANIFEST_FILENAME",
    "default_manifest_path",
    "find_entry",
    "known_names",
    "load_manifest",
    "manifest_candidates",
    "merge_entry",
    "packaged_manifest_path",
    "published_entry_for",
]

MANIFEST_FILENAME = "weights_manifest.json"
MANIFEST_ENV = "MCJEPA_MANIFEST"
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")  # a pinned Hub revision (also checked by mcjepa.release.publish)
_NEW_NOTE = "MC-JEPA weight releases (format: mcjepa/release/format.py, docs/release.md)."


def packaged_manifest_path() -> Path:
    """Return the manifest that ships inside the package: ``<mcjepa package>/weights_manifest.json``."""
    return Path(__file__).resolve().parents[1] / MANIFEST_FILENAME


def manifest_candidates() -> list[Path]:
    """Where :func:`load_manifest` looks, in order: ``$MCJEPA_MANIFEST`` when set, then the packaged
    manifest (:func:`packaged_manifest_path`)."""
    candidates = []
    if os.environ.get(MANIFEST_ENV):
        candidates.append(Path(os.environ[MANIFEST_ENV]).expanduser())
    candidates.append(packaged_manifest_path())
    return candidates


def default_manifest_path() -> Path:
    """Return the manifest :func:`merge_entry` writes by default: ``$MCJEPA_MANIFEST`` when set (created
    when missing), else the packaged one."""
    return manifest_candidates()[0]


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Return the manifest at ``path`` (default: the first existing of :func:`manifest_candidates`) as
    a dict with ``format_version``, ``note`` and ``models``.

    Raises ``FileNotFoundError`` when there is none, ``ValueError`` when it is not a manifest or is
    of a newer format than this mcjepa reads."""
    candidates = manifest_candidates()
    where = Path(path) if path is not None else next((c for c in candidates if c.is_file()), candidates[-1])
    if not where.is_file():
        tried = [str(where)] if path is not None else [str(c) for c in candidates]
        raise FileNotFoundError(f"no {MANIFEST_FILENAME} found; looked at {tried}. Set {MANIFEST_ENV}=path.")
    try:
        manifest = json.loads(where.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ValueError(f"{where} must be a JSON object with a 'models' object")
    if manifest.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(
            f"{where} has format_version {manifest['format_version']}; this mcjepa reads <= {FORMAT_VERSION}. "
            "Upgrade mcjepa."
        )
    return manifest


def _visible_manifests() -> list[dict[str, Any]]:
    """The manifests a name is looked up in: :func:`manifest_candidates` that exist, in order."""
    out = []
    seen = set()
    for path in manifest_candidates():
        key = path.resolve() if path.exists() else path
        if key in seen or not path.is_file():
            continue
        seen.add(key)
        out.append(load_manifest(path))
    return out


def find_entry(name: str) -> dict[str, Any] | None:
    """Return the entry ``name`` of ``$MCJEPA_MANIFEST``, else of the packaged manifest; ``None`` when
    neither lists it."""
    for manifest in _visible_manifests():
        entry = manifest["models"].get(name)
        if isinstance(entry, dict):
            return entry
    return None


def known_names(status: str | None = None) -> list[str]:
    """Sorted names of every visible entry (:func:`find_entry`'s manifests), only of ``status`` when given."""
    names = set()
    for manifest in _visible_manifests():
        for name, entry in manifest["models"].items():
            if isinstance(entry, dict) and (status is None or entry.get("status") == status):
                names.add(name)
    return sorted(names)


def published_entry_for(variant: str) -> str | None:
    """Return the name of a ``published`` entry of ``variant`` (what ``pretrained=True`` loads), or ``None``."""
    for manifest in _visible_manifests():
        for name, entry in manifest["models"].items():
            if isinstance(entry, dict) and entry.get("status") == "published" and entry.get("variant") == variant:
                return name
    return None


def merge_entry(
    name: str, entry: Mapping[str, Any], manifest_path: str | os.PathLike | None = None, force: bool = False
) -> Path:
    """Add or replace ``models[name]`` in the manifest at ``manifest_path`` (default:
    :func:`default_manifest_path`; created when missing) with one atomic write, other entries kept;
    return the path written (a symbolic link's target: the link is kept).

    A ``published`` entry is only replaced by a different one with ``force``; otherwise
    :class:`ManifestError` says so and nothing is written."""
    path = Path(manifest_path) if manifest_path is not None else default_manifest_path()
    if path.is_symlink():  # the top-level weights_manifest.json: write the packaged file, keep the link
        path = path.resolve()
    if path.is_file():
        manifest = load_manifest(path)
    else:
        manifest = {"format_version": FORMAT_VERSION, "note": _NEW_NOTE, "models": {}}
        path.parent.mkdir(parents=True, exist_ok=True)
    new = json.loads(json.dumps(dict(entry)))
    old = manifest["models"].get(name)
    if isinstance(old, dict) and old.get("status") == "published" and not force and old != new:
        raise ManifestError(
            f"{path}: {name!r} is a published release (hf://{old.get('repo_id')}@{old.get('revision')}); "
            "refusing to overwrite it. Choose another --name, or pass --force to replace it."
        )
    manifest["models"][name] = new
    atomic_write_bytes(path, json_bytes(manifest))
    return path

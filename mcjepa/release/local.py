"""Local sources: a release folder, or one ``.safetensors`` file (a component or a whole model)."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from safetensors import safe_open

from mcjepa.architecture import ModelConfig
from mcjepa.model import COMPONENTS
from mcjepa.release.errors import UnverifiedWeightsWarning, WeightsIntegrityError, WeightsUnavailableError
from mcjepa.release.format import KEY_SIGNATURES, RELEASE_FILENAME, check_entry, entry_config, refuse_pickle
from mcjepa.release.resolved import ResolvedRelease, no_hash_for_a_release, release_from_entry
from mcjepa.release.verify import REDO, REDO_GIVEN, verify_file
from mcjepa.utils.atomic import read_json

__all__ = ["resolve_local", "resolve_single_file"]


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning issued by our caller at the first frame outside mcjepa."""
    package = str(Path(__file__).resolve().parents[1])
    frame, level = sys._getframe(2), 2
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def resolve_local(path: Path, components: Sequence[str] | None, sha256: str | None = None) -> ResolvedRelease:
    """Resolve an existing local path: a release folder (its ``release.json``) or a ``.safetensors`` file."""
    if path.is_dir():
        no_hash_for_a_release(str(path), sha256, f"release folder, checked against its {RELEASE_FILENAME}")
        release_json = path / RELEASE_FILENAME
        if not release_json.is_file():
            found = sorted(p.name for p in path.glob("*.safetensors"))
            raise WeightsUnavailableError(
                f"{path} is not a release folder: it has no {RELEASE_FILENAME} (found .safetensors: {found}). "
                "Write releases with mcjepa.release.save_release, or pass one .safetensors file as weights=."
            )
        entry = read_json(release_json, "release description", WeightsIntegrityError)
        return release_from_entry(entry, str(release_json), lambda f: path / f, str(path), components, kind="folder")
    refuse_pickle(path.name)
    if path.suffix != ".safetensors":
        raise WeightsIntegrityError(f"{path}: expected a .safetensors file or a release folder")
    return resolve_single_file(path, sha256)


def resolve_single_file(
    path: Path, expected: str | None = None, size: int | None = None, source: str | None = None
) -> ResolvedRelease:
    """One safetensors file: a component (named by metadata, file name or keys) or a whole model.

    Checked against ``expected`` when given, else against a sibling ``release.json`` that lists
    it; otherwise it is read unverified and an :class:`UnverifiedWeightsWarning` says so."""
    source = source or str(path)
    sibling = path.parent / RELEASE_FILENAME
    if expected is None and sibling.is_file():
        candidate = read_json(sibling, "release description", WeightsIntegrityError)
        listed = candidate.get("files") if isinstance(candidate, dict) else None
        for comp, info in (listed if isinstance(listed, dict) else {}).items():
            if isinstance(info, dict) and info.get("filename") == path.name:
                entry = check_entry(candidate, str(sibling))
                return ResolvedRelease(
                    config=entry_config(entry, str(sibling)),
                    files={comp: path},
                    expected={comp: info.get("sha256")},
                    sizes={comp: info.get("size")},
                    source=str(path),
                    entry=entry,
                    name=entry.get("name"),
                    kind="folder",
                )
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} does not exist")
    # header check before we read its keys
    verify_file(path, expected, size, "weights file", REDO if expected is None else REDO_GIVEN)
    with safe_open(str(path), framework="pt") as fh:
        keys = list(fh.keys())
        meta = fh.metadata() or {}
    config = None
    if meta.get("mcjepa.config"):
        try:
            config = ModelConfig.from_dict(json.loads(meta["mcjepa.config"]))
        except (ValueError, TypeError) as exc:
            raise WeightsIntegrityError(f"{path}: its mcjepa.config metadata is not a valid config: {exc}") from None
    prefixes = {c: f"{c}." for c in COMPONENTS if any(k.startswith(f"{c}.") for k in keys)}
    if prefixes and all(any(k.startswith(p) for p in prefixes.values()) for k in keys):
        comps = list(prefixes)
    else:
        prefixes = {}
        comp = meta.get("mcjepa.component") or (path.stem if path.stem in COMPONENTS else None)
        if comp is None:
            heads = {k.split(".", 1)[0] for k in keys}
            matches = [c for c, sig in KEY_SIGNATURES.items() if heads and heads <= sig]
            if len(matches) != 1:
                raise WeightsIntegrityError(
                    f"{path}: cannot tell which component this file holds (top-level keys {sorted(heads)[:10]}). "
                    f"Name it <component>.safetensors with component one of {list(COMPONENTS)}, "
                    "or write it with mcjepa.release.save_release."
                )
            comp = matches[0]
        if comp not in COMPONENTS:
            raise WeightsIntegrityError(f"{path}: unknown component {comp!r}; expected one of {list(COMPONENTS)}")
        comps = [comp]
    if expected is None:
        warnings.warn(
            f"{source} was NOT verified: a bare .safetensors file has no {RELEASE_FILENAME} listing its sha256, "
            "so a corrupted or swapped file would go unnoticed. To check it, pass "
            f"weights='{source}#sha256=<hex>' or sha256='<hex>' (`sha256sum {path}` prints the hex), "
            "or load the release folder it came from.",
            UnverifiedWeightsWarning,
            stacklevel=_user_stacklevel(),
        )
    return ResolvedRelease(
        config=config,
        files={c: path for c in comps},
        expected={c: expected for c in comps},
        sizes={c: size for c in comps},
        source=source,
        prefixes=prefixes,
        kind="file",
    )

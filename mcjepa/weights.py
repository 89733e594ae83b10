"""Weight releases: writing them, finding them, verifying them and loading them strictly.

Release format (``format_version`` 1)
-------------------------------------
A release is a folder holding::

    encoder.safetensors     # ConvNeXtPyramid state dict, keys without the "encoder." prefix
    flow_head.safetensors   # FlowHead state dict, keys without the "flow_head." prefix
    expander.safetensors    # optional (training only), keys without the "expander." prefix
    config.json             # ModelConfig.to_dict(): the architecture
    release.json            # this release's manifest entry (below)

Each safetensors file also carries string metadata: ``format="pt"``, ``mcjepa.component``,
``mcjepa.format_version`` and ``mcjepa.config`` (the config as JSON), so that a single file
names its component and architecture on its own.

Manifest entry (one per release; ``release.json`` and ``weights_manifest.json["models"][name]``)
------------------------------------------------------------------------------------------------
``format_version`` (int, 1), ``name`` (str), ``variant`` (the :func:`mcjepa.config.model_config`
name it was built from, used by ``pretrained=True``), ``repo_id`` (Hugging Face ``org/name``;
published entries only), ``revision`` (the pinned 40-hex commit sha; published entries only),
``url`` (``file://`` or ``https://`` URL of the release folder; local entries written by
``mcjepa-export --update-manifest``; not in ``release.json``),
``files`` (``{component: {"filename": str, "sha256": str, "size": int (bytes)}}``), ``config``
(``ModelConfig.to_dict()``), ``trained_on`` (str or list), ``metrics`` (dict), ``license`` (str),
``status`` (``"published"`` or ``"local"``) and free ``metadata`` (dict).

``weights_manifest.json`` at the repository root is ``{"format_version": 1, "note": str,
"models": {name: entry}}``. It lists only releases that truly exist; nothing is published yet,
so ``models`` is empty.

``weights=`` forms accepted by :func:`resolve` and :func:`load_model`
---------------------------------------------------------------------
- a manifest key (``weights_manifest.json["models"]``): downloaded with
  ``huggingface_hub.hf_hub_download`` at the pinned revision (cache, ``HF_HUB_OFFLINE``);
- a local release folder (verified against its ``release.json``);
- a local ``.safetensors`` file: one component (named by its metadata, its file name or its
  keys; verified against a sibling ``release.json`` when that lists it), or a whole-model file
  with ``encoder.``/``flow_head.``/``expander.`` prefixed keys; ``FILE#sha256=<hex>`` (or
  ``sha256=``) gives the digest it must have;
- ``hf://org/repo`` or ``hf://org/repo@revision``: ``release.json`` then each file through
  ``hf_hub_download``; the manifest entry is used instead when it lists that repo;
- ``https://.../release_base`` or ``https://.../file.safetensors``: downloaded with a progress
  bar into ``$MCJEPA_CACHE`` (default ``~/.cache/mcjepa``); ``file://`` URLs are read in place.

Offline: ``MCJEPA_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` keeps every source to local files and
caches; a source that is not cached fails at once with a :class:`WeightsUnavailableError` saying
offline mode is on and how to pass a local file instead.

What is verified (size and sha256, before a file is read): manifest keys and ``hf://`` releases
always (against the manifest entry or the release's ``release.json``); release folders and
release URLs against their ``release.json``; a ``.safetensors`` file inside a release folder
against that folder's ``release.json``. A bare ``.safetensors`` file (local, ``file://`` or
``https://``) only when its hash is given, as ``weights="FILE#sha256=<hex>"`` or ``sha256=``; a
wrong hash is a :class:`WeightsIntegrityError`. Without one the file is still loaded, with an
:class:`UnverifiedWeightsWarning` saying it was NOT verified. Only safetensors files are ever
read; pickles (``.pt``, ``.pth``, ``.bin``, ...) are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import huggingface_hub
import requests
import torch
from huggingface_hub import errors as hf_errors
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save
from torch import nn
from tqdm.auto import tqdm

from .config import MODEL_VARIANTS, ModelConfig, model_config
from .io_atomic import atomic_write_bytes, atomic_writer, json_bytes, read_json
from .model import COMPONENTS, MCJEPA

__all__ = [
    "COMMIT_SHA",
    "FORMAT_VERSION",
    "MANIFEST_FILENAME",
    "NonFiniteWeightsError",
    "RELEASE_FILENAME",
    "UNTRAINED_MESSAGE",
    "CONFIG_FILENAME",
    "ResolvedRelease",
    "UnverifiedWeightsWarning",
    "WeightsError",
    "WeightsIntegrityError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "cache_dir",
    "load_manifest",
    "load_model",
    "manifest_candidates",
    "load_state_dict_strict",
    "read_component",
    "resolve",
    "save_release",
    "sha256_file",
]

FORMAT_VERSION = 1
MANIFEST_FILENAME = "weights_manifest.json"
RELEASE_FILENAME = "release.json"
CONFIG_FILENAME = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")
_TOP_LEVEL_METADATA = ("trained_on", "metrics", "license", "variant")
# first key segment of each component's own state dict (used to name an unlabelled file)
_KEY_SIGNATURES = {
    "encoder": {"stem", "stages"},
    "flow_head": {"reducers", "decoder", "context"},
    "expander": {"layers"},
}
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")  # a pinned Hub revision (also checked by mcjepa.publish)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_SHA256_FRAGMENT = "#sha256="
_REDO = (
    "Delete it and download it again (for the Hugging Face cache: `hf cache rm model/ORG/REPO`), "
    "or re-create the release with mcjepa.weights.save_release."
)
_REDO_GIVEN = (
    "Check the sha256 you passed (weights='FILE#sha256=<hex>' or sha256=) against where the file came from, "
    "or get the file again."
)
_WHAT_TO_DO = (
    "Pass weights= a local release folder written by mcjepa.weights.save_release, a .safetensors file, "
    "hf://org/repo[@revision] or an https:// URL of a release."
)


class WeightsError(RuntimeError):
    """Base class of every weight-loading error."""


class WeightsUnavailableError(WeightsError):
    """The requested weights cannot be found or downloaded (offline, not cached, not published)."""


class WeightsIntegrityError(WeightsError):
    """A weight file is corrupted, truncated, not the expected file, or not a safetensors file."""


class WeightsMismatchError(WeightsError):
    """A state dict does not fit its module: missing or unexpected keys, or shape mismatches."""


class NonFiniteWeightsError(WeightsError, ValueError):
    """Weights about to be written to a release hold NaN or infinite values."""


class UnverifiedWeightsWarning(UserWarning):
    """A bare ``.safetensors`` file is loaded with no sha256 to check it against."""


@dataclass
class ResolvedRelease:
    """Local, not yet verified files of a release.

    ``files`` maps component name to a local path; ``expected`` to its sha256 (``None`` when
    unknown); ``sizes`` to its size in bytes (``None`` when unknown); ``config`` is the
    release's architecture when it records one; ``source`` says where it came from.
    """

    config: ModelConfig | None
    files: dict[str, Path]
    expected: dict[str, str | None]
    sizes: dict[str, int | None] = field(default_factory=dict)
    source: str = ""
    entry: dict[str, Any] | None = None
    # whole-model files hold several components under prefixed keys: {component: prefix}
    prefixes: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- hashing, caches


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Return the download cache for URL weights: ``$MCJEPA_CACHE`` or ``~/.cache/mcjepa``."""
    return Path(os.environ.get("MCJEPA_CACHE") or Path.home() / ".cache" / "mcjepa").expanduser()


def _offline_flags() -> list[str]:
    """The offline switches that are on: ``MCJEPA_OFFLINE`` and ``HF_HUB_OFFLINE`` (read from the
    environment now, or huggingface_hub's setting from import time). Either one keeps every source
    (``hf://``, manifest keys, ``https://``) to local files and caches: no network request at all."""
    on = [name for name in ("MCJEPA_OFFLINE", "HF_HUB_OFFLINE") if _truthy(os.environ.get(name))]
    if "HF_HUB_OFFLINE" not in on and huggingface_hub.constants.is_offline_mode():
        on.append("HF_HUB_OFFLINE")
    return on


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _offline_is_on(flags: Sequence[str]) -> str:
    return f"offline mode is on ({' and '.join(f'{f} is set' for f in flags)})"


# --------------------------------------------------------------------------- writing


def _safetensors_chunks(state: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> list[bytes | memoryview]:
    """Serialise ``state`` as safetensors with a deterministic header.

    ``safetensors`` keeps the metadata in a hash map, so its order (and the file's bytes) changes
    from one process to the next; the header is re-emitted here with ``__metadata__`` first, its
    keys sorted, then the tensors in file order. The data section is kept as written."""
    raw = safetensors_save(dict(state), metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered: dict[str, Any] = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
    ordered.update(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"], kv[0])))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned, as safetensors writes it
    return [len(text).to_bytes(8, "little"), text, memoryview(raw)[8 + n :]]


def _check_finite(states: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Raise :class:`NonFiniteWeightsError` naming every tensor of ``states`` (``{file or
    component: state dict}``) that holds NaN or infinite values, with the counts."""
    bad = []
    for where, state in states.items():
        for key, t in state.items():
            if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
                continue
            finite = torch.isfinite(t)
            if bool(finite.all()):
                continue
            n_nan = int(torch.isnan(t).sum())
            n_inf = int((~finite).sum()) - n_nan
            bad.append(f"{where}: {key} ({n_nan} NaN, {n_inf} Inf of {t.numel()} values)")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
        raise NonFiniteWeightsError(
            f"refusing to write a release: {len(bad)} tensor(s) hold non-finite values: {shown}. "
            "A release must hold finite weights; the model diverged or the checkpoint is damaged. "
            "Export an earlier checkpoint (mcjepa-export CHECKPOINT_FILE) or fix the model first. Nothing was written."
        )


def _write_safetensors(path: Path, state: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """The one writer of release safetensors files: refuse non-finite tensors, serialise
    ``state`` with ``metadata`` (deterministic bytes) and write it atomically with the usual
    file mode."""
    _check_finite({path.name: state})
    atomic_write_bytes(path, _safetensors_chunks(state, metadata))


def save_release(
    model: MCJEPA,
    out_dir: str | os.PathLike,
    components: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` as a release folder and return its manifest entry (also ``release.json``).

    Args:
        model: the model to save.
        out_dir: the release folder (created if needed; existing files of the same names are
            replaced, each atomically).
        components: which components to write; default: the encoder and, when present, the
            flow head (the expander is only needed to resume training).
        metadata: free metadata; the keys ``trained_on``, ``metrics``, ``license`` and
            ``variant`` go to the top level of the entry, the rest under ``"metadata"``.
            ``variant`` defaults to the :data:`~mcjepa.config.MODEL_VARIANTS` name whose config
            equals the model's (``None`` for a custom architecture).

    Raises :class:`NonFiniteWeightsError` (naming each tensor and its NaN/Inf counts), before
    writing anything, when a tensor to be saved is not finite.
    """
    if not isinstance(model, MCJEPA):
        raise TypeError(f"save_release expects an mcjepa.MCJEPA model, got {type(model).__name__}")
    if components is None:
        components = [c for c in model.components if c != "expander"]
    components = list(components)
    missing = [c for c in components if c not in model.components]
    if missing:
        raise ValueError(f"the model has no {missing} component(s); it holds {list(model.components)}")
    if not components:
        raise ValueError("nothing to save: components is empty")
    extra = dict(metadata or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable (str, numbers, lists, dicts): {exc}") from None
    states = {
        name: {k: v.detach().to("cpu", copy=True).contiguous() for k, v in getattr(model, name).state_dict().items()}
        for name in components
    }
    _check_finite(states)  # every component before any file is written
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"out_dir {out} is an existing file; a release is a folder (<component>.safetensors, "
            f"{CONFIG_FILENAME}, {RELEASE_FILENAME}). Pass a new or existing folder path."
        )
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(model.config.to_dict()))  # tuples -> lists, as read back
    config_json = json.dumps(config, sort_keys=True)
    files: dict[str, dict[str, Any]] = {}
    for name, state in states.items():
        filename = f"{name}.safetensors"
        target = out / filename
        _write_safetensors(
            target,
            state,
            {
                "format": "pt",
                "mcjepa.component": name,
                "mcjepa.format_version": str(FORMAT_VERSION),
                "mcjepa.config": config_json,
            },
        )
        files[name] = {"filename": filename, "sha256": sha256_file(target), "size": target.stat().st_size}
    entry: dict[str, Any] = {"format_version": FORMAT_VERSION, "name": model.config.name}
    # the named variant this architecture is, if any (pretrained=True looks releases up by it)
    entry["variant"] = next((n for n, make in MODEL_VARIANTS.items() if make() == model.config), None)
    for key in _TOP_LEVEL_METADATA:
        if key in extra:
            entry[key] = extra.pop(key)
    entry.update({"status": "local", "files": files, "config": config, "metadata": extra})
    from . import __version__

    entry["mcjepa_version"] = __version__
    atomic_write_bytes(out / CONFIG_FILENAME, json_bytes(config))
    atomic_write_bytes(out / RELEASE_FILENAME, json_bytes(entry))
    return entry


# --------------------------------------------------------------------------- manifest


def manifest_candidates() -> list[Path]:
    """Where :func:`load_manifest` looks, in order: ``$MCJEPA_MANIFEST`` when set, then the
    repository root's ``weights_manifest.json`` (the packaged copy is read after these)."""
    import mcjepa

    candidates = []
    if os.environ.get("MCJEPA_MANIFEST"):
        candidates.append(Path(os.environ["MCJEPA_MANIFEST"]).expanduser())
    # source checkout, editable install and torch.hub clone: the canonical copy at the repo root
    candidates.append(Path(mcjepa.__file__).resolve().parent.parent / MANIFEST_FILENAME)
    return candidates


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Return the weights manifest as a dict with ``format_version``, ``note`` and ``models``.

    Looks at ``path`` when given; otherwise ``$MCJEPA_MANIFEST``, then the canonical copy at the
    repository root next to the ``mcjepa`` package (checkout, editable install, torch.hub), then
    a copy installed inside the package (``mcjepa/weights_manifest.json``, for wheels).
    """
    if path is not None:
        text = Path(path).read_text()
        where = str(path)
    else:
        text, where = None, ""
        tried = []
        for candidate in manifest_candidates():
            tried.append(str(candidate))
            if candidate.is_file():
                text, where = candidate.read_text(), str(candidate)
                break
        if text is None:
            packaged = resources.files("mcjepa") / MANIFEST_FILENAME
            tried.append("mcjepa/" + MANIFEST_FILENAME + " (package data)")
            if packaged.is_file():
                text, where = packaged.read_text(), "mcjepa/" + MANIFEST_FILENAME
        if text is None:
            raise FileNotFoundError(f"no {MANIFEST_FILENAME} found; looked at {tried}. Set MCJEPA_MANIFEST=path.")
    try:
        manifest = json.loads(text)
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


# --------------------------------------------------------------------------- resolving


def _entry_config(entry: Mapping[str, Any], where: str) -> ModelConfig | None:
    if "config" not in entry or entry["config"] is None:
        return None
    try:
        return ModelConfig.from_dict(entry["config"])
    except (TypeError, ValueError) as exc:
        raise WeightsIntegrityError(f"{where}: the release's architecture config is not valid: {exc}") from None


def _check_entry(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict) or not entry["files"]:
        raise WeightsIntegrityError(f"{where}: not a release description (expected a JSON object with 'files')")
    version = entry.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WeightsIntegrityError(
            f"{where}: release format_version {version!r} is newer than this mcjepa reads ({FORMAT_VERSION}); "
            "upgrade mcjepa."
        )
    for comp, info in entry["files"].items():
        if comp not in COMPONENTS:
            raise WeightsIntegrityError(f"{where}: unknown component {comp!r}; expected one of {list(COMPONENTS)}")
        if not isinstance(info, dict) or "filename" not in info:
            raise WeightsIntegrityError(f"{where}: files[{comp!r}] needs a 'filename'")
        _refuse_pickle(info["filename"])
        if "/" in info["filename"] or "\\" in info["filename"] or info["filename"].startswith("."):
            raise WeightsIntegrityError(f"{where}: files[{comp!r}].filename must be a plain file name")
    return entry


def _refuse_pickle(name: str) -> None:
    lower = str(name).lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise WeightsIntegrityError(
            f"refusing to load {name!r}: mcjepa only loads .safetensors weights, never pickled files "
            "(.pt/.pth/.bin/.ckpt), which can run arbitrary code. Convert a model you trust with "
            "mcjepa.weights.save_release(model, out_dir) and pass that folder as weights=."
        )


def _release_from_entry(
    entry: dict[str, Any], where: str, locate: Any, source: str, components: Sequence[str] | None
) -> ResolvedRelease:
    """``locate(filename) -> Path`` fetches or finds each listed file (only those requested)."""
    entry = _check_entry(entry, where)
    wanted = [c for c in entry["files"] if components is None or c in components]
    files = {c: locate(entry["files"][c]["filename"]) for c in wanted}
    return ResolvedRelease(
        config=_entry_config(entry, where),
        files=files,
        expected={c: entry["files"][c].get("sha256") for c in wanted},
        sizes={c: entry["files"][c].get("size") for c in wanted},
        source=source,
        entry=entry,
    )


def _resolve_local(path: Path, components: Sequence[str] | None, sha256: str | None = None) -> ResolvedRelease:
    if path.is_dir():
        if sha256 is not None:
            raise _hash_of_a_release(str(path), f"release folder, checked against its {RELEASE_FILENAME}")
        release_json = path / RELEASE_FILENAME
        if not release_json.is_file():
            found = sorted(p.name for p in path.glob("*.safetensors"))
            raise WeightsUnavailableError(
                f"{path} is not a release folder: it has no {RELEASE_FILENAME} (found .safetensors: {found}). "
                "Write releases with mcjepa.weights.save_release, or pass one .safetensors file as weights=."
            )
        entry = read_json(release_json, "release description", WeightsIntegrityError)

        def locate(filename: str) -> Path:
            return path / filename

        return _release_from_entry(entry, str(release_json), locate, str(path), components)
    _refuse_pickle(path.name)
    if path.suffix != ".safetensors":
        raise WeightsIntegrityError(f"{path}: expected a .safetensors file or a release folder")
    return _resolve_single_file(path, sha256)


def _hash_of_a_release(weights: str, what: str) -> ValueError:
    return ValueError(
        f"sha256= (or '#sha256=') checks one bare .safetensors file, but {weights!r} is a {what}. "
        "Drop the sha256, or point weights= at the .safetensors file itself."
    )


def _split_sha256(weights: str, sha256: str | None) -> tuple[str, str | None]:
    """Split ``FILE#sha256=<hex>`` and reconcile it with the ``sha256=`` argument."""
    given = None if sha256 is None else str(sha256).strip().lower()
    if _SHA256_FRAGMENT in weights:
        weights, _, fragment = weights.rpartition(_SHA256_FRAGMENT)
        fragment = fragment.strip().lower()
        if given is not None and given != fragment:
            raise ValueError(f"two different sha256 given: {fragment!r} after '#sha256=' and sha256={given!r}")
        given = fragment
    if given is not None and not _SHA256_HEX.match(given):
        raise ValueError(f"a sha256 must be 64 hex digits (what `sha256sum FILE` prints), got {given!r}")
    return weights, given


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning issued by our caller at the first frame outside mcjepa."""
    package = str(Path(__file__).resolve().parent)
    frame, level = sys._getframe(2), 2
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _resolve_single_file(
    path: Path, expected: str | None = None, size: int | None = None, source: str | None = None
) -> ResolvedRelease:
    """One safetensors file: a component (named by metadata, file name or keys) or a whole model.

    Checked against ``expected`` when given, else against a sibling ``release.json`` that lists
    it; otherwise it is read unverified and an :class:`UnverifiedWeightsWarning` says so."""
    source = source or str(path)
    sibling = path.parent / RELEASE_FILENAME
    entry: dict[str, Any] | None = None
    if expected is None and sibling.is_file():
        candidate = read_json(sibling, "release description", WeightsIntegrityError)
        listed = candidate.get("files") if isinstance(candidate, dict) else None
        for comp, info in (listed if isinstance(listed, dict) else {}).items():
            if isinstance(info, dict) and info.get("filename") == path.name:
                entry = _check_entry(candidate, str(sibling))
                return ResolvedRelease(
                    config=_entry_config(entry, str(sibling)),
                    files={comp: path},
                    expected={comp: info.get("sha256")},
                    sizes={comp: info.get("size")},
                    source=str(path),
                    entry=entry,
                )
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} does not exist")
    # header check before we read its keys
    _verify_file(path, expected, size, "weights file", _REDO if expected is None else _REDO_GIVEN)
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
            matches = [c for c, sig in _KEY_SIGNATURES.items() if heads and heads <= sig]
            if len(matches) != 1:
                raise WeightsIntegrityError(
                    f"{path}: cannot tell which component this file holds (top-level keys {sorted(heads)[:10]}). "
                    f"Name it <component>.safetensors with component one of {list(COMPONENTS)}, "
                    "or write it with mcjepa.weights.save_release."
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
    )


def _parse_hf(spec: str) -> tuple[str, str | None]:
    body = spec[len("hf://") :].strip("/")
    repo_id, _, revision = body.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{spec!r}: expected hf://org/repo or hf://org/repo@revision")
    return repo_id, revision or None


def _hf_download(repo_id: str, filename: str, revision: str | None) -> Path:
    rev = f"@{revision}" if revision else ""
    flags = _offline_flags()
    if flags:
        # a pure cache lookup: hf_hub_download, even with local_files_only, may contact the Hub
        # (its user-agent code fetches a registry) unless huggingface_hub itself was imported offline
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(found, str):
            return Path(found)
        get = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "") + " --local-dir DIR"
        raise WeightsUnavailableError(
            f"cannot get {filename} of hf://{repo_id}{rev}: {_offline_is_on(flags)} and it is not in the "
            f"Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}). Unset {' and '.join(flags)} to "
            "download it, or pass weights= a local release folder or .safetensors file (on a connected machine "
            f"`{get}`, copy DIR here and pass weights='DIR')."
        ) from None
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as exc:
        cache = huggingface_hub.constants.HF_HUB_CACHE
        raise WeightsUnavailableError(
            f"cannot get {filename} of hf://{repo_id}{rev}: it is not in the Hugging Face cache and the Hub "
            f"could not be reached (cache: {cache}). Connect to the internet, or pass weights= a local release "
            f"folder or .safetensors file. ({type(exc).__name__})"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise WeightsUnavailableError(
            f"hf://{repo_id}: no such Hugging Face repository, or it is private/gated (log in with `hf auth login`). "
            + _WHAT_TO_DO
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise WeightsUnavailableError(f"hf://{repo_id}: revision {revision!r} does not exist") from None
    except hf_errors.EntryNotFoundError:
        raise WeightsUnavailableError(
            f"hf://{repo_id}{rev} has no file {filename!r}; an mcjepa release holds {RELEASE_FILENAME} and "
            "<component>.safetensors files (see mcjepa.weights.save_release)"
        ) from None
    except (hf_errors.HfHubHTTPError, OSError, ConnectionError) as exc:
        raise WeightsUnavailableError(
            f"downloading {filename} from hf://{repo_id}{rev} failed: {type(exc).__name__}: {str(exc)[:300]}. "
            + _WHAT_TO_DO
        ) from None


def _resolve_manifest_entry(name: str, entry: dict[str, Any], components: Sequence[str] | None) -> ResolvedRelease:
    """A manifest entry: a published one from the Hub at its pinned commit, a local one (written
    by ``mcjepa-export --update-manifest``) from its ``url``; every file is checked against the
    entry's own sha256 and size."""
    where = f"{MANIFEST_FILENAME}[{name!r}]"
    repo_id, revision = entry.get("repo_id"), entry.get("revision")
    if repo_id:

        def locate(filename: str) -> Path:
            return _hf_download(repo_id, filename, revision)

        return _release_from_entry(entry, where, locate, f"hf://{repo_id}@{revision}", components)
    url = entry.get("url")
    if not url:
        raise WeightsUnavailableError(
            f"{where} has neither repo_id nor url: it describes a local release that was not published and "
            "does not say where it is. Pass its folder as weights='path/to/release', or re-export it with "
            "mcjepa-export --update-manifest."
        )
    entry = _check_entry(entry, where)
    parsed = urllib.parse.urlparse(str(url))
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        folder = Path(urllib.request.url2pathname(parsed.path))

        def locate(filename: str) -> Path:
            return folder / filename

    elif parsed.scheme in ("http", "https"):
        base = str(url).rstrip("/")

        def locate(filename: str) -> Path:
            info = next(i for i in entry["files"].values() if i["filename"] == filename)
            return _download(f"{base}/{filename}", info.get("sha256"), info.get("size"))

    else:
        raise WeightsIntegrityError(f"{where}: url must be a file:// or https:// URL of a release folder, got {url!r}")
    return _release_from_entry(entry, where, locate, str(url), components)


def _resolve_hf(spec: str, components: Sequence[str] | None) -> ResolvedRelease:
    repo_id, revision = _parse_hf(spec)
    manifest = _try_manifest()
    for name, entry in manifest.get("models", {}).items():
        if isinstance(entry, dict) and entry.get("repo_id") == repo_id and revision in (None, entry.get("revision")):
            return _resolve_manifest_entry(name, entry, components)
    release_json = _hf_download(repo_id, RELEASE_FILENAME, revision)
    entry = read_json(release_json, f"{RELEASE_FILENAME} of {spec}", WeightsIntegrityError)
    # pin every file to the snapshot release.json came from
    snapshot = release_json.parent.name
    pinned = snapshot if COMMIT_SHA.match(snapshot) else revision

    def locate(filename: str) -> Path:
        return _hf_download(repo_id, filename, pinned)

    return _release_from_entry(entry, f"{spec} {RELEASE_FILENAME}", locate, spec, components)


def _try_manifest() -> dict[str, Any]:
    try:
        return load_manifest()
    except FileNotFoundError:
        return {"models": {}}


def _url_cache_path(url: str) -> Path:
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    return cache_dir() / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def _download(url: str, expected: str | None = None, size: int | None = None, refresh: bool = False) -> Path:
    """Download ``url`` into the cache (progress bar) and return the path; a cached copy whose
    digest matches ``expected`` is reused. ``refresh`` re-fetches when online (for release.json)."""
    target = _url_cache_path(url)
    if target.is_file() and not refresh:
        if expected is None or sha256_file(target) == expected:
            return target
    flags = _offline_flags()
    if flags:
        if target.is_file():
            return target
        raise WeightsUnavailableError(
            f"cannot download {url}: {_offline_is_on(flags)} and it is not cached in {target.parent}. "
            f"Unset {' and '.join(flags)} to download it, or download it on a connected machine, copy it here and "
            "pass weights= the local release folder or .safetensors file (FILE#sha256=<hex> to check a bare file)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        digest = hashlib.sha256()
        with atomic_writer(target) as out, requests.get(url, stream=True, timeout=(10, 60)) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length") or 0) or size
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name) as bar:
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            actual = digest.hexdigest()
            if expected is not None and actual != expected:  # raised inside: the cache keeps its old file
                raise WeightsIntegrityError(
                    f"downloaded {url} has sha256 {actual}, expected {expected}: the server sent a different or "
                    "corrupted file. Try again later, or check the release's release.json."
                )
        return target
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise WeightsUnavailableError(f"downloading {url} failed with HTTP {status}. {_WHAT_TO_DO}") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        if target.is_file():
            return target
        raise WeightsUnavailableError(
            f"cannot download {url} ({type(exc).__name__}: no connection) and it is not cached in {target.parent}. "
            "Connect to the internet, or pass weights= a local release folder or .safetensors file."
        ) from None


def _resolve_url(url: str, components: Sequence[str] | None, sha256: str | None = None) -> ResolvedRelease:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        local = Path(urllib.request.url2pathname(parsed.path))
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{url!r}: only local file:// URLs are supported")
        if not local.exists():
            raise WeightsUnavailableError(f"{url} does not exist. {_WHAT_TO_DO}")
        return _resolve_local(local, components, sha256)
    _refuse_pickle(parsed.path)
    if parsed.path.endswith(".safetensors"):
        return _resolve_single_file(_download(url, sha256), sha256, source=url)
    base = url.rstrip("/")
    if sha256 is not None:
        raise _hash_of_a_release(url, f"release URL, checked against its {RELEASE_FILENAME}")
    release_json = _download(f"{base}/{RELEASE_FILENAME}", refresh=True)
    entry = read_json(release_json, f"{RELEASE_FILENAME} of {base}", WeightsIntegrityError)
    entry = _check_entry(entry, f"{base}/{RELEASE_FILENAME}")

    def locate(filename: str) -> Path:
        info = next(i for i in entry["files"].values() if i["filename"] == filename)
        return _download(f"{base}/{filename}", info.get("sha256"), info.get("size"))

    return _release_from_entry(entry, f"{base}/{RELEASE_FILENAME}", locate, base, components)


def resolve(
    weights: str | os.PathLike, components: Sequence[str] | None = None, *, sha256: str | None = None
) -> ResolvedRelease:
    """Find (downloading if needed) the files of ``weights`` and return them with their expected
    digests, without reading them. See the module docstring for the accepted forms.

    ``components`` limits which files are fetched (``None``: all the release lists). ``sha256``
    (or a ``#sha256=<hex>`` suffix of ``weights``) is the expected digest of a bare
    ``.safetensors`` file; releases carry their own.
    """
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str) or not weights:
        raise TypeError(f"weights must be a non-empty str or path, got {weights!r}")
    weights, sha256 = _split_sha256(weights, sha256)
    if weights.startswith("hf://"):
        if sha256 is not None:
            raise _hash_of_a_release(weights, f"Hugging Face release, checked against its {RELEASE_FILENAME}")
        return _resolve_hf(weights, components)
    if re.match(r"^(https?|file)://", weights):
        return _resolve_url(weights, components, sha256)
    path = Path(weights).expanduser()
    if weights.lower().endswith(PICKLE_SUFFIXES):
        _refuse_pickle(weights)
    if path.exists():
        return _resolve_local(path, components, sha256)
    manifest = _try_manifest()
    if weights in manifest["models"]:
        if sha256 is not None:
            raise _hash_of_a_release(weights, f"key of {MANIFEST_FILENAME}, checked against its entry")
        return _resolve_manifest_entry(weights, manifest["models"][weights], components)
    known = sorted(manifest["models"]) or "none are published yet"
    raise WeightsUnavailableError(
        f"weights={weights!r} is not an existing file or folder, nor a key of {MANIFEST_FILENAME} "
        f"(known keys: {known}). {_WHAT_TO_DO}"
    )


# --------------------------------------------------------------------------- verifying, loading


def _verify_file(path: Path, expected: str | None, size: int | None, what: str, redo: str = _REDO) -> None:
    """Check size, then sha256 (when known), then the safetensors header; raise on any mismatch.

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
        kind = _pickle_kind(path)
        if kind:
            raise WeightsIntegrityError(
                f"{what} {path} is {kind}, not a safetensors file: a PyTorch checkpoint renamed to .safetensors. "
                "Refusing to read it: pickles can run arbitrary code. Convert a model you trust with "
                "mcjepa.weights.save_release(model, out_dir) and pass that folder as weights=."
            ) from None
        raise WeightsIntegrityError(
            f"{what} {path} is not a valid safetensors file (truncated or corrupted: {exc}). {redo}"
        ) from None


def _pickle_kind(path: Path) -> str | None:
    """What ``torch.save`` wrote, judged by the first bytes, or ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            head += fh.read(2)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (what torch.save writes)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]}, what older torch.save writes)"
    return None


def read_component(release: ResolvedRelease, component: str, device: str | torch.device = "cpu") -> dict:
    """Verify and read one component's state dict (keys without the component prefix)."""
    if component not in release.files:
        raise WeightsUnavailableError(
            f"the release {release.source} has no {component!r} component; it holds {sorted(release.files)}"
        )
    path = release.files[component]
    _verify_file(path, release.expected.get(component), release.sizes.get(component), f"{component} weights file")
    state = load_file(str(path), device=str(device))
    prefix = release.prefixes.get(component)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _preview(keys: Sequence[str], n: int = 10) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:n])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > n else ''})"


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], component: str) -> None:
    """Load ``state_dict`` into ``module`` strictly; on any mismatch raise
    :class:`WeightsMismatchError` naming the missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_preview(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_preview(shapes, 5)}")
        raise WeightsMismatchError(
            f"the {component} weights do not fit the {type(module).__name__} architecture: "
            + "; ".join(parts)
            + ". The file is from another architecture or variant, or was edited; "
            "pass the matching variant= or a release with its config.json."
        )
    module.load_state_dict(dict(state_dict), strict=True)


def _published_entry_for(variant: str) -> str | None:
    manifest = _try_manifest()
    for name, entry in manifest["models"].items():
        if isinstance(entry, dict) and entry.get("status") == "published" and entry.get("variant") == variant:
            return name
    return None


UNTRAINED_MESSAGE = (
    "no weights given (weights=None, pretrained=False): the {variant!r} model is randomly initialised "
    "(untrained) and its outputs are meaningless. Pass weights='path/to/release' (train one with `mcjepa-train`)."
)


def load_model(
    weights: str | os.PathLike | None = None,
    *,
    pretrained: bool = False,
    variant: str = "convnext_t",
    components: Sequence[str] = ("encoder", "flow_head"),
    map_location: str | torch.device = "cpu",
    sha256: str | None = None,
    warn_untrained: bool = False,
    untrained_message: str | None = None,
    warn_stacklevel: int = 1,
) -> MCJEPA:
    """Return an :class:`MCJEPA` in eval mode holding ``components``, with weights when asked.

    This is the one model loader: ``mcjepa.flow.load``, ``mcjepa.eval.common.load_for_eval``
    and the ``torch.hub`` builders (:mod:`mcjepa.hub`) all call it, so weights, ``pretrained``,
    ``variant``, the device, ``sha256`` and the untrained-model warning are decided here.

    Args:
        weights: where the weights are (module docstring lists the forms); ``None``: none.
        pretrained: with ``weights=None``, load the published release of ``variant`` from
            ``weights_manifest.json`` (none is published yet: this raises
            :class:`WeightsUnavailableError` saying what to do instead). Together with
            ``weights`` it is a ``ValueError``.
        variant: the architecture when the release records none (a bare ``.safetensors`` file
            without metadata) and when no weights are loaded; a release's own config wins.
        components: which components to build and load (``"encoder"``, ``"flow_head"``,
            ``"expander"``); must include the encoder.
        map_location: the device the returned model lives on.
        sha256: the expected sha256 (hex) of a bare ``.safetensors`` file given as ``weights``
            (same as ``weights="FILE#sha256=<hex>"``). Without it such a file is read unverified,
            with an :class:`UnverifiedWeightsWarning`; releases are always checked against their
            own ``release.json`` or manifest entry.
        warn_untrained: when no weights are loaded (``weights=None``, ``pretrained=False``),
            issue one ``UserWarning`` that the model is randomly initialised. Off by default
            here; the entry points above turn it on.
        untrained_message: that warning's text (default: :data:`UNTRAINED_MESSAGE` with the
            variant filled in); each entry point keeps its own wording.
        warn_stacklevel: how many frames above ``load_model``'s caller the warning points to
            (1: the caller; a wrapper such as ``flow.load`` passes 2 to point at its own caller).
    """
    components = tuple(components)
    bad = [c for c in components if c not in COMPONENTS]
    if bad or "encoder" not in components:
        raise ValueError(f"components must include 'encoder' and come from {list(COMPONENTS)}, got {components}")
    if weights is not None and pretrained:
        raise ValueError(
            f"pretrained=True and weights={os.fspath(weights)!r} both name weights to load: pass one of them. "
            "weights= loads exactly that release or file; pretrained=True (with weights=None) loads the "
            f"published release of variant={variant!r} from {MANIFEST_FILENAME}."
        )
    if weights is None and pretrained:
        key = _published_entry_for(variant)
        if key is None:
            raise WeightsUnavailableError(
                f"no pretrained MC-JEPA weights are published yet (weights_manifest.json lists none for variant "
                f"{variant!r}). Train a model with `mcjepa-train` and load it with weights='path/to/release', or "
                "pass weights= a local release folder, a .safetensors file, hf://org/repo[@revision] or a URL; "
                "pretrained=False gives an untrained model."
            )
        weights = key
    if weights is None:
        cfg = model_config(variant)
        if warn_untrained:
            message = untrained_message or UNTRAINED_MESSAGE.format(variant=variant)
            warnings.warn(message, UserWarning, stacklevel=1 + warn_stacklevel)
        model = MCJEPA(cfg, flow_head="flow_head" in components, expander="expander" in components)
        return model.to(map_location).eval()
    release = resolve(weights, components=components, sha256=sha256)
    lacking = [c for c in components if c not in release.files]
    if lacking:
        raise WeightsUnavailableError(
            f"the release {release.source} has no {lacking} weights (it holds {sorted(release.files)}). "
            f"Ask for components={tuple(c for c in components if c in release.files)} or use a release that has them."
        )
    cfg = release.config or model_config(variant)
    model = MCJEPA(cfg, flow_head="flow_head" in components, expander="expander" in components)
    for comp in components:
        load_state_dict_strict(getattr(model, comp), read_component(release, comp), comp)
    return model.to(map_location).eval()

"""The release format: file layout, constants, writing a release, and checking a release description.

Release folder (``format_version`` 1)
-------------------------------------
::

    encoder.safetensors     # ConvNeXtPyramid state dict, keys without the "encoder." prefix
    flow_head.safetensors   # FlowHead state dict, keys without the "flow_head." prefix
    expander.safetensors    # optional (training only), keys without the "expander." prefix
    config.json             # ModelConfig.to_dict(): the architecture
    release.json            # this release's manifest entry (below)
    README.md               # model card (mcjepa-export only; save_release does not write it)

Each safetensors file also carries string metadata: ``format="pt"``, ``mcjepa.component``,
``mcjepa.format_version`` and ``mcjepa.config`` (the config as JSON), so that a single file names
its component and architecture on its own. The header is written deterministically (metadata first,
keys sorted), so the same weights always give the same bytes and sha256.

Manifest entry (``release.json`` and ``weights_manifest.json["models"][name]``)
-------------------------------------------------------------------------------
- ``format_version`` (int, 1), ``name`` (str), ``variant`` (the :func:`mcjepa.architecture.model_config`
  name it was built from, used by ``pretrained=True``; ``None`` for a custom architecture);
- ``files``: ``{component: {"filename": str, "sha256": str (hex), "size": int (bytes)}}``;
- ``config`` (``ModelConfig.to_dict()``), ``trained_on`` (str or list), ``metrics`` (flat
  ``{name: number}``), ``license`` (str), ``metadata`` (free dict), ``mcjepa_version``;
- ``status`` and where the files are, by status (:data:`STATUSES`):

  - ``"local"``: ``url``, the ``file://`` or ``https://`` URL of the release folder (written by
    ``mcjepa-export --update-manifest``; ``release.json`` itself has no ``url``);
  - ``"published"``: ``repo_id`` (Hugging Face ``org/name``) and ``revision`` (the pinned 40-hex
    commit sha, written by ``mcjepa-publish``);
  - ``"bundled"``: ``path``, the folder under the package's ``mcjepa/bundled/`` holding the release
    files (written by ``python -m mcjepa.cli.bundle``); ships inside the package, read offline;

- ``provenance`` (optional dict; bundled entries): ``command`` (the training command), ``commit``
  (the git commit it ran at), ``data`` (what it was trained on), ``wall_time_s`` (seconds), and any
  further keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_save

from mcjepa.architecture import MODEL_VARIANTS, ModelConfig
from mcjepa.model import COMPONENTS, MCJEPA
from mcjepa.release.errors import NonFiniteWeightsError, WeightsIntegrityError
from mcjepa.release.verify import sha256_file
from mcjepa.utils.atomic import atomic_write_bytes, json_bytes

__all__ = [
    "CONFIG_FILENAME",
    "FORMAT_VERSION",
    "KEY_SIGNATURES",
    "PICKLE_SUFFIXES",
    "RELEASE_FILENAME",
    "STATUSES",
    "check_entry",
    "check_finite",
    "entry_config",
    "refuse_pickle",
    "safetensors_chunks",
    "save_release",
    "write_safetensors",
]

FORMAT_VERSION = 1
RELEASE_FILENAME = "release.json"
CONFIG_FILENAME = "config.json"
STATUSES = ("local", "published", "bundled")
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")
# first key segment of each component's own state dict (used to name an unlabelled file)
KEY_SIGNATURES = {
    "encoder": {"stem", "stages"},
    "flow_head": {"reducers", "decoder", "context"},
    "expander": {"layers"},
}
_TOP_LEVEL_METADATA = ("trained_on", "metrics", "license", "variant")


# --------------------------------------------------------------------------- writing


def safetensors_chunks(state: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> list[bytes | memoryview]:
    """Serialise ``state`` as safetensors with a deterministic header; return the file's chunks.

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


def check_finite(states: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
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


def write_safetensors(path: Path, state: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """The one writer of release safetensors files: refuse non-finite tensors, serialise
    ``state`` with ``metadata`` (deterministic bytes) and write it atomically (:mod:`mcjepa.utils.atomic`)."""
    check_finite({path.name: state})
    atomic_write_bytes(path, safetensors_chunks(state, metadata))


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
            ``variant`` defaults to the :data:`~mcjepa.architecture.MODEL_VARIANTS` name whose config
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
    check_finite(states)  # every component before any file is written
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
        write_safetensors(
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
    from mcjepa import __version__

    entry["mcjepa_version"] = __version__
    atomic_write_bytes(out / CONFIG_FILENAME, json_bytes(config))
    atomic_write_bytes(out / RELEASE_FILENAME, json_bytes(entry))
    return entry


# --------------------------------------------------------------------------- reading a description


def refuse_pickle(name: str) -> None:
    """Raise :class:`WeightsIntegrityError` when ``name`` is a pickle file name (``.pt``, ``.pth``, ...)."""
    lower = str(name).lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise WeightsIntegrityError(
            f"refusing to load {name!r}: mcjepa only loads .safetensors weights, never pickled files "
            "(.pt/.pth/.bin/.ckpt), which can run arbitrary code. Convert a model you trust with "
            "mcjepa.release.save_release(model, out_dir) and pass that folder as weights=."
        )


def check_entry(entry: Any, where: str) -> dict[str, Any]:
    """Return ``entry`` when it is a valid release description (``where`` names it in errors);
    raise :class:`WeightsIntegrityError` otherwise."""
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
        refuse_pickle(info["filename"])
        if "/" in info["filename"] or "\\" in info["filename"] or info["filename"].startswith("."):
            raise WeightsIntegrityError(f"{where}: files[{comp!r}].filename must be a plain file name")
    return entry


def entry_config(entry: Mapping[str, Any], where: str) -> ModelConfig | None:
    """The architecture a release description records, or ``None`` when it records none."""
    if "config" not in entry or entry["config"] is None:
        return None
    try:
        return ModelConfig.from_dict(entry["config"])
    except (TypeError, ValueError) as exc:
        raise WeightsIntegrityError(f"{where}: the release's architecture config is not valid: {exc}") from None

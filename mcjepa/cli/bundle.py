"""Put a release into the package as a bundled release: ``python -m mcjepa.cli.bundle RELEASE_DIR``.

Copies the release folder's files (``encoder.safetensors``, ``flow_head.safetensors``,
``config.json``, ``release.json`` and the model card ``README.md`` when present, each checked
against ``release.json`` first) into ``mcjepa/bundled/<name>/`` and writes the manifest entry
(``"status": "bundled"``, ``"path"``, every file's sha256 and size, ``trained_on``, ``metrics``,
``license`` and ``provenance``) into the packaged ``mcjepa/weights_manifest.json``. The copy is
then loaded strictly once, against the new entry. All writes are atomic (:mod:`mcjepa.utils.atomic`).

    python -m mcjepa.cli.bundle runs/real/release --name mcjepa_small_real \\
        --trained-on "real_texture photo pairs + opencv-doc footage (the 'real' config)" \\
        --command "mcjepa-train --config real --out runs/real" --commit "$(git rev-parse HEAD)" \\
        --data "..." --wall-time-s 3600 --metric real_pairs_epe=1.23

Not imported by :mod:`mcjepa.release` (so that ``python -m`` runs it cleanly).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcjepa.architecture import ModelConfig
from mcjepa.cli.common import parse_args
from mcjepa.model import MCJEPA
from mcjepa.release.bundled import DEFAULT_MODEL, check_bundled_name, packaged_bundled_root
from mcjepa.release.errors import ManifestError, WeightsError, WeightsIntegrityError
from mcjepa.release.format import CONFIG_FILENAME, RELEASE_FILENAME, check_entry
from mcjepa.release.loading import load_state_dict_strict, read_component
from mcjepa.release.manifest import MANIFEST_FILENAME, merge_entry, packaged_manifest_path
from mcjepa.release.resolved import release_from_entry
from mcjepa.release.verify import sha256_file, verify_file
from mcjepa.utils.atomic import atomic_write_bytes, read_json

__all__ = ["BUNDLED_COMPONENTS", "MAX_BUNDLED_BYTES", "build_parser", "bundle_release", "main"]

BUNDLED_COMPONENTS = ("encoder", "flow_head")  # what flow.load() needs; the expander is for training only
MAX_BUNDLED_BYTES = 10_000_000  # the weight files of a bundled release together: at most 10 MB
_CARD_FILENAME = "README.md"
_NOT_BUNDLED_KEYS = ("url", "repo_id", "revision")


def _flat_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """The finite numbers (not bools) of a nested JSON object, keyed by dotted path."""
    if isinstance(obj, Mapping):
        out: dict[str, float] = {}
        for k, v in obj.items():
            out.update(_flat_numbers(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (int, float)) and not isinstance(obj, bool) and math.isfinite(obj):
        return {prefix.rstrip("."): obj}
    return {}


def bundle_release(
    release_dir: str | Path,
    name: str = DEFAULT_MODEL,
    *,
    bundled_dir: str | Path | None = None,
    manifest: str | Path | None = None,
    trained_on: str | None = None,
    license: str | None = None,
    metrics: Mapping[str, float] | None = None,
    provenance: Mapping[str, Any] | None = None,
    max_bytes: int = MAX_BUNDLED_BYTES,
    force: bool = False,
) -> dict[str, Any]:
    """Copy the release at ``release_dir`` into ``bundled_dir/name`` and merge its ``bundled`` entry
    into ``manifest``; return the entry.

    Args:
        release_dir: a release folder (``save_release`` / ``mcjepa-export`` / a run's ``release/``)
            holding the encoder and the flow head, and no expander.
        name: the manifest key and folder name (default :data:`DEFAULT_MODEL`).
        bundled_dir: where bundled releases live (default: the package's ``bundled/`` folder).
        manifest: the manifest to update (default: the packaged ``mcjepa/weights_manifest.json``).
        trained_on, license: replace the release's own ``trained_on`` / ``license`` when given.
        metrics: added to (and overriding) the release's ``metrics``.
        provenance: the entry's ``provenance`` (``command``, ``commit``, ``data``, ``wall_time_s``, ...).
        max_bytes: the most the weight files may take together (bytes).
        force: replace a ``published`` entry of the same name.

    Raises ``ValueError`` for a bad name, a release with the wrong components or too large;
    :class:`WeightsError` when a file does not match ``release.json``; :class:`ManifestError`.
    """
    name = check_bundled_name(name)
    source = Path(release_dir)
    release_json = source / RELEASE_FILENAME
    if not release_json.is_file():
        raise ValueError(f"{source} is not a release folder (no {RELEASE_FILENAME}); write one with mcjepa-export")
    entry = check_entry(read_json(release_json, "release description", WeightsIntegrityError), str(release_json))
    comps = sorted(entry["files"])
    if comps != sorted(BUNDLED_COMPONENTS):
        raise ValueError(
            f"{source} holds the components {comps}; a bundled release holds exactly {list(BUNDLED_COMPONENTS)} "
            "(export it without --with-expander)"
        )
    total = 0
    for comp, info in entry["files"].items():
        path = source / info["filename"]
        verify_file(path, info.get("sha256"), info.get("size"), f"{comp} weights file")
        total += path.stat().st_size
    if total > max_bytes:
        raise ValueError(
            f"{source}: the weight files take {total} bytes, more than the {max_bytes} a bundled release may"
        )

    target = Path(bundled_dir) if bundled_dir is not None else packaged_bundled_root()
    folder = target / name
    if folder.exists() and any(folder.iterdir()) and not (folder / RELEASE_FILENAME).is_file():
        raise ValueError(
            f"{folder} exists and is not a bundled release folder (no {RELEASE_FILENAME}); remove it first"
        )
    folder.mkdir(parents=True, exist_ok=True)
    names = [info["filename"] for info in entry["files"].values()] + [CONFIG_FILENAME, _CARD_FILENAME, RELEASE_FILENAME]
    written = []
    for filename in names:  # release.json last: a folder with it is complete
        if (source / filename).is_file():
            atomic_write_bytes(folder / filename, (source / filename).read_bytes())
            written.append(filename)
    for stale in folder.iterdir():
        if stale.is_file() and stale.name not in written:
            stale.unlink()

    files = {}
    for comp, info in entry["files"].items():
        copy = folder / info["filename"]
        files[comp] = {"filename": info["filename"], "sha256": sha256_file(copy), "size": copy.stat().st_size}
        if files[comp]["sha256"] != info.get("sha256", files[comp]["sha256"]):
            raise WeightsIntegrityError(f"{copy}: the copy differs from {source / info['filename']}; try again")
    bundled = {k: v for k, v in entry.items() if k not in _NOT_BUNDLED_KEYS}
    bundled.update({"name": name, "status": "bundled", "path": name, "files": files})
    if trained_on is not None:
        bundled["trained_on"] = trained_on
    if license is not None:
        bundled["license"] = license
    bundled["metrics"] = {**(entry.get("metrics") or {}), **dict(metrics or {})}
    bundled["provenance"] = {**(entry.get("provenance") or {}), **dict(provenance or {})}

    # the copy must load strictly against the new entry before the manifest names it
    check = release_from_entry(bundled, f"bundled {name}", lambda f: folder / f, str(folder), None, name=name)
    model = MCJEPA(ModelConfig.from_dict(bundled["config"]), flow_head=True)
    for comp in BUNDLED_COMPONENTS:
        load_state_dict_strict(getattr(model, comp), read_component(check, comp), comp)
    merge_entry(name, bundled, manifest if manifest is not None else packaged_manifest_path(), force=force)
    return bundled


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _number(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--metric {key}={value}: the value must be a number") from None
    if not math.isfinite(number):
        raise ValueError(f"--metric {key}={value}: the value must be finite")
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m mcjepa.cli.bundle",
        description="Copy a release folder into the package (mcjepa/bundled/NAME/) and write its 'bundled' "
        f"entry (sha256, sizes, provenance) into mcjepa/{MANIFEST_FILENAME}.",
    )
    p.add_argument("release", help="the release folder (a run's release/ or an mcjepa-export --out folder)")
    p.add_argument("--name", default=DEFAULT_MODEL, help=f"manifest key and folder name (default {DEFAULT_MODEL})")
    p.add_argument("--trained-on", help="what it was trained on, in words (default: the release's own trained_on)")
    p.add_argument("--license", help="license of the weights (default: the release's own)")
    p.add_argument("--command", help="provenance: the training command")
    p.add_argument("--commit", help="provenance: the git commit the training ran at")
    p.add_argument("--data", help="provenance: the training data (sources, sizes, licenses)")
    p.add_argument("--wall-time-s", type=float, help="provenance: training wall time in seconds")
    p.add_argument("--provenance", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="provenance: any further field (repeatable)")  # fmt: skip
    p.add_argument("--metric", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a metric to record, a number (repeatable)")  # fmt: skip
    p.add_argument("--metrics-json", action="append", default=[], metavar="FILE",
                   help="a JSON file of metrics (nested objects flattened to dotted keys; repeatable)")  # fmt: skip
    p.add_argument("--bundled-dir", help="where bundled releases live (default: the package's bundled/ folder)")
    p.add_argument("--manifest", help=f"the manifest to update (default: the package's {MANIFEST_FILENAME})")
    p.add_argument("--max-mb", type=float, default=MAX_BUNDLED_BYTES / 1e6,
                   help="the most the weight files may take together, MB (default 10)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace a published manifest entry of the same name")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status (0 ok, 2 bad input)."""
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        metrics: dict[str, float] = {}
        for path in args.metrics_json:
            metrics.update(_flat_numbers(read_json(path, "metrics file")))
        metrics.update({k: _number(k, v) for k, v in args.metric})
        provenance: dict[str, Any] = dict(args.provenance)
        for key in ("command", "commit", "data"):
            if getattr(args, key) is not None:
                provenance[key] = getattr(args, key)
        if args.wall_time_s is not None:
            provenance["wall_time_s"] = args.wall_time_s
        entry = bundle_release(
            args.release,
            args.name,
            bundled_dir=args.bundled_dir,
            manifest=args.manifest,
            trained_on=args.trained_on,
            license=args.license,
            metrics=metrics,
            provenance=provenance,
            max_bytes=int(args.max_mb * 1e6),
            force=args.force,
        )
    except (ValueError, OSError, WeightsError, ManifestError) as err:
        print(f"bundle: error: {err}", file=sys.stderr)
        return 2
    folder = Path(args.bundled_dir) if args.bundled_dir else packaged_bundled_root()
    shown = {k: entry[k] for k in ("name", "status", "path", "variant", "trained_on", "license", "files", "metrics",
                                   "provenance") if k in entry}  # fmt: skip
    print(json.dumps(shown, indent=2))
    manifest = args.manifest or packaged_manifest_path()
    print(f"bundled {args.release} as {folder / entry['path']}; entry {entry['name']!r} written to {manifest}",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

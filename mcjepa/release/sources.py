"""Sources: every ``weights=`` form, resolved to local (not yet verified) files with their expected digests.

``weights=`` forms, looked up in this order by :func:`resolve`
-------------------------------------------------------------
1. a URL-like ``scheme://...`` whose scheme is in :data:`SCHEMES`:

   - ``hf://org/repo`` or ``hf://org/repo@revision``: ``release.json`` then each file through
     ``huggingface_hub.hf_hub_download``; the manifest entry is used instead when it lists that repo;
   - ``https://.../release_base`` or ``https://.../file.safetensors`` (also ``http://``): downloaded
     into the cache (:mod:`mcjepa.release.cache`);
   - ``file://...``: read in place (a release folder or a ``.safetensors`` file);
   - ``bundled://NAME``: the bundled release ``NAME`` (:mod:`mcjepa.release.bundled`), checked
     against its manifest entry; never the network;

2. an existing local path: a release folder (checked against its ``release.json``) or a
   ``.safetensors`` file: one component (named by its metadata, its file name or its keys; checked
   against a sibling ``release.json`` that lists it), or a whole-model file with
   ``encoder.``/``flow_head.``/``expander.`` prefixed keys; ``FILE#sha256=<hex>`` (or ``sha256=``)
   gives the digest it must have;
3. a manifest key (:func:`mcjepa.release.manifest.find_entry`), resolved by the entry's
   ``status`` (:data:`ENTRY_SOURCES`): ``published`` from the Hub at its pinned commit, ``local``
   from its ``url``, ``bundled`` from the package.

A bare ``.safetensors`` file without a hash loads with an :class:`UnverifiedWeightsWarning`; pickles
(``.pt``, ``.pth``, ``.bin``, ...) are always refused.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mcjepa.release.bundled import BUNDLED_SCHEME, DEFAULT_MODEL, bundled_folder, bundled_root
from mcjepa.release.cache import download, hf_download
from mcjepa.release.errors import WHAT_TO_DO, WeightsIntegrityError, WeightsUnavailableError
from mcjepa.release.format import PICKLE_SUFFIXES, RELEASE_FILENAME, check_entry, refuse_pickle
from mcjepa.release.local import resolve_local, resolve_single_file
from mcjepa.release.manifest import COMMIT_SHA, MANIFEST_FILENAME, find_entry, known_names
from mcjepa.release.resolved import ResolvedRelease, no_hash_for_a_release, release_from_entry
from mcjepa.utils.atomic import read_json

__all__ = [
    "ENTRY_SOURCES",
    "SCHEMES",
    "ResolvedRelease",
    "resolve",
    "resolve_entry",
    "split_sha256",
]

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_SHA256_FRAGMENT = "#sha256="
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


Resolver = Callable[[str, Sequence[str] | None, str | None], ResolvedRelease]
EntryResolver = Callable[[str, dict[str, Any], Sequence[str] | None], ResolvedRelease]


# --------------------------------------------------------------------------- helpers


def split_sha256(weights: str, sha256: str | None) -> tuple[str, str | None]:
    """Split ``FILE#sha256=<hex>`` into ``(FILE, hex)``, reconciled with the ``sha256=`` argument
    (lower-cased; ``ValueError`` when malformed or when the two differ)."""
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


# --------------------------------------------------------------------------- manifest entries, by status


def _entry_published(name: str, entry: dict[str, Any], components: Sequence[str] | None) -> ResolvedRelease:
    """A ``published`` entry (or any entry with a ``repo_id``): the Hub at its pinned commit."""
    repo_id, revision = entry["repo_id"], entry.get("revision")
    return release_from_entry(
        entry,
        f"{MANIFEST_FILENAME}[{name!r}]",
        lambda filename: hf_download(repo_id, filename, revision),
        f"hf://{repo_id}@{revision}",
        components,
        name=name,
        kind="published",
    )


def _entry_local(name: str, entry: dict[str, Any], components: Sequence[str] | None) -> ResolvedRelease:
    """A ``local`` entry (``mcjepa-export --update-manifest``): the folder its ``url`` names."""
    where = f"{MANIFEST_FILENAME}[{name!r}]"
    url = entry.get("url")
    if not url:
        raise WeightsUnavailableError(
            f"{where} has neither repo_id nor url: it describes a local release that was not published and "
            "does not say where it is. Pass its folder as weights='path/to/release', or re-export it with "
            "mcjepa-export --update-manifest."
        )
    entry = check_entry(entry, where)
    parsed = urllib.parse.urlparse(str(url))
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        folder = Path(urllib.request.url2pathname(parsed.path))

        def locate(filename: str) -> Path:
            return folder / filename

    elif parsed.scheme in ("http", "https"):
        base = str(url).rstrip("/")

        def locate(filename: str) -> Path:
            info = next(i for i in entry["files"].values() if i["filename"] == filename)
            return download(f"{base}/{filename}", info.get("sha256"), info.get("size"))

    else:
        raise WeightsIntegrityError(f"{where}: url must be a file:// or https:// URL of a release folder, got {url!r}")
    return release_from_entry(entry, where, locate, str(url), components, name=name, kind="local")


def _entry_bundled(name: str, entry: dict[str, Any], components: Sequence[str] | None) -> ResolvedRelease:
    """A ``bundled`` entry: the folder ``entry["path"]`` under the package's ``bundled/``; no network."""
    where = f"{MANIFEST_FILENAME}[{name!r}]"
    entry = check_entry(entry, where)
    folder = bundled_folder(name, entry)
    wanted = [c for c in entry["files"] if components is None or c in components]
    missing = [folder / entry["files"][c]["filename"] for c in wanted]
    missing = [p for p in missing if not p.is_file()]
    if missing:
        default = " (the model mcjepa.flow.load() and mcjepa-flow use by default)" if name == DEFAULT_MODEL else ""
        raise WeightsUnavailableError(
            f"the bundled model {name!r}{default} is missing from this installation: expected "
            f"{', '.join(map(str, missing))} (listed in {MANIFEST_FILENAME}; bundled releases ship inside the "
            f"mcjepa package, under {bundled_root()}). Reinstall mcjepa (`pip install --force-reinstall mcjepa`, "
            "or `pip install .` in a checkout that holds the files), or pass weights= another release "
            "(flow.load(weights='random') gives an untrained model)."
        )
    return release_from_entry(
        entry, where, lambda f: folder / f, f"{BUNDLED_SCHEME}{name} ({folder})", components, name=name, kind="bundled"
    )


def _entry_by_location(name: str, entry: dict[str, Any], components: Sequence[str] | None) -> ResolvedRelease:
    """An entry without a known status: by where it says the files are (``repo_id``, else ``url``)."""
    if entry.get("repo_id"):
        return _entry_published(name, entry, components)
    return _entry_local(name, entry, components)


# status -> resolver of a manifest entry
ENTRY_SOURCES: dict[str, EntryResolver] = {
    "published": _entry_by_location,
    "local": _entry_by_location,
    "bundled": _entry_bundled,
}


def resolve_entry(name: str, entry: dict[str, Any], components: Sequence[str] | None = None) -> ResolvedRelease:
    """Resolve the manifest entry ``name`` by its ``status`` (:data:`ENTRY_SOURCES`); every file is
    later checked against the entry's own sha256 and size."""
    status = entry.get("status") if isinstance(entry, dict) else None
    return ENTRY_SOURCES.get(status, _entry_by_location)(name, entry, components)


# --------------------------------------------------------------------------- schemes


def _parse_hf(spec: str) -> tuple[str, str | None]:
    body = spec[len("hf://") :].strip("/")
    repo_id, _, revision = body.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{spec!r}: expected hf://org/repo or hf://org/repo@revision")
    return repo_id, revision or None


def _scheme_hf(spec: str, components: Sequence[str] | None, sha256: str | None) -> ResolvedRelease:
    no_hash_for_a_release(spec, sha256, f"Hugging Face release, checked against its {RELEASE_FILENAME}")
    repo_id, revision = _parse_hf(spec)
    for name in known_names():
        entry = find_entry(name)
        if entry and entry.get("repo_id") == repo_id and revision in (None, entry.get("revision")):
            return resolve_entry(name, entry, components)
    release_json = hf_download(repo_id, RELEASE_FILENAME, revision)
    entry = read_json(release_json, f"{RELEASE_FILENAME} of {spec}", WeightsIntegrityError)
    # pin every file to the snapshot release.json came from
    snapshot = release_json.parent.name
    pinned = snapshot if COMMIT_SHA.match(snapshot) else revision
    return release_from_entry(
        entry,
        f"{spec} {RELEASE_FILENAME}",
        lambda filename: hf_download(repo_id, filename, pinned),
        spec,
        components,
        kind="hf",
    )


def _scheme_file(url: str, components: Sequence[str] | None, sha256: str | None) -> ResolvedRelease:
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"{url!r}: only local file:// URLs are supported")
    local = Path(urllib.request.url2pathname(parsed.path))
    if not local.exists():
        raise WeightsUnavailableError(f"{url} does not exist. {WHAT_TO_DO}")
    return resolve_local(local, components, sha256)


def _scheme_http(url: str, components: Sequence[str] | None, sha256: str | None) -> ResolvedRelease:
    path = urllib.parse.urlparse(url).path
    refuse_pickle(path)
    if path.endswith(".safetensors"):
        return resolve_single_file(download(url, sha256), sha256, source=url)
    base = url.rstrip("/")
    no_hash_for_a_release(url, sha256, f"release URL, checked against its {RELEASE_FILENAME}")
    release_json = download(f"{base}/{RELEASE_FILENAME}", refresh=True)
    entry = read_json(release_json, f"{RELEASE_FILENAME} of {base}", WeightsIntegrityError)
    entry = check_entry(entry, f"{base}/{RELEASE_FILENAME}")

    def locate(filename: str) -> Path:
        info = next(i for i in entry["files"].values() if i["filename"] == filename)
        return download(f"{base}/{filename}", info.get("sha256"), info.get("size"))

    return release_from_entry(entry, f"{base}/{RELEASE_FILENAME}", locate, base, components, kind="url")


def _scheme_bundled(spec: str, components: Sequence[str] | None, sha256: str | None) -> ResolvedRelease:
    no_hash_for_a_release(spec, sha256, f"bundled release, checked against its {MANIFEST_FILENAME} entry")
    name = spec[len(BUNDLED_SCHEME) :].strip("/")
    entry = find_entry(name)
    if entry is None or entry.get("status") != "bundled":
        default = (
            " It is the model mcjepa.flow.load() and mcjepa-flow use when given no weights: this mcjepa was "
            "installed without it. Reinstall mcjepa, or pass weights= a release (weights='random' in flow.load "
            "for an untrained model)."
            if name == DEFAULT_MODEL
            else ""
        )
        found = "not listed" if entry is None else f"listed with status {entry.get('status')!r}"
        raise WeightsUnavailableError(
            f"{spec}: no bundled release named {name!r} ({found} in {MANIFEST_FILENAME}; bundled releases: "
            f"{known_names('bundled') or 'none'}).{default}"
        )
    return _entry_bundled(name, entry, components)


# scheme -> resolver of a "scheme://..." weights string
SCHEMES: dict[str, Resolver] = {
    "hf": _scheme_hf,
    "https": _scheme_http,
    "http": _scheme_http,
    "file": _scheme_file,
    "bundled": _scheme_bundled,
}


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
    weights, sha256 = split_sha256(weights, sha256)
    match = _SCHEME.match(weights)
    if match and match.group(1).lower() in SCHEMES:
        return SCHEMES[match.group(1).lower()](weights, components, sha256)
    if weights.lower().endswith(PICKLE_SUFFIXES):
        refuse_pickle(weights)
    path = Path(weights).expanduser()
    if path.exists():
        return resolve_local(path, components, sha256)
    entry = find_entry(weights)
    if entry is not None:
        no_hash_for_a_release(weights, sha256, f"key of {MANIFEST_FILENAME}, checked against its entry")
        return resolve_entry(weights, entry, components)
    known = known_names() or "none are published yet"
    raise WeightsUnavailableError(
        f"weights={weights!r} is not an existing file or folder, nor a key of {MANIFEST_FILENAME} "
        f"(known keys: {known}). {WHAT_TO_DO}"
    )

"""Downloads and their caches: ``https://`` files into ``$MCJEPA_CACHE`` and Hugging Face files
through the Hugging Face cache, and the offline switches that keep both to what is cached.

Layout: ``$MCJEPA_CACHE/downloads/<sha256(url)[:16]>/<file name>`` (default ``~/.cache/mcjepa``);
``hf://`` files live in the Hugging Face cache (``HF_HUB_CACHE``). ``MCJEPA_OFFLINE=1`` or
``HF_HUB_OFFLINE=1`` makes every fetch a cache lookup: no network request at all.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from pathlib import Path

import huggingface_hub
import requests
from huggingface_hub import errors as hf_errors
from huggingface_hub import hf_hub_download, try_to_load_from_cache

from mcjepa.release.errors import WHAT_TO_DO, WeightsIntegrityError, WeightsUnavailableError
from mcjepa.release.format import RELEASE_FILENAME
from mcjepa.release.verify import sha256_file
from mcjepa.utils.atomic import atomic_writer
from mcjepa.utils.progress import progress_bar

__all__ = ["cache_dir", "download", "hf_download", "offline_flags", "offline_is_on", "url_cache_path"]


def cache_dir() -> Path:
    """Return the download cache for URL weights: ``$MCJEPA_CACHE`` or ``~/.cache/mcjepa``."""
    return Path(os.environ.get("MCJEPA_CACHE") or Path.home() / ".cache" / "mcjepa").expanduser()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def offline_flags() -> list[str]:
    """Return the offline switches that are on: ``MCJEPA_OFFLINE`` and ``HF_HUB_OFFLINE`` (read from the
    environment now, or huggingface_hub's setting from import time). Either one keeps every source
    (``hf://``, manifest keys, ``https://``) to local files and caches."""
    on = [name for name in ("MCJEPA_OFFLINE", "HF_HUB_OFFLINE") if _truthy(os.environ.get(name))]
    if "HF_HUB_OFFLINE" not in on and huggingface_hub.constants.is_offline_mode():
        on.append("HF_HUB_OFFLINE")
    return on


def offline_is_on(flags: list[str]) -> str:
    """The words for an error message: ``"offline mode is on (MCJEPA_OFFLINE is set)"``."""
    return f"offline mode is on ({' and '.join(f'{f} is set' for f in flags)})"


def url_cache_path(url: str) -> Path:
    """Return where :func:`download` keeps ``url``: ``cache_dir()/downloads/<sha256(url)[:16]>/<name>``."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    return cache_dir() / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def download(url: str, expected: str | None = None, size: int | None = None, refresh: bool = False) -> Path:
    """Download ``url`` into the cache (progress bar, atomic write) and return the local path.

    A cached copy whose sha256 matches ``expected`` (or any cached copy when ``expected`` is ``None``)
    is reused; ``refresh`` re-fetches when online (for ``release.json``). ``size`` (bytes) only
    sizes the progress bar when the server sends no length."""
    target = url_cache_path(url)
    if target.is_file() and not refresh:
        if expected is None or sha256_file(target) == expected:
            return target
    flags = offline_flags()
    if flags:
        if target.is_file():
            return target
        raise WeightsUnavailableError(
            f"cannot download {url}: {offline_is_on(flags)} and it is not cached in {target.parent}. "
            f"Unset {' and '.join(flags)} to download it, or download it on a connected machine, copy it here and "
            "pass weights= the local release folder or .safetensors file (FILE#sha256=<hex> to check a bare file)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        digest = hashlib.sha256()
        with atomic_writer(target) as out, requests.get(url, stream=True, timeout=(10, 60)) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length") or 0) or size
            with progress_bar(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name) as bar:
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
        raise WeightsUnavailableError(f"downloading {url} failed with HTTP {status}. {WHAT_TO_DO}") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        if target.is_file():
            return target
        raise WeightsUnavailableError(
            f"cannot download {url} ({type(exc).__name__}: no connection) and it is not cached in {target.parent}. "
            "Connect to the internet, or pass weights= a local release folder or .safetensors file."
        ) from None


def hf_download(repo_id: str, filename: str, revision: str | None) -> Path:
    """Return the local path of ``filename`` of ``hf://repo_id@revision`` from the Hugging Face cache,
    downloading it when online; errors say what to do."""
    rev = f"@{revision}" if revision else ""
    flags = offline_flags()
    if flags:
        # a pure cache lookup: hf_hub_download, even with local_files_only, may contact the Hub
        # (its user-agent code fetches a registry) unless huggingface_hub itself was imported offline
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(found, str):
            return Path(found)
        get = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "") + " --local-dir DIR"
        raise WeightsUnavailableError(
            f"cannot get {filename} of hf://{repo_id}{rev}: {offline_is_on(flags)} and it is not in the "
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
            + WHAT_TO_DO
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise WeightsUnavailableError(f"hf://{repo_id}: revision {revision!r} does not exist") from None
    except hf_errors.EntryNotFoundError:
        raise WeightsUnavailableError(
            f"hf://{repo_id}{rev} has no file {filename!r}; an mcjepa release holds {RELEASE_FILENAME} and "
            "<component>.safetensors files (see mcjepa.release.save_release)"
        ) from None
    except (hf_errors.HfHubHTTPError, OSError, ConnectionError) as exc:
        raise WeightsUnavailableError(
            f"downloading {filename} from hf://{repo_id}{rev} failed: {type(exc).__name__}: {str(exc)[:300]}. "
            + WHAT_TO_DO
        ) from None

"""Publish a release folder to the Hugging Face Hub and pin it in ``weights_manifest.json``.

:func:`publish_release` creates the repository (``exist_ok``), the branch when one is named,
uploads the folder with :meth:`huggingface_hub.HfApi.upload_folder`, and records the commit sha
it returns as the manifest entry's ``revision`` with ``status: "published"``: loaders then fetch
exactly that commit, whatever happens to the branch later.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from mcjepa.release import COMMIT_SHA, RELEASE_FILENAME, ManifestError, merge_entry, sha256_file
from mcjepa.release.export import CARD_FILENAME, CARD_REPO_PLACEHOLDER
from mcjepa.utils.atomic import atomic_write_bytes

__all__ = ["PublishError", "publish_release"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


class PublishError(RuntimeError):
    """A release folder cannot be published; the message says why."""


def _check_release(folder: Path) -> dict[str, Any]:
    release_json = folder / RELEASE_FILENAME
    if not release_json.is_file():
        raise PublishError(f"{folder} is not a release folder (no {RELEASE_FILENAME}); write one with mcjepa-export")
    entry = json.loads(release_json.read_text())
    for comp, info in entry.get("files", {}).items():
        path = folder / info["filename"]
        if not path.is_file():
            raise PublishError(f"{folder}: {comp} file {info['filename']} is missing")
        if info.get("sha256") and sha256_file(path) != info["sha256"]:
            raise PublishError(f"{path} does not match the sha256 in {RELEASE_FILENAME}: re-export the release")
    return entry


def publish_release(
    release_dir: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    name: str | None = None,
    manifest: str | os.PathLike | None = None,
    token: str | bool | None = None,
    api: HfApi | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Upload ``release_dir`` to ``hf://repo_id`` (on branch ``revision``, default ``main``) and
    return the manifest entry, now with ``repo_id``, ``revision`` (the 40-hex commit sha) and
    ``status: "published"``; it is merged into the manifest under ``name`` (default: the
    release's ``name``)."""
    folder = Path(release_dir)
    if not _REPO_ID.match(repo_id or ""):
        raise PublishError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    entry = _check_release(folder)
    card = folder / CARD_FILENAME
    if card.is_file() and CARD_REPO_PLACEHOLDER in (text := card.read_text()):
        atomic_write_bytes(card, text.replace(CARD_REPO_PLACEHOLDER, f"hf://{repo_id}").encode())
    api = api or HfApi(token=token)
    # private=None leaves the visibility to the account's default (public unless the org enforces private)
    api.create_repo(repo_id, repo_type="model", private=True if private else None, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        commit_message=f"mcjepa release {entry.get('name', folder.name)}",
    )
    sha = getattr(info, "oid", None)
    if not isinstance(sha, str) or not COMMIT_SHA.match(sha):
        raise PublishError(f"the Hub returned no commit sha for the upload (got {sha!r}); the manifest is unchanged")
    entry.update({"repo_id": repo_id, "revision": sha, "status": "published"})
    entry.setdefault("metadata", {})["branch"] = revision or "main"
    key = name or entry.get("name") or folder.name
    try:
        merge_entry(key, entry, manifest, force=force)
    except ManifestError as exc:
        raise PublishError(str(exc)) from None
    return entry

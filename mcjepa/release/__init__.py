"""Weight releases: the format, the manifest, where weights come from, the download cache,
verification and strict loading. One concept per module:

========================  =====================================================================
module                    what lives there
========================  =====================================================================
``release.format``        release folder layout, constants, :func:`save_release`, safetensors
                          writing, the finite check, checking a release description
``release.manifest``      ``weights_manifest.json``: :func:`load_manifest`, :func:`find_entry`,
                          :func:`merge_entry` (export, publish and bundle write through it)
``release.sources``       ``weights=`` forms: :data:`SCHEMES` (``hf``, ``https``, ``file``,
                          ``bundled``) and :data:`ENTRY_SOURCES` (manifest entries by status),
                          :func:`resolve`
``release.local``         local release folders and ``.safetensors`` files
``release.resolved``      :class:`ResolvedRelease`, what every source returns
``release.bundled``       where bundled releases live (``mcjepa/bundled/<name>/``), :data:`DEFAULT_MODEL`;
                          ``python -m mcjepa.cli.bundle`` puts a release there
``release.cache``         downloads, the ``$MCJEPA_CACHE`` and Hugging Face caches, offline switches
``release.verify``        sha256, the size / sha256 / header check before a file is read
``release.loading``       :func:`load_model` (the one model loader), :func:`read_component`,
                          :func:`load_state_dict_strict`
``release.errors``        :class:`WeightsError` and its subclasses, :class:`UnverifiedWeightsWarning`
``release.export``        training checkpoint -> release folder, model card, README weights table
``release.from_run``      the release a training run writes at its end
``release.publish``       upload to the Hugging Face Hub, pin the commit in the manifest
``release.onnx``          ONNX export of the flow model, checked against PyTorch
========================  =====================================================================

``mcjepa.release`` re-exports this public API for older imports.
"""

from mcjepa.release.bundled import BUNDLED_DIR_ENV, BUNDLED_SCHEME, DEFAULT_MODEL, bundled_root
from mcjepa.release.cache import cache_dir
from mcjepa.release.errors import (
    ManifestError,
    NonFiniteWeightsError,
    UnverifiedWeightsWarning,
    WeightsError,
    WeightsIntegrityError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from mcjepa.release.format import CONFIG_FILENAME, FORMAT_VERSION, RELEASE_FILENAME, STATUSES, save_release
from mcjepa.release.loading import (
    UNTRAINED_MESSAGE,
    describe_release,
    load_model,
    load_state_dict_strict,
    read_component,
)
from mcjepa.release.manifest import (
    COMMIT_SHA,
    MANIFEST_FILENAME,
    default_manifest_path,
    find_entry,
    load_manifest,
    manifest_candidates,
    merge_entry,
    packaged_manifest_path,
)
from mcjepa.release.resolved import ResolvedRelease
from mcjepa.release.sources import resolve
from mcjepa.release.verify import sha256_file

__all__ = [
    "BUNDLED_DIR_ENV",
    "BUNDLED_SCHEME",
    "COMMIT_SHA",
    "CONFIG_FILENAME",
    "DEFAULT_MODEL",
    "FORMAT_VERSION",
    "MANIFEST_FILENAME",
    "ManifestError",
    "NonFiniteWeightsError",
    "RELEASE_FILENAME",
    "ResolvedRelease",
    "STATUSES",
    "UNTRAINED_MESSAGE",
    "UnverifiedWeightsWarning",
    "WeightsError",
    "WeightsIntegrityError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "bundled_root",
    "cache_dir",
    "default_manifest_path",
    "describe_release",
    "find_entry",
    "load_manifest",
    "load_model",
    "load_state_dict_strict",
    "manifest_candidates",
    "merge_entry",
    "packaged_manifest_path",
    "read_component",
    "resolve",
    "save_release",
    "sha256_file",
]

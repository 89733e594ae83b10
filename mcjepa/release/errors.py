"""The errors and the warning of the release package (every loader and writer raises these)."""

from __future__ import annotations

__all__ = [
    "ManifestError",
    "NonFiniteWeightsError",
    "UnverifiedWeightsWarning",
    "WHAT_TO_DO",
    "WeightsError",
    "WeightsIntegrityError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
]

WHAT_TO_DO = (
    "Pass weights= a local release folder written by mcjepa.release.save_release, a .safetensors file, "
    "hf://org/repo[@revision] or an https:// URL of a release."
)


class WeightsError(RuntimeError):
    """Base class of every weight-loading error."""


class WeightsUnavailableError(WeightsError):
    """The requested weights cannot be found or downloaded (offline, not cached, not published, not installed)."""


class WeightsIntegrityError(WeightsError):
    """A weight file is corrupted, truncated, not the expected file, or not a safetensors file."""


class WeightsMismatchError(WeightsError):
    """A state dict does not fit its module: missing or unexpected keys, or shape mismatches."""


class NonFiniteWeightsError(WeightsError, ValueError):
    """Weights about to be written to a release hold NaN or infinite values."""


class ManifestError(RuntimeError):
    """A manifest cannot be updated as asked (e.g. it would replace a published entry without ``force``)."""


class UnverifiedWeightsWarning(UserWarning):
    """A bare ``.safetensors`` file is loaded with no sha256 to check it against."""

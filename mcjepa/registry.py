"""The model registry: every model name mcjepa knows, what it is built from, and its weights.

A name is either an **architecture** (``mcjepa_convnext_t``, ``mcjepa_small``, ...: the
``name`` of a :mod:`mcjepa.architecture` variant) or a **release** (a key of
``weights_manifest.json``, e.g. ``mcjepa_small_real``: an architecture plus trained weights and the
metrics measured on them). :func:`list_models` lists both; :func:`create_model` builds either, in
the spirit of timm's ``create_model`` and torchvision's ``get_model``. The ``torch.hub`` entry
points (:mod:`mcjepa.hub`) are thin wrappers of :func:`create_model`.

``pretrained`` has one meaning everywhere: ``None`` (the default) loads the name's trained weights
when the registry has them and otherwise builds a randomly initialised model with a
``UserWarning``; ``True`` demands trained weights (an error when there are none); ``False`` never
loads any (the model is random, with the same warning).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mcjepa.architecture import MODEL_VARIANTS
from mcjepa.model import MCJEPA

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models"]

COMPONENT_SETS = {
    "flow": ("encoder", "flow_head"),
    "encoder": ("encoder",),
    "all": ("encoder", "flow_head", "expander"),
}


@dataclass(frozen=True)
class ModelEntry:
    """One registry name: its architecture and, for a release, its weights and their metrics."""

    name: str
    variant: str  # key of mcjepa.architecture.MODEL_VARIANTS
    weights: str | None = None  # manifest key of the trained weights; None: architecture only
    status: str | None = None  # the manifest's status ("bundled", "local", "published"); None: no weights
    trained_on: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def pretrained_available(self) -> bool:
        """Whether trained weights can be loaded for this name (listed and not merely planned)."""
        return self.weights is not None and self.status in ("bundled", "local", "published")


def _variant_of_name(name: str) -> str | None:
    for variant, builder in MODEL_VARIANTS.items():
        if builder().name == name:
            return variant
    return None


def _entries() -> dict[str, ModelEntry]:
    """Every registry entry, read afresh from the variants and the manifest (it may change on disk)."""
    from mcjepa.release.manifest import _visible_manifests

    models: dict[str, dict] = {}
    for manifest in reversed(_visible_manifests()):  # $MCJEPA_MANIFEST's entries win over the packaged ones
        models.update(manifest["models"])
    releases: dict[str, ModelEntry] = {}
    for key, item in models.items():
        variant = item.get("variant") or _variant_of_name((item.get("config") or {}).get("name", ""))
        if variant not in MODEL_VARIANTS:
            continue  # a manifest entry for an architecture this version cannot build
        releases[key] = ModelEntry(
            name=key,
            variant=variant,
            weights=key,
            status=item.get("status"),
            trained_on=item.get("trained_on"),
            metrics=dict(item.get("metrics", {})),
        )
    entries: dict[str, ModelEntry] = {}
    for variant, builder in MODEL_VARIANTS.items():
        name = builder().name
        default = _default_release(variant, releases)
        entries[name] = ModelEntry(
            name=name,
            variant=variant,
            weights=default.weights if default else None,
            status=default.status if default else None,
            trained_on=default.trained_on if default else None,
            metrics=default.metrics if default else {},
        )
    entries.update(releases)
    return entries


def _default_release(variant: str, releases: dict[str, ModelEntry]) -> ModelEntry | None:
    """The trained weights an architecture name loads by default: the package's default model when it
    is of this architecture, else the only loadable release of it, else none."""
    from mcjepa.release import DEFAULT_MODEL

    mine = [r for r in releases.values() if r.variant == variant and r.pretrained_available]
    for release in mine:
        if release.name == DEFAULT_MODEL:
            return release
    return mine[0] if len(mine) == 1 else None


def list_models(pretrained: bool = False) -> list[str]:
    """Return every name :func:`create_model` accepts, sorted; with ``pretrained=True`` only the
    names that have trained weights to load."""
    entries = _entries()
    return sorted(n for n, e in entries.items() if not pretrained or e.pretrained_available)


def get_entry(name: str) -> ModelEntry:
    """Return the :class:`ModelEntry` of ``name``; a ``ValueError`` lists the known names."""
    entries = _entries()
    if name not in entries:
        raise ValueError(f"unknown model {name!r}; mcjepa.list_models() gives: {', '.join(sorted(entries))}")
    return entries[name]


def create_model(
    name: str,
    pretrained: bool | None = None,
    weights: str | os.PathLike | None = None,
    *,
    components: str = "flow",
    map_location: str | Any = "cpu",
    **kwargs: Any,
) -> MCJEPA:
    """Return the model ``name`` (see :func:`list_models`) as an :class:`~mcjepa.model.MCJEPA` in eval mode.

    Args:
        name: an architecture (``"mcjepa_small"``) or a release (``"mcjepa_small_real"``).
        pretrained: ``None``: load the name's trained weights when it has some, else a randomly
            initialised model with a ``UserWarning``; ``True``: trained weights or a
            :class:`~mcjepa.release.WeightsUnavailableError`; ``False``: random weights (with the
            same warning).
        weights: other weights of the same architecture instead (a release folder, a
            ``.safetensors`` file, ``hf://org/repo[@revision]``, an ``https://`` / ``file://`` URL, a
            manifest key). Weights of another architecture are a ``ValueError``, never a silent swap.
        components: ``"flow"`` (encoder + flow head, the default), ``"encoder"`` or ``"all"``
            (with the VICReg expander).
        map_location: the device the model is put on.
        **kwargs: passed to :func:`mcjepa.release.load_model` (``sha256=``, ``warn_stacklevel=``).

    Raises:
        ValueError: an unknown name or ``components``, ``pretrained=True`` together with
            ``weights``, or weights whose architecture is not ``name``'s.
    """
    from mcjepa.release import UNTRAINED_MESSAGE, WeightsUnavailableError, load_model

    entry = get_entry(name)
    if "variant" in kwargs:
        raise ValueError(
            f"create_model({name!r}): the name sets the architecture; pick another name "
            f"(mcjepa.list_models()) instead of variant={kwargs['variant']!r}"
        )
    kwargs.setdefault("warn_stacklevel", 2)
    if components not in COMPONENT_SETS:
        raise ValueError(f"components={components!r}: expected one of {sorted(COMPONENT_SETS)}")
    if weights is not None and pretrained:
        raise ValueError(
            f"{name}: pretrained=True and weights={os.fspath(weights)!r} both name weights to load: pass one of them"
        )
    parts = COMPONENT_SETS[components]
    arch = MODEL_VARIANTS[entry.variant]().name
    if weights is not None:
        model = load_model(weights, variant=entry.variant, components=parts, map_location=map_location, **kwargs)
        loaded = getattr(model, "config", None)
        if loaded is not None and loaded.name != arch:
            raise ValueError(
                f"{name}: weights {str(weights)!r} hold the {loaded.name!r} architecture, not {arch!r}; "
                f"use create_model({loaded.name!r}, weights=...) for them"
            )
        return model
    if entry.pretrained_available and pretrained is not False:
        return load_model(entry.weights, components=parts, map_location=map_location, **kwargs)
    if pretrained:  # True, and nothing to load
        raise WeightsUnavailableError(
            f"{name}: no trained weights are available for this model (mcjepa.list_models(pretrained=True) lists "
            "those that have some); train them with `mcjepa-train` and pass weights='path/to/release'"
        )
    return load_model(
        None,
        variant=entry.variant,
        components=parts,
        map_location=map_location,
        warn_untrained=True,
        untrained_message=f"{name}: " + UNTRAINED_MESSAGE.format(variant=entry.variant),
        **kwargs,
    )

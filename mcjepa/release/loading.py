"""Strict loading: verify and read one component's state dict, load it strictly, and build the model
(:func:`load_model`, the one model loader of the package)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import torch
from safetensors.torch import load_file
from torch import nn

from mcjepa.architecture import model_config
from mcjepa.model import COMPONENTS, MCJEPA
from mcjepa.release.errors import WeightsMismatchError, WeightsUnavailableError
from mcjepa.release.manifest import MANIFEST_FILENAME, published_entry_for
from mcjepa.release.resolved import ResolvedRelease
from mcjepa.release.sources import resolve
from mcjepa.release.verify import verify_file

__all__ = ["UNTRAINED_MESSAGE", "describe_release", "load_model", "load_state_dict_strict", "read_component"]

UNTRAINED_MESSAGE = (
    "no weights given (weights=None, pretrained=False): the {variant!r} model is randomly initialised "
    "(untrained) and its outputs are meaningless. Pass weights='path/to/release' (train one with `mcjepa-train`)."
)


def read_component(release: ResolvedRelease, component: str, device: str | torch.device = "cpu") -> dict:
    """Verify (size, sha256, header) and read one component's state dict, keys without the component prefix."""
    if component not in release.files:
        raise WeightsUnavailableError(
            f"the release {release.source} has no {component!r} component; it holds {sorted(release.files)}"
        )
    path = release.files[component]
    verify_file(path, release.expected.get(component), release.sizes.get(component), f"{component} weights file")
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


def describe_release(release: ResolvedRelease) -> str:
    """One line naming the weights: ``"mcjepa_small_real (bundled, trained on real)"``, or the source
    of an unnamed file."""
    entry = release.entry or {}
    trained_on = entry.get("trained_on")
    if isinstance(trained_on, list):
        trained_on = ", ".join(map(str, trained_on))
    details = [release.kind or "weights"] + ([f"trained on {trained_on}"] if trained_on else [])
    if release.kind not in ("bundled", "published") or not release.name:
        details.append(release.source)
    return f"{release.name or 'unnamed weights'} ({', '.join(details)})"


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

    This is the one model loader: ``mcjepa.flow.load``, :func:`mcjepa.create_model` (and through it
    the ``torch.hub`` entry points), ``mcjepa-eval`` and ``mcjepa-export`` all call it, so weights, ``pretrained``,
    ``variant``, the device, ``sha256`` and the untrained-model warning are decided here. The model's
    ``release_name`` (the manifest key or release name, ``None`` when untrained or unnamed) and
    ``weights_description`` (one line saying which weights it holds) record what was loaded.

    Args:
        weights: where the weights are (:func:`mcjepa.release.resolve` lists the forms); ``None``: none.
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
        key = published_entry_for(variant)
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
        model.weights_description = f"untrained {cfg.name} (random weights)"
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
    model.release_name = release.name
    model.weights_description = describe_release(release)
    return model.to(map_location).eval()

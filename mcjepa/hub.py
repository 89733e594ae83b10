"""``torch.hub`` builders (re-exported by the repository's ``hubconf.py``).

All take ``pretrained`` and ``weights`` and load through :func:`mcjepa.release.load_model` (the one
loader). ``mcjepa_convnext_t`` and ``mcjepa_convnext_t_flow`` are the paper's model: nothing trained
is published for it, so ``pretrained=True`` raises an error and with neither the model is randomly
initialised (one ``UserWarning`` says so). ``mcjepa_small`` loads the trained ``small`` model bundled
with the package (:data:`mcjepa.release.DEFAULT_MODEL`) by default.
"""

from __future__ import annotations

import os
from typing import Any

from mcjepa.encoder import ConvNeXtPyramid
from mcjepa.model import MCJEPA
from mcjepa.release import BUNDLED_SCHEME, DEFAULT_MODEL, UNTRAINED_MESSAGE, load_model

__all__ = ["mcjepa_convnext_t", "mcjepa_convnext_t_flow", "mcjepa_small"]


def _untrained_warning(entry: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for :func:`load_model` with the untrained-model warning on (a caller's own
    ``warn_untrained=`` / ``untrained_message=`` win)."""
    variant = kwargs.get("variant", "convnext_t")
    return {
        "warn_untrained": True,
        "untrained_message": f"{entry}(): " + UNTRAINED_MESSAGE.format(variant=variant),
        "warn_stacklevel": 2,
        **kwargs,
    }


def mcjepa_convnext_t(
    pretrained: bool = False, weights: str | os.PathLike | None = None, **kwargs: Any
) -> ConvNeXtPyramid:
    """MC-JEPA ConvNeXt-T encoder: a 6-level feature pyramid, in eval mode.

    The encoder returns a list of 6 NCHW maps, fine to coarse, with strides (2, 4, 4, 8, 16, 32)
    and channels (48, 48, 96, 192, 384, 768). Input: ImageNet-normalised ``(B, 3, H, W)`` float
    images of any size >= 32 (see :func:`mcjepa.encoder.imagenet_normalize`).
    ``encoder.forward_embedding(x)`` returns the pooled ``(B, 768)`` content feature.

    Args:
        pretrained (bool): load the published release of this model from the weights manifest.
            No weights are published yet, so ``True`` raises an error saying what to do instead.
            Not together with ``weights`` (that is an error, never a silent choice).
        weights (str or Path, optional): weights to load instead: a manifest key, a local release
            folder or ``.safetensors`` file, ``hf://org/repo[@revision]``, or an ``https://`` /
            ``file://`` URL. A release's own config.json sets the architecture. A bare
            ``.safetensors`` file is checked only when its hash is given (``sha256=`` or
            ``"FILE#sha256=<hex>"``); without one it loads with a warning.
        **kwargs: passed to :func:`mcjepa.release.load_model`, e.g. ``map_location="cuda"`` or
            ``variant="micro"`` (the architecture when no release config is given).

    Example::

        >>> import torch
        >>> encoder = torch.hub.load("path/to/mcjepa", "mcjepa_convnext_t", source="local")
        >>> encoder = torch.hub.load("path/to/mcjepa", "mcjepa_convnext_t", source="local",
        ...                          weights="runs/my_release")   # a folder from save_release
        >>> feats = encoder(torch.randn(1, 3, 224, 224))
        >>> [f.shape[1] for f in feats]
        [48, 48, 96, 192, 384, 768]
    """
    model = load_model(
        weights, pretrained=pretrained, components=("encoder",), **_untrained_warning("mcjepa_convnext_t", kwargs)
    )
    return model.encoder


def mcjepa_convnext_t_flow(pretrained: bool = False, weights: str | os.PathLike | None = None, **kwargs: Any) -> MCJEPA:
    """MC-JEPA optical flow model: ConvNeXt-T encoder + PWC-style flow head, in eval mode.

    ``model(image1, image2)`` takes two ImageNet-normalised ``(B, 3, H, W)`` frames (H, W >= 32;
    pad to a multiple of 32 for best results) and returns the flow from frame 1 to frame 2 as a
    ``(B, 2, H, W)`` float tensor in pixels (channel 0 = u, +x right; 1 = v, +y down), the
    torchvision RAFT convention: ``torchvision.utils.flow_to_image`` works on it. For uint8 or
    [0, 1] images, numpy arrays and PIL images, with padding handled, use
    ``mcjepa.flow.estimate(img1, img2, model=model)``.

    Args:
        pretrained (bool): load the published release of this model from the weights manifest.
            No weights are published yet, so ``True`` raises an error saying what to do instead.
            Not together with ``weights`` (that is an error, never a silent choice).
        weights (str or Path, optional): weights to load instead: a manifest key, a local release
            folder or ``.safetensors`` file, ``hf://org/repo[@revision]``, or an ``https://`` /
            ``file://`` URL. The release must hold the encoder and the flow head. A bare
            ``.safetensors`` file is checked only when its hash is given (``sha256=`` or
            ``"FILE#sha256=<hex>"``); without one it loads with a warning.
        **kwargs: passed to :func:`mcjepa.release.load_model`, e.g. ``map_location="cuda"`` or
            ``variant="convnext_t_c1"`` (the architecture when no release config is given).

    Example::

        >>> import torch
        >>> model = torch.hub.load("path/to/mcjepa", "mcjepa_convnext_t_flow", source="local",
        ...                        weights="hf://org/mcjepa-convnext-t")
        >>> img1 = img2 = torch.randn(1, 3, 128, 160)
        >>> with torch.no_grad():
        ...     flow = model(img1, img2)
        >>> flow.shape
        torch.Size([1, 2, 128, 160])
    """
    kwargs = _untrained_warning("mcjepa_convnext_t_flow", kwargs)
    return load_model(weights, pretrained=pretrained, components=("encoder", "flow_head"), **kwargs)


def mcjepa_small(pretrained: bool | None = None, weights: str | os.PathLike | None = None, **kwargs: Any) -> MCJEPA:
    """MC-JEPA ``small`` optical flow model (encoder + flow head), trained, bundled with the package; eval mode.

    A CPU-sized variant (not the paper's model; :func:`mcjepa.architecture.small`): by default it loads
    the release bundled inside the package, ``mcjepa_small_real`` (sha256-checked, offline), the
    model ``mcjepa.flow.load()`` uses. ``model.weights_description`` says what it was trained on.
    ``model(image1, image2)`` takes ImageNet-normalised ``(B, 3, H, W)`` frames (H, W >= 32) and
    returns ``(B, 2, H, W)`` flow in pixels; ``model.encoder`` gives the feature pyramid. For uint8
    or [0, 1] images with padding handled, use ``mcjepa.flow.estimate(img1, img2, model=model)``.

    Args:
        pretrained (bool): load the bundled trained release (the default when ``weights`` is not
            given); ``False`` gives a randomly initialised ``small`` model, with a warning. Not
            together with ``weights``.
        weights (str or Path, optional): other weights to load instead: a manifest key, a local
            release folder or ``.safetensors`` file, ``hf://org/repo[@revision]``, or an
            ``https://`` / ``file://`` URL.
        **kwargs: passed to :func:`mcjepa.release.load_model`, e.g. ``map_location="cuda"``.

    Example::

        >>> import torch
        >>> model = torch.hub.load("path/to/mcjepa", "mcjepa_small", source="local")
        >>> model.release_name
        'mcjepa_small_real'
        >>> with torch.no_grad():
        ...     flow = model(torch.randn(1, 3, 128, 160), torch.randn(1, 3, 128, 160))
        >>> flow.shape
        torch.Size([1, 2, 128, 160])
    """
    if pretrained is None:
        pretrained = weights is None
    if pretrained and weights is None:
        weights, pretrained = f"{BUNDLED_SCHEME}{DEFAULT_MODEL}", False
    kwargs = _untrained_warning("mcjepa_small", {"variant": "small", **kwargs})
    return load_model(weights, pretrained=pretrained, components=("encoder", "flow_head"), **kwargs)

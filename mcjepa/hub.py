"""``torch.hub`` entry points (re-exported by the repository's ``hubconf.py``): thin wrappers of
:func:`mcjepa.create_model`.

The name says what comes back: ``<model>`` is the encoder (a 6-level feature pyramid),
``<model>_flow`` the optical-flow model (encoder + flow head). All share one ``pretrained``
default, ``None``: the model's trained weights when there are any, else a randomly initialised
model with a ``UserWarning``. ``mcjepa_small`` / ``mcjepa_small_flow`` load the trained model
bundled with the package (``mcjepa_small_real``); nothing trained is published for the paper's
``mcjepa_convnext_t`` yet.
"""

from __future__ import annotations

import os
from typing import Any

from mcjepa.encoder import ConvNeXtPyramid
from mcjepa.model import MCJEPA
from mcjepa.registry import create_model

__all__ = ["mcjepa_convnext_t", "mcjepa_convnext_t_flow", "mcjepa_small", "mcjepa_small_flow"]

_ARGS = """
    Args:
        pretrained (bool, optional): ``None`` (default): the trained weights when there are any,
            else random weights with a warning; ``True``: trained weights or an error; ``False``:
            random weights.
        weights (str or Path, optional): other weights of this architecture: a release folder or
            ``.safetensors`` file, a manifest key, ``hf://org/repo[@revision]``, or an ``https://`` /
            ``file://`` URL. Weights of another architecture raise a ``ValueError``.
        **kwargs: passed to :func:`mcjepa.create_model`, e.g. ``map_location="cuda"``.
"""


def _encoder(name: str, pretrained: bool | None, weights: Any, kwargs: dict[str, Any]) -> ConvNeXtPyramid:
    kwargs.setdefault("warn_stacklevel", 4)  # user -> entry point -> _encoder -> create_model
    model = create_model(name, pretrained, weights, components="encoder", **kwargs)
    encoder = model.encoder
    encoder.release_name, encoder.weights_description = model.release_name, model.weights_description
    return encoder


def _flow(name: str, pretrained: bool | None, weights: Any, kwargs: dict[str, Any]) -> MCJEPA:
    kwargs.setdefault("warn_stacklevel", 4)  # user -> entry point -> _flow -> create_model
    return create_model(name, pretrained, weights, components="flow", **kwargs)


def mcjepa_convnext_t(
    pretrained: bool | None = None, weights: str | os.PathLike | None = None, **kwargs: Any
) -> ConvNeXtPyramid:
    """The paper's ConvNeXt-T encoder, in eval mode: ImageNet-normalised ``(B, 3, H, W)`` images
    (H, W >= 32) to 6 NCHW maps, fine to coarse, strides (2, 4, 4, 8, 16, 32), channels
    (48, 48, 96, 192, 384, 768). ``encoder.forward_embedding(x)`` gives the pooled ``(B, 768)``
    content feature. No trained weights are published: by default it is randomly initialised.

    Example::

        >>> encoder = torch.hub.load("path/to/mcjepa", "mcjepa_convnext_t", source="local", weights="runs/x/release")
        >>> [f.shape[1] for f in encoder(torch.randn(1, 3, 224, 224))]
        [48, 48, 96, 192, 384, 768]
    """
    return _encoder("mcjepa_convnext_t", pretrained, weights, kwargs)


def mcjepa_convnext_t_flow(
    pretrained: bool | None = None, weights: str | os.PathLike | None = None, **kwargs: Any
) -> MCJEPA:
    """The paper's optical-flow model (ConvNeXt-T encoder + PWC-style flow head), in eval mode.
    ``model(image1, image2)`` takes ImageNet-normalised ``(B, 3, H, W)`` frames and returns the
    flow from frame 1 to frame 2, ``(B, 2, H, W)`` in pixels (u right, v down; torchvision's RAFT
    convention). ``mcjepa.flow.estimate(img1, img2, model=model)`` takes uint8 / [0, 1] images of
    any size. No trained weights are published: by default it is randomly initialised.
    """
    return _flow("mcjepa_convnext_t", pretrained, weights, kwargs)


def mcjepa_small(
    pretrained: bool | None = None, weights: str | os.PathLike | None = None, **kwargs: Any
) -> ConvNeXtPyramid:
    """The CPU-sized ``small`` encoder (not the paper's model), trained: by default the weights
    bundled with the package (``mcjepa_small_real``). 6 maps, fine to coarse, strides
    (2, 4, 4, 8, 16, 32), channels (16, 16, 24, 32, 48, 64); pooled embedding: 64 channels.
    """
    return _encoder("mcjepa_small", pretrained, weights, kwargs)


def mcjepa_small_flow(
    pretrained: bool | None = None, weights: str | os.PathLike | None = None, **kwargs: Any
) -> MCJEPA:
    """The CPU-sized ``small`` optical-flow model (not the paper's model), trained: by default the
    weights bundled with the package (``mcjepa_small_real``), the model ``mcjepa.flow.load()``
    uses. Input and output as :func:`mcjepa_convnext_t_flow`.

    Example::

        >>> model = torch.hub.load("path/to/mcjepa", "mcjepa_small_flow", source="local")
        >>> model.release_name
        'mcjepa_small_real'
    """
    return _flow("mcjepa_small", pretrained, weights, kwargs)


for _entry in (mcjepa_convnext_t, mcjepa_convnext_t_flow, mcjepa_small, mcjepa_small_flow):
    _entry.__doc__ = (_entry.__doc__ or "").rstrip() + "\n" + _ARGS

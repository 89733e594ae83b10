"""Helpers shared by the evaluators: model loading, input normalisation, stride padding (devices: :mod:`mcjepa.utils.devices`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from mcjepa.encoder import imagenet_normalize
from mcjepa.model import MCJEPA

__all__ = ["STRIDE", "load_for_eval", "to_encoder_input", "pad_to_multiple", "encode_pyramid"]

STRIDE = 32  # the coarsest pyramid level's stride


def load_for_eval(
    weights: str | Path | None = None,
    variant: str = "convnext_t",
    pretrained: bool = False,
    components: tuple[str, ...] = ("encoder", "flow_head"),
    device: str | torch.device = "cpu",
) -> MCJEPA:
    """Return an MCJEPA in eval mode on ``device``.

    ``weights`` (a release folder, ``.safetensors`` file, manifest key, ``hf://org/repo`` or URL) or
    ``pretrained`` (the published release of ``variant``) go through :func:`mcjepa.release.load_model`;
    with neither, a randomly initialised ``variant`` is built (a "random init" reference row) and a
    warning is issued.
    """
    from mcjepa.release import load_model  # the one loader (lazy: pulls in huggingface_hub)

    model = load_model(
        weights,
        pretrained=pretrained,
        variant=variant,
        components=components,
        map_location=device,
        warn_untrained=True,
        untrained_message=f"no --weights / --pretrained given: evaluating a randomly initialised {variant!r}",
        warn_stacklevel=2,
    )
    return model.to(device).eval()


def to_encoder_input(images: Tensor) -> Tensor:
    """Map ``(B, 3, H, W)`` uint8 (or float in [0, 1]) images to ImageNet-normalised float32."""
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return imagenet_normalize(x)


def pad_to_multiple(x: Tensor, multiple: int = STRIDE, mode: str = "replicate") -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` on the bottom and right to multiples of ``multiple``; return (padded, (H, W)).

    Crop back with ``y[..., :H, :W]`` (at the same scale) -- nothing is ever resized.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def encode_pyramid(encoder: torch.nn.Module, images: Tensor, device: torch.device | str = "cpu") -> list[Tensor]:
    """Encode ``(B, 3, H, W)`` uint8 images (padded to a multiple of 32 with replicate padding first)
    and return the 6 pyramid maps, fine to coarse. Level i covers the padded image at its stride."""
    x = to_encoder_input(images.to(device))
    x, _ = pad_to_multiple(x, STRIDE)
    return encoder(x)

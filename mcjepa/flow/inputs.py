"""The image forms the flow API accepts, validated once: tensors channels-first, numpy arrays
channels-last, PIL images, or lists of these as a batch; uint8 or float in [0, 1].

:func:`prepare_images` turns any of them into float32 ``(B, 3, H, W)`` in [0, 1] with a clear
error for anything else; :func:`check_image_pair` checks two of them form a frame pair.

Channels are R, G, B in that order. Arrays from OpenCV (``cv2.imread``, ``VideoCapture``) are
B, G, R: convert them first, ``rgb = bgr[..., ::-1]`` (or ``cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)``).
Float values may overshoot [0, 1] by :data:`RANGE_TOLERANCE` (a few float32 ulps, as resampling
leaves them); they are clamped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2.functional import pil_to_tensor

from mcjepa.encoder import MIN_INPUT_SIZE
from mcjepa.utils.media import to_rgb

__all__ = ["RANGE_TOLERANCE", "ImageLike", "check_colour_pair", "check_image_pair", "describe_type", "prepare_images"]

# float images may lie this far outside [0, 1] (4 float32 ulps of 1.0: the rounding of an
# antialiased resize); such values are clamped, larger overshoots are refused
RANGE_TOLERANCE = 4 * float(np.finfo(np.float32).eps)

ImageLike = Tensor | np.ndarray | Image.Image | Sequence


def describe_type(x: object) -> str:
    """``module.ClassName`` of ``x``, for error messages."""
    return f"{type(x).__module__}.{type(x).__name__}"


def _single_to_tensor(image: object, name: str) -> Tensor:
    """One unbatched image -> uint8 or float ``(3, H, W)`` tensor (not yet validated for range)."""
    if isinstance(image, Image.Image):
        return pil_to_tensor(to_rgb(image, name))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"{name}: a numpy image must be channels-last (H, W, 3) (or (B, H, W, 3) for a batch), "
                f"got shape {image.shape}"
            )
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(
                f"{name}: an image tensor must be channels-first (3, H, W) (or (B, 3, H, W) for a batch), "
                f"got shape {tuple(image.shape)}"
            )
        return image
    raise TypeError(
        f"{name}: expected a torch.Tensor, numpy.ndarray or PIL.Image.Image (or a list of them), got {describe_type(image)}"
    )


def _to_batch(images: object, name: str) -> tuple[Tensor, bool]:
    """Any accepted image form -> (uint8 or float ``(B, 3, H, W)`` tensor, was it batched)."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name}: an empty list is not a batch of images")
        items = [_single_to_tensor(im, f"{name}[{i}]") for i, im in enumerate(images)]
        shapes = {tuple(t.shape) for t in items}
        devices = {t.device for t in items}
        if len(shapes) > 1:
            raise ValueError(f"{name}: all images of a batch must have the same size, got {sorted(shapes)}")
        dtypes = {t.dtype for t in items}
        if len(dtypes) > 1 or len(devices) > 1:
            raise ValueError(f"{name}: all images of a batch must share dtype and device, got {dtypes}, {devices}")
        return torch.stack(items), True
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.shape[-1] != 3:
            raise ValueError(f"{name}: a numpy batch must be channels-last (B, H, W, 3), got shape {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), True
    if isinstance(images, Tensor) and images.dim() == 4:
        if images.shape[1] != 3:
            raise ValueError(
                f"{name}: an image batch must be channels-first (B, 3, H, W), got shape {tuple(images.shape)}"
            )
        return images, True
    return _single_to_tensor(images, name).unsqueeze(0), False


def _as_float01(x: Tensor, name: str) -> tuple[Tensor, bool]:
    """uint8 or float [0, 1] ``(B, 3, H, W)`` -> float32 in [0, 1]; also returns ``is_uint8``."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0, True
    if not x.is_floating_point():
        raise ValueError(f"{name}: images must be uint8 (0-255) or floating point in [0, 1], got dtype {x.dtype}")
    x = x.to(torch.float32)
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.numel():
        lo, hi = x.min().item(), x.max().item()
        if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
            outside = int(((x < -RANGE_TOLERANCE) | (x > 1.0 + RANGE_TOLERANCE)).sum())
            # float32's shortest exact repr: 1.000001 shows as such, never rounded back into range
            raise ValueError(
                f"{name}: float images must lie in [0, 1], but the min is {np.float32(lo)!s} and the max is "
                f"{np.float32(hi)!s} ({outside} of {x.numel()} values outside). Pass uint8, divide 0-255 values "
                "by 255, or clamp(0, 1) values that overshoot by more than rounding."
            )
        if lo < 0.0 or hi > 1.0:  # within the tolerance: rounding, clamped
            x = x.clamp(0.0, 1.0)
    return x, False


def prepare_images(images: object, name: str) -> tuple[Tensor, bool, bool, torch.device]:
    """Validate one input; returns float32 ``(B, 3, H, W)`` in [0, 1], batched, was-uint8, and
    the device results go back to (the input tensor's, else CPU)."""
    x, batched = _to_batch(images, name)
    if x.shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty (B = 0)")
    out_device = x.device
    x, is_uint8 = _as_float01(x, name)
    return x, batched, is_uint8, out_device


def check_image_pair(x1: Tensor, b1: bool, x2: Tensor, b2: bool) -> None:
    """Raise ValueError unless two :func:`prepare_images` results (tensor, was-batched) form a
    pair: both single or both batches, the same batch size and size, at least MIN_INPUT_SIZE."""
    if b1 != b2:
        raise ValueError(
            "image1 and image2 must both be single images or both be batches, got "
            f"{'a batch' if b1 else 'a single image'} and {'a batch' if b2 else 'a single image'}"
        )
    if x1.shape[0] != x2.shape[0]:
        raise ValueError(f"image1 and image2 must have the same batch size, got {x1.shape[0]} and {x2.shape[0]}")
    if x1.shape[-2:] != x2.shape[-2:]:
        raise ValueError(
            f"image1 and image2 must have the same size, got {x1.shape[-2]}x{x1.shape[-1]} and "
            f"{x2.shape[-2]}x{x2.shape[-1]} (H x W)"
        )
    h, w = x1.shape[-2:]
    if min(h, w) < MIN_INPUT_SIZE:
        raise ValueError(f"images must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, got {h}x{w} (H x W)")


def _is_grayscale(x: Tensor) -> Tensor:
    """bool ``(B,)``: R, G and B are equal at every pixel and the image is not uniform (a black or
    flat frame has no colour to tell)."""
    flat = x.flatten(2)
    equal = (flat[:, 0] == flat[:, 1]).all(dim=1) & (flat[:, 1] == flat[:, 2]).all(dim=1)
    textured = flat[:, 0].amax(dim=1) > flat[:, 0].amin(dim=1)
    return equal & textured


def check_colour_pair(x1: Tensor, x2: Tensor) -> None:
    """Raise ValueError when, in some pair ``k`` of two :func:`prepare_images` batches, one frame
    is grayscale (R = G = B everywhere, e.g. an ``L``-mode PNG read as RGB) and the other colour:
    the two would not match photometrically and the flow would be wrong without a word."""
    gray1, gray2 = _is_grayscale(x1), _is_grayscale(x2)
    uniform1 = x1.flatten(1).amax(dim=1) == x1.flatten(1).amin(dim=1)
    uniform2 = x2.flatten(1).amax(dim=1) == x2.flatten(1).amin(dim=1)
    mixed = (gray1 & ~gray2 & ~uniform2) | (gray2 & ~gray1 & ~uniform1)
    if mixed.any():
        k = int(mixed.nonzero()[0])
        at = f" (pair {k} of the batch)" if x1.shape[0] > 1 else ""
        which = ("image1", "image2") if bool(gray1[k]) else ("image2", "image1")
        raise ValueError(
            f"{which[0]} is grayscale (R = G = B) but {which[1]} is colour{at}: give two colour frames, or make "
            "both grayscale (PIL: im.convert('L').convert('RGB'))"
        )

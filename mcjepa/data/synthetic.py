"""Embedded synthetic data: textured shapes moving over a textured background.

Every scene is a stack of layers in depth order: a background filling the frame, then 2-5
shapes (discs, ellipses, rotated rectangles), each with its own procedural texture (a sum of
random coloured sinusoids) and its own translation between the two frames (sub-pixel, up to
``max_motion`` pixels). Both frames are rendered by evaluating the textures at the exact
continuous layer coordinates, so sub-pixel motion introduces no resampling blur, and the
ground truth follows from the geometry:

* ``flow`` (2, H, W), pixels, forward (frame 1 -> frame 2): the translation of the top layer at
  each pixel of frame 1, so ``mcjepa.ops.backward_warp(image2, flow) ~ image1`` wherever the
  pixel stays visible (the project's convention, torchvision's RAFT convention);
* ``occlusion`` (1, H, W), bool: True where the frame-1 pixel is not visible in frame 2, because
  a layer above it covers its new position or because it left the frame.

Everything is deterministic given the seed (numpy ``default_rng``) and vectorised: a 128x128 pair
takes a few milliseconds on a CPU. The ground truth is for evaluation only; training uses the
images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

__all__ = [
    "EXAMPLE_SEED",
    "SyntheticFlowDataset",
    "SyntheticImageDataset",
    "SyntheticPair",
    "example_pair",
    "render_image",
    "render_pair",
]

EXAMPLE_SEED = 20230721  # the built-in example pair shown by ``mcjepa-flow`` (the paper's arXiv date)
_SEED_STRIDE = 1_000_003  # dataset item i of a dataset seeded s renders scene s * _SEED_STRIDE + i
_NUM_WAVES = 10  # sinusoids per texture
_WAVELENGTHS = (6.0, 48.0)  # pixels, sampled log-uniformly
_TEXTURE_AMPLITUDE = 0.9  # summed amplitude of a texture's sinusoids, in [0, 1] intensity units
_SHAPE_KINDS = ("disc", "ellipse", "rectangle")


@dataclass(frozen=True)
class SyntheticPair:
    """One rendered frame pair and its ground truth.

    Attributes:
        image1: uint8 ``(3, H, W)``, frame 1.
        image2: uint8 ``(3, H, W)``, frame 2.
        flow: float32 ``(2, H, W)``, forward flow from frame 1 to frame 2 in pixels, (u, v).
        occlusion: bool ``(1, H, W)``, True where the frame-1 pixel is not visible in frame 2.
    """

    image1: Tensor
    image2: Tensor
    flow: Tensor
    occlusion: Tensor


@dataclass(frozen=True)
class _Texture:
    base: np.ndarray  # (3,) mean colour in [0, 1]
    freqs: np.ndarray  # (K, 2) angular frequency (wx, wy) in radians per pixel
    phases: np.ndarray  # (K,)
    colours: np.ndarray  # (K, 3) amplitude per channel

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Texture at the grid ``x`` (W,) by ``y`` (H,) of layer coordinates: float32 (3, H, W).

        Uses ``sin(a + b) = sin a cos b + cos a sin b`` so that only O(K (H + W)) sines are
        evaluated and the rest is two small matrix products.
        """
        a = self.freqs[:, :1] * x[None, :]  # (K, W)
        b = self.freqs[:, 1:] * y[None, :] + self.phases[:, None]  # (K, H)
        k, h, w = len(self.phases), len(y), len(x)
        cb = (self.colours[:, :, None] * np.cos(b)[:, None, :]).reshape(k, 3 * h)
        sb = (self.colours[:, :, None] * np.sin(b)[:, None, :]).reshape(k, 3 * h)
        out = cb.T @ np.sin(a) + sb.T @ np.cos(a)  # (3H, W)
        return out.reshape(3, h, w) + self.base[:, None, None]


@dataclass(frozen=True)
class _Shape:
    kind: str
    centre: np.ndarray  # (2,) (x, y) in frame 1, pixels
    half_axes: tuple[float, float]
    angle: float
    motion: np.ndarray  # (2,) (u, v) pixels
    texture: _Texture

    def covers(self, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        """Boolean support at layer coordinates ``(qx, qy)`` (relative to the shape's centre)."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        u = c * qx + s * qy
        v = -s * qx + c * qy
        a, b = self.half_axes
        if self.kind == "rectangle":
            return (np.abs(u) <= a) & (np.abs(v) <= b)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _random_texture(rng: np.random.Generator) -> _Texture:
    lo, hi = np.log(_WAVELENGTHS[0]), np.log(_WAVELENGTHS[1])
    wavelengths = np.exp(rng.uniform(lo, hi, _NUM_WAVES))
    directions = rng.uniform(0.0, np.pi, _NUM_WAVES)
    freqs = (2 * np.pi / wavelengths)[:, None] * np.stack((np.cos(directions), np.sin(directions)), axis=1)
    # more energy in the coarse waves; each wave has its own colour (with a luminance part)
    amps = np.sqrt(wavelengths / _WAVELENGTHS[1])
    amps *= _TEXTURE_AMPLITUDE / amps.sum()
    colours = 0.5 * rng.uniform(-1.0, 1.0, (_NUM_WAVES, 3)) + rng.choice([-0.5, 0.5], (_NUM_WAVES, 1))
    return _Texture(
        base=rng.uniform(0.15, 0.85, 3).astype(np.float32),
        freqs=freqs.astype(np.float32),
        phases=rng.uniform(0.0, 2 * np.pi, _NUM_WAVES).astype(np.float32),
        colours=(amps[:, None] * colours).astype(np.float32),
    )


def _random_motion(rng: np.random.Generator, max_motion: float) -> np.ndarray:
    """Uniform in the disc of radius ``max_motion`` pixels."""
    radius = max_motion * np.sqrt(rng.uniform())
    angle = rng.uniform(0.0, 2 * np.pi)
    return np.array([radius * np.cos(angle), radius * np.sin(angle)], dtype=np.float32)


def _random_scene(
    rng: np.random.Generator, size: tuple[int, int], num_shapes: tuple[int, int], max_motion: float
) -> tuple[_Texture, np.ndarray, list[_Shape]]:
    h, w = size
    bg_texture = _random_texture(rng)
    bg_motion = _random_motion(rng, max_motion)
    shapes = []
    for _ in range(int(rng.integers(num_shapes[0], num_shapes[1] + 1))):
        kind = _SHAPE_KINDS[int(rng.integers(len(_SHAPE_KINDS)))]
        r = float(rng.uniform(0.1, 0.3) * min(h, w))
        half_axes = (r, r) if kind == "disc" else (r, r * float(rng.uniform(0.4, 1.0)))
        shapes.append(
            _Shape(
                kind=kind,
                centre=np.array([rng.uniform(0, w), rng.uniform(0, h)], dtype=np.float32),
                half_axes=half_axes,
                angle=float(rng.uniform(0.0, np.pi)),
                motion=_random_motion(rng, max_motion),
                texture=_random_texture(rng),
            )
        )
    return bg_texture, bg_motion, shapes


def _to_uint8(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def _check_args(size: tuple[int, int], num_shapes: tuple[int, int], max_motion: float) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with positive entries, got {size!r}")
    if len(num_shapes) != 2 or not 0 <= num_shapes[0] <= num_shapes[1]:
        raise ValueError(f"num_shapes must be a (min, max) range with 0 <= min <= max, got {num_shapes!r}")
    if not (np.isfinite(max_motion) and max_motion >= 0):
        raise ValueError(f"max_motion must be a finite number of pixels >= 0, got {max_motion!r}")
    return int(size[0]), int(size[1])


def render_pair(
    seed: int, size: tuple[int, int] = (128, 128), num_shapes: tuple[int, int] = (2, 5), max_motion: float = 4.0
) -> SyntheticPair:
    """Render the frame pair of scene ``seed``.

    Args:
        seed: scene seed; the same seed always gives the same pair.
        size: ``(H, W)`` in pixels.
        num_shapes: inclusive ``(min, max)`` number of moving shapes over the background.
        max_motion: largest translation of any layer between the frames, in pixels.

    Returns:
        A :class:`SyntheticPair` (uint8 frames, float32 flow in pixels, bool occlusion).
    """
    h, w = _check_args(size, num_shapes, max_motion)
    rng = np.random.default_rng(seed)
    bg_texture, bg_motion, shapes = _random_scene(rng, (h, w), num_shapes, max_motion)
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)

    frames = []
    for t in (0.0, 1.0):
        # layer coordinates: a point at layer coordinate q sits at q + offset (+ motion in frame 2)
        image = bg_texture.evaluate(xs - t * bg_motion[0], ys - t * bg_motion[1])
        for shape in shapes:
            ox, oy = shape.centre + t * shape.motion
            mask = shape.covers(xs[None, :] - ox, ys[:, None] - oy)
            if mask.any():
                image = np.where(mask[None], shape.texture.evaluate(xs - ox, ys - oy), image)
        frames.append(image)

    # top layer of every frame-1 pixel (0 = background, i = shapes[i - 1]) and its motion
    motions = np.stack([bg_motion] + [s.motion for s in shapes])  # (L, 2)
    top = np.zeros((h, w), dtype=np.int64)
    for i, shape in enumerate(shapes, start=1):
        top[shape.covers(xs[None, :] - shape.centre[0], ys[:, None] - shape.centre[1])] = i
    flow = motions[top].transpose(2, 0, 1)  # (2, H, W)

    # visible in frame 2 iff the new position is inside the frame and no higher layer covers it
    x2 = xs[None, :] + flow[0]
    y2 = ys[:, None] + flow[1]
    occluded = (x2 < 0) | (x2 > w - 1) | (y2 < 0) | (y2 > h - 1)
    for i, shape in enumerate(shapes, start=1):
        ox, oy = shape.centre + shape.motion
        occluded |= (top < i) & shape.covers(x2 - ox, y2 - oy)

    return SyntheticPair(
        image1=_to_uint8(frames[0]),
        image2=_to_uint8(frames[1]),
        flow=torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)),
        occlusion=torch.from_numpy(occluded[None]),
    )


def render_image(seed: int, size: tuple[int, int] = (128, 128), num_shapes: tuple[int, int] = (3, 8)) -> Tensor:
    """Render one textured image (a single frame of a static scene): uint8 ``(3, H, W)``."""
    h, w = _check_args(size, num_shapes, 0.0)
    rng = np.random.default_rng((seed, 1))  # a stream distinct from render_pair(seed)
    bg_texture, _, shapes = _random_scene(rng, (h, w), num_shapes, 0.0)
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    image = bg_texture.evaluate(xs, ys)
    for shape in shapes:
        ox, oy = shape.centre
        mask = shape.covers(xs[None, :] - ox, ys[:, None] - oy)
        if mask.any():
            image = np.where(mask[None], shape.texture.evaluate(xs - ox, ys - oy), image)
    return _to_uint8(image)


def example_pair(size: tuple[int, int] = (96, 128)) -> SyntheticPair:
    """The fixed built-in example pair (4 shapes, motion up to 4 px) used by ``mcjepa-flow``."""
    return render_pair(EXAMPLE_SEED, size=size, num_shapes=(4, 4), max_motion=4.0)


def _check_index(index: int, length: int) -> int:
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    return index % length


class SyntheticFlowDataset(Dataset):
    """``num_pairs`` synthetic frame pairs with ground truth, rendered on the fly.

    Item ``i`` renders scene ``seed * 1_000_003 + i`` with :func:`render_pair` and returns a dict:
    ``image1``, ``image2``: float32 ``(3, H, W)`` in [0, 1]; ``flow``: float32 ``(2, H, W)``
    pixels; ``occlusion``: bool ``(1, H, W)``. Training should use only the images.
    """

    def __init__(
        self,
        num_pairs: int,
        size: tuple[int, int] = (128, 128),
        seed: int = 0,
        max_motion: float = 4.0,
        num_shapes: tuple[int, int] = (2, 5),
    ) -> None:
        if num_pairs < 0:
            raise ValueError(f"num_pairs must be >= 0, got {num_pairs}")
        _check_args(size, num_shapes, max_motion)
        self.num_pairs = int(num_pairs)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.max_motion = float(max_motion)
        self.num_shapes = (int(num_shapes[0]), int(num_shapes[1]))

    def __len__(self) -> int:
        return self.num_pairs

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        i = _check_index(index, self.num_pairs)
        pair = render_pair(self.seed * _SEED_STRIDE + i, self.size, self.num_shapes, self.max_motion)
        return {
            "image1": pair.image1.float() / 255.0,
            "image2": pair.image2.float() / 255.0,
            "flow": pair.flow,
            "occlusion": pair.occlusion,
        }


class SyntheticImageDataset(Dataset):
    """``num_images`` textured images for the content stream, rendered on the fly.

    Item ``i`` is :func:`render_image` of scene ``seed * 1_000_003 + i``, returned as a uint8
    ``(3, H, W)`` :class:`torchvision.tv_tensors.Image`, so torchvision transforms v2 (random
    resized crop, colour jitter, ...) apply to it directly; ``transform`` (optional) is applied
    to it and its result returned.
    """

    def __init__(self, num_images: int, size: tuple[int, int] = (128, 128), seed: int = 0, transform=None) -> None:
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        _check_args(size, (3, 8), 0.0)
        self.num_images = int(num_images)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.transform = transform

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int):
        i = _check_index(index, self.num_images)
        image = tv_tensors.Image(render_image(self.seed * _SEED_STRIDE + i, self.size))
        return self.transform(image) if self.transform is not None else image

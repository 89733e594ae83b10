"""Embedded synthetic data: textured shapes moving over a textured background.

Every scene is a stack of layers in depth order: a background filling the frame, then 2-5
shapes (discs, ellipses, rotated rectangles), each with its own procedural texture (a sum of
random coloured sinusoids). Between the two frames the background moves under a camera
homography and every shape under its own similarity; frame 2's brightness changes (how much:
:mod:`mcjepa.data.scene_motion`). Both frames are rendered by evaluating the textures at exact
continuous layer coordinates (no resampling blur), and the ground truth follows from the geometry:

* ``flow`` (2, H, W), pixels, forward (frame 1 -> frame 2): where the top layer's point at each
  frame-1 pixel is in frame 2, minus that pixel, so ``mcjepa.ops.backward_warp(image2, flow) ~
  image1`` wherever the pixel stays visible, up to the brightness change (the project's
  convention, torchvision's RAFT convention);
* ``occlusion`` (1, H, W), bool: True where the frame-1 pixel is not visible in frame 2, because
  a layer above it covers its new position or because it left the frame.

Everything is deterministic given its seed (numpy ``default_rng``) and vectorised. The ground
truth is for evaluation only; training uses the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mcjepa.data.scene_motion import (  # re-exported
    MOTION_PRESETS,
    SceneMotion,
    camera_homography,
    random_brightness,
    random_similarity,
    scene_motion,
    translate,
)

__all__ = [
    "EXAMPLE_SEED",
    "SyntheticFlowDataset",
    "SyntheticImageDataset",
    "SyntheticPair",
    "MOTION_PRESETS",
    "SceneMotion",
    "Texture",
    "TextureSource",
    "scene_motion",
    "example_pair",
    "render_image",
    "render_pair",
]

EXAMPLE_SEED = 20230721  # the built-in example pair shown by ``mcjepa-flow`` (the paper's arXiv date)
_SEED_STRIDE = 1_000_003  # dataset item i of a dataset seeded s renders scene s * _SEED_STRIDE + i
_NUM_WAVES = 10  # sinusoids per texture
_WAVELENGTHS = (6.0, 48.0)  # pixels, sampled log-uniformly
_TEXTURE_AMPLITUDE = 0.9  # summed amplitude of a texture's sinusoids, in [0, 1] intensity units
_SHAPE_KINDS = ("disc", "ellipse", "rectangle", "triangle", "cross", "ring", "star")
# the classes of SyntheticShapeDataset (labelled, for content probes): one silhouette each
SHAPE_CLASSES = ("disc", "rectangle", "triangle", "cross", "ring", "star")


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

    def evaluate_affine(self, inv: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Texture on the pixel grid ``xs`` (W,) by ``ys`` (H,) of a layer whose layer coordinates
        are the affine map ``inv`` (3x3, last row 0 0 1) of the pixels: float32 (3, H, W).

        Each wave stays a plane wave in pixel coordinates, ``sin(a x + b y + c)``, and
        ``sin(u + v) = sin u cos v + cos u sin v`` leaves O(K (H + W)) sines and two small
        matrix products."""
        fx, fy = self.freqs[:, 0].astype(np.float64), self.freqs[:, 1].astype(np.float64)
        a = fx * inv[0, 0] + fy * inv[1, 0]
        b = fx * inv[0, 1] + fy * inv[1, 1]
        c = fx * inv[0, 2] + fy * inv[1, 2] + self.phases
        ax = (a[:, None] * xs[None, :]).astype(np.float32)  # (K, W)
        by = (b[:, None] * ys[None, :] + c[:, None]).astype(np.float32)  # (K, H)
        k, h, w = len(c), len(ys), len(xs)
        cb = (self.colours[:, :, None] * np.cos(by)[:, None, :]).reshape(k, 3 * h)
        sb = (self.colours[:, :, None] * np.sin(by)[:, None, :]).reshape(k, 3 * h)
        out = cb.T @ np.sin(ax) + sb.T @ np.cos(ax)  # (3H, W)
        return out.reshape(3, h, w) + self.base[:, None, None]

    def evaluate_at(self, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        """Texture at arbitrary layer coordinates ``(qx, qy)``, two (H, W) arrays: (3, H, W)."""
        qx, qy = qx.astype(np.float32), qy.astype(np.float32)  # float32: ~1e-5 of a wave's phase
        arg = self.freqs[:, 0, None, None] * qx + self.freqs[:, 1, None, None] * qy + self.phases[:, None, None]
        out = np.tensordot(self.colours.T, np.sin(arg, out=arg), axes=1)
        return out + self.base[:, None, None]


@dataclass(frozen=True)
class _Shape:
    """A shape's support in its layer coordinates (centred on the shape)."""

    kind: str
    half_axes: tuple[float, float]
    angle: float

    def covers(self, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        """Boolean support at layer coordinates ``(qx, qy)``."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        u = c * qx + s * qy
        v = -s * qx + c * qy
        a, b = self.half_axes
        kind = self.kind
        if kind == "rectangle":
            return (np.abs(u) <= a) & (np.abs(v) <= b)
        if kind in ("disc", "ellipse"):
            return (u / a) ** 2 + (v / b) ** 2 <= 1.0
        v = v * (a / b)  # the other kinds: size a, stretched by b / a along v
        r2 = u**2 + v**2
        if kind == "ring":
            return (r2 <= a**2) & (r2 >= (0.55 * a) ** 2)
        if kind == "cross":
            arm = a / 3.0
            return ((np.abs(u) <= a) & (np.abs(v) <= arm)) | ((np.abs(u) <= arm) & (np.abs(v) <= a))
        phi = np.arctan2(v, u)
        if kind == "star":
            return np.sqrt(r2) <= a * (0.6 + 0.4 * np.cos(5.0 * phi))
        # triangle: inside the three half-planes of an equilateral triangle of circumradius a
        inside = np.ones(np.broadcast_shapes(u.shape, v.shape), dtype=bool)
        for k in range(3):
            t = 2.0 * np.pi * k / 3.0
            inside &= u * np.cos(t) + v * np.sin(t) <= 0.5 * a
        return inside


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


@dataclass(frozen=True)
class _Layer:
    """A textured layer; ``to_frame[t]`` maps layer coordinates to frame-t pixels (3x3)."""

    texture: Texture
    to_frame: tuple[np.ndarray, np.ndarray]
    shape: _Shape | None = None  # None: the background, which fills the frame

    def from_frame(self, t: int) -> np.ndarray:
        """3x3 map from frame-t pixels to layer coordinates (the inverse of ``to_frame[t]``)."""
        return np.linalg.inv(self.to_frame[t])

    def layer_coords(self, t: int, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Layer coordinates of the frame-t pixels ``(px, py)`` (arrays of one shape)."""
        inv = self.from_frame(t)
        w = inv[2, 0] * px + inv[2, 1] * py + inv[2, 2]
        return (inv[0, 0] * px + inv[0, 1] * py + inv[0, 2]) / w, (inv[1, 0] * px + inv[1, 1] * py + inv[1, 2]) / w

    def covers(self, t: int, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        if self.shape is None:
            return np.ones(np.broadcast_shapes(px.shape, py.shape), dtype=bool)
        return self.shape.covers(*self.layer_coords(t, px, py))

    def frame1_to_frame2(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the frame-1 pixels ``(px, py)`` of this layer are in frame 2."""
        m = self.to_frame[1] @ np.linalg.inv(self.to_frame[0])
        w = m[2, 0] * px + m[2, 1] * py + m[2, 2]
        return (m[0, 0] * px + m[0, 1] * py + m[0, 2]) / w, (m[1, 0] * px + m[1, 1] * py + m[1, 2]) / w


class Texture(Protocol):
    """What a layer's texture must provide (the procedural one here, or
    :class:`mcjepa.data.real_texture.PhotoTexture`)."""

    def evaluate_affine(self, inv: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray: ...

    def evaluate_at(self, qx: np.ndarray, qy: np.ndarray) -> np.ndarray: ...


class TextureSource(Protocol):
    """Draws a layer's texture: ``source(rng, frame_size, radius)`` with ``radius`` None for the
    background (layer coordinates = frame-1 pixels) and a shape's size in pixels otherwise (layer
    coordinates centred on the shape)."""

    def __call__(self, rng: np.random.Generator, frame_size: tuple[int, int], radius: float | None) -> Texture: ...


def _procedural(rng: np.random.Generator, frame_size: tuple[int, int], radius: float | None) -> Texture:
    return _random_texture(rng)


def _random_scene(
    rng: np.random.Generator,
    size: tuple[int, int],
    num_shapes: tuple[int, int],
    motion: SceneMotion,
    textures: TextureSource | None = None,
) -> list[_Layer]:
    """Background first, then the shapes in depth order (the last is on top)."""
    h, w = size
    identity = np.eye(3)
    textures = textures or _procedural
    layers = [_Layer(textures(rng, size, None), (identity, camera_homography(rng, size, motion)))]
    for _ in range(int(rng.integers(num_shapes[0], num_shapes[1] + 1))):
        kind = _SHAPE_KINDS[int(rng.integers(len(_SHAPE_KINDS)))]
        r = float(rng.uniform(0.1, 0.3) * min(h, w))
        half_axes = (r, r) if kind == "disc" else (r, r * float(rng.uniform(0.4, 1.0)))
        shape = _Shape(kind=kind, half_axes=half_axes, angle=float(rng.uniform(0.0, np.pi)))
        centre = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        move = random_similarity(rng, motion.translation, motion.rotation_deg, motion.scale)
        # frame 2: rotate and scale about the shape's centre, then translate
        layers.append(_Layer(textures(rng, size, r), (translate(centre), translate(centre) @ move), shape))
    return layers


def _to_uint8(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def _check_args(size: tuple[int, int], num_shapes: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with positive entries, got {size!r}")
    if len(num_shapes) != 2 or not 0 <= num_shapes[0] <= num_shapes[1]:
        raise ValueError(f"num_shapes must be a (min, max) range with 0 <= min <= max, got {num_shapes!r}")
    return int(size[0]), int(size[1])


def _resolve_motion(motion: str | SceneMotion, size: tuple[int, int], max_motion: float | None) -> SceneMotion:
    if isinstance(motion, SceneMotion):
        if max_motion is not None:
            raise ValueError("pass max_motion with a preset name, or set it inside the SceneMotion")
        return motion
    return scene_motion(motion, size, max_motion)


def _render(layers: list[_Layer], t: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    px, py = np.meshgrid(xs, ys)
    image = None
    for layer in layers:
        inv = layer.from_frame(t)
        affine = np.allclose(inv[2], (0.0, 0.0, 1.0), rtol=0.0, atol=1e-15)
        # full-grid layer coordinates only where needed: a homography's texture, a shape's support
        qx, qy = layer.layer_coords(t, px, py) if (layer.shape is not None or not affine) else (None, None)
        if affine:
            colour = layer.texture.evaluate_affine(inv, xs, ys)  # separable: much faster
        else:
            colour = layer.texture.evaluate_at(qx, qy)  # the camera's homography
        if layer.shape is None:
            image = colour
        else:
            image = np.where(layer.shape.covers(qx, qy)[None], colour, image)
    return image


def render_pair(
    seed: int,
    size: tuple[int, int] = (128, 128),
    num_shapes: tuple[int, int] = (2, 5),
    max_motion: float | None = None,
    motion: str | SceneMotion = "rich",
    textures: TextureSource | None = None,
) -> SyntheticPair:
    """Render the frame pair of scene ``seed``.

    Args:
        seed: scene seed; the same seed (and arguments) always gives the same pair.
        size: ``(H, W)`` in pixels.
        num_shapes: inclusive ``(min, max)`` number of moving shapes over the background.
        max_motion: largest shape translation in pixels (default: the preset's; see
            :func:`scene_motion`).
        motion: a preset name (``"rich"``: camera homography, rotating and scaling shapes,
            brightness change; ``"translation"``: the original translation-only set) or a
            :class:`SceneMotion`.
        textures: where layer textures come from (default: procedural sinusoids; photos:
            :class:`mcjepa.data.real_texture.PhotoTextures`).

    Returns:
        A :class:`SyntheticPair` (uint8 frames, float32 flow in pixels, bool occlusion).
    """
    h, w = _check_args(size, num_shapes)
    spec = _resolve_motion(motion, (h, w), max_motion)
    rng = np.random.default_rng(seed)
    layers = _random_scene(rng, (h, w), num_shapes, spec, textures)
    gain, bias = random_brightness(rng, spec.brightness)
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    image1 = _render(layers, 0, xs, ys)
    image2 = _render(layers, 1, xs, ys) * gain + bias

    # top layer of every frame-1 pixel (0 = background) and where that point is in frame 2
    px, py = np.meshgrid(xs, ys)
    top = np.zeros((h, w), dtype=np.int64)
    for i, layer in enumerate(layers[1:], start=1):
        top[layer.covers(0, px, py)] = i
    x2, y2 = np.empty((h, w)), np.empty((h, w))
    for i, layer in enumerate(layers):
        sel = top == i
        if sel.any():
            x2[sel], y2[sel] = layer.frame1_to_frame2(px[sel], py[sel])
    flow = np.stack((x2 - px, y2 - py))

    # visible in frame 2 iff the new position is inside the frame and no higher layer covers it
    occluded = (x2 < 0) | (x2 > w - 1) | (y2 < 0) | (y2 > h - 1)
    for i, layer in enumerate(layers[1:], start=1):
        occluded |= (top < i) & layer.covers(1, x2, y2)

    return SyntheticPair(
        image1=_to_uint8(image1),
        image2=_to_uint8(image2),
        flow=torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)),
        occlusion=torch.from_numpy(occluded[None]),
    )


def render_image(
    seed: int,
    size: tuple[int, int] = (128, 128),
    num_shapes: tuple[int, int] = (3, 8),
    textures: TextureSource | None = None,
) -> Tensor:
    """Render one textured image (a single frame of a static scene): uint8 ``(3, H, W)``.
    ``textures``: as in :func:`render_pair` (photos make a collage of photo cut-outs)."""
    h, w = _check_args(size, num_shapes)
    rng = np.random.default_rng((seed, 1))  # a stream distinct from render_pair(seed)
    layers = _random_scene(rng, (h, w), num_shapes, _STATIC, textures)
    return _to_uint8(_render(layers, 0, np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)))


_STATIC = SceneMotion(translation=0.0, camera_translation=0.0)


def example_pair(size: tuple[int, int] = (96, 128)) -> SyntheticPair:
    """The fixed built-in example pair (4 shapes, the ``"rich"`` motion preset) used by ``mcjepa-flow``."""
    return render_pair(EXAMPLE_SEED, size=size, num_shapes=(4, 4))


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
        max_motion: float | None = None,
        num_shapes: tuple[int, int] = (2, 5),
        motion: str | SceneMotion = "rich",
        textures: TextureSource | None = None,
    ) -> None:
        if num_pairs < 0:
            raise ValueError(f"num_pairs must be >= 0, got {num_pairs}")
        h, w = _check_args(size, num_shapes)
        self.num_pairs = int(num_pairs)
        self.size = (h, w)
        self.seed = int(seed)
        self.motion = _resolve_motion(motion, (h, w), max_motion)
        self.num_shapes = (int(num_shapes[0]), int(num_shapes[1]))
        self.textures = textures

    def __len__(self) -> int:
        return self.num_pairs

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        i = _check_index(index, self.num_pairs)
        pair = render_pair(
            self.seed * _SEED_STRIDE + i, self.size, self.num_shapes, motion=self.motion, textures=self.textures
        )
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
    to it and its result returned. Rendered images are kept in memory (a training run draws each
    one many times; 2,048 images of 96x96 take 57 MB).
    """

    def __init__(
        self,
        num_images: int,
        size: tuple[int, int] = (128, 128),
        seed: int = 0,
        transform=None,
        textures: TextureSource | None = None,
    ) -> None:
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        _check_args(size, (3, 8))
        self.num_images = int(num_images)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.transform = transform
        self.textures = textures
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int):
        i = _check_index(index, self.num_images)
        image = self._cache.get(i)
        if image is None:  # rendered once, then kept (uint8: 27 KB at 96x96)
            image = self._cache[i] = render_image(self.seed * _SEED_STRIDE + i, self.size, textures=self.textures)
        image = tv_tensors.Image(image)
        return self.transform(image) if self.transform is not None else image


def render_shape_image(seed: int, label: int, size: tuple[int, int] = (64, 64)) -> Tensor:
    """Render one labelled image: a single shape of class ``SHAPE_CLASSES[label]`` (random
    texture, size, aspect, rotation and position) over a textured background: uint8 ``(3, H, W)``."""
    h, w = _check_args(size, (1, 1))
    if not 0 <= label < len(SHAPE_CLASSES):
        raise ValueError(f"label must be in [0, {len(SHAPE_CLASSES) - 1}], got {label}")
    rng = np.random.default_rng((seed, 2))
    r = float(rng.uniform(0.25, 0.4) * min(h, w))
    shape = _Shape(
        kind=SHAPE_CLASSES[label], half_axes=(r, r * float(rng.uniform(0.7, 1.0))), angle=rng.uniform(0, np.pi)
    )
    centre = np.array([w, h]) * (0.5 + rng.uniform(-0.12, 0.12, 2))
    identity = np.eye(3)
    layers = [
        _Layer(_random_texture(rng), (identity, identity)),
        _Layer(_random_texture(rng), (translate(centre), translate(centre)), shape),
    ]
    return _to_uint8(_render(layers, 0, np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)))


class SyntheticShapeDataset(Dataset):
    """``num_images`` labelled images for content probes: item ``i`` is ``(image, label)`` with
    ``label = i % len(SHAPE_CLASSES)`` (balanced) and ``image`` a uint8 ``(3, H, W)`` tensor of
    :func:`render_shape_image` for scene ``seed * 1_000_003 + i``. Classes: :data:`SHAPE_CLASSES`."""

    classes = SHAPE_CLASSES

    def __init__(self, num_images: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> None:
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        self.num_images = int(num_images)
        self.size = _check_args(size, (1, 1))
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        i = _check_index(index, self.num_images)
        label = i % len(SHAPE_CLASSES)
        return render_shape_image(self.seed * _SEED_STRIDE + i, label, self.size), label

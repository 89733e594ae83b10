"""How the layers of a synthetic scene move between its two frames: :class:`SceneMotion` (the
maxima), its presets (:func:`scene_motion`), and the random similarity transforms and camera
homography that :mod:`mcjepa.data.synthetic` draws from them (3x3 matrices on pixel coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "MOTION_PRESETS",
    "SceneMotion",
    "camera_homography",
    "random_brightness",
    "random_similarity",
    "random_translation",
    "scene_motion",
    "similarity",
    "translate",
]


@dataclass(frozen=True)
class SceneMotion:
    """How the layers of a synthetic scene move between the two frames (all maxima; each scene
    draws its values uniformly, signs included).

    Attributes:
        translation: largest translation of a foreground shape, pixels (uniform in the disc).
        rotation_deg: largest rotation of a shape about its own centre, degrees.
        scale: largest relative size change of a shape: the factor is log-uniform in
            ``[1 / (1 + scale), 1 + scale]``.
        camera_translation: largest translation of the background (the camera), pixels.
        camera_rotation_deg, camera_scale: rotation and zoom of the background about the image
            centre.
        camera_perspective: projective part of the background's homography: the homogeneous
            weight changes by up to this fraction at the image border (0 = affine camera).
        brightness: frame 2's colours become ``gain * c + bias`` with a global gain in
            ``[1 - b, 1 + b]`` (plus up to ``b / 4`` per channel) and a bias in ``[-b / 2, b / 2]``;
            the flow is unchanged, so brightness constancy no longer holds exactly.
    """

    translation: float = 4.0
    rotation_deg: float = 0.0
    scale: float = 0.0
    camera_translation: float = 4.0
    camera_rotation_deg: float = 0.0
    camera_scale: float = 0.0
    camera_perspective: float = 0.0
    brightness: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"SceneMotion.{f.name} must be a finite number >= 0, got {value!r}")
        if self.brightness >= 1 or self.camera_perspective >= 0.5 or self.scale >= 1 or self.camera_scale >= 1:
            raise ValueError("SceneMotion: brightness, scale and camera_scale must be < 1, camera_perspective < 0.5")


MOTION_PRESETS = ("rich", "translation")


def scene_motion(
    preset: str = "rich", size: tuple[int, int] = (128, 128), max_motion: float | None = None
) -> SceneMotion:
    """Return a preset :class:`SceneMotion` for frames of ``size = (H, W)``.

    * ``"rich"`` (the default everywhere): what real footage has. Shapes translate by up to 16%
      of the shorter image side (15 px at 96x128, 41 px at 256x512), rotate by up to 15 degrees
      and scale by up to 12%; the camera translates by up to 10% of the shorter side, rotates by
      up to 4 degrees, zooms by up to 5% and tilts (homography, 2%); frame 2's brightness changes
      by up to 10%. Motion grows with the image, as it does when footage is filmed at a higher
      resolution, so the coarse pyramid levels matter at every size (for scale: FlyingChairs'
      mean motion is about 3% of its shorter side, KITTI's largest reach 40%).
    * ``"translation"``: the original easy set: every layer, background included, translates
      by up to 4 px; nothing else changes between the frames.

    ``max_motion`` (pixels) replaces the largest shape translation; the camera's becomes 5/8 of
    it in the rich preset and equal to it in the translation preset.
    """
    if preset not in MOTION_PRESETS:
        raise ValueError(f"motion must be one of {MOTION_PRESETS} or a SceneMotion, got {preset!r}")
    if max_motion is not None and not (np.isfinite(max_motion) and max_motion >= 0):
        raise ValueError(f"max_motion must be a finite number of pixels >= 0, got {max_motion!r}")
    if preset == "translation":
        m = 4.0 if max_motion is None else float(max_motion)
        return SceneMotion(translation=m, camera_translation=m)
    short = float(min(size))
    m = 0.16 * short if max_motion is None else float(max_motion)
    return SceneMotion(
        translation=m,
        rotation_deg=15.0,
        scale=0.12,
        camera_translation=0.625 * m,
        camera_rotation_deg=4.0,
        camera_scale=0.05,
        camera_perspective=0.02,
        brightness=0.1,
    )


def random_translation(rng: np.random.Generator, max_motion: float) -> np.ndarray:
    """Uniform in the disc of radius ``max_motion`` pixels."""
    radius = max_motion * np.sqrt(rng.uniform())
    angle = rng.uniform(0.0, 2 * np.pi)
    return np.array([radius * np.cos(angle), radius * np.sin(angle)])


def similarity(angle_deg: float, log_scale: float, translation: np.ndarray) -> np.ndarray:
    """3x3 matrix of ``x -> s R x + t``."""
    a, sc = np.deg2rad(angle_deg), np.exp(log_scale)
    c, s = sc * np.cos(a), sc * np.sin(a)
    return np.array([[c, -s, translation[0]], [s, c, translation[1]], [0.0, 0.0, 1.0]])


def translate(t: np.ndarray) -> np.ndarray:
    return similarity(0.0, 0.0, t)


def random_similarity(rng: np.random.Generator, max_t: float, max_deg: float, max_scale: float) -> np.ndarray:
    translation = random_translation(rng, max_t)
    angle = rng.uniform(-max_deg, max_deg) if max_deg > 0 else 0.0
    log_s = rng.uniform(-np.log1p(max_scale), np.log1p(max_scale)) if max_scale > 0 else 0.0
    return similarity(angle, log_s, translation)


def camera_homography(rng: np.random.Generator, size: tuple[int, int], motion: SceneMotion) -> np.ndarray:
    """The background's frame-2 homography about the image centre (frame 1 is the identity)."""
    h, w = size
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    a = random_similarity(rng, motion.camera_translation, motion.camera_rotation_deg, motion.camera_scale)
    if motion.camera_perspective > 0:
        p = motion.camera_perspective
        a[2, 0] = rng.uniform(-p, p) / max(centre[0], 1.0)
        a[2, 1] = rng.uniform(-p, p) / max(centre[1], 1.0)
    return translate(centre) @ a @ translate(-centre)


def random_brightness(rng: np.random.Generator, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame 2's colour change ``gain * c + bias`` for ``SceneMotion.brightness = b``: per-channel gains and
    one bias, each ``(3, 1, 1)`` (identity when ``b <= 0``)."""
    if b <= 0:
        return np.ones((3, 1, 1)), np.zeros((3, 1, 1))
    gain = 1.0 + rng.uniform(-b, b) + rng.uniform(-b / 4, b / 4, 3)
    bias = rng.uniform(-b / 2, b / 2)
    return gain.reshape(3, 1, 1), np.full((3, 1, 1), bias)

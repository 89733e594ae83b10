"""Media files: which files are images and videos, PyAV for video, and reading images as 8-bit RGB.

:data:`IMAGE_EXTENSIONS` (torchvision's list) and :data:`VIDEO_EXTENSIONS` are the one list of each
that every reader uses, matched case-insensitively; :func:`require_av` is the one PyAV import.

Pillow opens a 16-bit grayscale PNG in mode ``I;16`` (``I`` in older versions), and
``convert("RGB")`` then clips every value above 255, so most pixels of such a frame come out
white. :func:`to_rgb` scales 16-bit values from [0, 65535] to [0, 255] instead (16-bit RGB PNGs
Pillow already reduces to their high bytes) and refuses floating-point images, whose range it
cannot know. Every place that turns an image file into an RGB frame goes through it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

__all__ = [
    "AV_INSTALL_HINT",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "is_image_file",
    "read_rgb",
    "require_av",
    "to_rgb",
]

IMAGE_EXTENSIONS: tuple[str, ...] = tuple(IMG_EXTENSIONS)
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ogv", ".ts")
AV_INSTALL_HINT = 'pip install "mcjepa[video]" (or pip install av)'


def is_image_file(path: str | os.PathLike) -> bool:
    """True when ``path`` has an image extension (:data:`IMAGE_EXTENSIONS`, any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def require_av():
    """Import and return PyAV, or raise ImportError saying how to install it."""
    try:
        import av
    except ImportError:
        raise ImportError(f"reading and writing video files needs PyAV: {AV_INSTALL_HINT}") from None
    return av


def to_rgb(image: Image.Image, source: str = "image") -> Image.Image:
    """Return ``image`` as an 8-bit RGB PIL image (the same object when it already is one).

    16-bit (``I;16*``) and 32-bit integer (``I``, values within 0..65535) images are scaled from
    [0, 65535] to [0, 255].

    Raises:
        ValueError: a floating-point image (mode ``F``), or an ``I`` image with values outside
            0..65535; the message starts with ``source``.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"{source}: a 32-bit integer image with values in [{values.min()}, {values.max()}]; "
                "expected an 8- or 16-bit image"
            )
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")
    if mode == "F":
        raise ValueError(
            f"{source}: a floating-point image (Pillow mode F) has no known value range; "
            "save the frame as an 8- or 16-bit PNG"
        )
    return image.convert("RGB")


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an 8-bit RGB PIL image (see :func:`to_rgb`).

    Raises:
        FileNotFoundError: no such file. IsADirectoryError: ``path`` is a folder.
        OSError: not an image Pillow can read. ValueError: see :func:`to_rgb`.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not an image file")
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(p) as im:
            im.load()
            rgb = to_rgb(im, str(path))
            return rgb.copy() if rgb is im else rgb
    except (UnidentifiedImageError, OSError) as err:
        raise OSError(f"{path}: cannot read it as an image ({err})") from None

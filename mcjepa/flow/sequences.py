"""Frame sequences read one frame at a time: a video file (PyAV) or a folder of images.

:func:`open_sequence` picks the reader; :class:`FrameFolder` checks every image's header up front
so that a bad file is refused before any flow is computed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from mcjepa.utils.media import IMAGE_EXTENSIONS, is_image_file, read_rgb, require_av

__all__ = ["FrameFolder", "FrameSequence", "VideoFile", "open_sequence"]

# Pillow modes of single-channel images (read as RGB with R = G = B)
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


class FrameSequence:
    """Frames read one at a time. ``height``, ``width``: the frame size; ``num_frames``: the
    count when known (a video's container may not say); ``fps``: the frame rate when known."""

    path: Path
    height: int
    width: int
    num_frames: int | None
    fps: Fraction | None

    def frames(self, start: int = 0) -> Iterator[Tensor]:
        """Yield the frames from number ``start`` on, in order, as uint8 ``(3, H, W)``."""
        raise NotImplementedError

    def describe(self) -> str:
        count = f"{self.num_frames} frames" if self.num_frames is not None else "frame count unknown"
        rate = f", {float(self.fps):.4g} fps" if self.fps else ""
        return f"{self.path} ({self.width}x{self.height}, {count}{rate})"


class FrameFolder(FrameSequence):
    """The images directly inside ``path`` (not in sub-folders), sorted by file name.

    Every image's header is read here, so an unreadable file or one of another size is refused
    before any flow is computed; pixels are read one frame at a time by :meth:`frames`.

    Raises:
        FileNotFoundError: not a folder. ValueError: fewer than two images, images of
            different sizes, or grayscale and colour images mixed. OSError: an image Pillow
            cannot open.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{path}: no such folder")
        self.files = sorted(p for p in self.path.iterdir() if p.is_file() and is_image_file(p))
        if len(self.files) < 2:
            raise ValueError(
                f"{path}: a frame folder needs at least 2 images, found {len(self.files)} "
                f"(looked for {', '.join(IMAGE_EXTENSIONS)}, sorted by name)"
            )
        sizes, kinds = {}, {}
        for f in self.files:
            try:
                with Image.open(f) as im:
                    sizes.setdefault(im.size, f)
                    kinds.setdefault("grayscale" if im.mode in _GRAY_MODES else "colour", f)
            except (UnidentifiedImageError, OSError) as err:
                raise OSError(f"{f}: cannot read it as an image ({err})") from None
            if len(kinds) > 1:
                raise ValueError(
                    f"{path}: the frames mix grayscale ({kinds['grayscale'].name}) and colour "
                    f"({kinds['colour'].name}) images; convert them all to one kind"
                )
            if len(sizes) > 1:
                (w0, h0), first = next(iter(sizes.items()))
                raise ValueError(
                    f"{path}: every frame must have the same size, but {first.name} is {w0}x{h0} and "
                    f"{f.name} is {im.size[0]}x{im.size[1]} (W x H)"
                )
        (self.width, self.height), _ = next(iter(sizes.items()))
        self.num_frames = len(self.files)
        self.fps = Fraction(fps).limit_denominator(1001) if fps else None

    def frames(self, start: int = 0) -> Iterator[Tensor]:
        for f in self.files[start:]:
            image = read_rgb(f)
            if image.size != (self.width, self.height):  # changed since the header check
                raise ValueError(f"{f}: {image.size[0]}x{image.size[1]} is not the folder's frame size")
            yield torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


class VideoFile(FrameSequence):
    """The first video stream of a video file, decoded with PyAV one frame at a time.

    Raises:
        ImportError: PyAV is not installed. FileNotFoundError: no such file. ValueError: the
            file is not a video PyAV can open, or has no video stream.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        av = require_av()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise ValueError(f"{path}: the file has no video stream")
                stream = container.streams.video[0]
                self.width, self.height = stream.codec_context.width, stream.codec_context.height
                self.num_frames = int(stream.frames) or None
                rate = stream.average_rate or stream.guessed_rate
                self.fps = Fraction(rate) if rate else None
        except av.FFmpegError as err:
            raise ValueError(f"{path}: cannot read it as a video ({err})") from None
        if not self.width or not self.height:
            raise ValueError(f"{path}: the video stream has no frame size (a corrupt file?)")

    def frames(self, start: int = 0) -> Iterator[Tensor]:
        av = require_av()
        decoded = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    decoded += 1
                    if decoded <= start:  # decoded (the codec needs it) but not converted
                        continue
                    if (frame.height, frame.width) != (self.height, self.width):
                        raise ValueError(
                            f"{self.path}: the frame size changes from {self.width}x{self.height} to "
                            f"{frame.width}x{frame.height} (W x H) within the video; re-encode it at one size"
                        )
                    yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
        except av.FFmpegError as err:
            expected = f" of {self.num_frames}" if self.num_frames else ""
            raise ValueError(f"{self.path}: decoding failed after {decoded}{expected} frames ({err})") from None


def open_sequence(path: str | os.PathLike, fps: float | Fraction | None = None) -> FrameSequence:
    """A folder -> :class:`FrameFolder` (``fps`` is its nominal rate, default none); a file ->
    :class:`VideoFile`. An image file is refused: a sequence needs two frames at least."""
    p = Path(path)
    if p.is_dir():
        return FrameFolder(p, fps=fps)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if is_image_file(p):
        raise ValueError(f"{path} is one image: give two frames, a video file or a folder of frames")
    return VideoFile(p)

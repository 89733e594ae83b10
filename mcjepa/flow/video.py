"""Optical flow over a whole video or frame folder, streamed: what ``mcjepa-flow INPUT`` runs.

    >>> from mcjepa import flow
    >>> from mcjepa.flow import sequences, video
    >>> model = flow.load(weights="runs/demo/release")
    >>> seq = sequences.open_sequence("clip.mp4")          # or a folder of frames
    >>> for pair in video.iter_flows(seq, model, every=1, batch=4):
    ...     pair.index1, pair.index2, pair.frame1, pair.flow  # uint8 (3, H, W), float32 (2, H, W) pixels

Frames are decoded one at a time and at most ``batch + 1`` are held at once (the last frame of a
batch is the first of the next), so memory does not grow with the length of the video.
``every = N`` keeps every N-th frame (0, N, 2N, ...) and estimates the flow between consecutive
kept frames, i.e. from frame ``t`` to frame ``t + N``. ``start`` and ``end`` restrict the frames
to ``start <= t < end`` (0-based input frame numbers, for video files and frame folders alike);
the kept frames are then ``start, start + N, ...``. ``max_size`` downscales frames whose long
side is larger before the model sees them; the flow is then resized back to the input size and
its vectors rescaled, so it is always in pixels of the input frames.

A video file may hold fewer frames than its container says (a truncated download, a damaged
file): when the frames run out before ``end``, the iterator raises :class:`IncompleteSequenceError`
after the last pair it could compute; without ``end``, it issues a :class:`TruncatedVideoWarning`
naming how many frames were expected and read.

Video files are decoded (and :class:`VideoWriter` encodes) with PyAV, ``pip install
"mcjepa[video]"``; frame folders need only Pillow.

Frames come from :mod:`mcjepa.flow.sequences` (video files and frame folders).
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcjepa.encoder import MIN_INPUT_SIZE
from mcjepa.flow.inputs import check_colour_pair, check_image_pair, prepare_images
from mcjepa.flow.sequences import FrameSequence
from mcjepa.ops import upsample_flow
from mcjepa.utils.media import require_av

__all__ = [
    "VIDEO_OUTPUT_CODECS",
    "FlowPair",
    "IncompleteSequenceError",
    "InterruptGuard",
    "TruncatedVideoWarning",
    "VideoWriter",
    "estimate_resized",
    "iter_flows",
    "resized_size",
]

# output container extension -> codecs tried in order (the first one this PyAV build has wins)
VIDEO_OUTPUT_CODECS = {
    ".mp4": ("libx264", "mpeg4"),
    ".m4v": ("libx264", "mpeg4"),
    ".mov": ("libx264", "mpeg4"),
    ".mkv": ("libx264", "mpeg4"),
    ".avi": ("mpeg4", "mjpeg"),
    ".webm": ("libvpx-vp9", "libvpx"),
}


class IncompleteSequenceError(ValueError):
    """The frames ran out before the requested ``end``: ``expected`` frames were asked for (frame
    numbers below ``end``), ``read`` could be decoded. Raised after every pair that could be
    computed has been yielded."""

    def __init__(self, message: str, expected: int, read: int) -> None:
        super().__init__(message)
        self.expected, self.read = expected, read


class TruncatedVideoWarning(UserWarning):
    """A video yielded fewer frames than its container says it holds."""


# ---------------------------------------------------------------------------- flow


def resized_size(height: int, width: int, max_size: int | None) -> tuple[int, int]:
    """``(H, W)`` scaled down (aspect kept, rounded) so that the long side is at most
    ``max_size``; unchanged when it already is, or when ``max_size`` is None.

    Raises:
        ValueError: the result would be smaller than the model's minimum (32 pixels a side).
    """
    if max_size is None or max(height, width) <= max_size:
        return height, width
    scale = max_size / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    if min(h, w) < MIN_INPUT_SIZE:
        raise ValueError(
            f"max size {max_size} would shrink {width}x{height} (W x H) frames to {w}x{h}, below the "
            f"model's minimum of {MIN_INPUT_SIZE} pixels a side; use a larger --max-size"
        )
    return h, w


def estimate_resized(
    image1: object,
    image2: object,
    model: nn.Module,
    *,
    max_size: int | None = None,
    bf16: bool = False,
    check_colour: bool = True,
) -> Tensor:
    """:func:`mcjepa.flow.estimate` with the frames first downscaled (bilinear, antialiased) when
    their long side exceeds ``max_size``; the flow is resized back to the input size with its u
    and v rescaled, so it is float32 ``(2, H, W)`` (or ``(B, 2, H, W)``) in input pixels. The
    images take every form :func:`~mcjepa.flow.estimate` accepts and are validated the same way
    (``check_colour`` as there)."""
    from mcjepa import flow  # flow.estimate looked up at call time (tests patch it)

    if max_size is None:
        return flow.estimate(image1, image2, model, bf16=bf16, **_colour_kwargs(check_colour))
    x1, batched1, _, out_device = prepare_images(image1, "image1")
    x2, batched2, _, _ = prepare_images(image2, "image2")
    check_image_pair(x1, batched1, x2, batched2)
    if check_colour:
        check_colour_pair(x1, x2)
    (h, w), b = x1.shape[-2:], x1.shape[0]
    size = resized_size(h, w, max_size)
    if size == (h, w):
        return flow.estimate(image1, image2, model, bf16=bf16, **_colour_kwargs(check_colour))
    small = F.interpolate(torch.cat((x1, x2)), size=size, mode="bilinear", antialias=True, align_corners=False)
    f = flow.estimate(small[:b].clamp(0.0, 1.0), small[b:].clamp(0.0, 1.0), model, bf16=bf16, check_colour=False)
    f = upsample_flow(f, (h, w)).to(out_device)
    return f if batched1 else f[0]


def _colour_kwargs(check_colour: bool) -> dict[str, bool]:
    """``check_colour`` for :func:`mcjepa.flow.estimate`, passed only when it is off (the
    default's call stays ``estimate(image1, image2, model, bf16=...)``, as wrappers expect)."""
    return {} if check_colour else {"check_colour": False}


@dataclass
class FlowPair:
    """One result of :func:`iter_flows`: the flow from frame ``index1`` to ``index2`` (0-based
    input frame numbers), ``frame1`` uint8 ``(3, H, W)`` and ``flow`` float32 ``(2, H, W)``."""

    index1: int
    index2: int
    frame1: Tensor
    flow: Tensor


def iter_flows(
    sequence: FrameSequence,
    model: nn.Module,
    *,
    every: int = 1,
    batch: int = 1,
    max_size: int | None = None,
    bf16: bool = False,
    start: int = 0,
    end: int | None = None,
) -> Iterator[FlowPair]:
    """Return an iterator over the flow of every pair of consecutive kept frames (see the module
    docstring), computing ``batch`` pairs per model call and holding at most ``batch + 1`` frames.
    Only frames ``start <= t < end`` are used (``end`` None: to the last frame).

    Raises:
        ValueError: here, for ``every`` or ``batch`` below 1, a negative ``start`` or an ``end``
            not above it, frames too small for the model or for ``max_size``, or a range that
            asks for frames the sequence is known not to hold or that holds fewer than
            ``every + 1`` frames; from the iterator, for a sequence found that short only once
            decoded (nothing has been yielded then), or a frame that cannot be decoded.
        IncompleteSequenceError: from the iterator, after the last pair, when the frames ran out
            before ``end``.
    """
    if int(every) != every or every < 1:
        raise ValueError(f"every (the frame gap) must be an integer >= 1, got {every}")
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch}")
    if int(start) != start or start < 0:
        raise ValueError(f"start (the first frame number) must be an integer >= 0, got {start}")
    if end is not None and (int(end) != end or end <= start):
        raise ValueError(f"end (the frame number to stop before) must be an integer above start={start}, got {end}")
    if min(sequence.height, sequence.width) < MIN_INPUT_SIZE:
        raise ValueError(
            f"{sequence.path}: frames are {sequence.width}x{sequence.height} (W x H); the model needs at least "
            f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}"
        )
    resized_size(sequence.height, sequence.width, max_size)  # refuse a too small max_size up front
    total = sequence.num_frames
    if total is not None and (start >= total or (end is not None and end > total)):
        last = f"{end - 1}" if end is not None else "the end"
        raise ValueError(
            f"{sequence.path}: frames {start} to {last} were asked for, but it has {total} frames (0 to {total - 1})"
        )
    if total is not None:
        _check_length(sequence, (end if end is not None else total) - start, every, bool(start) or end is not None)
    return _iter_flows(sequence, model, int(every), int(batch), max_size, bf16, int(start), end)


def _iter_flows(
    sequence: FrameSequence,
    model: nn.Module,
    every: int,
    batch: int,
    max_size: int | None,
    bf16: bool,
    start: int,
    end: int | None,
) -> Iterator[FlowPair]:
    held: list[tuple[int, Tensor]] = []  # (input index, frame); at most batch + 1
    seen = start  # frames read: numbers below `seen` exist
    frames = sequence.frames(start) if start else sequence.frames()  # subclasses may take no start
    for i, frame in enumerate(frames, start=start):
        if end is not None and i >= end:
            break
        seen = i + 1
        if (i - start) % every:
            continue
        held.append((i, frame))
        if len(held) == batch + 1:
            yield from _run_batch(held, model, max_size, bf16)
            held = held[-1:]
    if len(held) > 1:
        yield from _run_batch(held, model, max_size, bf16)
    expected = end if end is not None else sequence.num_frames
    if expected is not None and seen < expected:
        said = f"; its container says {sequence.num_frames}" if sequence.num_frames is not None else ""
        message = (
            f"{sequence.path}: expected {expected} frames (0 to {expected - 1}), read {seen}{said}: the file is "
            "truncated or partly unreadable"
        )
        if end is not None:
            raise IncompleteSequenceError(
                f"{message}; frames {seen} to {end - 1} do not exist", expected=expected, read=seen
            )
        warnings.warn(f"{message}; flow computed for the frames read", TruncatedVideoWarning, stacklevel=2)
    if len(held) <= 1 and seen - start <= every:
        _check_length(sequence, seen - start, every, bool(start) or end is not None)


def _check_length(sequence: FrameSequence, count: int | None, every: int, ranged: bool = False) -> None:
    """Raise ValueError when ``count`` frames (those of the range when ``ranged``) make no pair."""
    if count is not None and count < every + 1:
        need = "2 frames" if every == 1 else f"{every + 1} frames for --every {every}"
        where = "the requested frame range holds" if ranged else "has"
        raise ValueError(f"{sequence.path}: {where} {count} frame{'s' * (count != 1)}; flow needs at least {need}")


def _run_batch(held: list[tuple[int, Tensor]], model: nn.Module, max_size: int | None, bf16: bool) -> list[FlowPair]:
    frames = torch.stack([f for _, f in held])
    # frames of one sequence: a grayscale stretch beside a colour one is content, not a mix-up
    flows = estimate_resized(frames[:-1], frames[1:], model, max_size=max_size, bf16=bf16, check_colour=False).cpu()
    return [FlowPair(held[k][0], held[k + 1][0], held[k][1], flows[k]) for k in range(len(held) - 1)]


# ---------------------------------------------------------------------------- outputs


class VideoWriter:
    """Encode RGB frames into a video file with PyAV, one frame at a time.

    The codec follows the extension (:data:`VIDEO_OUTPUT_CODECS`: H.264 in ``.mp4`` / ``.mkv``
    / ``.mov``, yuv420p, CRF 18). Frames of odd width or height get one black column or row so
    that 4:2:0 chroma fits. :meth:`close` flushes the encoder and writes the container's index:
    a file is only playable after it (use ``with``).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction | float) -> None:
        av = require_av()
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_OUTPUT_CODECS:
            raise ValueError(f"{path}: unknown video extension {suffix!r}; use one of {', '.join(VIDEO_OUTPUT_CODECS)}")
        codec = next((c for c in VIDEO_OUTPUT_CODECS[suffix] if _has_encoder(av, c)), None)
        if codec is None:
            raise ValueError(f"{path}: this PyAV build has none of the encoders {VIDEO_OUTPUT_CODECS[suffix]}")
        self.width, self.height = width, height
        self.codec = codec
        rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
        self.container = av.open(str(self.path), mode="w")
        try:
            self.stream = self.container.add_stream(codec, rate=rate)
            self.stream.width, self.stream.height = width + width % 2, height + height % 2
            self.stream.pix_fmt = "yuv420p"
            if codec in ("libx264", "libvpx-vp9"):
                self.stream.options = {"crf": "18"} if codec == "libx264" else {"crf": "30", "b": "0"}
            elif codec == "mpeg4":
                self.stream.bit_rate = 8_000_000
        except Exception:
            self.container.close()
            raise
        self.frames_written = 0
        self._av = av

    def write(self, rgb: np.ndarray) -> None:
        """Append one uint8 ``(H, W, 3)`` frame."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 ({self.height}, {self.width}, 3) frame, got {rgb.dtype} {rgb.shape}")
        if self.width % 2 or self.height % 2:
            rgb = np.pad(rgb, ((0, self.height % 2), (0, self.width % 2), (0, 0)))
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self.container is None:
            return
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _has_encoder(av, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # UnknownCodecError, or a build without the encoder
        return False
    return True


class InterruptGuard:
    """Makes Ctrl-C (SIGINT) wait for file writes: inside ``with guard.writing():`` a SIGINT is
    held back and raised as ``KeyboardInterrupt`` when the block ends; outside, it raises at
    once as usual. So an interrupted run never leaves a half-written file behind, yet stops
    within one model call. Installed only in the main thread (where Python delivers signals);
    elsewhere it does nothing."""

    def __init__(self) -> None:
        self._writing = 0
        self._pending = False
        self._previous: Callable | int | None = None
        self._installed = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum, frame) -> None:
        if self._writing:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def writing(self, raise_pending: bool = True) -> _Writing:
        """A block that a SIGINT does not interrupt; one that arrived meanwhile is raised as
        ``KeyboardInterrupt`` at its end (or dropped, with ``raise_pending=False``: for the
        final clean-up of an already interrupted run)."""
        return _Writing(self, raise_pending)


class _Writing:
    def __init__(self, guard: InterruptGuard, raise_pending: bool) -> None:
        self.guard, self.raise_pending = guard, raise_pending

    def __enter__(self) -> None:
        self.guard._writing += 1

    def __exit__(self, exc_type, *exc) -> None:
        g = self.guard
        g._writing -= 1
        if not g._writing and g._pending:
            g._pending = False
            if exc_type is None and self.raise_pending:
                raise KeyboardInterrupt

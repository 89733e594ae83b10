"""Unlabelled video as consecutive-frame pairs: folders of video files (PyAV) or of frame images.

* :class:`VideoFramePairs`: every video file under a folder (``.avi``, ``.mp4``, ``.mkv``, ...), indexed
  once at construction (one decode pass records each frame's timestamp), decoded on access by
  seeking to the keyframe before the wanted frame; decoded frames go to a bounded LRU cache.
* :class:`FrameFolderPairs`: every folder (any depth) holding at least two images, frames sorted by
  file name (e.g. KITTI raw ``.../image_02/data/*.png``, Sintel raw frame dumps).
* :func:`find_opencv_sample_videos`: the real clips shipped by Debian's ``opencv-doc`` package.

Items are ``(frame_t, frame_t+step)`` uint8 tensors of shape (3, H, W). Video decoding needs PyAV:
``pip install "mcjepa[video]"``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from mcjepa.utils.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_image_file, require_av, to_rgb

__all__ = [
    "VIDEO_EXTENSIONS",
    "OPENCV_SAMPLE_DIR",
    "OPENCV_SAMPLE_NAMES",
    "find_opencv_sample_videos",
    "require_opencv_sample_videos",
    "VideoInfo",
    "index_video",
    "VideoFramePairs",
    "FrameFolderPairs",
]

OPENCV_SAMPLE_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_SAMPLE_NAMES = ("vtest.avi", "tree.avi", "Megamind.avi")


def find_opencv_sample_videos(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Return the paths of OpenCV's sample clips (vtest.avi, tree.avi, Megamind.avi) that exist, else []."""
    base = Path(data_dir) if data_dir is not None else OPENCV_SAMPLE_DIR
    return [base / n for n in OPENCV_SAMPLE_NAMES if (base / n).is_file()]


def require_opencv_sample_videos(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Return :func:`find_opencv_sample_videos`, or raise FileNotFoundError saying how to install them."""
    found = find_opencv_sample_videos(data_dir)
    if not found:
        base = Path(data_dir) if data_dir is not None else OPENCV_SAMPLE_DIR
        raise FileNotFoundError(
            f"OpenCV's sample videos ({', '.join(OPENCV_SAMPLE_NAMES)}) were not found in {base}. On Debian/Ubuntu: "
            "sudo apt-get install opencv-doc; elsewhere point the video dataset's root at any folder of video files."
        )
    return found


def _out_size(h: int, w: int, resize_shorter: int | None) -> tuple[int, int]:
    if not resize_shorter:
        return h, w
    s = resize_shorter / min(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _pair_starts(num_frames: int, step: int, max_pairs: int | None) -> list[int]:
    n = max(0, num_frames - step)
    if max_pairs is None or n <= max_pairs:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, max_pairs).round().astype(int)).tolist()


def _check_opts(frame_step: int, max_pairs: int | None, resize_shorter: int | None) -> None:
    if int(frame_step) != frame_step or frame_step < 1:
        raise ValueError(f"frame_step must be an integer >= 1, got {frame_step}")
    if max_pairs is not None and (int(max_pairs) != max_pairs or max_pairs < 1):
        raise ValueError(f"max pairs must be None or an integer >= 1, got {max_pairs}")
    if resize_shorter is not None and (int(resize_shorter) != resize_shorter or resize_shorter < 1):
        raise ValueError(f"resize_shorter must be None or an integer >= 1, got {resize_shorter}")


@dataclass
class VideoInfo:
    """One indexed video: frame count, frame size, and each frame's pts in display order (None: not seekable)."""

    path: Path
    num_frames: int
    height: int
    width: int
    pts: list[int] | None


def index_video(path: str | os.PathLike) -> VideoInfo:
    """Decode ``path`` once (first video stream) and return its :class:`VideoInfo`."""
    av = require_av()
    path = Path(path)
    labels: list[int | None] = []
    h = w = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                labels.append(frame.pts)
                h, w = frame.height, frame.width
    except av.FFmpegError as e:
        raise ValueError(f"could not decode video {path}: {e}") from e
    seekable = None not in labels and len(set(labels)) == len(labels)
    return VideoInfo(path, len(labels), h, w, [int(p) for p in labels] if seekable else None)


class _FrameCache:
    """LRU cache of decoded frames bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes, self.items = max_bytes, 0, OrderedDict()

    def get(self, key):
        arr = self.items.get(key)
        if arr is not None:
            self.items.move_to_end(key)
        return arr

    def put(self, key, arr: np.ndarray) -> None:
        if key in self.items or arr.nbytes > self.max_bytes:
            return
        self.items[key] = arr
        self.bytes += arr.nbytes
        while self.bytes > self.max_bytes:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes


class VideoFramePairs(Dataset):
    """Consecutive-frame pairs ``(frame_t, frame_{t+frame_step})`` from every video file under ``root``.

    ``root`` is a folder (searched at any depth for :data:`VIDEO_EXTENSIONS`), one video file, or a list
    of files. Each video is indexed once here; ``max_pairs_per_video`` keeps that many evenly spaced
    pairs; ``resize_shorter`` rescales frames so their shorter side has that many pixels. Decoded
    frames are kept in a per-process LRU cache of at most ``cache_mb`` MiB. Items are uint8 (3, H, W).
    """

    def __init__(
        self,
        root: str | os.PathLike | Sequence[str | os.PathLike],
        frame_step: int = 1,
        max_pairs_per_video: int | None = None,
        resize_shorter: int | None = None,
        cache_mb: float = 256,
    ) -> None:
        _check_opts(frame_step, max_pairs_per_video, resize_shorter)
        require_av()
        self.frame_step, self.resize_shorter = int(frame_step), resize_shorter
        files = self._find(root)
        self.videos = [index_video(f) for f in files]
        self.pairs = [
            (v, t)
            for v, info in enumerate(self.videos)
            for t in _pair_starts(info.num_frames, self.frame_step, max_pairs_per_video)
        ]
        if not self.pairs:
            raise ValueError(f"no frame pairs: every video under {root} has at most {frame_step} frames")
        self._cache = _FrameCache(int(cache_mb * 2**20))

    @staticmethod
    def _find(root) -> list[Path]:
        if isinstance(root, (list, tuple)):
            files = [Path(p) for p in root]
            missing = [str(p) for p in files if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"video files not found: {', '.join(missing)}")
            return files
        root = Path(root)
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise FileNotFoundError(f"video folder not found: {root}")
        files = sorted(
            Path(d) / f
            for d, _, fs in os.walk(root, followlinks=True)
            for f in fs
            if f.lower().endswith(VIDEO_EXTENSIONS)
        )
        if not files:
            raise FileNotFoundError(f"no video files under {root} (looked for {', '.join(VIDEO_EXTENSIONS)})")
        return files

    def __len__(self) -> int:
        return len(self.pairs)

    def _convert(self, frame, info: VideoInfo) -> np.ndarray:
        h, w = _out_size(info.height, info.width, self.resize_shorter)
        if (h, w) == (frame.height, frame.width):
            return frame.to_ndarray(format="rgb24")
        return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")

    def _decode(self, v: int, wanted: list[int]) -> dict[int, np.ndarray]:
        """Return frames ``wanted`` (display indices) of video ``v`` as (H, W, 3) uint8 arrays."""
        info, av = self.videos[v], require_av()
        out = {i: a for i in wanted if (a := self._cache.get((v, i))) is not None}
        if len(out) == len(wanted):
            return out
        last = max(wanted)
        for seek in (info.pts is not None, False):
            with av.open(str(info.path)) as container:
                stream = container.streams.video[0]
                if seek:
                    index = {p: i for i, p in enumerate(info.pts)}
                    container.seek(info.pts[min(i for i in wanted if i not in out)], stream=stream, backward=True)
                counter = -1
                for frame in container.decode(stream):
                    counter += 1
                    i = index.get(frame.pts) if seek else counter
                    if i is None:
                        continue
                    if i > last:
                        break
                    arr = self._convert(frame, info)
                    self._cache.put((v, i), arr)
                    if i in wanted:
                        out[i] = arr
                    if len(out) == len(wanted):
                        return out
        raise RuntimeError(f"could not decode frames {wanted} of {info.path} ({info.num_frames} frames indexed)")

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        v, t = self.pairs[index]
        frames = self._decode(v, [t, t + self.frame_step])
        a, b = frames[t], frames[t + self.frame_step]
        return torch.from_numpy(a).permute(2, 0, 1).contiguous(), torch.from_numpy(b).permute(2, 0, 1).contiguous()


class FrameFolderPairs(Dataset):
    """Consecutive-frame pairs from every folder under ``root`` (any depth, root included) holding >= 2 images.

    Frames are sorted by file name. Options as :class:`VideoFramePairs`. Items are uint8 (3, H, W).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        frame_step: int = 1,
        max_pairs_per_sequence: int | None = None,
        resize_shorter: int | None = None,
    ) -> None:
        _check_opts(frame_step, max_pairs_per_sequence, resize_shorter)
        self.root, self.frame_step, self.resize_shorter = Path(root), int(frame_step), resize_shorter
        if not self.root.is_dir():
            raise FileNotFoundError(f"frame folder not found: {self.root}")
        self.sequences: list[list[str]] = []
        for d, dirnames, fs in os.walk(self.root, followlinks=True):
            dirnames.sort()
            frames = sorted(f for f in fs if is_image_file(f))
            if len(frames) >= 2:
                self.sequences.append([os.path.join(d, f) for f in frames])
        self.pairs = [
            (s, t)
            for s, seq in enumerate(self.sequences)
            for t in _pair_starts(len(seq), self.frame_step, max_pairs_per_sequence)
        ]
        if not self.pairs:
            raise FileNotFoundError(
                f"no frame pairs under {self.root}: expected folders of at least {frame_step + 1} images "
                f"({', '.join(IMAGE_EXTENSIONS)}), sorted by name"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, path: str) -> Tensor:
        with Image.open(path) as im:
            im = to_rgb(im, path)
            h, w = _out_size(im.height, im.width, self.resize_shorter)
            if (h, w) != (im.height, im.width):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        s, t = self.pairs[index]
        seq = self.sequences[s]
        return self._load(seq[t]), self._load(seq[t + self.frame_step])

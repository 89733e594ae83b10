"""Motion stream data: unlabelled frame pairs for self-supervised flow, from flow benchmarks, video and synthetic data.

The benchmark readers are torchvision's (``Sintel``, ``KittiFlow``, ``FlyingChairs``, ``FlyingThings3D``,
``HD1K``); only their frame lists are used, ground-truth flow is never read. KITTI 2012 (no torchvision
class) is read from its archive layout. Every item is ``(frame1, frame2)``, float32 (3, h, w) in [0, 1],
both frames cropped at the same random window of the dataset's crop size (optionally flipped together).

Frames smaller than the crop are first upscaled (bilinear, aspect ratio kept) just enough to cover it:
padding would add pixels that do not follow the scene's motion, which the photometric and feature
losses would then try to explain; a uniform rescale keeps the pair a consistent frame pair.

:func:`build_motion_datasets` turns config specs into datasets; combine them with
``torch.utils.data.ConcatDataset`` and :class:`mcjepa.data.samplers.GroupedBatchSampler` using each
dataset's ``repeat`` attribute.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from glob import glob
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mcjepa.data.samplers import EpochSeeded
from mcjepa.data.synthetic import MOTION_PRESETS
from mcjepa.utils.media import read_rgb, to_rgb

__all__ = ["LAYOUTS", "MotionPairs", "TorchvisionFramePairs", "Kitti2012FramePairs", "build_motion_datasets"]

LAYOUTS: dict[str, str] = {
    "sintel": "ROOT/Sintel/training/{clean,final}/<scene>/frame_0001.png ..., ROOT/Sintel/test/{clean,final}/<scene>/...",
    "kitti2015": "ROOT/KittiFlow/{training,testing}/image_2/000000_10.png, 000000_11.png ...",
    "kitti2012": "ROOT/{training,testing}/colored_0/000000_10.png, 000000_11.png ...",
    "flyingchairs": "ROOT/FlyingChairs/data/00001_img1.ppm, 00001_img2.ppm, 00001_flow.flo ... and "
    "ROOT/FlyingChairs/FlyingChairs_train_val.txt",
    "flyingthings3d": "ROOT/FlyingThings3D/frames_{cleanpass,finalpass}/{TRAIN,TEST}/<A,B,C>/<seq>/{left,right}/*.png "
    "and ROOT/FlyingThings3D/optical_flow/{TRAIN,TEST}/<A,B,C>/<seq>/{into_future,into_past}/{left,right}/*.pfm",
    "hd1k": "ROOT/hd1k/hd1k_input/image_2/000000_0000.png ..., ROOT/hd1k/hd1k_flow_gt/flow_occ/..., "
    "ROOT/hd1k/hd1k_challenge/image_2/ (test)",
    "video": "ROOT/**/*.{avi,mp4,mkv,mov,webm,...} (any depth), or a single video file",
    "frames": "ROOT/**/<sequence>/*.{png,jpg,...} (every folder with >= 2 images, sorted by name)",
    "synthetic": "no files: rendered on the fly (mcjepa.data.synthetic)",
    "real_texture": "photos: 'bundled', 'installed' (opencv-doc / scikit-image photos) or a folder of images; "
    "rendered on the fly (mcjepa.data.real_texture)",
}


def _to_float_image(img: Any, where: str) -> Tensor:
    """Return ``img`` (PIL, uint8 or [0, 1] float tensor) as a float32 (3, H, W) tensor in [0, 1]."""
    if isinstance(img, Image.Image):
        img = F.pil_to_tensor(to_rgb(img, where))
    if not isinstance(img, Tensor) or img.ndim != 3 or img.shape[0] not in (1, 3):
        shape = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
        raise ValueError(f"{where}: expected a PIL image or a (3, H, W) tensor, got {shape}")
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    img = img.as_subclass(Tensor)
    if img.dtype == torch.uint8:
        return img.float().div_(255.0)
    if not img.is_floating_point():
        raise ValueError(f"{where}: expected uint8 or float frames, got {img.dtype}")
    return img.float()


class MotionPairs(EpochSeeded):
    """Wrap a dataset of frame pairs; item ``i`` is ``(frame1, frame2)`` float32 (3, h, w) in [0, 1].

    ``source[i]`` must start with two images (PIL, uint8 or [0, 1] float (3, H, W) tensors) of equal
    size. With ``crop = (h, w)`` both frames are cut at the same random window (frames smaller than
    the crop are upscaled first, see the module docstring); with ``flip`` both are mirrored left-right
    with probability 0.5. With ``static_fraction = p > 0``, an item is a still pair (its first
    frame twice, true flow zero) with probability ``p`` (its effect on the flow a model invents on
    still scenes is measured in ``docs/scaling.md``: small at p = 0.1). With ``seed`` set, the
    random choices for item ``i`` depend only on ``(seed, epoch, i)`` (see :meth:`set_epoch`).
    ``repeat`` is carried for the batch sampler.
    """

    def __init__(
        self,
        source: Dataset,
        crop: Sequence[int] | None = None,
        flip: bool = False,
        seed: int | None = None,
        name: str = "pairs",
        repeat: int = 1,
        static_fraction: float = 0.0,
    ) -> None:
        if not 0.0 <= static_fraction < 1.0:
            raise ValueError(f"{name}: static_fraction must be in [0, 1), got {static_fraction}")
        if crop is not None and (len(crop) != 2 or any(int(c) != c or c < 1 for c in crop)):
            raise ValueError(f"{name}: crop must be two positive integers (height, width), got {crop}")
        if int(repeat) != repeat or repeat < 1:
            raise ValueError(f"{name}: repeat must be an integer >= 1, got {repeat}")
        super().__init__(source, seed)
        self.name, self.flip = name, bool(flip)
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.repeat = int(repeat)
        self.static_fraction = float(static_fraction)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        item = self.base[index]
        where = f"{self.name}[{index}]"
        a, b = _to_float_image(item[0], where), _to_float_image(item[1], where)
        if a.shape != b.shape:
            raise ValueError(f"{where}: the two frames differ in size: {tuple(a.shape)} vs {tuple(b.shape)}")
        with self.rng(index):
            if self.static_fraction and torch.rand(()) < self.static_fraction:
                b = a  # a still pair: drawn only when asked for, so other runs' random streams stay as they were
            if self.crop is not None:
                ch, cw = self.crop
                h, w = a.shape[-2:]
                if h < ch or w < cw:
                    s = max(ch / h, cw / w)
                    size = [max(ch, math.ceil(h * s)), max(cw, math.ceil(w * s))]
                    a, b = (F.resize(x, size, antialias=False) for x in (a, b))
                a, b = v2.RandomCrop(self.crop)(tv_tensors.Image(a), tv_tensors.Image(b))
            if self.flip and torch.rand(()) < 0.5:
                a, b = a.flip(-1), b.flip(-1)
        return a.as_subclass(Tensor).contiguous(), b.as_subclass(Tensor).contiguous()


class TorchvisionFramePairs(Dataset):
    """The frame pairs of a torchvision optical-flow dataset, read without its flow files.

    Item ``i`` is ``(img1, img2)`` RGB PIL images. Uses the dataset's ``_image_list`` (present in every
    torchvision flow dataset since 0.12) so no ground truth is ever decoded.
    """

    def __init__(self, dataset: tvd.Sintel | tvd.KittiFlow | tvd.FlyingChairs | tvd.FlyingThings3D | tvd.HD1K):
        self.dataset = dataset
        self.pairs: list[list[str]] = list(dataset._image_list)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Image.Image, Image.Image]:
        p1, p2 = self.pairs[index]
        return self.dataset._read_img(p1), self.dataset._read_img(p2)


class Kitti2012FramePairs(Dataset):
    """KITTI 2012 flow frame pairs: ``root/{training,testing}/colored_0/<id>_10.png`` and ``<id>_11.png``."""

    def __init__(self, root: str | os.PathLike, split: str = "train") -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        base = Path(root) / f"{split}ing" / "colored_0"
        first = sorted(glob(str(base / "*_10.png")))
        self.pairs = [(p, p[: -len("_10.png")] + "_11.png") for p in first]
        self.pairs = [p for p in self.pairs if os.path.isfile(p[1])]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Image.Image, Image.Image]:
        return tuple(read_rgb(p) for p in self.pairs[index])  # type: ignore[return-value]


class _FramesOnly(Dataset):
    """Only the two frames of a rendered flow dataset (its ground truth is dropped)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        item = self.dataset[index]
        return item["image1"], item["image2"]


# --------------------------------------------------------------------------- config specs

_INT, _BOOL, _STR, _NUM, _PAIR = "int", "bool", "str", "number", "pair"
_COMMON = {"name": _STR, "repeat": _INT, "crop": _PAIR, "flip": _BOOL, "static_fraction": _NUM}
_KEYS: dict[str, dict[str, str]] = {
    "sintel": {"root": _STR, "split": _STR, "pass_name": _STR},
    "kitti2015": {"root": _STR, "split": _STR},
    "kitti2012": {"root": _STR, "split": _STR},
    "flyingchairs": {"root": _STR, "split": _STR},
    "flyingthings3d": {"root": _STR, "split": _STR, "pass_name": _STR, "camera": _STR},
    "hd1k": {"root": _STR, "split": _STR},
    "video": {"root": _STR, "frame_step": _INT, "max_pairs_per_video": _INT, "resize_shorter": _INT, "cache_mb": _NUM},
    "frames": {"root": _STR, "frame_step": _INT, "max_pairs_per_sequence": _INT, "resize_shorter": _INT},
    "synthetic": {"num_pairs": _INT, "size": _PAIR, "seed": _INT, "max_motion": _NUM, "motion": _STR},
    "real_texture": {
        "num_pairs": _INT,
        "size": _PAIR,
        "seed": _INT,
        "max_motion": _NUM,
        "motion": _STR,
        "photos": _STR,
    },
}
_CAMERAS = ("left", "right", "both")
_RENDERED = ("synthetic", "real_texture")
_REQUIRED = {name: ("root", "crop") for name in _KEYS if name not in _RENDERED} | {
    name: ("num_pairs", "size") for name in _RENDERED
}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, (str, os.PathLike))
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    )


_TYPE_TEXT = {
    _INT: "an integer",
    _BOOL: "true or false",
    _STR: "a string",
    _NUM: "a number",
    _PAIR: "two positive integers [height, width]",
}


def _validate(i: int, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError(f"motion dataset spec [{i}]: expected a table/dict, got {type(spec).__name__}")
    name = spec.get("name")
    if name not in _KEYS:
        raise ValueError(f"motion dataset spec [{i}]: key 'name' must be one of {sorted(_KEYS)}, got {name!r}")
    allowed = _COMMON | _KEYS[name]
    where = f"motion dataset spec [{i}] ({name})"
    for key, value in spec.items():
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r}; allowed keys: {sorted(allowed)}")
        if value is not None and not _type_ok(value, allowed[key]):
            raise ValueError(f"{where}: key {key!r} must be {_TYPE_TEXT[allowed[key]]}, got {value!r}")
    for key in _REQUIRED[name]:
        if spec.get(key) is None:
            raise ValueError(f"{where}: missing key {key!r} (expected {_TYPE_TEXT[allowed[key]]})")
    fraction = spec.get("static_fraction")
    if fraction is not None and not 0 <= fraction < 1:
        raise ValueError(f"{where}: key 'static_fraction' must be in [0, 1), got {fraction}")
    for key in ("repeat", "frame_step", "max_pairs_per_video", "max_pairs_per_sequence", "resize_shorter", "num_pairs"):
        if spec.get(key) is not None and spec[key] < 1:
            raise ValueError(f"{where}: key {key!r} must be >= 1, got {spec[key]}")
    split_choices = {"flyingchairs": ("train", "val")}.get(name, ("train", "test"))
    choices_by_key = (
        ("split", split_choices),
        ("pass_name", ("clean", "final", "both")),
        ("camera", _CAMERAS),
        ("motion", MOTION_PRESETS),
    )
    for key, choices in choices_by_key:
        if spec.get(key) is not None and spec[key] not in choices:
            raise ValueError(f"{where}: key {key!r} must be one of {list(choices)}, got {spec[key]!r}")
    if "root" in allowed:
        root = Path(spec["root"]).expanduser()
        exists = root.exists() if name == "video" else root.is_dir()
        if not exists:
            raise FileNotFoundError(
                f"{where}: key 'root': folder not found: {root} (expected {LAYOUTS[name]}{_root_hint(name)})"
            )
    return spec


# The folder torchvision's reader appends to the root it is given.
TORCHVISION_FOLDERS = {
    "sintel": "Sintel",
    "kitti2015": "KittiFlow",
    "flyingchairs": "FlyingChairs",
    "flyingthings3d": "FlyingThings3D",
    "hd1k": "hd1k",
}


def reader_root(name: str, root: str | os.PathLike) -> Path:
    """The root to give torchvision's reader for dataset ``name``: it appends its own folder
    (``Sintel``, ``KittiFlow``, ...), so a ``root`` that *is* that folder (``data/Sintel``) is
    replaced by its parent; a parent that holds the folder (``data``) is used as it is."""
    path = Path(root).expanduser()
    folder = TORCHVISION_FOLDERS.get(name)
    if folder and path.name == folder and not (path / folder).is_dir():
        return path.parent
    return path


def _root_hint(name: str) -> str:
    folder = TORCHVISION_FOLDERS.get(name)
    return f"; root may be the {folder} folder itself or the folder holding it" if folder else ""


def _source(spec: dict[str, Any]) -> Dataset:
    name, g = spec["name"], spec.get
    root = reader_root(name, g("root", "."))
    split = g("split") or "train"
    if name == "sintel":
        return TorchvisionFramePairs(tvd.Sintel(root, split=split, pass_name=g("pass_name") or "clean"))
    if name == "kitti2015":
        return TorchvisionFramePairs(tvd.KittiFlow(root, split=split))
    if name == "kitti2012":
        return Kitti2012FramePairs(root, split=split)
    if name == "flyingchairs":
        return TorchvisionFramePairs(tvd.FlyingChairs(root, split=split))
    if name == "flyingthings3d":
        ds = tvd.FlyingThings3D(root, split=split, pass_name=g("pass_name") or "clean", camera=g("camera") or "left")
        return TorchvisionFramePairs(ds)
    if name == "hd1k":
        return TorchvisionFramePairs(tvd.HD1K(root, split=split))
    if name == "video":
        from mcjepa.data.video import VideoFramePairs

        return VideoFramePairs(
            root,
            frame_step=g("frame_step") or 1,
            max_pairs_per_video=g("max_pairs_per_video"),
            resize_shorter=g("resize_shorter"),
            cache_mb=g("cache_mb") or 256,
        )
    if name == "frames":
        from mcjepa.data.video import FrameFolderPairs

        return FrameFolderPairs(
            root,
            frame_step=g("frame_step") or 1,
            max_pairs_per_sequence=g("max_pairs_per_sequence"),
            resize_shorter=g("resize_shorter"),
        )
    if name == "real_texture":
        from mcjepa.data.real_texture import RealTextureFlowDataset

        size = (int(spec["size"][0]), int(spec["size"][1]))
        rendered = RealTextureFlowDataset(
            spec["num_pairs"],
            size,
            g("seed") or 0,
            g("max_motion"),
            motion=g("motion") or "rich",
            photos=g("photos") or "bundled",
        )
        return _FramesOnly(rendered)
    from mcjepa.data.synthetic import SyntheticFlowDataset

    size = (int(spec["size"][0]), int(spec["size"][1]))
    return _FramesOnly(
        SyntheticFlowDataset(spec["num_pairs"], size, g("seed") or 0, g("max_motion"), motion=g("motion") or "rich")
    )


def build_motion_datasets(specs: Sequence[dict[str, Any]], seed: int | None = None) -> list[MotionPairs]:
    """Return one :class:`MotionPairs` per spec (validated first, all of them, before anything is read).

    Spec keys: ``name`` (one of :data:`LAYOUTS`), ``root`` (all but synthetic), ``crop`` ([h, w]; optional for
    synthetic), ``repeat`` (int >= 1, default 1), ``flip`` (default false), ``static_fraction`` (share of still pairs,
    default 0), ``split`` ("train" default,
    "test"; FlyingChairs "train"/"val"), ``pass_name`` (Sintel/FlyingThings3D: "clean" default, "final",
    "both"), ``camera`` (FlyingThings3D: "left" default, "right", "both"); video: ``frame_step``,
    ``max_pairs_per_video``, ``resize_shorter``, ``cache_mb``; frames: ``frame_step``,
    ``max_pairs_per_sequence``, ``resize_shorter``; synthetic: ``num_pairs``, ``size`` [h, w], ``seed``,
    ``max_motion``, ``motion`` (``"rich"`` default or ``"translation"``, :func:`mcjepa.data.synthetic.scene_motion`);
    real_texture: the synthetic keys plus ``photos`` (``"bundled"`` default, ``"installed"`` or a folder,
    :mod:`mcjepa.data.real_texture`). ``seed`` (not a spec key) seeds crops and flips per sample (spec ``i`` uses ``seed + i``).
    """
    if isinstance(specs, dict) or not isinstance(specs, Sequence) or not specs:
        raise ValueError("motion datasets: expected a non-empty list of dataset specs")
    specs = [_validate(i, s) for i, s in enumerate(specs)]
    out = []
    for i, spec in enumerate(specs):
        where = f"motion dataset spec [{i}] ({spec['name']})"
        what = spec.get("root") if spec["name"] not in _RENDERED else f"photos {spec.get('photos') or 'bundled'!r}"
        try:
            source = _source(spec)
        except (FileNotFoundError, NotADirectoryError) as e:
            raise FileNotFoundError(
                f"{where}: could not read {what}: {e} (expected {LAYOUTS[spec['name']]}{_root_hint(spec['name'])})"
            ) from e
        if len(source) == 0:
            raise FileNotFoundError(
                f"{where}: no frame pairs found under {spec.get('root')} "
                f"(expected {LAYOUTS[spec['name']]}{_root_hint(spec['name'])})"
            )
        ds_seed = None if seed is None else seed + i
        crop = spec.get("crop")
        out.append(
            MotionPairs(
                source,
                crop,
                bool(spec.get("flip")),
                ds_seed,
                spec["name"],
                spec.get("repeat") or 1,
                static_fraction=spec.get("static_fraction") or 0.0,
            )
        )
    return out

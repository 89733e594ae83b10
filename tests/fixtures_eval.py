"""Writers of tiny evaluation dataset trees in their real on-disk layouts (VOC, Cityscapes, ADE20k,
DAVIS 2017, ImageFolder, IDX, a ``.flo`` pair folder). Flow dataset trees come from fixtures_flow.

Frames are uint8 (H, W, 3) arrays; label maps are uint8 (H, W) arrays.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from fixtures_flow import write_flo
from PIL import Image

__all__ = [
    "VOC_PALETTE",
    "write_voc",
    "write_cityscapes",
    "write_ade20k",
    "write_davis",
    "write_imagefolder",
    "write_idx",
    "write_flo_folder",
]


def _voc_palette() -> list[int]:
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


VOC_PALETTE = _voc_palette()


def _palette_png(path: Path, label: np.ndarray, palette: list[int] = VOC_PALETTE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    img.putpalette(palette)
    img.save(path)


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_voc(root: str | Path, train: dict[str, tuple], val: dict[str, tuple]) -> Path:
    """Write ``root/VOCdevkit/VOC2012`` (JPEGImages, SegmentationClass palette PNGs,
    ImageSets/Segmentation/{train,val}.txt); items map name -> (image, label). Images are saved
    as JPEG (as VOC ships them, so pixel values change slightly)."""
    base = Path(root) / "VOCdevkit" / "VOC2012"
    for split, items in (("train", train), ("val", val)):
        for name, (img, lab) in items.items():
            _save(base / "JPEGImages" / f"{name}.jpg", img)
            _palette_png(base / "SegmentationClass" / f"{name}.png", lab)
        sets = base / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("".join(f"{n}\n" for n in items))
    return base


def write_cityscapes(root: str | Path, split: str, items: dict[str, tuple]) -> Path:
    """Write ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` (city "aachen"); items: name -> (image, labelIds)."""
    root = Path(root)
    for name, (img, lab) in items.items():
        _save(root / "leftImg8bit" / split / "aachen" / f"{name}_leftImg8bit.png", img)
        _save(root / "gtFine" / split / "aachen" / f"{name}_gtFine_labelIds.png", np.asarray(lab, np.uint8))
    return root


def write_ade20k(root: str | Path, split: str, items: dict[str, tuple]) -> Path:
    """Write ``root/ADEChallengeData2016/{images,annotations}/{training,validation}/<name>.{jpg,png}``."""
    base = Path(root) / "ADEChallengeData2016"
    sub = {"train": "training", "val": "validation"}[split]
    for name, (img, lab) in items.items():
        _save(base / "images" / sub / f"{name}.jpg", img)
        _save(base / "annotations" / sub / f"{name}.png", np.asarray(lab, np.uint8))
    return base


def write_davis(root: str | Path, sequences: dict[str, tuple[list, list]], split: str = "val") -> Path:
    """Write a DAVIS 2017 tree: ``JPEGImages/480p/<seq>/00000.jpg``, ``Annotations/480p/<seq>/00000.png``
    (palette PNGs) and ``ImageSets/2017/<split>.txt``; sequences: name -> (frames, labels)."""
    root = Path(root)
    for seq, (frames, labels) in sequences.items():
        for i, (fr, lab) in enumerate(zip(frames, labels)):
            _save(root / "JPEGImages" / "480p" / seq / f"{i:05d}.jpg", fr)
            _palette_png(root / "Annotations" / "480p" / seq / f"{i:05d}.png", lab)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / f"{split}.txt").write_text("".join(f"{s}\n" for s in sequences))
    return root


def write_imagefolder(root: str | Path, split: str, classes: dict[str, list[np.ndarray]]) -> Path:
    """Write ``root/<split>/<class>/<i>.png``."""
    for cls, images in classes.items():
        for i, img in enumerate(images):
            _save(Path(root) / split / cls / f"{i:03d}.png", img)
    return Path(root) / split


def write_idx(path: str | Path, arr: np.ndarray, compress: bool = True) -> Path:
    """Write a uint8 array as an IDX file (MNIST format), gzip-compressed when ``compress``."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_flo_folder(root: str | Path, pairs: dict[str, tuple], ext: str = "png") -> Path:
    """Write ``<name>_img1.<ext>``, ``<name>_img2.<ext>``, ``<name>_flow.flo`` (+ ``<name>_occ.png`` when
    given); pairs: name -> (img1, img2, flow (H, W, 2)[, occluded (H, W) bool])."""
    root = Path(root)
    for name, item in pairs.items():
        _save(root / f"{name}_img1.{ext}", item[0])
        _save(root / f"{name}_img2.{ext}", item[1])
        write_flo(root / f"{name}_flow.flo", item[2])
        if len(item) > 3:
            _save(root / f"{name}_occ.png", np.asarray(item[3], np.uint8) * 255)
    return root

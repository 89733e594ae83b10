"""Writers of tiny optical-flow dataset trees in the on-disk layouts torchvision's datasets read.

Each writer creates, under ``root``, the directory tree that the matching class in
``torchvision.datasets`` (``Sintel``, ``KittiFlow``, ``FlyingChairs``, ``FlyingThings3D``, ``HD1K``)
expects, with real file formats: 8-bit PNG / PPM frames, Middlebury ``.flo`` flow, PFM flow and
KITTI-style 16-bit PNG flow (``value = flow * 64 + 2**15``, third channel = valid mask).

Inputs: frames are ``uint8`` arrays of shape (H, W, 3); flows are ``float32`` arrays of shape
(H, W, 2) in pixels (channel 0 = u, +x right; channel 1 = v, +y down); masks are ``bool`` (H, W).
Flows written to 16-bit PNG are quantised to 1/64 px, so use multiples of 1/64 for exact round trips.

The writers are independent of ``mcjepa.flow.files`` on purpose, so they can also test it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "write_flo",
    "write_pfm_flow",
    "write_png16_rgb",
    "write_png16_flow",
    "write_sintel",
    "write_kitti2015",
    "write_flying_chairs",
    "write_flying_things3d",
    "write_hd1k",
    "random_frames",
    "random_flow",
]


# --------------------------------------------------------------------------- checks and helpers


def _check_frame(img: np.ndarray, what: str = "frame") -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{what}: expected a uint8 array of shape (H, W, 3), got {img.dtype} {img.shape}")
    return img


def _check_flow(flow: np.ndarray, what: str = "flow") -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"{what}: expected a float array of shape (H, W, 2), got {flow.dtype} {flow.shape}")
    return flow.astype(np.float32)


def _check_mask(mask: np.ndarray, shape: tuple[int, int], what: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{what}: expected shape {shape}, got {mask.shape}")
    return mask.astype(bool)


def _save_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def random_frames(n: int, height: int = 40, width: int = 56, seed: int = 0) -> list[np.ndarray]:
    """Return ``n`` random uint8 frames of shape (height, width, 3), deterministic by ``seed``."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(n)]


def random_flow(height: int = 40, width: int = 56, seed: int = 0, scale: float = 4.0) -> np.ndarray:
    """Return a random float32 flow (height, width, 2) in pixels, quantised to 1/64 px (exact in 16-bit PNG)."""
    rng = np.random.default_rng(seed)
    flow = rng.uniform(-scale, scale, size=(height, width, 2))
    return (np.round(flow * 64) / 64).astype(np.float32)


# --------------------------------------------------------------------------- file formats


def write_flo(path: str | Path, flow: np.ndarray) -> Path:
    """Write a Middlebury ``.flo`` file: b"PIEH", int32 width, int32 height, float32 (H, W, 2), little-endian."""
    flow = _check_flow(flow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = flow.shape[:2]
    with open(path, "wb") as f:
        f.write(b"PIEH")
        f.write(struct.pack("<ii", w, h))
        f.write(flow.astype("<f4").tobytes())
    return path


def write_pfm_flow(path: str | Path, flow: np.ndarray) -> Path:
    """Write flow as a 3-channel little-endian PFM (u, v, 0), rows bottom to top, as FlyingThings3D ships it."""
    flow = _check_flow(flow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = flow.shape[:2]
    data = np.concatenate([flow, np.zeros((h, w, 1), np.float32)], axis=2)[::-1]  # PFM stores the bottom row first
    with open(path, "wb") as f:
        f.write(b"PF\n")
        f.write(f"{w} {h}\n".encode())
        f.write(b"-1.0\n")  # negative scale = little-endian
        f.write(np.ascontiguousarray(data).astype("<f4").tobytes())
    return path


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png16_rgb(path: str | Path, arr: np.ndarray) -> Path:
    """Write a (H, W, 3) uint16 array as a 16-bit-per-channel RGB PNG (minimal encoder, no filtering)."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint16 array of shape (H, W, 3), got {arr.dtype} {arr.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = arr.shape[:2]
    rows = arr.astype(">u2").reshape(h, w * 3).view(np.uint8)  # (h, w * 6) big-endian bytes
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter byte 0 per row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", ihdr))
        f.write(_png_chunk(b"IDAT", zlib.compress(raw)))
        f.write(_png_chunk(b"IEND", b""))
    return path


def write_png16_flow(path: str | Path, flow: np.ndarray, valid: np.ndarray | None = None) -> Path:
    """Write KITTI-style 16-bit PNG flow: R = u*64 + 2**15, G = v*64 + 2**15, B = valid (0/1)."""
    flow = _check_flow(flow)
    h, w = flow.shape[:2]
    valid = np.ones((h, w), bool) if valid is None else _check_mask(valid, (h, w), "valid")
    enc = np.clip(np.round(flow * 64.0 + 2**15), 0, 2**16 - 1).astype(np.uint16)
    out = np.concatenate([enc, valid[..., None].astype(np.uint16)], axis=2)
    return write_png16_rgb(path, out)


# --------------------------------------------------------------------------- dataset trees


def _norm_split(split: str, train: str, test: str) -> str:
    if split in ("train", "training"):
        return train
    if split in ("test", "testing"):
        return test
    raise ValueError(f"split must be 'train'/'training' or 'test'/'testing', got {split!r}")


def write_sintel(
    root: str | Path,
    scenes: dict[str, tuple[list[np.ndarray], list[np.ndarray] | None]],
    passes: Sequence[str] = ("clean", "final"),
    split: str = "training",
    occlusions: dict[str, list[np.ndarray]] | None = None,
) -> Path:
    """Write an MPI-Sintel tree; return ``root / "Sintel"``.

    Layout (as in MPI-Sintel-complete; torchvision reads the test split from ``test/``)::

        root/Sintel/training/{clean,final}/<scene>/frame_0001.png ...
        root/Sintel/training/flow/<scene>/frame_0001.flo ...        (one fewer than frames)
        root/Sintel/training/occlusions/<scene>/frame_0001.png ...  (optional, 0/255 uint8)
        root/Sintel/test/{clean,final}/<scene>/frame_0001.png ...   (frames only)

    ``scenes`` maps scene name to (frames, flows); flows may be None for the test split.
    The same frames are written to every pass.
    """
    sub = _norm_split(split, "training", "test")
    base = Path(root) / "Sintel" / sub
    for scene, (frames, flows) in scenes.items():
        frames = [_check_frame(f, f"scene {scene} frame") for f in frames]
        for p in passes:
            if p not in ("clean", "final"):
                raise ValueError(f"pass must be 'clean' or 'final', got {p!r}")
            for i, fr in enumerate(frames):
                _save_png(base / p / scene / f"frame_{i + 1:04d}.png", fr)
        if sub == "training":
            if flows is None or len(flows) != len(frames) - 1:
                raise ValueError(f"scene {scene}: training split needs len(frames) - 1 = {len(frames) - 1} flows")
            for i, fl in enumerate(flows):
                write_flo(base / "flow" / scene / f"frame_{i + 1:04d}.flo", fl)
            for i, occ in enumerate((occlusions or {}).get(scene, [])):
                occ = _check_mask(occ, frames[0].shape[:2], f"scene {scene} occlusion")
                _save_png(base / "occlusions" / scene / f"frame_{i + 1:04d}.png", occ.astype(np.uint8) * 255)
    return Path(root) / "Sintel"


def write_kitti2015(
    root: str | Path,
    pairs: list[tuple],
    split: str = "training",
) -> Path:
    """Write a KITTI 2015 flow tree; return ``root / "KittiFlow"``.

    Layout::

        root/KittiFlow/training/image_2/000000_10.png, 000000_11.png ...
        root/KittiFlow/training/flow_occ/000000_10.png ...   (16-bit PNG flow, valid = all pixels with GT)
        root/KittiFlow/training/flow_noc/000000_10.png ...   (same flow, valid = non-occluded pixels)
        root/KittiFlow/testing/image_2/000000_10.png, 000000_11.png ...

    ``pairs`` holds (img1, img2, flow, valid_occ, valid_noc) for training, (img1, img2) for testing.
    """
    sub = _norm_split(split, "training", "testing")
    base = Path(root) / "KittiFlow" / sub
    for i, item in enumerate(pairs):
        img1, img2 = _check_frame(item[0], f"pair {i} img1"), _check_frame(item[1], f"pair {i} img2")
        _save_png(base / "image_2" / f"{i:06d}_10.png", img1)
        _save_png(base / "image_2" / f"{i:06d}_11.png", img2)
        if sub == "training":
            if len(item) != 5:
                raise ValueError(f"pair {i}: training needs (img1, img2, flow, valid_occ, valid_noc)")
            _, _, flow, valid_occ, valid_noc = item
            write_png16_flow(base / "flow_occ" / f"{i:06d}_10.png", flow, valid_occ)
            write_png16_flow(base / "flow_noc" / f"{i:06d}_10.png", flow, valid_noc)
    return Path(root) / "KittiFlow"


def write_flying_chairs(
    root: str | Path,
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    split_ids: Sequence[int] | None = None,
) -> Path:
    """Write a FlyingChairs tree; return ``root / "FlyingChairs"``.

    Layout::

        root/FlyingChairs/data/00001_img1.ppm, 00001_img2.ppm, 00001_flow.flo ...
        root/FlyingChairs/FlyingChairs_train_val.txt   (one line per pair: 1 = train, 2 = val)

    ``pairs`` holds (img1, img2, flow); ``split_ids`` defaults to all 1 (train).
    """
    base = Path(root) / "FlyingChairs"
    split_ids = [1] * len(pairs) if split_ids is None else list(split_ids)
    if len(split_ids) != len(pairs) or any(s not in (1, 2) for s in split_ids):
        raise ValueError(f"split_ids must hold one value in {{1, 2}} per pair ({len(pairs)}), got {split_ids}")
    (base / "data").mkdir(parents=True, exist_ok=True)
    for i, (img1, img2, flow) in enumerate(pairs):
        Image.fromarray(_check_frame(img1)).save(base / "data" / f"{i + 1:05d}_img1.ppm")
        Image.fromarray(_check_frame(img2)).save(base / "data" / f"{i + 1:05d}_img2.ppm")
        write_flo(base / "data" / f"{i + 1:05d}_flow.flo", flow)
    (base / "FlyingChairs_train_val.txt").write_text("".join(f"{s}\n" for s in split_ids))
    return base


def write_flying_things3d(
    root: str | Path,
    sequences: dict[str, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]],
    split: str = "train",
    passes: Sequence[str] = ("clean", "final"),
    cameras: Sequence[str] = ("left",),
) -> Path:
    """Write a FlyingThings3D (subset of Scene Flow) tree; return ``root / "FlyingThings3D"``.

    Layout (sequence names like "A/0000"; frame numbers start at 0006 as in the real data)::

        root/FlyingThings3D/frames_{cleanpass,finalpass}/{TRAIN,TEST}/A/0000/{left,right}/0006.png ...
        root/FlyingThings3D/optical_flow/{TRAIN,TEST}/A/0000/into_future/left/OpticalFlowIntoFuture_0006_L.pfm ...
        root/FlyingThings3D/optical_flow/{TRAIN,TEST}/A/0000/into_past/left/OpticalFlowIntoPast_0006_L.pfm ...

    ``sequences`` maps name to (frames, forward flows, backward flows or None); forward flow i goes
    frame i -> i+1, backward flow i goes frame i+1 -> i. As in the real data there is one PFM per
    frame and direction; the unused ones (last into_future, first into_past) are zeros. The same
    frames and flows are written for every camera. torchvision yields the forward pairs, then the
    backward ones, per pass and camera.
    """
    sub = _norm_split(split, "TRAIN", "TEST")
    base = Path(root) / "FlyingThings3D"
    for name, (frames, fwd, bwd) in sequences.items():
        frames = [_check_frame(f, f"sequence {name} frame") for f in frames]
        n = len(frames)
        if len(fwd) != n - 1 or (bwd is not None and len(bwd) != n - 1):
            raise ValueError(f"sequence {name}: need len(frames) - 1 = {n - 1} forward (and backward) flows")
        zero = np.zeros(frames[0].shape[:2] + (2,), np.float32)
        for cam in cameras:
            c = {"left": "L", "right": "R"}[cam]
            for p in passes:
                folder = {"clean": "frames_cleanpass", "final": "frames_finalpass"}[p]
                for i, fr in enumerate(frames):
                    _save_png(base / folder / sub / name / cam / f"{i + 6:04d}.png", fr)
            flow_dir = base / "optical_flow" / sub / name
            for i in range(n):
                f = fwd[i] if i < n - 1 else zero
                write_pfm_flow(flow_dir / "into_future" / cam / f"OpticalFlowIntoFuture_{i + 6:04d}_{c}.pfm", f)
                if bwd is not None:
                    b = bwd[i - 1] if i >= 1 else zero
                    write_pfm_flow(flow_dir / "into_past" / cam / f"OpticalFlowIntoPast_{i + 6:04d}_{c}.pfm", b)
    return base


def write_hd1k(
    root: str | Path,
    sequences: list[tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]] = (),
    challenge_pairs: list[tuple[np.ndarray, np.ndarray]] = (),
) -> Path:
    """Write an HD1K tree; return ``root / "hd1k"``.

    Layout (sequence s, frame i)::

        root/hd1k/hd1k_input/image_2/{s:06d}_{i:04d}.png ...
        root/hd1k/hd1k_flow_gt/flow_occ/{s:06d}_{i:04d}.png ...   (16-bit PNG flow, frame i -> i+1)
        root/hd1k/hd1k_challenge/image_2/{k:06d}_10.png, {k:06d}_11.png ...   (test split)

    ``sequences`` holds (frames, flows, valid masks or None) with len(flows) == len(frames) - 1,
    at most 36 sequences (torchvision looks at 000000..000035). Note: torchvision, like RAFT,
    uses only ``len(flows) - 1`` pairs per sequence, i.e. len(frames) - 2.
    """
    if len(sequences) > 36:
        raise ValueError(f"torchvision's HD1K reads at most 36 sequences, got {len(sequences)}")
    base = Path(root) / "hd1k"
    for s, (frames, flows, valids) in enumerate(sequences):
        if len(flows) != len(frames) - 1:
            raise ValueError(f"sequence {s}: need len(frames) - 1 = {len(frames) - 1} flows, got {len(flows)}")
        for i, fr in enumerate(frames):
            _save_png(base / "hd1k_input" / "image_2" / f"{s:06d}_{i:04d}.png", _check_frame(fr))
        for i, fl in enumerate(flows):
            v = None if valids is None else valids[i]
            write_png16_flow(base / "hd1k_flow_gt" / "flow_occ" / f"{s:06d}_{i:04d}.png", fl, v)
    for k, (img1, img2) in enumerate(challenge_pairs):
        _save_png(base / "hd1k_challenge" / "image_2" / f"{k:06d}_10.png", _check_frame(img1))
        _save_png(base / "hd1k_challenge" / "image_2" / f"{k:06d}_11.png", _check_frame(img2))
    return base

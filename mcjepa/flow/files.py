"""Optical-flow file formats: Middlebury ``.flo`` and KITTI 16-bit PNG.

* ``.flo`` (Middlebury): the float32 ``202021.25`` (bytes ``PIEH``), int32 width, int32 height,
  then ``H x W x 2`` float32 (u, v interleaved, row-major), all little-endian.
* KITTI flow PNG: 16-bit RGB, ``R = u * 64 + 2**15``, ``G = v * 64 + 2**15``, ``B = valid``
  (1 or 0); so flow is stored in steps of 1/64 px within about +-512 px.

Flow is returned as float32 ``(2, H, W)`` tensors in pixels (channel 0 = u, channel 1 = v).
Pillow cannot write 16-bit RGB PNGs (and reads them truncated to 8 bits), so the PNG codec here
is a small numpy + zlib one; it reads every standard PNG filter, non-interlaced 8/16-bit gray,
RGB and RGBA images. No OpenCV needed.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mcjepa.utils.atomic import atomic_write_bytes

__all__ = ["FLO_MAGIC", "read_flo", "read_kitti_flow", "write_flo", "write_kitti_flow"]

FLO_MAGIC = 202021.25
_FLO_MAGIC_BYTES = struct.pack("<f", FLO_MAGIC)  # b"PIEH"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> channels (gray, RGB, gray+alpha, RGBA)
_KITTI_SCALE = 64.0
_KITTI_OFFSET = 2**15

PathLike = str | os.PathLike


def _as_flow_array(flow: Tensor | np.ndarray, name: str = "flow") -> np.ndarray:
    """``(2, H, W)`` tensor or array -> float32 numpy ``(2, H, W)``."""
    if isinstance(flow, Tensor):
        flow = flow.detach().cpu().numpy()
    if not isinstance(flow, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(flow).__name__}")
    if flow.ndim != 3 or flow.shape[0] != 2 or min(flow.shape[1:]) < 1:
        raise ValueError(f"{name} must have shape (2, H, W), got {tuple(flow.shape)}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {flow.dtype}")
    return flow.astype(np.float32, copy=False)


def _refuse_nonfinite(arr: np.ndarray, path: PathLike, where: np.ndarray | None = None) -> None:
    """Raise ValueError when ``arr`` (``(2, H, W)``) holds NaN or inf (at the pixels ``where``
    is true, when given): a flow file is read back as numbers, so nothing is written."""
    bad = ~np.isfinite(arr).all(axis=0)
    if where is not None:
        bad &= where
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise ValueError(
            f"{path}: refusing to write non-finite flow (NaN or inf at {int(bad.sum())} of {bad.size} pixels, "
            f"the first at row {y}, column {x})"
        )


# ---------------------------------------------------------------------------- Middlebury .flo


def read_flo(path: PathLike) -> Tensor:
    """Read a Middlebury ``.flo`` file: float32 ``(2, H, W)`` flow in pixels.

    Raises:
        ValueError: wrong magic number, non-positive size, or a file shorter or longer than its
            header says.
    """
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] != _FLO_MAGIC_BYTES:
        raise ValueError(f"{path}: not a Middlebury .flo file (expected the magic number {FLO_MAGIC}, 'PIEH')")
    w, h = struct.unpack("<ii", data[4:12])
    if w < 1 or h < 1:
        raise ValueError(f"{path}: invalid .flo size {w}x{h} (width x height must be positive)")
    expected = 12 + 8 * w * h
    if len(data) != expected:
        raise ValueError(
            f"{path}: a {w}x{h} .flo file must be {expected} bytes, got {len(data)} "
            f"({'truncated' if len(data) < expected else 'trailing data'})"
        )
    flow = np.frombuffer(data, dtype="<f4", offset=12).reshape(h, w, 2).transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))


def write_flo(path: PathLike, flow: Tensor | np.ndarray) -> None:
    """Write a ``(2, H, W)`` flow in pixels as a Middlebury ``.flo`` file (float32, exact).

    Raises:
        ValueError: a wrong shape or dtype, or NaN / inf anywhere in the flow.
    """
    arr = _as_flow_array(flow)
    _refuse_nonfinite(arr, path)
    _, h, w = arr.shape
    body = np.ascontiguousarray(arr.transpose(1, 2, 0), dtype="<f4").tobytes()
    atomic_write_bytes(path, (_FLO_MAGIC_BYTES, struct.pack("<ii", w, h), body))


# ---------------------------------------------------------------------------- PNG codec


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encode_png16_rgb(rgb: np.ndarray) -> bytes:
    """Encode a uint16 ``(H, W, 3)`` array as a 16-bit RGB PNG (filter type 0 on every row)."""
    h, w, _ = rgb.shape
    rows = np.ascontiguousarray(rgb, dtype=">u2").view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate((np.zeros((h, 1), np.uint8), rows), axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def _unfilter(scanlines: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG row filters. ``scanlines`` is uint8 ``(H, 1 + W * bpp)`` (filter byte first);
    returns the uint8 ``(H, W * bpp)`` raw bytes.

    Sub, Average and Paeth depend on the already decoded left neighbour, so rows cannot be
    vectorised along x; instead every anti-diagonal (pixel ``(y, x)`` with ``y + x = d``) is
    decoded at once, since its left, upper and upper-left neighbours lie on earlier diagonals.
    """
    h = scanlines.shape[0]
    kinds = scanlines[:, 0]
    if np.any(kinds > 4):
        raise ValueError(f"invalid PNG filter type {int(kinds.max())}")
    if not kinds.any():
        return scanlines[:, 1:]
    data = scanlines[:, 1:].reshape(h, -1, bpp).astype(np.int32)
    w = data.shape[1]
    out = np.zeros((h + 1, w + 1, bpp), np.int32)  # one zero row above and column to the left
    ys_all = np.arange(h)
    for d in range(h + w - 1):
        ys = ys_all[max(0, d - w + 1) : min(h, d + 1)]
        xs = d - ys
        a = out[ys + 1, xs]  # left
        b = out[ys, xs + 1]  # up
        c = out[ys, xs]  # up-left
        k = kinds[ys][:, None]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([k == 1, k == 2, k == 3, k == 4], [a, b, (a + b) >> 1, paeth], 0)
        out[ys + 1, xs + 1] = (data[ys, xs] + pred) & 0xFF
    return out[1:, 1:].reshape(h, w * bpp).astype(np.uint8)


def _decode_png(blob: bytes, source: str) -> np.ndarray:
    """Decode a non-interlaced 8- or 16-bit gray / gray+alpha / RGB / RGBA PNG to ``(H, W, C)``
    uint8 or uint16."""
    if blob[:8] != _PNG_SIGNATURE:
        raise ValueError(f"{source}: not a PNG file")
    pos, header, idat = 8, None, []
    while pos + 12 <= len(blob):
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        kind = blob[pos + 4 : pos + 8]
        if pos + 12 + length > len(blob):
            raise ValueError(f"{source}: truncated PNG (chunk {kind!r})")
        payload = blob[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", blob[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + payload) != crc:
            raise ValueError(f"{source}: corrupt PNG (CRC mismatch in chunk {kind!r})")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ValueError(f"{source}: corrupt PNG (no IHDR or IDAT chunk)")
    w, h, depth, colour, _, _, interlace = header
    if depth not in (8, 16) or colour not in _PNG_CHANNELS or interlace != 0:
        raise ValueError(
            f"{source}: unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace}); "
            "expected a non-interlaced 8- or 16-bit gray/RGB/RGBA image"
        )
    channels = _PNG_CHANNELS[colour]
    bpp = channels * depth // 8
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    except zlib.error as err:
        raise ValueError(f"{source}: corrupt PNG image data ({err})") from None
    if raw.size != h * (1 + w * bpp):
        raise ValueError(f"{source}: corrupt PNG (image data does not match its {w}x{h} size)")
    pixels = _unfilter(raw.reshape(h, 1 + w * bpp), bpp)
    if depth == 16:
        return pixels.view(">u2").astype(np.uint16).reshape(h, w, channels)
    return pixels.reshape(h, w, channels)


# ---------------------------------------------------------------------------- KITTI PNG


def read_kitti_flow(path: PathLike) -> tuple[Tensor, Tensor]:
    """Read a KITTI flow PNG.

    Returns:
        ``(flow, valid)``: float32 ``(2, H, W)`` flow in pixels (0 where invalid) and bool
        ``(H, W)`` validity.
    """
    rgb = _decode_png(Path(path).read_bytes(), str(path))
    if rgb.dtype != np.uint16 or rgb.shape[2] != 3:
        raise ValueError(
            f"{path}: a KITTI flow PNG is a 16-bit RGB image, got {8 * rgb.itemsize}-bit with {rgb.shape[2]} channels"
        )
    valid = rgb[:, :, 2] > 0
    flow = (rgb[:, :, :2].astype(np.float32) - _KITTI_OFFSET) / _KITTI_SCALE
    flow[~valid] = 0.0
    return torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))), torch.from_numpy(valid)


def write_kitti_flow(path: PathLike, flow: Tensor | np.ndarray, valid: Tensor | np.ndarray | None = None) -> None:
    """Write a ``(2, H, W)`` flow in pixels as a KITTI 16-bit PNG.

    Values are rounded to 1/64 px and clipped to the representable range [-512, 511.98] px (as
    the KITTI devkit does). ``valid`` is an optional bool ``(H, W)`` (or ``(1, H, W)``) mask;
    pixels that are not valid are stored as invalid, whatever their flow.

    Raises:
        ValueError: a wrong shape or dtype, or NaN / inf flow at a valid pixel (mark such pixels
            invalid in ``valid`` to store them as invalid).
    """
    arr = _as_flow_array(flow)
    _, h, w = arr.shape
    ok = np.ones((h, w), bool)
    if valid is not None:
        mask = valid.detach().cpu().numpy() if isinstance(valid, Tensor) else np.asarray(valid)
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.shape != (h, w):
            raise ValueError(f"valid must have shape ({h}, {w}) to match flow {tuple(arr.shape)}, got {mask.shape}")
        ok = mask.astype(bool)
    _refuse_nonfinite(arr, path, where=ok)
    encoded = np.where(ok, arr, 0.0) * _KITTI_SCALE + _KITTI_OFFSET
    encoded = np.clip(np.rint(encoded), 0, 2**16 - 1).astype(np.uint16)
    rgb = np.stack((encoded[0], encoded[1], ok.astype(np.uint16)), axis=-1)
    atomic_write_bytes(path, _encode_png16_rgb(rgb))

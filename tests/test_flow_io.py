"""Middlebury .flo and KITTI 16-bit PNG flow files: round trips, independent decoders, bad files."""

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from mcjepa.flow.files import _decode_png, read_flo, read_kitti_flow, write_flo, write_kitti_flow


@pytest.mark.parametrize("size", [(7, 13), (16, 16), (1, 5)])
def test_flo_round_trip(tmp_path, size):
    flow = torch.randn(2, *size) * 20
    path = tmp_path / "f.flo"
    write_flo(path, flow)
    back = read_flo(path)
    assert back.dtype == torch.float32 and torch.equal(back, flow)
    # layout per the Middlebury spec: magic, width, height, then u, v interleaved row-major
    data = path.read_bytes()
    assert data[:4] == b"PIEH" and struct.unpack("<fii", data[:12]) == (202021.25, size[1], size[0])
    assert struct.unpack("<ff", data[12:20]) == (flow[0, 0, 0].item(), flow[1, 0, 0].item())
    assert struct.unpack("<f", data[20:24])[0] == (flow[0, 0, 1].item() if size[1] > 1 else flow[0, 1, 0].item())


def test_flo_accepts_numpy(tmp_path):
    flow = np.random.default_rng(0).normal(size=(2, 5, 9)).astype(np.float64)
    write_flo(tmp_path / "f.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "f.flo").numpy(), flow.astype(np.float32))


def test_flo_bad_files(tmp_path):
    good = tmp_path / "good.flo"
    write_flo(good, torch.zeros(2, 4, 6))
    data = good.read_bytes()
    (tmp_path / "magic.flo").write_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="magic number 202021.25"):
        read_flo(tmp_path / "magic.flo")
    (tmp_path / "short.flo").write_bytes(data[:-4])
    with pytest.raises(ValueError, match="must be 204 bytes, got 200 .truncated"):
        read_flo(tmp_path / "short.flo")
    (tmp_path / "long.flo").write_bytes(data + b"\0")
    with pytest.raises(ValueError, match="trailing data"):
        read_flo(tmp_path / "long.flo")
    (tmp_path / "size.flo").write_bytes(data[:4] + struct.pack("<ii", -1, 4) + data[12:])
    with pytest.raises(ValueError, match="invalid .flo size"):
        read_flo(tmp_path / "size.flo")
    with pytest.raises(ValueError, match=r"shape \(2, H, W\)"):
        write_flo(tmp_path / "x.flo", torch.zeros(4, 6, 2))
    with pytest.raises(ValueError, match="floating-point"):
        write_flo(tmp_path / "x.flo", torch.zeros(2, 4, 6, dtype=torch.int32))


def test_kitti_round_trip_with_invalid_pixels(tmp_path):
    h, w = 11, 17  # odd, non-square
    gen = torch.Generator().manual_seed(0)
    flow = torch.randint(-300 * 64, 300 * 64, (2, h, w), generator=gen).float() / 64  # exact 1/64 steps
    valid = torch.rand(h, w, generator=gen) > 0.3
    flow_nan = flow.clone()
    flow_nan[0, 0, 0] = float("nan")  # non-finite at a pixel marked invalid: stored as invalid
    valid[0, 0] = False  # (at a valid pixel it is refused: tests/test_bad_input_train.py)
    path = tmp_path / "f.png"
    write_kitti_flow(path, flow_nan, valid)
    back, back_valid = read_kitti_flow(path)
    expected_valid = valid.clone()
    assert back.shape == (2, h, w) and back.dtype == torch.float32 and back_valid.dtype == torch.bool
    assert torch.equal(back_valid, expected_valid)
    assert torch.equal(back[:, expected_valid], flow[:, expected_valid])
    assert (back[:, ~expected_valid] == 0).all()


def test_kitti_quantisation_and_clipping(tmp_path):
    # 0.01 * 64 = 0.64 -> 1, -0.02 * 64 = -1.28 -> -1, 0.3 * 64 = 19.2 -> 19; beyond +-512 px: clipped
    flow = torch.tensor([[[0.01, -0.02, 1000.0]], [[0.3, 600.0, -1000.0]]])
    write_kitti_flow(tmp_path / "f.png", flow)
    back, valid = read_kitti_flow(tmp_path / "f.png")
    assert valid.all()
    expected = torch.tensor([[[1 / 64, -1 / 64, (65535 - 32768) / 64]], [[19 / 64, (65535 - 32768) / 64, -512.0]]])
    assert torch.equal(back, expected)


def test_kitti_png_decodes_with_independent_readers(tmp_path):
    flow = torch.tensor([[[1.5, -2.25, 0.0]], [[0.0, 3.0, -0.5]]])
    valid = torch.tensor([[True, True, False]])
    path = tmp_path / "f.png"
    write_kitti_flow(path, flow, valid)
    # Pillow reads 16-bit RGB as 8-bit (high bytes only): checks the file is a valid PNG
    with Image.open(path) as im:
        assert im.size == (3, 1)
        hi = np.asarray(im.convert("RGB"))
    u16 = np.array([[[32768 + 96, 32768, 1], [32768 - 144, 32768 + 192, 1], [32768, 32768, 0]]])
    np.testing.assert_array_equal(hi, (u16 >> 8).astype(np.uint8))
    tvio = pytest.importorskip("torchvision.io")
    if hasattr(tvio, "decode_png"):  # full 16-bit check; torchvision's decoder is deprecated since 0.29
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = tvio.decode_png(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8))
        np.testing.assert_array_equal(decoded.permute(1, 2, 0).numpy().astype(np.int64), u16)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_png_decoder_matches_pillow_on_filtered_files(mode):
    """Pillow writes adaptively filtered PNGs (Sub, Up, Average, Paeth): decode them all."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:37, :53]
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = (rng.integers(0, 40, (37, 53, channels)) + (3 * xx + 5 * yy)[..., None]).astype(np.uint8)
    arr = arr[..., 0] if mode == "L" else arr
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG", optimize=True)
    blob = buf.getvalue()
    start = blob.index(b"IDAT")
    (length,) = struct.unpack(">I", blob[start - 4 : start])
    filters = set(np.frombuffer(zlib.decompress(blob[start + 4 : start + 4 + length]), np.uint8).reshape(37, -1)[:, 0])
    if mode != "L":
        assert {1, 2, 3, 4} <= filters  # the test exercises every filter type
    np.testing.assert_array_equal(_decode_png(blob, "x").reshape(arr.shape), arr)


def test_png_decoder_16bit_gray_from_pillow():
    arr = np.random.default_rng(1).integers(0, 65536, (19, 27)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.int32)).convert("I;16").save(buf, "PNG")
    decoded = _decode_png(buf.getvalue(), "x")
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded[..., 0], arr)


def test_kitti_bad_files(tmp_path):
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "rgb8.png")
    with pytest.raises(ValueError, match="16-bit RGB image, got 8-bit with 3 channels"):
        read_kitti_flow(tmp_path / "rgb8.png")
    (tmp_path / "text.png").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a PNG file"):
        read_kitti_flow(tmp_path / "text.png")
    write_kitti_flow(tmp_path / "f.png", torch.zeros(2, 4, 5))
    data = bytearray((tmp_path / "f.png").read_bytes())
    (tmp_path / "cut.png").write_bytes(bytes(data[:50]))
    with pytest.raises(ValueError, match="truncated PNG"):
        read_kitti_flow(tmp_path / "cut.png")
    data[40] ^= 0xFF  # inside the IDAT payload
    (tmp_path / "crc.png").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC mismatch"):
        read_kitti_flow(tmp_path / "crc.png")
    with pytest.raises(ValueError, match=r"valid must have shape \(4, 5\)"):
        write_kitti_flow(tmp_path / "g.png", torch.zeros(2, 4, 5), torch.ones(5, 4, dtype=torch.bool))


@pytest.mark.parametrize("writer", [write_flo, write_kitti_flow], ids=["flo", "kitti"])
def test_flow_files_are_written_atomically(tmp_path, monkeypatch, writer):
    """A write that fails at the rename leaves the earlier file whole and no temporary file."""
    path = tmp_path / "flow.bin"
    writer(path, torch.zeros(2, 4, 5))
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr("mcjepa.utils.atomic.os.replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        writer(path, torch.ones(2, 4, 5))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["flow.bin"]

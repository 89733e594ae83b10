"""Flow-dataset fixtures (read back by torchvision) and the motion frame-pair datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from fixtures_flow import (
    random_flow,
    random_frames,
    write_flo,
    write_flying_chairs,
    write_flying_things3d,
    write_hd1k,
    write_kitti2015,
    write_pfm_flow,
    write_png16_flow,
    write_sintel,
)
from PIL import Image
from torchvision import datasets as tvd

from mcjepa.data.motion import MotionPairs, build_motion_datasets

H, W = 40, 56


def _arr(img) -> np.ndarray:
    return np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img)


# --------------------------------------------------------------------------- fixture round trips


def test_file_formats_round_trip(tmp_path):
    from torchvision.datasets._optical_flow import _read_16bits_png_with_flow_and_valid_mask, _read_flo
    from torchvision.datasets.utils import _read_pfm

    flow = random_flow(H, W, seed=1)
    valid = np.random.default_rng(2).random((H, W)) > 0.3
    np.testing.assert_array_equal(_read_flo(str(write_flo(tmp_path / "a.flo", flow))), flow.transpose(2, 0, 1))
    np.testing.assert_array_equal(_read_pfm(str(write_pfm_flow(tmp_path / "a.pfm", flow))), flow.transpose(2, 0, 1))
    f16, v16 = _read_16bits_png_with_flow_and_valid_mask(str(write_png16_flow(tmp_path / "a.png", flow, valid)))
    np.testing.assert_array_equal(f16, flow.transpose(2, 0, 1))
    np.testing.assert_array_equal(v16, valid)
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        write_flo(tmp_path / "b.flo", flow[..., :1])


def test_sintel_fixture_read_by_torchvision(tmp_path):
    fr_a, fr_b = random_frames(3, H, W, seed=0), random_frames(2, H, W, seed=1)
    fl_a, fl_b = [random_flow(H, W, seed=s) for s in (10, 11)], [random_flow(H, W, seed=12)]
    occ = {"alley": [np.zeros((H, W), bool), np.ones((H, W), bool)]}
    write_sintel(tmp_path, {"alley": (fr_a, fl_a), "bamboo": (fr_b, fl_b)}, occlusions=occ)
    write_sintel(tmp_path, {"market": (random_frames(4, H, W, seed=5), None)}, split="test")

    ds = tvd.Sintel(tmp_path, split="train", pass_name="clean")
    assert len(ds) == 3
    expected = {("alley", 0): (fr_a[0], fr_a[1], fl_a[0]), ("alley", 1): (fr_a[1], fr_a[2], fl_a[1])}
    expected[("bamboo", 0)] = (fr_b[0], fr_b[1], fl_b[0])
    seen = set()
    for i in range(len(ds)):
        img1, img2, flow = ds[i]
        scene = ds._image_list[i][0].split("/")[-2]
        k = int(ds._image_list[i][0][-8:-4]) - 1
        e1, e2, ef = expected[(scene, k)]
        np.testing.assert_array_equal(_arr(img1), e1)
        np.testing.assert_array_equal(_arr(img2), e2)
        np.testing.assert_array_equal(flow, ef.transpose(2, 0, 1))
        seen.add((scene, k))
    assert seen == set(expected)
    assert len(tvd.Sintel(tmp_path, split="train", pass_name="both")) == 6
    test = tvd.Sintel(tmp_path, split="test", pass_name="final")
    assert len(test) == 3 and test[0][2] is None
    assert (tmp_path / "Sintel/training/occlusions/alley/frame_0002.png").is_file()


def test_kitti_fixture_read_by_torchvision(tmp_path):
    frames = random_frames(4, H, W, seed=3)
    flow = random_flow(H, W, seed=4)
    vocc = np.random.default_rng(0).random((H, W)) > 0.2
    vnoc = vocc & (np.random.default_rng(1).random((H, W)) > 0.2)
    write_kitti2015(tmp_path, [(frames[0], frames[1], flow, vocc, vnoc), (frames[2], frames[3], -flow, vnoc, vnoc)])
    write_kitti2015(tmp_path, [(frames[1], frames[0])], split="testing")
    ds = tvd.KittiFlow(tmp_path, split="train")
    assert len(ds) == 2
    img1, img2, f, v = ds[0]
    np.testing.assert_array_equal(_arr(img1), frames[0])
    np.testing.assert_array_equal(_arr(img2), frames[1])
    np.testing.assert_array_equal(f, flow.transpose(2, 0, 1))
    np.testing.assert_array_equal(v, vocc)
    np.testing.assert_array_equal(ds[1][2], -flow.transpose(2, 0, 1))
    # the noc ground truth, read with torchvision's own 16-bit PNG flow reader
    from torchvision.datasets._optical_flow import _read_16bits_png_with_flow_and_valid_mask as rd

    np.testing.assert_array_equal(rd(str(tmp_path / "KittiFlow/training/flow_noc/000000_10.png"))[1], vnoc)
    test = tvd.KittiFlow(tmp_path, split="test")
    assert len(test) == 1
    np.testing.assert_array_equal(_arr(test[0][0]), frames[1])


def test_flying_chairs_fixture_read_by_torchvision(tmp_path):
    frames = random_frames(6, H, W, seed=7)
    flows = [random_flow(H, W, seed=s) for s in range(3)]
    pairs = [(frames[2 * i], frames[2 * i + 1], flows[i]) for i in range(3)]
    write_flying_chairs(tmp_path, pairs, split_ids=[1, 2, 1])
    train, val = tvd.FlyingChairs(tmp_path, split="train"), tvd.FlyingChairs(tmp_path, split="val")
    assert len(train) == 2 and len(val) == 1
    img1, img2, f = train[1]
    np.testing.assert_array_equal(_arr(img1), frames[4])
    np.testing.assert_array_equal(_arr(img2), frames[5])
    np.testing.assert_array_equal(f, flows[2].transpose(2, 0, 1))
    np.testing.assert_array_equal(_arr(val[0][0]), frames[2])


def test_flying_things_fixture_read_by_torchvision(tmp_path):
    frames = random_frames(3, H, W, seed=8)
    fwd = [random_flow(H, W, seed=20 + i) for i in range(2)]
    bwd = [random_flow(H, W, seed=30 + i) for i in range(2)]
    write_flying_things3d(tmp_path, {"A/0000": (frames, fwd, bwd)}, passes=("clean",))
    ds = tvd.FlyingThings3D(tmp_path, split="train", pass_name="clean", camera="left")
    assert len(ds) == 4  # 2 forward + 2 backward pairs
    for i in range(2):
        img1, img2, f = ds[i]
        np.testing.assert_array_equal(_arr(img1), frames[i])
        np.testing.assert_array_equal(_arr(img2), frames[i + 1])
        np.testing.assert_array_equal(f, fwd[i].transpose(2, 0, 1))
        img1, img2, f = ds[2 + i]
        np.testing.assert_array_equal(_arr(img1), frames[i + 1])
        np.testing.assert_array_equal(_arr(img2), frames[i])
        np.testing.assert_array_equal(f, bwd[i].transpose(2, 0, 1))


def test_hd1k_fixture_read_by_torchvision(tmp_path):
    frames = random_frames(4, H, W, seed=9)
    flows = [random_flow(H, W, seed=40 + i) for i in range(3)]
    valids = [np.random.default_rng(i).random((H, W)) > 0.5 for i in range(3)]
    write_hd1k(tmp_path, [(frames, flows, valids)], challenge_pairs=[(frames[0], frames[3])])
    ds = tvd.HD1K(tmp_path, split="train")
    assert len(ds) == 2  # torchvision (like RAFT) uses len(flows) - 1 pairs per sequence
    img1, img2, f, v = ds[1]
    np.testing.assert_array_equal(_arr(img1), frames[1])
    np.testing.assert_array_equal(_arr(img2), frames[2])
    np.testing.assert_array_equal(f, flows[1].transpose(2, 0, 1))
    np.testing.assert_array_equal(v, valids[1])
    test = tvd.HD1K(tmp_path, split="test")
    assert len(test) == 1
    np.testing.assert_array_equal(_arr(test[0][1]), frames[3])


def test_png16_writer_decoded_by_libpng(tmp_path):
    import torchvision.io as tio
    from fixtures_flow import write_png16_rgb

    arr = np.random.default_rng(0).integers(0, 2**16, size=(5, 7, 3), dtype=np.uint16)
    p = write_png16_rgb(tmp_path / "x.png", arr)
    np.testing.assert_array_equal(tio.decode_png(tio.read_file(str(p))).numpy().transpose(1, 2, 0), arr)


# --------------------------------------------------------------------------- motion datasets


def _locate(window: torch.Tensor, image: torch.Tensor) -> list[tuple[int, int]]:
    """All (top, left) where ``window`` (3, h, w) equals a window of ``image`` (3, H, W), by brute force."""
    h, w = window.shape[-2:]
    H, W = image.shape[-2:]
    return [
        (t, x0)
        for t in range(H - h + 1)
        for x0 in range(W - w + 1)
        if torch.equal(image[:, t : t + h, x0 : x0 + w], window)
    ]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).float() / 255


def _all_fixtures(root):
    fr = random_frames(4, H, W, seed=0)
    fl = [random_flow(H, W, seed=s) for s in range(3)]
    ones = np.ones((H, W), bool)
    write_sintel(root / "sintel", {"alley": (fr[:3], fl[:2])})
    write_sintel(root / "sintel", {"market": (fr, None)}, split="test")
    write_kitti2015(root / "kitti", [(fr[0], fr[1], fl[0], ones, ones)])
    write_flying_chairs(root / "chairs", [(fr[0], fr[1], fl[0]), (fr[2], fr[3], fl[1])])
    write_flying_things3d(root / "things", {"A/0000": (fr[:3], fl[:2], fl[:2])}, passes=("clean",))
    write_hd1k(root / "hd1k", [(fr, fl, None)])
    for i in range(2):
        _save = root / "kitti12" / "training" / "colored_0"
        _save.mkdir(parents=True, exist_ok=True)
        Image.fromarray(fr[i]).save(_save / f"00000{i}_10.png")
        Image.fromarray(fr[i + 1]).save(_save / f"00000{i}_11.png")
    for s in ("seq_a", "deep/seq_b"):
        (root / "frames" / s).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(fr[i]).save(root / "frames" / s / f"{i:03d}.png")
    return fr


def test_build_motion_datasets_every_kind(tmp_path):
    fr = _all_fixtures(tmp_path)
    crop = [24, 32]
    specs = [
        {"name": "sintel", "root": str(tmp_path / "sintel"), "pass_name": "both", "crop": crop, "repeat": 3},
        {"name": "sintel", "root": str(tmp_path / "sintel"), "split": "test", "crop": crop},
        {"name": "kitti2015", "root": str(tmp_path / "kitti"), "crop": crop, "repeat": 100},
        {"name": "kitti2012", "root": str(tmp_path / "kitti12"), "crop": crop},
        {"name": "flyingchairs", "root": str(tmp_path / "chairs"), "crop": crop},
        {"name": "flyingthings3d", "root": str(tmp_path / "things"), "crop": crop},
        {"name": "hd1k", "root": str(tmp_path / "hd1k"), "crop": crop},
        {"name": "frames", "root": str(tmp_path / "frames"), "crop": crop, "frame_step": 2},
        {"name": "synthetic", "num_pairs": 3, "size": [32, 40], "seed": 1},
    ]
    dss = build_motion_datasets(specs, seed=0)
    assert [len(d) for d in dss] == [4, 3, 1, 2, 2, 4, 2, 2, 3]
    assert [d.repeat for d in dss] == [3, 1, 100, 1, 1, 1, 1, 1, 1]
    for d in dss[:-1]:
        for i in range(len(d)):
            a, b = d[i]
            assert a.shape == b.shape == (3, 24, 32) and a.dtype == torch.float32
    # every real-data crop is the same window of two consecutive originals (frame pairs in order)
    a, b = dss[2][0]
    (pos,) = _locate(a, _t(fr[0]))
    assert _locate(b, _t(fr[1])) == [pos]
    a, b = dss[7][0]  # frames with frame_step 2: frames 0 and 2
    (pos,) = _locate(a, _t(fr[0]))
    assert _locate(b, _t(fr[2])) == [pos]
    a, b = dss[-1][0]
    assert a.shape == (3, 32, 40) and not torch.equal(a, b)
    # training never touches ground truth: delete every flow file and read again
    import shutil

    shutil.rmtree(tmp_path / "sintel" / "Sintel" / "training" / "flow")
    assert dss[0][1][0].shape == (3, 24, 32)


def test_motion_pairs_small_frames_are_upscaled_then_cropped():
    fr = random_frames(2, H, W, seed=3)
    ds = MotionPairs([(_t(fr[0]), _t(fr[1]))], crop=(48, 64), seed=0)
    a, b = ds[0]
    assert a.shape == (3, 48, 64)
    # 40x56 -> scale max(48/40, 64/56) = 1.2 -> 48 x ceil(67.2) = 48 x 68, then a 48x64 window
    big = TF.interpolate(torch.stack([_t(fr[0]), _t(fr[1])]), size=(48, 68), mode="bilinear", align_corners=False)
    (pos,) = _locate(a, big[0])
    assert _locate(b, big[1]) == [pos]


def test_motion_pairs_flip_and_seeding():
    fr = random_frames(2, H, W, seed=4)
    pair = (_t(fr[0]), _t(fr[1]))
    ds = MotionPairs([pair] * 16, crop=(20, 20), flip=True, seed=5)
    flips = 0
    for i in range(16):
        a, b = ds[i]
        found = _locate(a, pair[0])
        if not found:  # mirrored: the same window of both mirrored frames
            flips += 1
            found = _locate(a.flip(-1), pair[0])
            assert _locate(b.flip(-1), pair[1]) == found
        else:
            assert _locate(b, pair[1]) == found
        assert len(found) == 1
    assert 2 <= flips <= 14
    assert torch.equal(ds[3][0], ds[3][0])
    ds.set_epoch(1)
    assert any(not torch.equal(ds[i][0], MotionPairs([pair] * 16, (20, 20), True, 5)[i][0]) for i in range(16))
    with pytest.raises(ValueError, match="differ in size"):
        MotionPairs([(pair[0], pair[1][:, :30])])[0]


def test_motion_pairs_static_fraction_gives_seeded_still_pairs():
    fr = random_frames(2, H, W, seed=6)
    pair = (_t(fr[0]), _t(fr[1]))
    ds = MotionPairs([pair] * 64, crop=(20, 20), seed=7, static_fraction=0.25)
    still = [i for i in range(64) if torch.equal(ds[i][0], ds[i][1])]
    assert 6 <= len(still) <= 26  # binomial(64, 0.25): mean 16
    for i in still:  # a still pair is a window of the first frame, twice
        assert len(_locate(ds[i][0], pair[0])) == 1
    assert still == [i for i in range(64) if torch.equal(ds[i][0], ds[i][1])]  # seeded
    # without the key, no pair is still and the random stream is the one it always was
    plain = MotionPairs([pair] * 64, crop=(20, 20), seed=7)
    assert not any(torch.equal(plain[i][0], plain[i][1]) for i in range(64))
    with pytest.raises(ValueError, match="static_fraction"):
        MotionPairs([pair], static_fraction=1.0)
    with pytest.raises(ValueError, match="static_fraction"):
        build_motion_datasets([{"name": "synthetic", "num_pairs": 4, "size": [32, 32], "static_fraction": -0.1}])


def test_build_motion_datasets_errors_name_index_key_and_path(tmp_path):
    _all_fixtures(tmp_path)
    ok = {"name": "kitti2015", "root": str(tmp_path / "kitti"), "crop": [8, 8]}
    cases = [
        ({"name": "kitty", "root": "x"}, r"spec \[1\]: key 'name' must be one of"),
        ({**ok, "crp": [8, 8]}, r"spec \[1\] \(kitti2015\): unknown key 'crp'"),
        ({**ok, "repeat": "100"}, r"spec \[1\] \(kitti2015\): key 'repeat' must be an integer, got '100'"),
        ({**ok, "repeat": 0}, r"key 'repeat' must be >= 1"),
        ({**ok, "crop": [8]}, r"key 'crop' must be two positive integers"),
        ({"name": "kitti2015", "crop": [8, 8]}, r"spec \[1\] \(kitti2015\): missing key 'root'"),
        ({"name": "sintel", "root": str(tmp_path / "sintel"), "crop": [8, 8], "pass_name": "dirty"}, "'pass_name'"),
        ({"name": "synthetic", "size": [8, 8]}, r"missing key 'num_pairs'"),
    ]
    for bad, msg in cases:
        with pytest.raises(ValueError, match=msg):
            build_motion_datasets([ok, bad])
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match=rf"spec \[1\] \(sintel\): key 'root': folder not found: {missing}"):
        build_motion_datasets([ok, {"name": "sintel", "root": str(missing), "crop": [8, 8]}])
    # an existing folder with the wrong layout: the error names the spec, the path and the expected layout
    with pytest.raises(FileNotFoundError, match=r"spec \[0\] \(hd1k\).*hd1k_input"):
        build_motion_datasets([{"name": "hd1k", "root": str(tmp_path / "kitti"), "crop": [8, 8]}])
    with pytest.raises(FileNotFoundError, match=r"spec \[0\] \(sintel\).*Sintel/training"):
        build_motion_datasets([{"name": "sintel", "root": str(tmp_path / "kitti"), "crop": [8, 8]}])


# --------------------------------------------------------------------------- video


def _write_video(path, frames, codec="ffv1", pix_fmt="bgr0", gop=None):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if gop:
            s.codec_context.gop_size = gop
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_video_pairs_lossless_exact(tmp_path):
    pytest.importorskip("av")
    from mcjepa.data.video import VideoFramePairs

    frames = random_frames(7, H, W, seed=6)
    (tmp_path / "clips" / "sub").mkdir(parents=True)
    _write_video(tmp_path / "clips" / "a.mkv", frames)
    _write_video(tmp_path / "clips" / "sub" / "b.mkv", frames[:3])
    ds = VideoFramePairs(tmp_path / "clips", frame_step=2)
    assert [v.num_frames for v in ds.videos] == [7, 3] and len(ds) == 5 + 1
    for i in (4, 0, 2, 5):  # out of order: seeks
        v, t = ds.pairs[i]
        src = frames if v == 0 else frames[:3]
        a, b = ds[i]
        assert a.dtype == torch.uint8 and a.shape == (3, H, W)
        np.testing.assert_array_equal(a.permute(1, 2, 0).numpy(), src[t])
        np.testing.assert_array_equal(b.permute(1, 2, 0).numpy(), src[t + 2])
    small = VideoFramePairs(tmp_path / "clips" / "a.mkv", max_pairs_per_video=3, resize_shorter=20, cache_mb=0)
    assert [p[1] for p in small.pairs] == [0, 2, 5] and small[1][0].shape == (3, 20, 28)


def test_video_pairs_compressed_seek_matches_sequential_decode(tmp_path):
    av = pytest.importorskip("av")
    from mcjepa.data.video import VideoFramePairs

    # smooth frames so a lossy codec keeps them recognisable; gop 4 makes seeking matter
    x = np.linspace(0, 255, 64)
    frames = [np.stack([np.roll(np.tile(x, (48, 1)), 3 * k, axis=1)] * 3, axis=2).astype(np.uint8) for k in range(12)]
    _write_video(tmp_path / "c.mp4", frames, codec="mpeg4", pix_fmt="yuv420p", gop=4)
    with av.open(str(tmp_path / "c.mp4")) as c:
        ref = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    ds = VideoFramePairs(tmp_path / "c.mp4", cache_mb=0)
    assert len(ds) == len(ref) - 1 == 11 and ds.videos[0].pts is not None
    for i in (9, 2, 6, 0, 10):
        a, b = ds[i]
        np.testing.assert_array_equal(a.permute(1, 2, 0).numpy(), ref[i])
        np.testing.assert_array_equal(b.permute(1, 2, 0).numpy(), ref[i + 1])


def test_video_spec_and_errors(tmp_path, monkeypatch):
    pytest.importorskip("av")
    _write_video(tmp_path / "a.mkv", random_frames(4, H, W, seed=1))
    (d,) = build_motion_datasets([{"name": "video", "root": str(tmp_path), "crop": [16, 24], "repeat": 2}])
    assert len(d) == 3 and d[2][0].shape == (3, 16, 24) and d.repeat == 2
    from mcjepa.data.video import VideoFramePairs, require_opencv_sample_videos

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files under .*empty"):
        VideoFramePairs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="apt-get install opencv-doc"):
        require_opencv_sample_videos(tmp_path / "empty")
    monkeypatch.setitem(__import__("sys").modules, "av", None)
    with pytest.raises(ImportError, match=r'pip install "mcjepa\[video\]"'):
        VideoFramePairs(tmp_path)


def test_opencv_sample_videos_when_installed():
    """Optional: real footage from Debian's opencv-doc (apt-get install opencv-doc)."""
    pytest.importorskip("av")
    from mcjepa.data.video import VideoFramePairs, find_opencv_sample_videos

    found = find_opencv_sample_videos()
    if not found:
        pytest.skip("opencv-doc is not installed (apt-get install opencv-doc)")
    ds = VideoFramePairs(found, max_pairs_per_video=2, resize_shorter=64, cache_mb=16)
    assert len(ds) == 2 * len(found)
    a, b = ds[len(ds) - 1]
    assert a.shape[1] == 64 and a.shape == b.shape and a.float().std() > 1

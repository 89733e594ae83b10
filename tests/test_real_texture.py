"""mcjepa.data.real_texture: photo-textured pairs whose flow and occlusion are exact, their
determinism, the photo sets and the ``real_texture`` motion source."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mcjepa.data import real_texture
from mcjepa.data.motion import build_motion_datasets
from mcjepa.data.real_texture import PhotoTextures, RealTextureFlowDataset, photo_files
from mcjepa.data.synthetic import SceneMotion, scene_motion
from mcjepa.ops import backward_warp


def _smooth_visible(flow: torch.Tensor, occlusion: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """(H, W) bool: visible pixels at least ``radius`` px from an occluded pixel and from a layer
    edge (a flow jump of more than 0.5 px between 4-neighbours; within a layer the flow changes
    by at most ~0.3 px per px: rotation up to 15 degrees, scale up to 12%)."""
    dx = (flow[:, :, 1:] - flow[:, :, :-1]).norm(dim=0) > 0.5
    dy = (flow[:, 1:, :] - flow[:, :-1, :]).norm(dim=0) > 0.5
    edge = torch.zeros(flow.shape[-2:], dtype=torch.bool)
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    bad = (edge | occlusion[0]).float()[None, None]
    return ~(F.max_pool2d(bad, 2 * radius + 1, 1, radius)[0, 0] > 0)


def _warp_error(item: dict, flow: torch.Tensor) -> torch.Tensor:
    """(H, W) mean absolute difference over channels between frame 1 and frame 2 warped by ``flow``."""
    warped = backward_warp(item["image2"][None], flow[None])[0]
    return (warped - item["image1"]).abs().mean(0)


def test_ground_truth_flow_warps_frame2_onto_frame1():
    # Measured (6 pairs, 144x192, rich motion without the brightness change): per pair, median
    # error 0.0013-0.0038 and mean 0.0026-0.0078 on the kept pixels (uint8 rounding alone is up to
    # 0.002; the rest is bilinear interpolation of the photo texture); the same flow shifted by
    # 1 px gives means 2.5-5x larger.
    size = (144, 192)
    motion = dataclasses.replace(scene_motion("rich", size), brightness=0.0)
    ds = RealTextureFlowDataset(3, size, seed=5, motion=motion)
    exact, off_x, off_y = [], [], []
    for i in range(len(ds)):
        item = ds[i]
        keep = _smooth_visible(item["flow"], item["occlusion"])
        assert keep.float().mean() > 0.4
        exact.append(_warp_error(item, item["flow"])[keep])
        off_x.append(_warp_error(item, item["flow"] + torch.tensor([1.0, 0.0]).view(2, 1, 1))[keep])
        off_y.append(_warp_error(item, item["flow"] + torch.tensor([0.0, 1.0]).view(2, 1, 1))[keep])
    exact, off_x, off_y = torch.cat(exact), torch.cat(off_x), torch.cat(off_y)
    assert exact.median() < 0.004 and exact.mean() < 0.008
    assert off_x.mean() > 2.5 * exact.mean() and off_y.mean() > 2.5 * exact.mean()


def test_same_seed_same_pairs_other_seed_other_pairs():
    a = RealTextureFlowDataset(2, (40, 48), seed=7)[1]
    b = RealTextureFlowDataset(2, (40, 48), seed=7)[1]
    c = RealTextureFlowDataset(2, (40, 48), seed=8)[1]
    assert set(a) == {"image1", "image2", "flow", "occlusion"}
    assert a["image1"].shape == (3, 40, 48) and a["flow"].shape == (2, 40, 48) and a["occlusion"].shape == (1, 40, 48)
    assert 0.0 <= float(a["image1"].min()) and float(a["image1"].max()) <= 1.0
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["image1"], c["image1"]) and not torch.equal(a["flow"], c["flow"])


def test_pixels_that_leave_the_frame_are_occluded():
    h, w = 48, 64
    motion = SceneMotion(translation=4.0, camera_translation=12.0)  # the camera moves far: borders leave
    ds = RealTextureFlowDataset(4, (h, w), seed=3, motion=motion)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    n_outside = 0
    for i in range(len(ds)):
        item = ds[i]
        tx, ty = xs + item["flow"][0], ys + item["flow"][1]
        outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
        occluded = item["occlusion"][0]
        assert occluded[outside].all()
        assert (~occluded).any()
        n_outside += int(outside.sum())
    assert n_outside > 100  # the check above was not vacuous


def test_photo_sets_resolve_or_say_what_was_expected(tmp_path, monkeypatch):
    bundled = photo_files("bundled")
    assert len(bundled) == 5 and all(p.parent == real_texture.BUNDLED_PHOTOS for p in bundled)
    with pytest.raises(FileNotFoundError, match="expected 'bundled', 'installed', a folder or an image file"):
        photo_files(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="expected 'bundled'"):
        RealTextureFlowDataset(1, (32, 32), photos=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images .* under"):
        photo_files(tmp_path / "empty")
    monkeypatch.setattr(real_texture, "installed_photo_files", lambda: [])
    with pytest.raises(FileNotFoundError, match="apt-get install opencv-doc"):
        photo_files("installed")
    with pytest.raises(FileNotFoundError, match="no photo files"):
        PhotoTextures([])
    # a folder, a single file and a list of both
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "red.png")
    assert photo_files(tmp_path) == [tmp_path / "red.png"]
    assert photo_files([tmp_path / "red.png", str(tmp_path)]) == [tmp_path / "red.png"] * 2
    item = RealTextureFlowDataset(1, (32, 40), photos=tmp_path)[0]  # one flat red photo: a red scene
    assert torch.allclose(item["image1"][:, 5, 5], torch.tensor([200, 30, 30]) / 255.0, atol=1 / 255)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("not a png")
    with pytest.raises(OSError, match="could not read photo"):
        RealTextureFlowDataset(1, (32, 40), photos=tmp_path / "bad")[0]


def test_real_texture_motion_source_builds_and_validates():
    (ds,) = build_motion_datasets([{"name": "real_texture", "num_pairs": 3, "size": [40, 48], "crop": [32, 32]}])
    assert len(ds) == 3
    a, b = ds[2]
    assert a.shape == b.shape == (3, 32, 32) and a.dtype == torch.float32
    spec = {"name": "real_texture", "num_pairs": 2, "size": [40, 48], "seed": 4, "photos": "bundled"}
    (full,) = build_motion_datasets([spec])
    ref = RealTextureFlowDataset(2, (40, 48), seed=4)[1]
    assert torch.equal(full[1][0], ref["image1"]) and torch.equal(full[1][1], ref["image2"])
    with pytest.raises(ValueError, match="missing key 'size'"):
        build_motion_datasets([{"name": "real_texture", "num_pairs": 2}])
    with pytest.raises(ValueError, match="missing key 'num_pairs'"):
        build_motion_datasets([{"name": "real_texture", "size": [40, 48]}])
    with pytest.raises(ValueError, match="key 'photos' must be a string"):
        build_motion_datasets([{**spec, "photos": 5}])
    with pytest.raises(ValueError, match="unknown key 'root'"):
        build_motion_datasets([{**spec, "root": "x"}])
    with pytest.raises(ValueError, match="key 'motion' must be one of"):
        build_motion_datasets([{**spec, "motion": "wild"}])
    with pytest.raises(FileNotFoundError, match="could not read photos '/nonexistent/photos'.*expected 'bundled'"):
        build_motion_datasets([{**spec, "photos": "/nonexistent/photos"}])

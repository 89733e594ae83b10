"""The embedded synthetic data: ground truth consistent with the images, determinism, speed."""

import dataclasses

import pytest
import torch
from torchvision.transforms import v2

from mcjepa.data.synthetic import (
    SHAPE_CLASSES,
    SceneMotion,
    SyntheticFlowDataset,
    SyntheticImageDataset,
    SyntheticPair,
    SyntheticShapeDataset,
    example_pair,
    render_image,
    render_pair,
    scene_motion,
)
from mcjepa.ops import backward_warp


def _errors(pair: SyntheticPair) -> tuple[float, float]:
    """Mean abs error on non-occluded pixels of warp(image2, flow) and of image2 itself vs image1."""
    i1 = pair.image1.float()[None] / 255
    i2 = pair.image2.float()[None] / 255
    visible = ~pair.occlusion[None].expand_as(i1)
    warped = backward_warp(i2, pair.flow[None])
    return (warped - i1).abs()[visible].mean().item(), (i2 - i1).abs()[visible].mean().item()


def _no_brightness(preset: str, size: tuple[int, int]) -> SceneMotion:
    return dataclasses.replace(scene_motion(preset, size), brightness=0.0)


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("preset", ["translation", "rich"])
def test_backward_warp_with_gt_flow_reconstructs_frame1(seed, preset):
    pair = render_pair(seed, size=(64, 80), motion=_no_brightness(preset, (64, 80)))
    assert pair.image1.dtype == torch.uint8 and pair.image1.shape == (3, 64, 80)
    assert pair.flow.dtype == torch.float32 and pair.flow.shape == (2, 64, 80)
    assert pair.occlusion.dtype == torch.bool and pair.occlusion.shape == (1, 64, 80)
    warp_err, zero_err = _errors(pair)
    assert warp_err < 0.012  # only bilinear interpolation and shape edges remain
    assert zero_err > 5 * warp_err  # the frames really differ: the flow explains the change


def test_flow_sign_convention_against_a_shifted_flow():
    pair = render_pair(3, size=(64, 80), motion=_no_brightness("rich", (64, 80)))
    good, _ = _errors(pair)
    flipped = SyntheticPair(pair.image1, pair.image2, -pair.flow, pair.occlusion)
    assert _errors(flipped)[0] > 3 * good


@pytest.mark.parametrize("preset", ["translation", "rich"])
def test_occlusion_marks_pixels_leaving_the_frame_and_hidden_pixels(preset):
    pair = render_pair(5, size=(64, 80), motion=_no_brightness(preset, (64, 80)))
    _, h, w = pair.flow.shape
    xs = torch.arange(w).view(1, w) + pair.flow[0]
    ys = torch.arange(h).view(h, 1) + pair.flow[1]
    outside = (xs < 0) | (xs > w - 1) | (ys < 0) | (ys > h - 1)
    occ = pair.occlusion[0]
    assert occ[outside].all()
    hidden = occ & ~outside
    assert hidden.any()  # some pixels are hidden by a layer in front
    # hidden pixels are where warping fails: their error is much larger than on visible pixels
    i1 = pair.image1.float()[None] / 255
    warped = backward_warp(pair.image2.float()[None] / 255, pair.flow[None])
    err = (warped - i1).abs().mean(1)[0]
    assert err[hidden].mean() > 5 * err[~occ].mean()


def test_translation_preset_flow_is_piecewise_constant_translations():
    pair = render_pair(2, size=(48, 48), num_shapes=(3, 3), max_motion=4.0, motion="translation")
    motions = torch.unique(pair.flow.reshape(2, -1), dim=1)
    assert 2 <= motions.shape[1] <= 4  # background + up to 3 visible shapes
    assert motions.norm(dim=0).max() <= 4.0 + 1e-5
    assert (motions != motions.round()).any()  # sub-pixel motion


def test_rich_preset_has_large_rotating_scaling_motion_and_a_brightness_change():
    size = (96, 128)
    pairs = [render_pair(seed, size) for seed in range(6)]
    mags = torch.stack([p.flow.norm(dim=0).mean() for p in pairs])
    assert mags.mean() > 4.0  # the coarse levels matter: tens of pixels at the larger sizes
    assert max(p.flow.norm(dim=0).max() for p in pairs) > 12.0
    # the camera's homography and the shapes' rotation / scale: the flow varies within each layer
    for p in pairs:
        assert torch.unique(p.flow.reshape(2, -1), dim=1).shape[1] > 1000
    # brightness constancy does not hold: frame 2 differs from frame 1 warped by the true flow by
    # more than the interpolation error alone would explain (compare with _no_brightness)
    bright = [_errors(p)[0] for p in pairs]
    exact = [_errors(render_pair(seed, size, motion=_no_brightness("rich", size)))[0] for seed in range(6)]
    assert sum(bright) > 2 * sum(exact)
    # motion grows with the image: 16% of the shorter side for shapes, 10% for the camera
    assert scene_motion("rich", (256, 512)).translation == pytest.approx(40.96)
    assert scene_motion("rich", (64, 96)).camera_translation == pytest.approx(6.4)


def test_deterministic_by_seed_and_seeds_differ():
    a, b, c = render_pair(11, (40, 56)), render_pair(11, (40, 56)), render_pair(12, (40, 56))
    for name in ("image1", "image2", "flow", "occlusion"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.image1, c.image1)
    assert not torch.equal(a.flow, c.flow)
    assert torch.equal(render_image(4, (32, 48)), render_image(4, (32, 48)))
    assert not torch.equal(render_image(4, (32, 48)), render_image(5, (32, 48)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="size must be"):
        render_pair(0, size=(0, 10))
    with pytest.raises(ValueError, match="num_shapes"):
        render_pair(0, num_shapes=(4, 2))
    with pytest.raises(ValueError, match="max_motion"):
        render_pair(0, max_motion=float("nan"))
    with pytest.raises(ValueError, match="motion must be one of"):
        render_pair(0, motion="sideways")
    with pytest.raises(ValueError, match="SceneMotion.rotation_deg"):
        SceneMotion(rotation_deg=-1.0)
    with pytest.raises(ValueError, match="max_motion with a preset"):
        render_pair(0, max_motion=3.0, motion=SceneMotion())


def test_flow_dataset_items():
    ds = SyntheticFlowDataset(3, size=(40, 48), seed=2, max_motion=3.0)
    assert len(ds) == 3
    item = ds[1]
    assert set(item) == {"image1", "image2", "flow", "occlusion"}
    assert item["image1"].dtype == torch.float32 and item["image1"].shape == (3, 40, 48)
    assert 0.0 <= item["image1"].min() and item["image2"].max() <= 1.0
    pair = render_pair(2 * 1_000_003 + 1, size=(40, 48), max_motion=3.0)
    assert torch.equal(item["image1"], pair.image1.float() / 255)
    assert torch.equal(item["flow"], pair.flow) and torch.equal(item["occlusion"], pair.occlusion)
    assert torch.equal(ds[-1]["flow"], ds[2]["flow"])
    assert not torch.equal(ds[0]["image1"], ds[1]["image1"])
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image1"].shape == (2, 3, 40, 48) and batch["occlusion"].shape == (2, 1, 40, 48)


def test_image_dataset_works_with_transforms_v2():
    ds = SyntheticImageDataset(4, size=(48, 64), seed=1)
    img = ds[0]
    assert isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and img.shape == (3, 48, 64)
    assert img.float().std() > 10  # textured, not flat
    tf = v2.Compose(
        [v2.RandomResizedCrop(32, scale=(0.3, 1.0)), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)]
    )
    out = SyntheticImageDataset(4, size=(48, 64), seed=1, transform=tf)[0]
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and out.max() <= 1.0


def test_shape_dataset_is_balanced_labelled_and_deterministic():
    ds = SyntheticShapeDataset(12, size=(40, 40), seed=3)
    labels = [ds[i][1] for i in range(12)]
    assert labels == [i % len(SHAPE_CLASSES) for i in range(12)]
    img, _ = ds[4]
    assert img.dtype == torch.uint8 and img.shape == (3, 40, 40)
    assert torch.equal(img, SyntheticShapeDataset(12, size=(40, 40), seed=3)[4][0])
    assert not torch.equal(img, SyntheticShapeDataset(12, size=(40, 40), seed=4)[4][0])


def test_example_pair_is_fixed():
    a, b = example_pair(), example_pair()
    assert a.image1.shape == (3, 96, 128)
    assert torch.equal(a.image1, b.image1) and torch.equal(a.flow, b.flow)
    assert a.flow.norm(dim=0).mean() > 0.5

"""Tests for mcjepa.train.losses: hand-computed values on tiny tensors and independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mcjepa.ops import standardize_feature_pair
from mcjepa.train.losses import (
    PAPER_REG_WEIGHTS,
    PAPER_VC_COV_WEIGHTS,
    PAPER_VC_VAR_WEIGHTS,
    census_distance,
    census_transform,
    cycle_consistency_loss,
    feature_regression_loss,
    forward_backward_occlusion,
    gather_across_ranks,
    photometric_loss,
    pyramid_vc_loss,
    smoothness_loss,
    ssim,
    variance_covariance_loss,
    variance_covariance_terms,
    vicreg_loss,
)

SIZES = ((8, 12), (4, 6), (4, 6), (2, 3), (2, 3), (2, 3))  # a tiny fine-to-coarse pyramid
C1, C2 = 0.01**2, 0.03**2


def _pyramid(b: int = 1, c: int = 2) -> list[torch.Tensor]:
    return [torch.rand(b, c, h, w) for h, w in SIZES]


def _const_flows(u: float, v: float = 0.0, levels=range(6), b: int = 1) -> list[torch.Tensor]:
    flows = []
    for lvl in levels:
        f = torch.zeros(b, 2, *SIZES[lvl])
        f[:, 0], f[:, 1] = u, v
        flows.append(f)
    return flows


def _one_hot(n: int, i: int, value: float = 1.0) -> list[float]:
    w = [0.0] * n
    w[i] = value
    return w


# ----------------------------------------------------------------------------------------------
# paper constants


def test_paper_weights_are_the_seed_numbers_reversed_to_fine_to_coarse():
    assert PAPER_REG_WEIGHTS[::-1] == (1, 1, 1, 1, 0.1, 0.01)
    assert PAPER_VC_VAR_WEIGHTS[::-1] == (0.01, 0.01, 0.01, 0.01, 0.001, 0.0001)
    assert PAPER_VC_COV_WEIGHTS[::-1] == (0.04, 0.04, 0.001, 0, 0, 0)


# ----------------------------------------------------------------------------------------------
# feature regression


def _shift_case():
    """Level-3 map (1, 1, 2, 3); frame t+1 is frame t moved right by one pixel with new content 9."""
    feats_src, feats_tgt = _pyramid(c=1), _pyramid(c=1)
    feats_src[3] = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])
    feats_tgt[3] = torch.tensor([[[[9.0, 1.0, 2.0], [9.0, 4.0, 5.0]]]])
    return feats_src, feats_tgt


def test_feature_regression_known_shift():
    src, tgt = _shift_case()
    w = _one_hot(6, 3, 2.0)
    right = _const_flows(1.0, levels=[3])
    # correct flow: the two in-image columns match exactly; the out-of-image column is masked
    assert feature_regression_loss(src, tgt, right, [3], w, mask_out_of_image=True).item() == pytest.approx(
        0.0, abs=1e-8
    )
    # unmasked, the last column is compared with zeros: (3^2 + 6^2) / 6 elements * weight 2
    got = feature_regression_loss(src, tgt, right, [3], w, mask_out_of_image=False)
    assert got.item() == pytest.approx(2 * 45 / 6, rel=1e-5)
    # zero flow: differences [[-8, 1, 1], [-5, 1, 1]] -> 93 / 6, times 2
    zero = _const_flows(0.0, levels=[3])
    assert feature_regression_loss(src, tgt, zero, [3], w, mask_out_of_image=True).item() == pytest.approx(
        2 * 93 / 6, rel=1e-6
    )


def test_masked_feature_regression_has_a_degenerate_optimum():
    """Why training leaves loss.reg_mask_out_of_image off: with the mask on, a flow that sends
    every sample out of the frame empties the mask and L_reg is exactly 0, however different the
    features are, and its gradient offers the flow no way back; off, the same flow is penalised
    (the out-of-image samples read zeros)."""
    src, tgt = _shift_case()
    w = _one_hot(6, 3, 2.0)
    away = [f.requires_grad_(True) for f in _const_flows(100.0, levels=[3])]
    masked = feature_regression_loss(src, tgt, away, [3], w, mask_out_of_image=True)
    assert masked.item() == 0.0
    masked.backward()
    assert away[0].grad is None or not away[0].grad.any()
    unmasked = feature_regression_loss(src, tgt, away, [3], w, mask_out_of_image=False)
    assert unmasked.item() == pytest.approx(2 * (1 + 4 + 9 + 16 + 25 + 36) / 6, rel=1e-5)  # src vs zeros


def test_feature_regression_sums_weighted_levels_and_ignores_unestimated_ones():
    src, tgt = _pyramid(), _pyramid()
    levels = [1, 2, 3, 4, 5]  # a head with finest_level=1 never estimates level 0
    flows = _const_flows(0.0, levels=levels)
    weights = [1000.0, 0.5, 0.0, 3.0, 0.0, 0.0]
    per_level = {lvl: (src[lvl] - tgt[lvl]).square().mean().item() for lvl in levels}
    expected = 0.5 * per_level[1] + 3.0 * per_level[3]
    got = feature_regression_loss(src, tgt, flows, levels, weights, mask_out_of_image=True)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_feature_regression_gradients_reach_features_and_flow():
    src, tgt = _pyramid(), _pyramid()
    for t in src + tgt:
        t.requires_grad_(True)
    flows = [f.requires_grad_(True) for f in _const_flows(0.3, 0.2)]
    feature_regression_loss(src, tgt, flows, range(6), PAPER_REG_WEIGHTS, mask_out_of_image=True).backward()
    for i in range(6):
        assert src[i].grad.abs().sum() > 0 and tgt[i].grad.abs().sum() > 0
        assert flows[i].grad.abs().sum() > 0


@pytest.mark.parametrize(("flow_grad", "feature_grad"), [(False, True), (True, False)])
def test_feature_regression_gradient_switches(flow_grad, feature_grad):
    """reg_gradient = "features" leaves the flows untouched, "flow" the features; the value is the same."""
    torch.manual_seed(5)
    src, tgt = [t.requires_grad_(True) for t in _pyramid()], [t.requires_grad_(True) for t in _pyramid()]
    flows = [f.requires_grad_(True) for f in _const_flows(0.3, 0.2)]
    args = (src, tgt, flows, range(6), PAPER_REG_WEIGHTS)
    full = feature_regression_loss(*args, mask_out_of_image=False)
    loss = feature_regression_loss(*args, mask_out_of_image=False, flow_grad=flow_grad, feature_grad=feature_grad)
    assert torch.equal(loss, full)
    loss.backward()
    assert all((f.grad is not None) == flow_grad for f in flows)
    assert all((t.grad is not None) == feature_grad for t in src + tgt)


def test_feature_regression_rejects_bad_inputs():
    src, tgt = _pyramid(), _pyramid()
    flows = _const_flows(0.0)
    with pytest.raises(ValueError, match="expected 6 weights"):
        feature_regression_loss(src, tgt, flows, range(6), [1.0] * 5, mask_out_of_image=True)
    with pytest.raises(ValueError, match="one flow per level"):
        feature_regression_loss(src, tgt, flows[:5], range(6), [1.0] * 6, mask_out_of_image=True)
    with pytest.raises(ValueError, match="spatial size"):
        feature_regression_loss(src, tgt, flows[::-1], range(6), [1.0] * 6, mask_out_of_image=True)


# ----------------------------------------------------------------------------------------------
# SSIM


def _ssim_loop_reference(x: np.ndarray, y: np.ndarray, r: int = 1) -> np.ndarray:
    """Straightforward per-pixel SSIM of two (H, W) float64 images with reflect padding."""
    xp, yp = np.pad(x, r, mode="reflect"), np.pad(y, r, mode="reflect")
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a = xp[i : i + 2 * r + 1, j : j + 2 * r + 1].ravel()
            b = yp[i : i + 2 * r + 1, j : j + 2 * r + 1].ravel()
            mx, my = a.mean(), b.mean()
            vx, vy = ((a - mx) ** 2).mean(), ((b - my) ** 2).mean()
            cxy = ((a - mx) * (b - my)).mean()
            out[i, j] = (2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    return out


def test_ssim_is_one_for_identical_images():
    x = torch.rand(2, 3, 9, 11)
    torch.testing.assert_close(ssim(x, x), torch.ones_like(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(ssim(x, x, padding="valid"), torch.ones(2, 3, 7, 9), rtol=0, atol=1e-5)


def test_ssim_matches_loop_reference():
    x = torch.rand(1, 2, 7, 9, dtype=torch.float64)
    y = (0.6 * x + 0.4 * torch.rand_like(x)).clamp(0, 1)
    got = ssim(x, y)
    assert got.shape == x.shape and got.dtype == torch.float64
    for c in range(2):
        ref = _ssim_loop_reference(x[0, c].numpy(), y[0, c].numpy())
        np.testing.assert_allclose(got[0, c].numpy(), ref, rtol=0, atol=1e-10)
    # float32 input agrees to float32 accuracy
    torch.testing.assert_close(ssim(x.float(), y.float()).double(), got, rtol=0, atol=1e-4)
    # valid padding is the interior of the same map
    torch.testing.assert_close(ssim(x, y, padding="valid"), got[..., 1:-1, 1:-1])


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    x = torch.rand(1, 3, 10, 12, dtype=torch.float64)
    y = (0.7 * x + 0.3 * torch.rand_like(x)).clamp(0, 1)
    _, full = metrics.structural_similarity(
        x[0].numpy(),
        y[0].numpy(),
        win_size=3,
        data_range=1.0,
        gaussian_weights=False,
        use_sample_covariance=False,
        channel_axis=0,
        full=True,
    )
    # skimage pads differently at the border; the interior windows are identical
    np.testing.assert_allclose(ssim(x, y, padding="valid")[0].numpy(), full[:, 1:-1, 1:-1], rtol=0, atol=1e-10)


def test_ssim_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="odd"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), window=4)


# ----------------------------------------------------------------------------------------------
# photometric


def test_photometric_constant_images_hand_computed():
    a = torch.full((1, 3, 6, 7), 0.5, dtype=torch.float64)
    b = torch.full((1, 3, 6, 7), 0.7, dtype=torch.float64)
    # L2 = 0.04, L1 = 0.2; constant windows: SSIM = (2*0.35 + C1) C2 / ((0.25 + 0.49 + C1) C2)
    one_minus_ssim = 1 - (0.7 + C1) / (0.74 + C1)
    got = photometric_loss(a, b, l1=1.0, l2=1.0, ssim=1.0)
    assert got.item() == pytest.approx(0.04 + 0.2 + one_minus_ssim, rel=1e-5)
    defaults = photometric_loss(a, b)  # 0.15 L1 + 0.425 (1 - SSIM), no L2
    assert defaults.item() == pytest.approx(0.15 * 0.2 + 0.425 * one_minus_ssim, rel=1e-5)
    assert photometric_loss(a, a).item() == pytest.approx(0.0, abs=1e-12)
    # float32 (what training uses) loses ~1e-4 to E[x^2] - mu^2 cancellation, as in ARFlow/monodepth2
    got32 = photometric_loss(a.float(), b.float(), l1=1.0, l2=1.0, ssim=1.0)
    assert got32.item() == pytest.approx(0.04 + 0.2 + one_minus_ssim, abs=5e-4)


def test_photometric_mask_excludes_pixels():
    a, b = torch.rand(2, 3, 10, 10), torch.rand(2, 3, 10, 10)
    mask = torch.ones(2, 1, 10, 10)
    mask[1, :, 3:6, 4:7] = 0  # a 3x3 block: covers every SSIM window that sees its centre
    base = photometric_loss(a, b, mask, l2=0.3)
    b2 = b.clone()
    b2[1, :, 4, 5] = 1 - b2[1, :, 4, 5]
    assert photometric_loss(a, b2, mask, l2=0.3).item() == pytest.approx(base.item(), rel=1e-6)
    assert photometric_loss(a, b2, l2=0.3).item() != pytest.approx(photometric_loss(a, b, l2=0.3).item(), rel=1e-4)
    # all-ones mask == no mask; (B, H, W) masks work; an empty mask gives 0
    assert photometric_loss(a, b, torch.ones(2, 10, 10)).item() == pytest.approx(photometric_loss(a, b).item())
    assert photometric_loss(a, b, torch.zeros(2, 1, 10, 10)).item() == 0.0


def test_photometric_is_masked_mean_of_per_pixel_distance():
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    mask = (torch.rand(1, 1, 8, 8) > 0.5).float()
    d = 0.15 * (a - b).abs().mean(1, keepdim=True) + 0.425 * (1 - ssim(a, b)).mean(1, keepdim=True)
    expected = (d * mask).sum() / mask.sum()
    assert photometric_loss(a, b, mask).item() == pytest.approx(expected.item(), rel=1e-5)


def test_photometric_gradient_reaches_image_not_mask():
    a = torch.rand(1, 3, 8, 8)
    b = torch.rand(1, 3, 8, 8, requires_grad=True)
    mask = torch.rand(1, 1, 8, 8, requires_grad=True)
    photometric_loss(a, b, mask, l2=0.01).backward()
    assert b.grad.abs().sum() > 0
    assert mask.grad is None


def test_photometric_rejects_unnormalised_images():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        photometric_loss(torch.rand(1, 3, 8, 8) * 255, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="mask must be"):
        photometric_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.ones(1, 3, 8, 8))


# ----------------------------------------------------------------------------------------------
# smoothness


def _census_reference(image: torch.Tensor, patch: int) -> torch.Tensor:
    """Loop reference: for each pixel and each window offset, the soft sign of the grey difference."""
    grey = image.mean(1)[0] * 255.0
    h, w = grey.shape
    r = patch // 2
    out = torch.zeros(patch * patch, h, w)
    for y in range(h):
        for x in range(w):
            for k, (dy, dx) in enumerate((dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)):
                q = grey[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]
                d = q - grey[y, x]
                out[k, y, x] = d / math.sqrt(0.81 + float(d) ** 2)
    return out


def test_census_transform_matches_loop_reference():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 6, 7)
    torch.testing.assert_close(census_transform(img, 3)[0], _census_reference(img, 3), atol=1e-5, rtol=1e-5)


def test_census_distance_hand_computed_and_brightness_offset_invariant():
    # a single bright pixel in a dark 9x9 image, compared with the all-dark image: at the centre,
    # every one of the 48 neighbours differs by -255 (signature -255 / sqrt(0.81 + 255^2)) in the
    # first image and by 0 in the second
    a = torch.zeros(1, 3, 9, 9)
    a[..., 4, 4] = 1.0
    b = torch.zeros(1, 3, 9, 9)
    t = 255.0 / math.sqrt(0.81 + 255.0**2)
    hamming = 48 * t**2 / (0.1 + t**2)
    want = (hamming + 0.01) ** 0.4 - 0.01**0.4
    d = census_distance(a, b)
    assert d.shape == (1, 1, 9, 9)
    assert d[0, 0, 4, 4].item() == pytest.approx(want, rel=1e-5)
    assert d[0, 0, :3].abs().max() == 0 and d[0, 0, :, -3:].abs().max() == 0  # border excluded
    # equal images: exactly 0; a brightness offset changes no sign (in the image's interior)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 16, 16) * 0.8
    assert census_distance(x, x).abs().max() == 0
    assert census_distance(x, x + 0.1).abs().max() < 1e-4


def test_photometric_census_term_adds_the_census_distance_and_trains_the_image():
    torch.manual_seed(2)
    a = torch.rand(1, 3, 12, 12)
    b = torch.rand(1, 3, 12, 12).requires_grad_(True)
    plain = photometric_loss(a, b, l1=0.15, ssim=0.425)
    with_census = photometric_loss(a, b, l1=0.15, ssim=0.425, census=2.0)
    assert with_census.item() == pytest.approx(plain.item() + 2.0 * census_distance(a, b).mean().item(), rel=1e-5)
    with_census.backward()
    assert b.grad is not None and b.grad[..., 3:-3, 3:-3].abs().sum() > 0


def test_smoothness_zero_for_constant_flow():
    flow = torch.zeros(2, 2, 6, 7)
    flow[:, 0], flow[:, 1] = 3.5, -2.0
    assert smoothness_loss(flow, torch.rand(2, 3, 6, 7)).item() == 0.0


def test_smoothness_hand_computed_and_edge_aware():
    flow = torch.zeros(1, 2, 2, 3)
    flow[:, 0, :, 2] = 3.0  # u = [0, 0, 3] on both rows: one jump of 3 px per row
    flat = torch.full((1, 3, 2, 3), 0.5)
    # x: |du/dx| = [0, 3] per row, mean over 2 channels x 2 rows x 2 positions = 6 / 8;
    # y: no change; total = (6/8 + 0) / 2
    assert smoothness_loss(flow, flat).item() == pytest.approx(0.375)
    assert smoothness_loss(flow, flat, flow_scale=0.5).item() == pytest.approx(0.1875)
    # an image edge at the same place as the flow jump (|grad I| = 0.2) lowers the penalty by exp(-75*0.2)
    edge = flat.clone()
    edge[..., 2] = 0.7
    assert smoothness_loss(flow, edge).item() == pytest.approx(0.375 * math.exp(-15.0), rel=1e-5)
    assert smoothness_loss(flow, edge, edge_factor=0.0).item() == pytest.approx(0.375)


def test_smoothness_gradient_and_errors():
    flow = torch.randn(1, 2, 5, 6, requires_grad=True)
    smoothness_loss(flow, torch.rand(1, 3, 5, 6)).backward()
    assert flow.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="spatial size"):
        smoothness_loss(torch.zeros(1, 2, 5, 6), torch.rand(1, 3, 5, 7))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        smoothness_loss(torch.zeros(1, 2, 5, 6), torch.rand(1, 3, 5, 6) * 2 - 1)


# ----------------------------------------------------------------------------------------------
# forward-backward occlusion and cycle consistency


def test_forward_backward_occlusion_hand_made():
    fwd = torch.zeros(1, 2, 2, 4)
    fwd[:, 0] = 1.0
    bwd = torch.zeros(1, 2, 2, 4)
    bwd[:, 0] = -1.0
    # pixel x lands at x + 1: consistent except at x = 3, which leaves the image (bwd reads 0)
    expected = torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(1, 1, 2, 4)
    torch.testing.assert_close(forward_backward_occlusion(fwd, bwd), expected)
    # break the backward flow at x = 2: pixel 1 lands there and sees |1 + 1|^2 = 4 > 0.01 * 2 + 0.5
    bwd[:, 0, :, 2] = 1.0
    expected = torch.tensor([1.0, 0.0, 1.0, 0.0]).expand(1, 1, 2, 4)
    torch.testing.assert_close(forward_backward_occlusion(fwd, bwd), expected)


@pytest.mark.parametrize(
    "u_fwd,u_bwd,visible",
    [
        (10.0, -9.5, True),  # |0.5|^2 = 0.25 <= 0.01 * (100 + 90.25) + 0.5
        (1.0, -0.2, False),  # |0.8|^2 = 0.64 > 0.01 * (1 + 0.04) + 0.5
        (0.6, 0.0, True),  # |0.6|^2 = 0.36 <= 0.01 * 0.36 + 0.5
        (30.0, -27.0, True),  # 9 <= 0.01 * (900 + 729) + 0.5 = 16.79: large flows get more slack
        (30.0, -25.0, False),  # 25 > 0.01 * (900 + 625) + 0.5 = 15.75
    ],
)
def test_forward_backward_occlusion_threshold(u_fwd, u_bwd, visible):
    fwd = torch.zeros(1, 2, 3, 40)
    fwd[:, 0] = u_fwd
    bwd = torch.zeros(1, 2, 3, 40)
    bwd[:, 0] = u_bwd
    mask = forward_backward_occlusion(fwd, bwd)
    assert mask[0, 0, 1, 5].item() == float(visible)  # an interior pixel that lands inside


def test_forward_backward_occlusion_has_no_gradient():
    fwd = torch.randn(1, 2, 5, 5, requires_grad=True)
    bwd = torch.randn(1, 2, 5, 5, requires_grad=True)
    mask = forward_backward_occlusion(fwd, bwd)
    assert not mask.requires_grad and mask.dtype == torch.float32


def test_cycle_zero_for_consistent_integer_shifts():
    feats = _pyramid(b=2, c=3)
    fwd, bwd = _const_flows(1.0, -1.0, b=2), _const_flows(-1.0, 1.0, b=2)
    masks = [forward_backward_occlusion(f, b) for f, b in zip(fwd, bwd)]
    assert all(m.sum() > 0 for m in masks) and any((m == 0).any() for m in masks)
    assert cycle_consistency_loss(feats, fwd, bwd, range(6)).item() == pytest.approx(0.0, abs=1e-9)
    # without the occlusion mask, the border pixels that left the image are penalised
    ones = [torch.ones_like(m) for m in masks]
    assert cycle_consistency_loss(feats, fwd, bwd, range(6), ones).item() > 1e-3


def test_cycle_hand_computed_half_pixel():
    feats = _pyramid(c=1)
    feats[5] = torch.tensor([[[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]]])
    fwd, bwd = torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 4)
    fwd[:, 0] = 0.5
    # bwd = 0: the round trip is X(x + 0.5); every pixel is forward-backward consistent
    # (0.25 <= 0.5025); errors -0.5, -0.5, -0.5, 1.5 and -0.5, -0.5, -0.5, 3.5 -> 16 / 8 = 2
    got = cycle_consistency_loss(feats, [fwd], [bwd], [5])
    assert got.item() == pytest.approx(0.2 * 2.0, rel=1e-6)
    assert cycle_consistency_loss(feats, [fwd], [bwd], [5], weight=1.0).item() == pytest.approx(2.0, rel=1e-6)


def test_cycle_gradients_reach_features_and_flows_not_masks():
    feats = [f.requires_grad_(True) for f in _pyramid()]
    fwd = [f.requires_grad_(True) for f in _const_flows(0.4, 0.3)]
    bwd = [f.requires_grad_(True) for f in _const_flows(-0.2, -0.1)]
    masks = [torch.ones(1, 1, *s, requires_grad=True) for s in SIZES]
    cycle_consistency_loss(feats, fwd, bwd, range(6), masks).backward()
    for i in range(6):
        assert feats[i].grad.abs().sum() > 0
        assert fwd[i].grad.abs().sum() > 0 and bwd[i].grad.abs().sum() > 0
        assert masks[i].grad is None
    # the automatic mask gives the same value as passing it in precomputed
    with torch.no_grad():
        auto = cycle_consistency_loss(feats, fwd, bwd, range(6))
        given = cycle_consistency_loss(
            feats, fwd, bwd, range(6), [forward_backward_occlusion(f, b) for f, b in zip(fwd, bwd)]
        )
    assert auto.item() == pytest.approx(given.item())


# ----------------------------------------------------------------------------------------------
# variance-covariance


def _vc_case() -> torch.Tensor:
    # 3 samples (positions), 2 channels: c0 = [1, 2, 3] (var 1), c1 = [0, 0.5, 1] (var 0.25)
    return torch.tensor([[[[1.0, 2.0, 3.0]], [[0.0, 0.5, 1.0]]]])  # (1, 2, 1, 3)


def test_variance_covariance_hand_computed():
    x = _vc_case()
    var, cov = variance_covariance_terms(x, eps=0.0)
    # hinge: relu(1 - 1) = 0 and relu(1 - 0.5) = 0.5 -> mean 0.25
    assert var.item() == pytest.approx(0.25)
    # cov01 = ((-1)(-0.5) + 0 + (1)(0.5)) / 2 = 0.5; two off-diagonal entries squared / C = 0.25
    assert cov.item() == pytest.approx(0.25)
    total = variance_covariance_loss(x, var_weight=2.0, cov_weight=3.0, eps=0.0)
    assert total.item() == pytest.approx(2 * 0.25 + 3 * 0.25)
    # gamma and eps enter the hinge: gamma 2, eps 1e-4
    var2, _ = variance_covariance_terms(x, gamma=2.0, eps=1e-4)
    assert var2.item() == pytest.approx((2 - math.sqrt(1 + 1e-4) + 2 - math.sqrt(0.25 + 1e-4)) / 2)
    # batch positions are samples too: the same 3 samples as a (3, 2, 1, 1) batch
    as_batch = x.permute(3, 1, 2, 0).contiguous()
    assert variance_covariance_loss(as_batch, 2.0, 3.0, eps=0.0).item() == pytest.approx(total.item())


def test_per_image_variance_sees_within_image_collapse_that_batch_pooling_misses():
    # image 0 varies over its positions ([0, 2]: unbiased std sqrt(2) > 1), image 1 is constant
    x = torch.tensor([[[[0.0, 2.0]]], [[[5.0, 5.0]]]])  # (B=2, C=1, H=1, W=2)
    var_batch, _ = variance_covariance_terms(x, with_cov=False)
    assert var_batch.item() == 0.0  # [0, 2, 5, 5]: std 2.45, no penalty
    var_image, _ = variance_covariance_terms(x, with_cov=False, pooling="image")
    expected = 0.5 * (0.0 + (1.0 - math.sqrt(1e-4)))  # image 1's hinge, averaged over 2 images
    assert var_image.item() == pytest.approx(expected, rel=1e-6)


def test_per_image_covariance_matches_a_loop_over_images():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 6)
    var, cov = variance_covariance_terms(x, gamma=1.5, pooling="image")
    ref_var, ref_cov = zip(*(variance_covariance_terms(x[i : i + 1], gamma=1.5) for i in range(3)))
    assert var.item() == pytest.approx(sum(v.item() for v in ref_var) / 3, rel=1e-5)
    assert cov.item() == pytest.approx(sum(c.item() for c in ref_cov) / 3, rel=1e-5)
    with pytest.raises(ValueError, match="pooling must be one of"):
        variance_covariance_terms(x, pooling="pixel")
    with pytest.raises(ValueError, match="at least 2 positions"):
        variance_covariance_terms(torch.randn(2, 3, 1, 1), pooling="image")


def test_standardized_feature_losses_ignore_feature_scale_and_channel_offsets():
    torch.manual_seed(1)
    src, tgt = _pyramid(b=2, c=3), _pyramid(b=2, c=3)
    flows = _const_flows(0.7, -0.3, b=2)
    offsets = torch.tensor([3.0, -1.0, 0.5]).view(1, 3, 1, 1)
    small_src = [0.01 * f + offsets for f in src]
    small_tgt = [0.01 * f + offsets for f in tgt]
    w = [1.0] * 6
    raw = feature_regression_loss(src, tgt, flows, range(6), w, mask_out_of_image=False)
    raw_small = feature_regression_loss(
        [0.01 * f for f in src], [0.01 * f for f in tgt], flows, range(6), w, mask_out_of_image=False
    )
    std = feature_regression_loss(src, tgt, flows, range(6), w, mask_out_of_image=False, feature_norm="standardize")
    std_small = feature_regression_loss(
        small_src, small_tgt, flows, range(6), w, mask_out_of_image=False, feature_norm="standardize"
    )
    assert raw_small.item() < 0.01 * raw.item()  # raw L_reg rewards shrinking the features
    assert std_small.item() == pytest.approx(std.item(), rel=1e-3)  # the standardised one does not
    masks = [torch.ones(2, 1, h, w_) for h, w_ in SIZES]
    bwd = _const_flows(-0.7, 0.3, b=2)
    cyc = cycle_consistency_loss(src, flows, bwd, range(6), masks, feature_norm="standardize")
    cyc_small = cycle_consistency_loss(small_src, flows, bwd, range(6), masks, feature_norm="standardize")
    assert cyc_small.item() == pytest.approx(cyc.item(), rel=1e-3)
    with pytest.raises(ValueError, match="feature_norm must be one of"):
        feature_regression_loss(src, tgt, flows, range(6), w, mask_out_of_image=True, feature_norm="l2")


def test_standardize_feature_pair_statistics():
    torch.manual_seed(2)
    a, b = 4.0 + 3.0 * torch.randn(2, 5, 6, 7), 4.0 + 3.0 * torch.randn(2, 5, 6, 7)
    na, nb = standardize_feature_pair(a, b)
    both = torch.stack((na, nb), dim=1)
    assert both.mean(dim=(1, 3, 4)).abs().max() < 1e-5  # every channel centred, per image
    assert both.square().mean(dim=(1, 2, 3, 4)).sub(1.0).abs().max() < 1e-4  # unit pooled scale


def test_cycle_without_flow_gradient_trains_only_the_features():
    torch.manual_seed(3)
    feats = [f.requires_grad_(True) for f in _pyramid()]
    fwd = [f.requires_grad_(True) for f in _const_flows(0.4)]
    bwd = [f.requires_grad_(True) for f in _const_flows(-0.3)]
    masks = [torch.ones(1, 1, h, w) for h, w in SIZES]
    loss = cycle_consistency_loss(feats, fwd, bwd, range(6), masks, flow_grad=False)
    loss.backward()
    assert all(f.grad is None for f in fwd + bwd)
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


def test_variance_covariance_subsampling_is_seeded_and_exact():
    x = torch.randn(2, 4, 5, 6)  # 60 positions
    z = x.permute(0, 2, 3, 1).reshape(-1, 4)
    idx = torch.randperm(60, generator=torch.Generator().manual_seed(3))[:10]
    var_ref, cov_ref = variance_covariance_terms(z[idx].T.reshape(1, 4, 1, 10))
    var, cov = variance_covariance_terms(x, max_samples=10, generator=torch.Generator().manual_seed(3))
    assert var.item() == pytest.approx(var_ref.item()) and cov.item() == pytest.approx(cov_ref.item())
    full = variance_covariance_terms(x)
    capped = variance_covariance_terms(x, max_samples=60)
    assert full[0].item() == capped[0].item() and full[1].item() == capped[1].item()


def test_pyramid_vc_weight_order_and_skipped_levels():
    feats = _pyramid(c=3)
    feats[0] = _vc_case()  # finest level
    feats[5] = torch.ones(1, 2, 1, 1, requires_grad=True)  # one sample: would raise if computed
    feats[1].requires_grad_(True)
    got = pyramid_vc_loss(feats, _one_hot(6, 0, 2.0), _one_hot(6, 0, 3.0), eps=0.0)
    assert got.item() == pytest.approx(1.25)  # index 0 is the finest map
    w_var, w_cov = [0.0, 0.5, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    loss = pyramid_vc_loss(feats, w_var, w_cov)
    expected = 0.5 * variance_covariance_terms(feats[1])[0] + variance_covariance_terms(feats[3])[1]
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert feats[1].grad.abs().sum() > 0 and feats[5].grad is None
    with pytest.raises(ValueError, match="at least 2 samples"):
        pyramid_vc_loss(feats, _one_hot(6, 5), [0.0] * 6)
    with pytest.raises(ValueError, match="one per pyramid level"):
        pyramid_vc_loss(feats, PAPER_VC_VAR_WEIGHTS[:5], PAPER_VC_COV_WEIGHTS)


# ----------------------------------------------------------------------------------------------
# VICReg


def _vicreg_numpy(z1: np.ndarray, z2: np.ndarray, wi: float, wv: float, wc: float, gamma=1.0, eps=1e-4):
    """Plain-loop VICReg (the paper's definitions, unbiased statistics)."""
    n, d = z1.shape
    inv = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def var_cov(z):
        mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
        cov = [
            [sum((z[i, a] - mean[a]) * (z[i, b] - mean[b]) for i in range(n)) / (n - 1) for b in range(d)]
            for a in range(d)
        ]
        var = sum(max(0.0, gamma - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        off = sum(cov[a][b] ** 2 for a in range(d) for b in range(d) if a != b) / d
        return var, off

    v1, c1 = var_cov(z1)
    v2, c2 = var_cov(z2)
    var, cov = (v1 + v2) / 2, c1 + c2
    return {"inv": inv, "var": var, "cov": cov, "total": wi * inv + wv * var + wc * cov}


def test_vicreg_hand_computed():
    z1 = torch.tensor([[1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 0.0, -1.0]])
    z2 = z1 + 0.5
    out = vicreg_loss(z1, z2)
    # inv = 0.5^2; std = (sqrt(4/3 + 1e-4), 0.01, sqrt(4/3 + 1e-4)) -> hinge (0, 0.99, 0) / 3 per branch;
    # columns are uncorrelated -> cov 0
    assert out["inv"].item() == pytest.approx(0.25)
    assert out["var"].item() == pytest.approx(0.33, rel=1e-6)
    assert out["cov"].item() == pytest.approx(0.0, abs=1e-12)
    assert out["total"].item() == pytest.approx(0.25 + 25 * 0.33, rel=1e-6)


def test_vicreg_matches_numpy_reference():
    z1, z2 = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    z1[:, 1] *= 0.3  # one collapsed-ish dimension so the hinge is active
    out = vicreg_loss(z1, z2, inv_weight=2.0, var_weight=25.0, cov_weight=0.5)
    ref = _vicreg_numpy(z1.numpy(), z2.numpy(), 2.0, 25.0, 0.5)
    for key in ("inv", "var", "cov", "total"):
        assert out[key].item() == pytest.approx(ref[key], rel=1e-5), key


def test_vicreg_gradients_and_errors():
    z1 = torch.randn(8, 5, requires_grad=True)
    z2 = torch.randn(8, 5, requires_grad=True)
    vicreg_loss(z1, z2)["total"].backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        vicreg_loss(torch.randn(8, 5), torch.randn(8, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        vicreg_loss(torch.randn(1, 5), torch.randn(1, 5))


def test_gather_across_ranks_is_identity_without_distributed():
    z = torch.randn(3, 4)
    assert gather_across_ranks(z) is z


def _ddp_vicreg_worker(rank: int, world: int, init_file: str, z1, z2, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        n = z1.shape[0] // world
        a = z1[rank * n : (rank + 1) * n].clone().requires_grad_(True)
        b = z2[rank * n : (rank + 1) * n].clone().requires_grad_(True)
        out = vicreg_loss(a, b)
        out["total"].backward()
        result = {k: v.detach() for k, v in out.items()}
        result.update(grad1=a.grad, grad2=b.grad, gathered=gather_across_ranks(a.detach()))
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_vicreg_gathers_across_two_gloo_ranks(tmp_path):
    world = 2
    z1, z2 = torch.randn(8, 5), torch.randn(8, 5)
    mp.spawn(_ddp_vicreg_worker, args=(world, str(tmp_path / "store"), z1, z2, str(tmp_path)), nprocs=world)
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = vicreg_loss(a, b)
    full["total"].backward()
    for rank in range(world):
        res = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        sl = slice(rank * 4, (rank + 1) * 4)
        torch.testing.assert_close(res["gathered"], z1)
        # var and cov use the global batch; inv stays local (as in VICReg's code)
        torch.testing.assert_close(res["var"], full["var"])
        torch.testing.assert_close(res["cov"], full["cov"])
        torch.testing.assert_close(res["inv"], torch.nn.functional.mse_loss(z1[sl], z2[sl]))
        # DDP averages gradients over ranks: each rank's gradient is world x the full-batch one
        torch.testing.assert_close(res["grad1"] / world, a.grad[sl])
        torch.testing.assert_close(res["grad2"] / world, b.grad[sl])

import pytest
import torch

from benchmarks.ops_fast import local_correlation_reference  # the per-pixel loop, kept out of mcjepa.ops
from mcjepa.ops import (
    backward_warp,
    flow_validity_mask,
    local_correlation,
    normalize_feature_pair,
    range_map_visibility,
    upsample_flow,
)


@pytest.mark.parametrize("dx,dy", [(3, 0), (0, -2), (2, 5), (-4, -1)])
def test_backward_warp_recovers_integer_shift_exactly(dx, dy):
    # frame2 is frame1 moved by (dx, dy): frame2(x + dx, y + dy) = frame1(x, y)
    h, w = 23, 31
    frame1 = torch.rand(2, 3, h, w)
    frame2 = torch.zeros_like(frame1)
    ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    ys1, xs1 = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    frame2[:, :, ys, xs] = frame1[:, :, ys1, xs1]
    flow = torch.zeros(2, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    warped, mask = backward_warp(frame2, flow, return_mask=True)
    valid = mask.bool().expand_as(warped)
    assert valid.sum() == 2 * 3 * (h - abs(dy)) * (w - abs(dx))
    # exact up to float32 rounding of the normalised sampling coordinates
    torch.testing.assert_close(warped[valid], frame1[valid], rtol=0, atol=1e-5)
    # outside samples read zero
    assert torch.all(warped[~valid] == 0)


def test_backward_warp_subpixel_is_bilinear():
    x = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 1, 4, 10).contiguous()
    flow = torch.zeros(1, 2, 4, 10)
    flow[:, 0] = 0.25
    out = backward_warp(x, flow)
    torch.testing.assert_close(out[0, 0, :, :9], x[0, 0, :, :9] + 0.25)


def test_backward_warp_keeps_subpixel_positions_in_bfloat16():
    """bf16 inputs (CUDA autocast gives bf16 features and flows) are sampled at float32
    positions. In bf16 the position 200.375 would round to 200 (8 mantissa bits); on a 0/1
    alternating pattern a 0.375 px shift must read 0.375 / 0.625 at every column."""
    x = (torch.arange(256) % 2).float().view(1, 1, 1, 256).expand(1, 1, 4, 256).contiguous()
    flow = torch.zeros(1, 2, 4, 256)
    flow[:, 0] = 0.375  # exactly representable in bf16, as are the expected values
    low = backward_warp(x.bfloat16(), flow.bfloat16())
    assert low.dtype == torch.bfloat16
    expected = torch.where(torch.arange(255) % 2 == 0, 0.375, 0.625).expand(1, 1, 4, 255)
    torch.testing.assert_close(low[..., :255].float(), expected, rtol=0, atol=0)


def test_validity_mask_marks_out_of_image_samples():
    flow = torch.zeros(1, 2, 5, 6)
    flow[:, 0] = 2.0
    mask = flow_validity_mask(flow)
    assert mask[0, 0, :, :4].eq(1).all() and mask[0, 0, :, 4:].eq(0).all()


def test_backward_warp_gradients_flow_to_image_and_flow():
    x = torch.rand(1, 2, 8, 9, requires_grad=True)
    flow = (torch.rand(1, 2, 8, 9) * 2 - 1).requires_grad_()
    backward_warp(x, flow).square().sum().backward()
    assert x.grad.abs().sum() > 0 and flow.grad.abs().sum() > 0


def test_backward_warp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        backward_warp(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="share batch size"):
        backward_warp(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 9))


@pytest.mark.parametrize("d", [1, 2, 4])
def test_local_correlation_matches_direct_reference(d):
    a, b = torch.randn(2, 5, 7, 9), torch.randn(2, 5, 7, 9)
    fast = local_correlation(a, b, d)
    assert fast.shape == (2, (2 * d + 1) ** 2, 7, 9)
    torch.testing.assert_close(fast, local_correlation_reference(a, b, d), rtol=1e-5, atol=1e-6)


def test_local_correlation_peaks_at_true_displacement():
    d = 4
    a = torch.randn(1, 128, 20, 20)
    b = torch.roll(a, shifts=(2, -3), dims=(2, 3))  # b(y + 2, x - 3) = a(y, x)
    corr = local_correlation(a, b, d)
    best = corr[0, :, 8:12, 8:12].argmax(dim=0)
    expected = (2 + d) * (2 * d + 1) + (-3 + d)  # dy outer, dx inner
    assert torch.all(best == expected)


def test_local_correlation_gradients():
    a = torch.randn(1, 4, 6, 6, requires_grad=True)
    b = torch.randn(1, 4, 6, 6, requires_grad=True)
    local_correlation(a, b, 2).sum().backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_normalize_feature_pair_shares_statistics():
    a, b = torch.randn(3, 8, 5, 5) * 50 + 7, torch.randn(3, 8, 5, 5) * 50 + 7
    na, nb = normalize_feature_pair(a, b)
    both = torch.stack((na, nb), 1)
    torch.testing.assert_close(both.mean(dim=(1, 2, 3, 4)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(both.std(dim=(1, 2, 3, 4), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    # one shared affine map per image: na = (a - m) / s and nb = (b - m) / s with the same m, s
    mean, std = (
        torch.stack((a, b), 1).mean(dim=(1, 2, 3, 4)),
        torch.stack((a, b), 1).std(dim=(1, 2, 3, 4), unbiased=False),
    )
    torch.testing.assert_close(na, (a - mean.view(3, 1, 1, 1)) / std.view(3, 1, 1, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(na - nb, (a - b) / std.view(3, 1, 1, 1), atol=1e-5, rtol=1e-5)


def test_upsample_flow_scales_values_per_axis():
    flow = torch.ones(1, 2, 4, 5)
    flow[:, 1] = 2.0
    up = upsample_flow(flow, (8, 15))
    torch.testing.assert_close(up[:, 0], torch.full((1, 8, 15), 3.0))
    torch.testing.assert_close(up[:, 1], torch.full((1, 8, 15), 4.0))
    assert upsample_flow(flow, (4, 5)) is flow


def _range_map_reference(flow_bwd: torch.Tensor) -> torch.Tensor:
    """Loop reference: splat every pixel of frame t+1 bilinearly to where the backward flow sends it."""
    _, _, h, w = flow_bwd.shape
    r = torch.zeros(h, w, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            tx, ty = x + float(flow_bwd[0, 0, y, x]), y + float(flow_bwd[0, 1, y, x])
            x0, y0 = int(torch.floor(torch.tensor(tx))), int(torch.floor(torch.tensor(ty)))
            for xi, wx in ((x0, 1 - (tx - x0)), (x0 + 1, tx - x0)):
                for yi, wy in ((y0, 1 - (ty - y0)), (y0 + 1, ty - y0)):
                    if 0 <= xi < w and 0 <= yi < h:
                        r[yi, xi] += wx * wy
    return r.clamp(max=1.0)


def test_range_map_visibility_shifts_and_loop_reference():
    zero = torch.zeros(1, 2, 5, 7)
    assert torch.equal(range_map_visibility(zero), torch.ones(1, 1, 5, 7))
    # backward flow +2 px right: frame t+1's pixels land two columns to the right on frame t, so
    # frame t's first two columns have no match (they left the view of frame t+1)
    shift = zero.clone()
    shift[:, 0] = 2.0
    vis = range_map_visibility(shift)[0, 0]
    assert torch.equal(vis[:, :2], torch.zeros(5, 2)) and torch.equal(vis[:, 2:], torch.ones(5, 5))
    shift[:, 0] = 0.5  # half a pixel: column 0 receives half a pixel's weight
    vis = range_map_visibility(shift)[0, 0]
    assert torch.allclose(vis[:, 0], torch.full((5,), 0.5)) and torch.equal(vis[:, 1:], torch.ones(5, 6))
    torch.manual_seed(0)
    flow = torch.randn(1, 2, 6, 8) * 2.0
    torch.testing.assert_close(range_map_visibility(flow)[0, 0].double(), _range_map_reference(flow), atol=1e-5, rtol=0)
    # a region squeezed by the flow (two source columns landing on one) keeps visibility 1, never above
    assert range_map_visibility(flow).max() <= 1.0


def test_range_map_visibility_has_no_gradient_and_checks_input():
    flow = torch.randn(2, 2, 4, 6, requires_grad=True)
    assert not range_map_visibility(flow).requires_grad
    with pytest.raises(ValueError):
        range_map_visibility(torch.zeros(2, 3, 4, 6))

"""Backward warping, feature normalisation, the local correlation (cost) volume and the
forward-backward occlusion check (shared by the training losses and the flow API).

Conventions (docs/method.md#interface-conventions):

* Flow is ``(B, 2, H, W)`` in pixels; channel 0 is horizontal (u, +x right), channel 1 is
  vertical (v, +y down), defined on the *source* frame's grid.
* :func:`backward_warp` samples ``x`` at ``p + flow(p)``: with ``flow`` the flow from frame t to
  frame t+1, ``backward_warp(X_{t+1}, flow)`` is frame t+1 brought back onto frame t's grid, and
  should match ``X_t`` wherever the pixel is visible in both frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "backward_warp",
    "check_flow",
    "check_nchw",
    "flow_validity_mask",
    "forward_backward_occlusion",
    "local_correlation",
    "normalize_feature_pair",
    "pad_to_multiple",
    "standardize_feature_pair",
    "upsample_flow",
]


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "replicate") -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(..., H, W)`` on the bottom and right up to multiples of ``multiple``; return
    ``(padded, (H, W))``. Flow values need no shift (the top-left corner stays); crop results back
    with ``y[..., :H, :W]``. Nothing is resized."""
    h, w = x.shape[-2], x.shape[-1]
    pad_h, pad_w = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple  # traceable
    if not (pad_h or pad_w) and isinstance(pad_h, int) and not torch.jit.is_tracing():
        return x, (h, w)  # nothing to pad (a traced graph keeps the pad: its input size is dynamic)
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)


def _check_flow_pair(x: Tensor, flow: Tensor) -> None:
    if x.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"expected x of shape (B, C, H, W) and flow of shape (B, 2, H, W), "
            f"got {tuple(x.shape)} and {tuple(flow.shape)}"
        )
    if x.shape[0] != flow.shape[0] or x.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"x {tuple(x.shape)} and flow {tuple(flow.shape)} must share batch size and H, W")


def upcast_half(x: Tensor) -> Tensor:
    """Half-precision tensors (bf16 / fp16, e.g. under autocast) become float32; others stay."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _sampling_grid(flow: Tensor) -> tuple[Tensor, Tensor]:
    """Return absolute sample positions ``(x + u, y + v)`` in pixels, each ``(B, H, W)``."""
    _, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    return xs + flow[:, 0], ys + flow[:, 1]


def flow_validity_mask(flow: Tensor) -> Tensor:
    """Return a ``(B, 1, H, W)`` float mask: 1 where ``p + flow(p)`` lies inside the image."""
    _, _, h, w = flow.shape
    sx, sy = _sampling_grid(flow)
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    return inside.unsqueeze(1).to(flow.dtype)


def backward_warp(x: Tensor, flow: Tensor, return_mask: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Bilinearly sample ``x`` at ``p + flow(p)`` for every pixel ``p``.

    Uses ``grid_sample`` with ``align_corners=True`` and coordinates normalised by ``W - 1`` and
    ``H - 1``, so an integer flow moves content by exactly that many pixels. Samples outside the
    image read zeros.

    Args:
        x: ``(B, C, H, W)`` tensor to sample from.
        flow: ``(B, 2, H, W)`` displacement in pixels (u, v).
        return_mask: also return the ``(B, 1, H, W)`` validity mask (1 = sample inside the image).

    Returns:
        The warped ``(B, C, H, W)`` tensor, and the mask when ``return_mask`` is true.
    """
    _check_flow_pair(x, flow)
    _, _, h, w = flow.shape
    # Positions and sampling in float32 whatever the inputs' dtype: in bfloat16 (8 mantissa bits)
    # a position near x = 200 is off by up to 0.5 px. The result comes back in x's dtype.
    sx, sy = _sampling_grid(upcast_half(flow))
    gx = 2.0 * sx / max(w - 1, 1) - 1.0
    gy = 2.0 * sy / max(h - 1, 1) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    src = upcast_half(x)
    warped = F.grid_sample(src, grid.to(src.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    warped = warped.to(x.dtype)
    if return_mask:
        return warped, flow_validity_mask(flow)
    return warped


def upsample_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize a flow field to ``size = (H, W)`` and rescale u by the width ratio and
    v by the height ratio, so the result is in pixels of the new grid."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    up = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], device=flow.device, dtype=flow.dtype)
    return up * scale.view(1, 2, 1, 1)


def normalize_feature_pair(a: Tensor, b: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Centre and scale two feature maps with statistics shared across both maps and all
    channels and positions, one mean and one standard deviation per batch element (UFlow's
    ``normalize_features``). Keeps correlation values O(1) whatever the feature magnitude."""
    both = torch.stack((a, b), dim=1)  # (B, 2, C, H, W)
    dims = (1, 2, 3, 4)
    mean = both.mean(dim=dims, keepdim=True)
    var = both.var(dim=dims, keepdim=True, unbiased=False)
    both = (both - mean) * torch.rsqrt(var + eps)
    return both[:, 0], both[:, 1]


def standardize_feature_pair(a: Tensor, b: Tensor, eps: float = 1e-10) -> tuple[Tensor, Tensor]:
    """Centre every channel and scale two feature maps by statistics of the pair, per image.

    Per batch element: each channel's mean over the positions of both maps is subtracted, then
    both maps are divided by one standard deviation pooled over channels and positions (of the
    centred pair). Used by the feature-space motion losses (``loss.feature_loss_norm``): a
    squared error between standardised maps cannot be lowered by shrinking the features or by
    making them constant over the image, the two ways a shared encoder can otherwise trivially
    satisfy L_reg (``docs/learning_dynamics.md``). Gradients flow through the statistics.

    Returns:
        The two standardised maps, same shapes and dtype as the inputs (float32 for half inputs).
    """
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"a and b must be (B, C, H, W) of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = upcast_half(a), upcast_half(b)
    both = torch.stack((a, b), dim=1)  # (B, 2, C, H, W)
    centred = both - both.mean(dim=(1, 3, 4), keepdim=True)
    scale = torch.rsqrt(centred.square().mean(dim=(1, 2, 3, 4), keepdim=True) + eps)
    both = centred * scale
    return both[:, 0], both[:, 1]


def local_correlation(source: Tensor, target: Tensor, max_displacement: int = 4) -> Tensor:
    """Local cost volume between two feature maps.

    ``out[:, k, y, x] = mean_c source[:, c, y, x] * target[:, c, y + dy, x + dx]`` for every
    displacement ``(dy, dx)`` in ``[-d, d]^2`` (``d = max_displacement``), ordered row-major with
    ``dy`` outer and ``dx`` inner; target positions outside the image count as zero.

    Returns:
        ``(B, (2d + 1)^2, H, W)``: 81 channels for ``d = 4``.
    """
    if source.shape != target.shape or source.dim() != 4:
        raise ValueError(
            f"source and target must be (B, C, H, W) of the same shape, "
            f"got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    d = int(max_displacement)
    _, c, h, w = source.shape
    padded = F.pad(target, (d, d, d, d))
    costs = []
    for dy in range(2 * d + 1):
        for dx in range(2 * d + 1):
            shifted = padded[:, :, dy : dy + h, dx : dx + w]
            costs.append((source * shifted).sum(dim=1))
    return torch.stack(costs, dim=1) / c


# ------------------------------------------------------------------ input checks and occlusion


def check_nchw(name: str, x: Tensor) -> None:
    """Raise unless ``x`` is a floating-point ``(B, C, H, W)`` tensor (messages name ``name``)."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_flow(name: str, flow: Tensor, size: torch.Size | None = None, batch: int | None = None) -> None:
    """Raise unless ``flow`` is a floating-point ``(B, 2, H, W)`` flow, of spatial ``size`` and
    batch ``batch`` when given (messages name ``name``)."""
    check_nchw(name, flow)
    if flow.shape[1] != 2:
        raise ValueError(f"{name} must be (B, 2, H, W) (u, v in pixels), got {tuple(flow.shape)}")
    if size is not None and flow.shape[-2:] != size:
        raise ValueError(f"{name} has spatial size {tuple(flow.shape[-2:])}, expected {tuple(size)}")
    if batch is not None and flow.shape[0] != batch:
        raise ValueError(f"{name} has batch size {flow.shape[0]}, expected {batch}")


@torch.no_grad()
def forward_backward_occlusion(flow_fwd: Tensor, flow_bwd: Tensor, alpha1: float = 0.01, alpha2: float = 0.5) -> Tensor:
    """Forward-backward consistency mask (UnFlow, ARFlow's ``get_occu_mask_bidirection``).

    With ``b = backward_warp(flow_bwd, flow_fwd)`` (the backward flow read where each pixel
    lands, zeros outside the image), a pixel is occluded when
    ``|f + b|^2 > alpha1 * (|f|^2 + |b|^2) + alpha2`` (squared pixels of the flows' grid).
    Computed without gradient.

    Args:
        flow_fwd: ``(B, 2, H, W)`` flow t -> t+1 on frame t's grid.
        flow_bwd: ``(B, 2, H, W)`` flow t+1 -> t on frame t+1's grid.

    Returns:
        ``(B, 1, H, W)`` float mask on frame t's grid: 1 = consistent (visible), 0 = occluded.
    """
    check_flow("flow_fwd", flow_fwd)
    check_flow("flow_bwd", flow_bwd, flow_fwd.shape[-2:], flow_fwd.shape[0])
    f = upcast_half(flow_fwd)
    b = backward_warp(upcast_half(flow_bwd).to(f.dtype), f)
    diff = (f + b).square().sum(1, keepdim=True)
    mag = f.square().sum(1, keepdim=True) + b.square().sum(1, keepdim=True)
    return (diff <= alpha1 * mag + alpha2).to(flow_fwd.dtype)


@torch.no_grad()
def range_map_visibility(flow_bwd: Tensor) -> Tensor:
    """Visibility of frame t's pixels from the range map of the backward flow (Wang et al. 2018,
    "Occlusion aware unsupervised learning of optical flow"; UFlow's default occlusion estimate).

    Every pixel ``q`` of frame t+1 is splatted bilinearly to ``q + flow_bwd(q)`` on frame t's grid
    with weight 1; the range map ``R(p)`` is the weight that lands on pixel ``p``. A pixel that no
    pixel of frame t+1 maps to (``R = 0``) has no match: occluded, or leaving the frame. Unlike
    :func:`forward_backward_occlusion` it does not ask the two flows to agree, so an inaccurate
    early flow does not hide most of the image from the photometric loss. Computed without gradient.

    Args:
        flow_bwd: ``(B, 2, H, W)`` flow t+1 -> t on frame t+1's grid, pixels.

    Returns:
        ``(B, 1, H, W)`` soft mask on frame t's grid: ``min(R, 1)``, 1 = visible, 0 = occluded.
    """
    check_flow("flow_bwd", flow_bwd)
    b, _, h, w = flow_bwd.shape
    f = upcast_half(flow_bwd).float()
    ys, xs = torch.meshgrid(
        torch.arange(h, device=f.device, dtype=f.dtype), torch.arange(w, device=f.device, dtype=f.dtype), indexing="ij"
    )
    x, y = xs + f[:, 0], ys + f[:, 1]  # (B, H, W) landing positions on frame t's grid
    x0, y0 = x.floor(), y.floor()
    out = f.new_zeros(b, h * w)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().view(b, -1)
            out.scatter_add_(1, index, (weight * inside).view(b, -1))
    return out.view(b, 1, h, w).clamp_max(1.0).to(flow_bwd.dtype)

"""MC-JEPA's training losses (paper, Sec. 3; docs/method.md#losses), each a pure function.

Every function takes tensors and plain numbers and returns a differentiable scalar tensor (or, for
:func:`vicreg_loss`, a dict of them); nothing reads a config. The trainer passes the numbers.

Conventions shared by all motion losses:

* Flow is ``(B, 2, H, W)`` in pixels of the grid it lives on (u right, v down), defined on the
  *source* frame's grid, as everywhere in ``mcjepa``.
* Warping is *backward* warping (:func:`mcjepa.ops.backward_warp`): with ``f`` the flow from frame
  t to frame t+1, ``backward_warp(X_{t+1}, f) ~ X_t`` wherever the point is visible in both
  frames. The paper writes ``warp(X_t, f) ~ X_{t+1}``, which only holds for forward splatting; we
  compare frame t with frame t+1 warped back (PWC-Net / UFlow / ARFlow), same intent
  (docs/method.md#interface-conventions).
* Pyramids are lists of 6 NCHW maps ordered **fine to coarse** (index 0 = stride 2, index 5 =
  stride 32), and every per-level weight sequence here is indexed the same way: pass a
  :class:`~mcjepa.train.levels.LevelWeights` or any sequence in that order. The paper's values are
  :data:`PAPER_REG_WEIGHTS`, :data:`PAPER_VC_VAR_WEIGHTS` and :data:`PAPER_VC_COV_WEIGHTS`,
  defined and cited in :mod:`mcjepa.train.levels` and re-exported here.
* Images for the photometric and smoothness losses are in ``[0, 1]``.

The variance-covariance terms (L_vc) and VICReg (L_ssl) live in :mod:`mcjepa.train.var_cov` and are
re-exported here, so that every loss is importable from this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mcjepa.ops import (  # forward_backward_occlusion lives in ops; re-exported here (mcjepa.train.losses API)
    backward_warp,
    check_flow,
    check_nchw,
    flow_validity_mask,
    forward_backward_occlusion,
    standardize_feature_pair,
    upcast_half,
)
from mcjepa.train.levels import (  # re-exported (mcjepa.train.losses API)
    PAPER_REG_WEIGHTS,
    PAPER_VC_COV_WEIGHTS,
    PAPER_VC_VAR_WEIGHTS,
)
from mcjepa.train.var_cov import (  # re-exported (mcjepa.train.losses API)
    check_choice,
    gather_across_ranks,
    pyramid_vc_loss,
    variance_covariance_loss,
    variance_covariance_terms,
    vicreg_loss,
)

__all__ = [
    "PAPER_REG_WEIGHTS",
    "PAPER_VC_COV_WEIGHTS",
    "PAPER_VC_VAR_WEIGHTS",
    "census_distance",
    "census_transform",
    "cycle_consistency_loss",
    "feature_regression_loss",
    "forward_backward_occlusion",
    "gather_across_ranks",
    "photometric_loss",
    "pyramid_vc_loss",
    "smoothness_loss",
    "ssim",
    "variance_covariance_loss",
    "variance_covariance_terms",
    "vicreg_loss",
]

FEATURE_LOSS_NORMS = ("none", "standardize")
MASKED_MEANS = ("batch", "image")  # masked means over the batch's kept pixels, or per image

_SSIM_C1 = 0.01**2  # (K1 * data_range)^2 with data_range = 1
_SSIM_C2 = 0.03**2  # (K2 * data_range)^2


# --------------------------------------------------------------------------------------------
# input checks


def _check_unit_range(**images: Tensor) -> None:
    """Raise if any image lies outside [0, 1] (one host sync for all of them)."""
    stats = torch.stack([torch.stack(torch.aminmax(img.detach().float())) for img in images.values()])
    for (name, _), (lo, hi) in zip(images.items(), stats.tolist()):
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(
                f"{name} must hold images in [0, 1] (not ImageNet-normalised or uint8), got values in [{lo:.3g}, {hi:.3g}]"
            )


def _check_mask(mask: Tensor, ref: Tensor, name: str = "mask") -> Tensor:
    """Return ``mask`` as a detached float ``(B, 1, H, W)`` tensor matching ``ref``'s B, H, W."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    b, _, h, w = ref.shape
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != b or mask.shape[-2:] != (h, w):
        raise ValueError(
            f"{name} must be (B, 1, H, W) or (B, H, W) with B, H, W = {(b, h, w)}, got {tuple(mask.shape)}"
        )
    return mask.detach().to(ref.dtype)


def _check_pyramid_args(
    feats_src: Sequence[Tensor], level_flows: Sequence[Tensor], levels: Sequence[int], name: str = "level_flows"
) -> None:
    if len(level_flows) != len(levels):
        raise ValueError(f"got {len(level_flows)} {name} for {len(levels)} levels; expected one flow per level")
    for i, lvl in enumerate(levels):
        if not 0 <= lvl < len(feats_src):
            raise ValueError(f"level index {lvl} is outside the {len(feats_src)}-level pyramid")
        check_flow(f"{name}[{i}]", level_flows[i], feats_src[lvl].shape[-2:], feats_src[lvl].shape[0])


def _masked_mean(values: Tensor, mask: Tensor | None, per: str = "batch") -> Tensor:
    """Mean of ``values`` (B, C, H, W) over every element, counting only positions where the
    ``(B, 1, H, W)`` ``mask`` is set (weighted by it). Returns 0 when the mask is empty.
    ``per="image"``: that mean per image, then averaged over the images (an image's value does
    not depend on the others' masks)."""
    if mask is None:
        return values.mean()
    c = values.shape[1]
    if per == "image":
        num = (values * mask).flatten(1).sum(1)
        return (num / (mask.flatten(1).sum(1) * c).clamp_min(1e-6)).mean()
    return (values * mask).sum() / (mask.sum() * c).clamp_min(1e-6)


# --------------------------------------------------------------------------------------------
# motion losses


def feature_regression_loss(
    feats_src: Sequence[Tensor],
    feats_tgt: Sequence[Tensor],
    level_flows: Sequence[Tensor],
    levels: Sequence[int],
    weights: Sequence[float],
    *,
    mask_out_of_image: bool,
    feature_norm: str = "none",
    flow_grad: bool = True,
    feature_grad: bool = True,
    masked_mean: str = "batch",
) -> Tensor:
    """L_reg: per-level feature regression between frame t and frame t+1 warped back.

    ``sum_l w_l * mean((X_t^l - backward_warp(X_{t+1}^l, f^l))^2)`` over the estimated ``levels``,
    the mean taken over batch, channels and positions. Gradients reach both pyramids and the
    flows (the encoder is shared; the variance-covariance term is what prevents collapse).

    Args:
        feats_src: frame t's pyramid, 6 maps fine to coarse (``X_t``).
        feats_tgt: frame t+1's pyramid, same shapes (``X_{t+1}``).
        level_flows: forward flows at ``levels``, fine to coarse, pixels of each level
            (``FlowHeadOutput.level_flows``).
        levels: pyramid indices of ``level_flows`` (``FlowHeadOutput.levels``).
        weights: per-level weights indexed by pyramid level fine to coarse, one per map
            (the paper's: :data:`PAPER_REG_WEIGHTS`). Levels with weight 0 are skipped.
        mask_out_of_image: required, no default. True: average only over positions whose
            sample ``p + f(p)`` lies inside the image; False: out-of-image samples are compared
            with the zeros :func:`~mcjepa.ops.backward_warp` reads there. Training passes False
            (``loss.reg_mask_out_of_image``; the reasoning, and that no measurement compares the
            two, is in its comment in ``mcjepa/train/config.py``).
        feature_norm: ``"none"`` (the paper: raw features) or ``"standardize"``: each level's
            pair is first standardised per image with :func:`mcjepa.ops.standardize_feature_pair`
            (per-channel centring, one pooled scale), so that shrinking the features or making
            them constant over the image does not lower the loss.
        flow_grad: let the loss train the flows (the paper). False: the flows are constants here,
            so L_reg shapes the features only and the flow is taught by the pixel terms and
            L_cycle (``loss.reg_gradient = "features"``; measured in ``docs/scaling.md``).
        feature_grad: let the loss train the features (the paper). False: both pyramids are
            constants here and L_reg trains the flows only (``loss.reg_gradient = "flow"``).
        masked_mean: with ``mask_out_of_image``, the masked mean over the whole batch
            (``"batch"``) or per image, then averaged (``"image"``; see :func:`_masked_mean`).

    Returns:
        Scalar tensor (squared feature units; squared standard deviations when standardised).
    """
    check_choice("feature_norm", feature_norm, FEATURE_LOSS_NORMS)
    if len(feats_src) != len(feats_tgt):
        raise ValueError(f"feats_src has {len(feats_src)} levels but feats_tgt has {len(feats_tgt)}")
    if len(weights) != len(feats_src):
        raise ValueError(
            f"expected {len(feats_src)} weights (one per pyramid level, fine to coarse), got {len(weights)}"
        )
    _check_pyramid_args(feats_src, level_flows, levels)
    total = feats_src[0].new_zeros(())
    for flow, lvl in zip(level_flows, levels):
        w = float(weights[lvl])
        if w == 0.0:
            continue
        src, tgt = feats_src[lvl], feats_tgt[lvl]
        if src.shape != tgt.shape:
            raise ValueError(f"level {lvl}: feats_src {tuple(src.shape)} and feats_tgt {tuple(tgt.shape)} differ")
        if not feature_grad:
            src, tgt = src.detach(), tgt.detach()
        if not flow_grad:
            flow = flow.detach()
        if feature_norm == "standardize":
            src, tgt = standardize_feature_pair(src, tgt)
        warped = backward_warp(tgt, flow)
        mask = flow_validity_mask(flow.detach()) if mask_out_of_image else None
        total = total + w * _masked_mean((src - warped).square(), mask, masked_mean)
    return total


def ssim(x: Tensor, y: Tensor, window: int = 3, padding: str = "reflect") -> Tensor:
    """Per-pixel SSIM map of two ``(B, C, H, W)`` images in ``[0, 1]``, per channel.

    The standard SSIM with uniform ``window x window`` windows (average pooling) as in UFlow,
    ARFlow and monodepth2: local means, population variances and covariance, C1 = 0.01^2,
    C2 = 0.03^2 (data range 1). Half-precision inputs are computed in float32.

    Args:
        window: odd window size (3 in all of the above).
        padding: ``"reflect"`` (monodepth2; output ``(B, C, H, W)``, aligned with the input) or
            ``"valid"`` (UFlow / ARFlow; output ``(B, C, H - window + 1, W - window + 1)``).

    Returns:
        SSIM values in ``[-1, 1]``, 1 where the two windows are identical.
    """
    check_nchw("x", x)
    check_nchw("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must have the same shape")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    if padding not in ("reflect", "valid"):
        raise ValueError(f"padding must be 'reflect' or 'valid', got {padding!r}")
    return _ssim_map(upcast_half(x), upcast_half(y), window, padding)


def _ssim_map(x: Tensor, y: Tensor, window: int, padding: str) -> Tensor:
    r = window // 2
    if padding == "reflect" and r > 0:
        if min(x.shape[-2:]) <= r:
            raise ValueError(f"reflect padding needs H and W > {r}, got {tuple(x.shape[-2:])}")
        x = F.pad(x, (r, r, r, r), mode="reflect")
        y = F.pad(y, (r, r, r, r), mode="reflect")
    elif min(x.shape[-2:]) < window:
        raise ValueError(f"valid SSIM needs H and W >= window={window}, got {tuple(x.shape[-2:])}")

    def pool(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, window, stride=1)

    mu_x, mu_y = pool(x), pool(y)
    var_x = pool(x * x) - mu_x.square()
    var_y = pool(y * y) - mu_y.square()
    cov_xy = pool(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _SSIM_C1) * (2 * cov_xy + _SSIM_C2)
    den = (mu_x.square() + mu_y.square() + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    return num / den


def photometric_loss(
    image1: Tensor,
    image2_warped: Tensor,
    mask: Tensor | None = None,
    l1: float = 0.15,
    l2: float = 0.0,
    ssim: float = 0.425,
    ssim_window: int = 3,
    check_range: bool = True,
    census: float = 0.0,
    masked_mean: str = "batch",
) -> Tensor:
    """L_rec: occlusion-masked photometric distance between frame t and frame t+1 warped back.

    Per pixel ``d = l2 * mean_c (a - b)^2 + l1 * mean_c |a - b| + ssim * mean_c (1 - SSIM(a, b))``
    (``1 - SSIM`` clamped to ``[0, 2]``, 3x3 windows, reflect padding) ``+ census * c(a, b)``
    (:func:`census_distance`, 0 on the 3-pixel border), then the mean of ``d`` over the pixels
    where ``mask`` is 1. ``a = image1``, ``b = image2_warped = backward_warp(image2, flow)``.

    Defaults: the paper names L2, L1 and SSIM but gives no weights. We use ARFlow's tested mix,
    0.15 L1 + 0.85 * (1 - SSIM) / 2 (ARFlow and monodepth2 halve ``1 - SSIM``), written in the
    paper's ``(1 - SSIM)`` form as ``ssim = 0.425``, and no L2 (``l2 = 0``; set e.g. 0.01 to add it);
    docs/method.md#reconstruction.

    Args:
        image1, image2_warped: ``(B, C, H, W)`` images in ``[0, 1]``.
        mask: ``(B, 1, H, W)`` or ``(B, H, W)``, 1 = use the pixel (not occluded), 0 = ignore;
            soft values weight the mean. Treated as a constant (no gradient flows into it).
        check_range: raise if an image leaves ``[0, 1]`` (costs one host sync).
        census: weight of the census (ternary) distance that UFlow, ARFlow's variants and SMURF
            use instead of L1 / SSIM; 0 (the default) is the paper's distance.
        masked_mean: ``"batch"``: the mean over the kept pixels of the whole batch; ``"image"``:
            each image's masked mean, averaged over images (independent of the other images).

    Returns:
        Scalar tensor, 0 when the mask is empty.
    """
    ssim_weight = ssim
    check_nchw("image1", image1)
    check_nchw("image2_warped", image2_warped)
    if image1.shape != image2_warped.shape:
        raise ValueError(f"image1 {tuple(image1.shape)} and image2_warped {tuple(image2_warped.shape)} differ in shape")
    if check_range:
        _check_unit_range(image1=image1, image2_warped=image2_warped)
    a, b = upcast_half(image1), upcast_half(image2_warped)
    m = _check_mask(mask, a) if mask is not None else None
    diff = a - b
    d = a.new_zeros((a.shape[0], 1, *a.shape[-2:]))
    if l2:
        d = d + l2 * diff.square().mean(1, keepdim=True)
    if l1:
        d = d + l1 * diff.abs().mean(1, keepdim=True)
    if ssim_weight:
        dssim = (1.0 - _ssim_map(a, b, ssim_window, "reflect")).clamp(0.0, 2.0)
        d = d + ssim_weight * dssim.mean(1, keepdim=True)
    if census:
        d = d + census * census_distance(a, b)
    return _masked_mean(d, m, masked_mean)


CENSUS_PATCH = 7  # 7x7 neighbourhoods (UFlow's and SMURF's)


def census_transform(image: Tensor, patch: int = CENSUS_PATCH) -> Tensor:
    """Soft census signature of each pixel: ``(B, patch * patch, H, W)``.

    For every neighbour ``q`` of ``p`` in a ``patch x patch`` window of the grey image ``g``
    (mean over channels, scaled to [0, 255]): ``t_q = (g(q) - g(p)) / sqrt(0.81 + (g(q) - g(p))^2)``,
    a smooth sign in (-1, 1) that ignores brightness offsets and most gain changes. Borders are
    replicated (the border pixels' signatures are excluded by :func:`census_distance`).
    """
    check_nchw("image", image)
    if patch < 1 or patch % 2 == 0:
        raise ValueError(f"patch must be a positive odd integer, got {patch}")
    grey = upcast_half(image).mean(1, keepdim=True) * 255.0
    r = patch // 2
    b, _, h, w = grey.shape
    neighbours = F.unfold(F.pad(grey, (r, r, r, r), mode="replicate"), patch).view(b, patch * patch, h, w)
    diff = neighbours - grey
    return diff / torch.sqrt(0.81 + diff.square())


def census_distance(a: Tensor, b: Tensor, patch: int = CENSUS_PATCH) -> Tensor:
    """Per-pixel robust census distance of two ``(B, C, H, W)`` images in [0, 1]: ``(B, 1, H, W)``.

    The soft Hamming distance ``h = sum_q (t_a - t_b)^2 / (0.1 + (t_a - t_b)^2)`` of the two
    :func:`census_transform` signatures (0 to ``patch**2``), through the robust penalty
    ``(h + 0.01)^0.4 - 0.01^0.4`` (UFlow's census loss, Meister et al. 2018, shifted so that equal
    images give exactly 0; the shift changes no gradient); 0 within ``patch // 2`` pixels of the
    border, where the window leaves the image.
    """
    sq = (census_transform(a, patch) - census_transform(b, patch)).square()
    hamming = (sq / (0.1 + sq)).sum(1, keepdim=True)
    dist = (hamming + 0.01).pow(0.4) - 0.01**0.4
    r = patch // 2
    border = torch.zeros_like(dist)
    border[..., r : dist.shape[-2] - r, r : dist.shape[-1] - r] = 1.0
    return dist * border


def smoothness_loss(
    flow: Tensor, image: Tensor, edge_factor: float = 75.0, flow_scale: float = 1.0, check_range: bool = True
) -> Tensor:
    """L_smooth: first-order edge-aware smoothness of ``flow``, guided by ``image``.

    ``0.5 * sum_{d in x, y} mean(exp(-edge_factor * mean_c |grad_d I|) * |grad_d (flow_scale * f)|)``
    with forward differences, the mean taken over batch, both flow channels and positions.

    Flow scaling: with the default ``flow_scale = 1`` the flow is in pixels of ``image``'s grid,
    so ``|grad f|`` is in pixels of displacement per pixel: dimensionless, and unchanged when
    image and flow are resized together (a smooth motion field has the same px/px gradient at any
    resolution), so the loss weight does not depend on the crop size. ARFlow instead divides the
    flow by ``min(H, W)`` and multiplies the loss by 75 (``flow_scale = 1 / min(H, W)`` here);
    that 75 is a loss weight, unrelated to the paper's edge factor of 75.

    Args:
        flow: ``(B, 2, H, W)`` flow in pixels of ``image``'s grid.
        image: ``(B, C, H, W)`` image in ``[0, 1]`` on the same grid (frame t).
        edge_factor: the paper's lambda = 75: the weight is ``exp(-75 |grad I|)``.
        flow_scale: multiplies the flow before differentiating.
        check_range: raise if ``image`` leaves ``[0, 1]`` (costs one host sync).

    Returns:
        Scalar tensor (pixels per pixel times ``flow_scale``).
    """
    check_nchw("image", image)
    check_flow("flow", flow, image.shape[-2:], image.shape[0])
    if min(flow.shape[-2:]) < 2:
        raise ValueError(f"smoothness needs H, W >= 2, got {tuple(flow.shape[-2:])}")
    if check_range:
        _check_unit_range(image=image)
    img = upcast_half(image)
    f = upcast_half(flow) * flow_scale
    w_x = torch.exp(-edge_factor * (img[..., :, 1:] - img[..., :, :-1]).abs().mean(1, keepdim=True))
    w_y = torch.exp(-edge_factor * (img[..., 1:, :] - img[..., :-1, :]).abs().mean(1, keepdim=True))
    loss_x = (w_x * (f[..., :, 1:] - f[..., :, :-1]).abs()).mean()
    loss_y = (w_y * (f[..., 1:, :] - f[..., :-1, :]).abs()).mean()
    return 0.5 * (loss_x + loss_y)


def cycle_consistency_loss(
    feats_src: Sequence[Tensor],
    level_flows_fwd: Sequence[Tensor],
    level_flows_bwd: Sequence[Tensor],
    levels: Sequence[int],
    occlusion_masks: Sequence[Tensor | None] | None = None,
    weight: float = 0.2,
    feature_norm: str = "none",
    flow_grad: bool = True,
    masked_mean: str = "batch",
) -> Tensor:
    """L_cycle: features of frame t carried to frame t+1 and back should return unchanged.

    ``weight * sum_l mean_masked((X_t^l - backward_warp(backward_warp(X_t^l, f_bwd^l), f_fwd^l))^2)``:
    ``backward_warp(X_t, f_bwd)`` lands on frame t+1's grid, warping that by ``f_fwd`` returns to
    frame t's. The mean runs over channels and the non-occluded positions. Gradients reach the
    features and both flows, never the masks.

    Args:
        feats_src: frame t's pyramid, 6 maps fine to coarse.
        level_flows_fwd: flows t -> t+1 at ``levels`` (fine to coarse, pixels of each level).
        level_flows_bwd: flows t+1 -> t at the same levels.
        levels: pyramid indices of the flows.
        occlusion_masks: optional ``(B, 1, h, w)`` masks on frame t's grid, one per level (1 =
            use). ``None`` (default), or ``None`` for a level: computed with
            :func:`forward_backward_occlusion` from that level's flows (alpha1 = 0.01,
            alpha2 = 0.5 in that level's pixels), without gradient.
        weight: the paper's 0.2.
        feature_norm: ``"none"`` (the paper) or ``"standardize"`` (each level's map standardised
            per image first, as in :func:`feature_regression_loss`).
        flow_grad: let the loss train the flows (the paper). With False the flows are constants
            here and L_cycle shapes only the features: a double bilinear round trip blurs, and
            its blur is smallest at integer (mostly zero) flows, so its flow gradient can point
            away from the true flow (``docs/learning_dynamics.md``).
        masked_mean: ``"batch"`` or ``"image"``, as in :func:`photometric_loss`.

    Returns:
        Scalar tensor.
    """
    check_choice("feature_norm", feature_norm, FEATURE_LOSS_NORMS)
    _check_pyramid_args(feats_src, level_flows_fwd, levels, "level_flows_fwd")
    _check_pyramid_args(feats_src, level_flows_bwd, levels, "level_flows_bwd")
    if occlusion_masks is not None and len(occlusion_masks) != len(levels):
        raise ValueError(f"got {len(occlusion_masks)} occlusion_masks for {len(levels)} levels")
    total = feats_src[0].new_zeros(())
    if weight == 0.0:
        return total
    for i, lvl in enumerate(levels):
        x = feats_src[lvl]
        f_fwd, f_bwd = level_flows_fwd[i], level_flows_bwd[i]
        mask = occlusion_masks[i] if occlusion_masks is not None else None
        mask = (
            forward_backward_occlusion(f_fwd, f_bwd) if mask is None else _check_mask(mask, x, f"occlusion_masks[{i}]")
        )
        if feature_norm == "standardize":
            x = standardize_feature_pair(x, x)[0]
        if not flow_grad:
            f_fwd, f_bwd = f_fwd.detach(), f_bwd.detach()
        round_trip = backward_warp(backward_warp(x, f_bwd), f_fwd)
        total = total + _masked_mean((x - round_trip).square(), mask.detach().to(x.dtype), masked_mean)
    return weight * total

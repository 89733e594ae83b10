"""L_vc and L_ssl: the variance-covariance regularisation of the flow pyramid's features and
VICReg on the content embeddings (arXiv 2307.12698; ``docs/method.md``), each a pure function.

:func:`pyramid_vc_loss` applies :func:`variance_covariance_loss` at each pyramid level (fine to
coarse, as in :mod:`mcjepa.train.losses`); :func:`vicreg_loss` is VICReg's loss as in its
reference code, gathering embeddings across ranks under ``torch.distributed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from mcjepa.ops import check_nchw, upcast_half

__all__ = [
    "VC_POOLINGS",
    "check_choice",
    "gather_across_ranks",
    "pyramid_vc_loss",
    "variance_covariance_loss",
    "variance_covariance_terms",
    "vicreg_loss",
]

VC_POOLINGS = ("batch", "image")


def check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming ``key`` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{key} must be one of {tuple(choices)}, got {value!r}")


def _off_diagonal_sq_sum(cov: Tensor) -> Tensor:
    """Sum of squared off-diagonal entries of a square matrix (VICReg's ``off_diagonal`` trick,
    no cancellation against the large diagonal)."""
    d = cov.shape[0]
    return cov.flatten()[:-1].view(d - 1, d + 1)[:, 1:].square().sum()


def _var_cov(z: Tensor, gamma: float, eps: float, with_cov: bool) -> tuple[Tensor, Tensor | None]:
    """Variance hinge ``mean_j relu(gamma - sqrt(var_j + eps))`` and ``sum_{i != j} C_ij^2 / d`` for
    ``(N, d)`` samples, unbiased (N - 1) estimates as in VICReg's code."""
    n, d = z.shape
    if n < 2:
        raise ValueError(f"variance and covariance need at least 2 samples, got {n}")
    with torch.autocast(z.device.type, enabled=False):  # z.T @ z would otherwise run in bf16
        z = upcast_half(z)
        z = z - z.mean(dim=0)
        std = torch.sqrt(z.var(dim=0) + eps)
        var_term = F.relu(gamma - std).mean()
        if not with_cov:
            return var_term, None
        cov = (z.T @ z) / (n - 1)
        return var_term, _off_diagonal_sq_sum(cov) / d


def variance_covariance_terms(
    x: Tensor,
    gamma: float = 1.0,
    eps: float = 1e-4,
    max_samples: int | None = None,
    generator: torch.Generator | None = None,
    with_cov: bool = True,
    pooling: str = "batch",
) -> tuple[Tensor, Tensor | None]:
    """Unweighted variance and covariance terms of a ``(B, C, H, W)`` feature map.

    Every spatial position of every batch element is a sample (``B * H * W`` of them), the
    channel dimension is the feature dimension ``d = C``. Half precision is computed in float32.

    Args:
        max_samples: when there are more positions than this, use a random subset of this size
            (without replacement), drawn with ``generator`` (on the generator's device, or on
            ``x``'s device when ``None``).
        with_cov: compute the covariance term (a ``C x C`` matrix); ``None`` is returned otherwise.
        pooling: ``"batch"`` (the paper): every position of every image is one sample, so
            differences *between* images count as variance. ``"image"``: the statistics are
            taken over the positions of each image separately and the two terms averaged over
            images, so each image's map must vary *within* itself: the guard against the
            spatial collapse that ``"batch"`` lets through (``docs/learning_dynamics.md``).
            ``max_samples`` then caps the positions per image.

    Returns:
        ``(var, cov)``: ``mean_j relu(gamma - sqrt(Var_j + eps))`` and
        ``sum_{i != j} Cov_ij^2 / C``.
    """
    check_nchw("x", x)
    check_choice("pooling", pooling, VC_POOLINGS)
    if pooling == "image":
        return _per_image_var_cov(x, gamma, eps, max_samples, generator, with_cov)
    z = upcast_half(x).permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    if max_samples is not None and z.shape[0] > max_samples:
        if max_samples < 2:
            raise ValueError(f"max_samples must be at least 2, got {max_samples}")
        device = generator.device if generator is not None else z.device
        idx = torch.randperm(z.shape[0], generator=generator, device=device)[:max_samples]
        z = z[idx.to(z.device)]
    return _var_cov(z, gamma, eps, with_cov)


def _per_image_var_cov(
    x: Tensor, gamma: float, eps: float, max_samples: int | None, generator: torch.Generator | None, with_cov: bool
) -> tuple[Tensor, Tensor | None]:
    """:func:`variance_covariance_terms` with ``pooling="image"``: batched over images."""
    b, c, h, w = x.shape
    if h * w < 2:
        raise ValueError(f"per-image variance needs at least 2 positions per image, got a {h}x{w} map")
    with torch.autocast(x.device.type, enabled=False):
        z = upcast_half(x).flatten(2)  # (B, C, N)
        if max_samples is not None and z.shape[-1] > max_samples:
            device = generator.device if generator is not None else z.device
            idx = torch.randperm(z.shape[-1], generator=generator, device=device)[:max_samples]
            z = z[..., idx.to(z.device)]
        n = z.shape[-1]
        z = z - z.mean(dim=-1, keepdim=True)
        std = torch.sqrt(z.square().sum(-1) / (n - 1) + eps)  # (B, C)
        var_term = F.relu(gamma - std).mean()
        if not with_cov:
            return var_term, None
        cov = z @ z.transpose(1, 2) / (n - 1)  # (B, C, C)
        off = cov.square().sum(dim=(1, 2)) - torch.diagonal(cov, dim1=1, dim2=2).square().sum(-1)
        return var_term, off.mean() / c


def variance_covariance_loss(
    x: Tensor,
    var_weight: float,
    cov_weight: float,
    gamma: float = 1.0,
    eps: float = 1e-4,
    max_samples: int | None = None,
    generator: torch.Generator | None = None,
    pooling: str = "batch",
) -> Tensor:
    """L_vc at one pyramid level: ``var_weight * var + cov_weight * cov`` of
    :func:`variance_covariance_terms` (positions of the batch are samples, channels are
    features). Skips what a zero weight makes unnecessary; returns 0 when both are 0.

    Returns:
        Scalar tensor.
    """
    if var_weight == 0.0 and cov_weight == 0.0:
        return x.new_zeros((), dtype=torch.float32)
    var, cov = variance_covariance_terms(
        x, gamma, eps, max_samples, generator, with_cov=cov_weight != 0.0, pooling=pooling
    )
    total = var_weight * var
    if cov is not None:
        total = total + cov_weight * cov
    return total


def pyramid_vc_loss(
    feats: Sequence[Tensor], var_weights: Sequence[float], cov_weights: Sequence[float], **options: Any
) -> Tensor:
    """L_vc over a pyramid: sum over levels of :func:`variance_covariance_loss`.

    Args:
        feats: frame t's pyramid, 6 maps fine to coarse.
        var_weights, cov_weights: one weight per map, indexed fine to coarse (index 0 = stride 2,
            index 5 = stride 32; the paper's: :data:`PAPER_VC_VAR_WEIGHTS`,
            :data:`PAPER_VC_COV_WEIGHTS`). Levels whose two weights are 0 are not computed at all.
        **options: ``gamma``, ``eps``, ``max_samples`` (a per-level cap on the number of
            positions: the stride-2 level of a 384x832 batch of 8 has 640k), ``generator`` and
            ``pooling`` (``"batch"``, the paper's, or ``"image"``) of :func:`variance_covariance_loss`.

    Returns:
        Scalar tensor.
    """
    if len(var_weights) != len(feats) or len(cov_weights) != len(feats):
        raise ValueError(
            f"expected {len(feats)} var_weights and cov_weights (one per pyramid level, fine to coarse), "
            f"got {len(var_weights)} and {len(cov_weights)}"
        )
    total = feats[0].new_zeros((), dtype=torch.float32)
    for x, wv, wc in zip(feats, var_weights, cov_weights):
        if wv == 0.0 and wc == 0.0:
            continue
        total = total + variance_covariance_loss(x, wv, wc, **options)
    return total


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every rank and returns this rank's slice
    (VICReg's ``FullGatherLayer``)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:  # type: ignore[override]
        all_grads = torch.stack(grads)
        dist.all_reduce(all_grads)
        return all_grads[dist.get_rank()]


def gather_across_ranks(z: Tensor) -> Tensor:
    """Concatenate ``z`` (``(N, ...)``, the same shape on every rank) from all ranks along dim 0,
    rank order, keeping the gradient path to this rank's slice. Returns ``z`` unchanged when
    ``torch.distributed`` is not initialised or has a single rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    return torch.cat(_GatherWithGrad.apply(z), dim=0)


def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    inv_weight: float = 1.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather: bool = True,
) -> dict[str, Tensor]:
    """L_ssl: VICReg on two ``(N, d)`` batches of expander outputs, as in VICReg's reference code.

    * ``inv = mean((z1 - z2)^2)`` over batch and dimensions (``F.mse_loss``), on this rank's batch.
    * ``var = (mean_j relu(gamma - std(z1)_j) + mean_j relu(gamma - std(z2)_j)) / 2`` with
      ``std = sqrt(Var + eps)`` (unbiased variance).
    * ``cov = sum_{i != j} C(z1)_ij^2 / d + sum_{i != j} C(z2)_ij^2 / d`` with the unbiased
      covariance matrix.
    * ``total = inv_weight * inv + var_weight * var + cov_weight * cov``.

    Defaults: the paper's 1 / 25 / 1 (VICReg's paper uses 25 / 25 / 1; docs/method.md#vicreg). Half
    precision is computed in float32.

    Args:
        gather: when ``torch.distributed`` is initialised, compute var and cov on the
            embeddings of every rank (:func:`gather_across_ranks`), as VICReg does; a no-op on
            a single process. Pass False if you gathered yourself.

    Returns:
        Dict with scalar tensors ``inv``, ``var``, ``cov`` (unweighted) and ``total``.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must be (N, d) of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    z1, z2 = upcast_half(z1), upcast_half(z2)
    inv = F.mse_loss(z1, z2)
    if gather:
        z1, z2 = gather_across_ranks(z1), gather_across_ranks(z2)
    var1, cov1 = _var_cov(z1, gamma, eps, with_cov=True)
    var2, cov2 = _var_cov(z2, gamma, eps, with_cov=True)
    var = 0.5 * (var1 + var2)
    cov = cov1 + cov2
    total = inv_weight * inv + var_weight * var + cov_weight * cov
    return {"inv": inv, "var": var, "cov": cov, "total": total}

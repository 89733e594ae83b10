"""Batch statistics over the global batch, however it is split over processes and micro-batches.

Three terms of the objective depend on the batch as a whole rather than on each sample: the
expander's BatchNorm, VICReg's variance and covariance, and the motion stream's L_vc
(docs/method.md#losses). For 1, 8 or 16 processes (and any gradient accumulation) to train the same
objective, each is computed over the global batch:

* :class:`GlobalBatchNorm1d`: BatchNorm1d whose statistics are all-reduced (with gradient) over
  the processes; it runs on the whole per-process batch at once, since the expander is cheap
  next to the encoder.
* L_vc from sufficient statistics (:func:`vc_statistics`, :func:`vc_from_statistics`): per level
  the sample count, per-channel sums and either the per-channel sums of squares or the C x C
  second-moment matrix, in float64. They add up over micro-batches and processes; one
  all-reduce of a few hundred thousand numbers replaces gathering every position.
* Gradient accumulation keeps the global value with :func:`straight_through`: a micro-batch's
  term takes its *value* from the global statistics (computed without gradient first) and its
  *gradient* from its own samples, scaled so that the accumulated, process-averaged gradient is
  the global term's.

VICReg's own variance and covariance gather the expander outputs over processes
(:func:`mcjepa.train.losses.gather_across_ranks`, as VICReg's code does).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from mcjepa.ops import upcast_half

__all__ = [
    "GlobalBatchNorm1d",
    "convert_global_batchnorm",
    "distributed_world",
    "freeze_running_stats",
    "straight_through",
    "vc_from_statistics",
    "vc_statistics",
]


def distributed_world() -> int:
    """Processes in the default group (1 when torch.distributed is not initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; its backward sums the incoming gradients too (the adjoint of a sum
    whose result every process uses)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        out = grad.clone()
        dist.all_reduce(out)
        return out


def _all_reduce_with_grad(x: Tensor) -> Tensor:
    return _AllReduceSum.apply(x)


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training statistics cover every process's batch.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm1d`` (checkpoints and releases
    are unchanged). In one process it *is* ``nn.BatchNorm1d``; under torch.distributed the mean
    and the biased variance are all-reduced (two passes, at least float32) with gradient, on any backend
    (Gloo included, unlike ``nn.SyncBatchNorm``). ``update_running_stats = False`` leaves the
    running averages alone (every micro-batch but one of an accumulated step).
    """

    update_running_stats: bool = True

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        if distributed_world() == 1:
            if self.update_running_stats:
                return super().forward(x)
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.autocast(x.device.type, enabled=False):
            x32 = upcast_half(x)
            count = x32.new_tensor([float(x32.shape[0])])
            sums = _all_reduce_with_grad(torch.cat((x32.sum(0), count)))
            n = sums[-1].detach()
            mean = sums[:-1] / n
            centred = x32 - mean
            var = _all_reduce_with_grad(centred.square().sum(0)) / n
            if self.update_running_stats:
                with torch.no_grad():
                    m = self.momentum if self.momentum is not None else 0.1
                    self.running_mean.mul_(1 - m).add_(m * mean.detach())
                    self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp_min(1))
                    self.num_batches_tracked.add_(1)
            out = centred * torch.rsqrt(var + self.eps)
            if self.affine:
                out = out * self.weight + self.bias
        return out


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d`` in ``module`` by a :class:`GlobalBatchNorm1d` holding the
    same tensors (in place, by class swap); returns ``module``."""
    for m in module.modules():
        if type(m) is nn.BatchNorm1d:
            m.__class__ = GlobalBatchNorm1d
    return module


class freeze_running_stats:
    """Context manager: the :class:`GlobalBatchNorm1d` layers of ``module`` leave their running
    averages alone inside it (``enabled=False``: do nothing)."""

    def __init__(self, module: nn.Module, enabled: bool = True) -> None:
        self.layers = [m for m in module.modules() if isinstance(m, GlobalBatchNorm1d)] if enabled else []

    def __enter__(self) -> None:
        for m in self.layers:
            m.update_running_stats = False

    def __exit__(self, *exc: object) -> None:
        for m in self.layers:
            m.update_running_stats = True


def straight_through(global_value: Tensor, local: Tensor, scale: float) -> Tensor:
    """``global_value`` in the forward pass, ``scale * d/d local`` in the backward pass.

    ``global_value`` (no gradient) is a sum of statistics over every micro-batch and process;
    ``local`` the same statistics of this micro-batch, with gradient. With ``scale`` = micro-batches
    x processes, the micro-batch losses (each weighted 1 / micro-batches, then averaged over
    processes by DDP) accumulate exactly the gradient of the global term."""
    return global_value.detach() + scale * (local - local.detach())


def vc_statistics(
    x: Tensor, with_cov: bool, max_samples: int = 0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Sufficient statistics of a ``(B, C, H, W)`` map for L_vc, every position a sample.

    Args:
        with_cov: keep the ``C x C`` second-moment matrix (needed by the covariance term);
            otherwise only the per-channel sums of squares.
        max_samples: use a random subset of this many positions (0: all), drawn as
            :func:`mcjepa.train.losses.variance_covariance_terms` draws it.

    Returns:
        ``(count, moments)``: a 1-element float64 count and one flat float64 vector
        ``[sum (C), sum of squares (C) or z^T z (C * C)]``.
    """
    c = x.shape[1]
    with torch.autocast(x.device.type, enabled=False):
        z = x.permute(0, 2, 3, 1).reshape(-1, c)
        if max_samples and z.shape[0] > max_samples:
            device = generator.device if generator is not None else z.device
            idx = torch.randperm(z.shape[0], generator=generator, device=device)[:max_samples]
            z = z[idx.to(z.device)]
        z = z.double()
        second = (z.T @ z).flatten() if with_cov else z.square().sum(0)
        count = z.new_tensor([float(z.shape[0])])
        return count, torch.cat((z.sum(0), second))


def vc_from_statistics(
    count: Tensor, moments: Tensor, channels: int, with_cov: bool, gamma: float = 1.0, eps: float = 1e-4
) -> tuple[Tensor, Tensor | None]:
    """The variance hinge ``mean_j relu(gamma - sqrt(Var_j + eps))`` and ``sum_{i != j} C_ij^2 / C``
    (unbiased estimates, as :func:`mcjepa.train.losses.variance_covariance_terms`) from
    :func:`vc_statistics` summed over any number of batches. Returns float32 scalars (cov None
    without ``with_cov``)."""
    n = count.reshape(())  # (no check that n >= 2 here: it would cost a host sync every step)
    mean = moments[:channels] / n
    if with_cov:
        second = moments[channels:].view(channels, channels)
        cov = (second - n * torch.outer(mean, mean)) / (n - 1)
        var = torch.diagonal(cov)
    else:
        var = (moments[channels:] - n * mean.square()) / (n - 1)
    var_term = F.relu(gamma - torch.sqrt(var.clamp_min(0) + eps)).mean().float()
    if not with_cov:
        return var_term, None
    off = cov.square().sum() - torch.diagonal(cov).square().sum()
    return var_term, (off / channels).float()

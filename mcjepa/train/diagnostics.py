"""Collapse measures of the encoder's pyramid, logged during training (``docs/learning_dynamics.md``).

A shared encoder trained with L_reg can lower that loss without learning flow, by making its
features the same in both frames and constant over each image. Three numbers per pyramid level
tell the two apart from healthy features (all computed without gradient, in float32):

* ``frame_diff``: ``mean((X_t - X_{t+1})^2)`` of the unwarped maps (falls towards 0 on collapse,
  while real motion keeps it well above 0);
* ``within``: the standard deviation over the positions of one image, averaged over channels and
  images (spatial collapse drives it to 0);
* ``across``: the standard deviation over the images of the batch of each image's mean feature,
  averaged over channels (what the paper's batch-pooled L_vc also counts as variance).

Two more tell whether the forward-backward occlusion check still lets the photometric loss see
the image (:func:`flow_consistency_stats`): ``diag_visible``, the fraction of pixels the check
keeps, and ``diag_fwd_bwd_cos``, the cosine between the forward flow and the backward flow (about
-1 for a healthy pair; near +1 when both flows drift to the same constant, the state in which the
check marks every pixel occluded and the masked photometric loss stops sending any gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["feature_collapse_stats", "flow_consistency_stats"]


@torch.no_grad()
def feature_collapse_stats(feats1: Sequence[Tensor], feats2: Sequence[Tensor]) -> dict[str, Tensor]:
    """Return ``{"diag_l{i}_{frame_diff,within,across}": scalar}`` for every pyramid level ``i``
    (0 = stride 2, fine to coarse). Units: feature units (squared for ``frame_diff``)."""
    out: dict[str, Tensor] = {}
    for i, (a, b) in enumerate(zip(feats1, feats2)):
        a, b = a.detach().float(), b.detach().float()
        out[f"diag_l{i}_frame_diff"] = (a - b).square().mean()
        positions = a.shape[-2] * a.shape[-1]  # a 1x1 map has no spread within the image
        out[f"diag_l{i}_within"] = a.flatten(2).std(dim=-1).mean() if positions > 1 else a.new_zeros(())
        means = a.mean(dim=(2, 3))  # (B, C)
        out[f"diag_l{i}_across"] = means.std(dim=0).mean() if a.shape[0] > 1 else a.new_zeros(())
    return out


@torch.no_grad()
def flow_consistency_stats(flow_fwd: Tensor, flow_bwd: Tensor, visible: Tensor | None) -> dict[str, Tensor]:
    """Return ``diag_visible`` (fraction of pixels in ``visible``, the forward occlusion mask; 1
    when no mask is used) and ``diag_fwd_bwd_cos`` (cosine between the flattened forward and
    backward flows, averaged over the batch; 0 when both are zero)."""
    f, b = flow_fwd.detach().float().flatten(1), flow_bwd.detach().float().flatten(1)
    cos = torch.nn.functional.cosine_similarity(f, b, dim=1, eps=1e-8).mean()
    frac = visible.detach().float().mean() if visible is not None else f.new_ones(())
    return {"diag_visible": frac, "diag_fwd_bwd_cos": cos}

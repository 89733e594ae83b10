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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["feature_collapse_stats"]


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

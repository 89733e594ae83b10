"""Held-out synthetic EPE, printed at the end of a run (the demo's learning check)."""

from __future__ import annotations

import torch

from ..encoder import imagenet_normalize
from ..model import MCJEPA

__all__ = ["synthetic_epe"]


@torch.no_grad()
def synthetic_epe(
    model: MCJEPA, num_pairs: int, size: tuple[int, int], seed: int, batch_size: int = 8
) -> dict[str, float]:
    """Mean endpoint error (pixels, pooled over all pixels of all pairs) of ``model`` and of zero
    flow on ``num_pairs`` embedded synthetic pairs drawn with ``seed`` (never used in training).

    Returns ``{"epe": ..., "zero_flow_epe": ..., "epe_noc": ...}`` (``epe_noc``: non-occluded
    pixels only).
    """
    from ..data.synthetic import SyntheticFlowDataset

    data = SyntheticFlowDataset(num_pairs, size, seed=seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    err_sum = zero_sum = noc_sum = 0.0
    count = noc_count = 0
    for start in range(0, num_pairs, batch_size):
        items = [data[i] for i in range(start, min(num_pairs, start + batch_size))]
        im1 = torch.stack([it["image1"] for it in items]).to(device)
        im2 = torch.stack([it["image2"] for it in items]).to(device)
        gt = torch.stack([it["flow"] for it in items]).to(device)
        noc = ~torch.stack([it["occlusion"] for it in items]).to(device)
        pred = model.estimate_flow(imagenet_normalize(im1), imagenet_normalize(im2)).flow.float()
        err = (pred - gt).norm(dim=1, keepdim=True)
        err_sum += err.sum().item()
        zero_sum += gt.norm(dim=1).sum().item()
        noc_sum += err[noc].sum().item()
        count += err.numel()
        noc_count += int(noc.sum().item())
    model.train(was_training)
    return {
        "epe": err_sum / count,
        "zero_flow_epe": zero_sum / count,
        "epe_noc": noc_sum / max(1, noc_count),
    }

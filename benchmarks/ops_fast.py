"""Other formulations of :func:`mcjepa.ops.local_correlation`, used only by the benchmarks and the
tests (moved here from ``mcjepa/ops_fast.py`` and ``mcjepa.ops``): a faster one and the slow
per-pixel reference loop (pure PyTorch, no extension).

:func:`local_correlation_tiled` computes exactly what :func:`mcjepa.ops.local_correlation`
computes (same layout, same zero padding) with batched matrix multiplications instead of 81
shifted multiply-and-sum passes: the width is cut into tiles of ``tile`` positions; for every
row offset ``dy``, each tile of source positions ``(tile, C)`` is multiplied by the matching
``(C, tile + 2d)`` slab of target positions, and the ``2d + 1`` diagonals of each
``(tile, tile + 2d)`` product are the costs of the ``dx`` displacements. This does
``(tile + 2d) / (2d + 1)`` times the multiply-adds of the direct form (about 2.7x at
``tile = 16``) but runs them as GEMMs (tensor cores under bf16 on CUDA) instead of
memory-bound elementwise passes. Results agree with the direct form to float rounding.

Nothing in the model uses this module: benchmark it with ``python -m benchmarks.ops``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["local_correlation_reference", "local_correlation_tiled"]


def local_correlation_tiled(source: Tensor, target: Tensor, max_displacement: int = 4, tile: int = 16) -> Tensor:
    """Local cost volume, same definition and output as :func:`mcjepa.ops.local_correlation`.

    Args:
        source, target: ``(B, C, H, W)`` feature maps of equal shape.
        max_displacement: ``d``; displacements ``(dy, dx)`` in ``[-d, d]^2``, dy outer.
        tile: width of the position tiles multiplied at once (a speed knob, any value >= 1).

    Returns:
        ``(B, (2d + 1)^2, H, W)`` mean-over-channels dot products (zero outside the target).
    """
    if source.shape != target.shape or source.dim() != 4:
        raise ValueError(
            f"source and target must be (B, C, H, W) of the same shape, "
            f"got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    d = int(max_displacement)
    k = 2 * d + 1
    b, c, h, w = source.shape
    n_tiles = -(-w // tile)
    wp = n_tiles * tile
    span = tile + 2 * d
    # source tiles, channels last: (B, H, nT, tile, C)
    src = F.pad(source, (0, wp - w)).permute(0, 2, 3, 1).reshape(b, h, n_tiles, tile, c)
    # target slabs (a view): (B, H + 2d, nT, C, tile + 2d); slab j covers padded columns [j*tile, j*tile + span)
    tgt = F.pad(target, (d, d + wp - w, d, d)).permute(0, 2, 1, 3).unfold(3, span, tile).permute(0, 1, 3, 2, 4)
    out = source.new_empty(b, k, h, w, k)
    for dy in range(k):
        prod = (src @ tgt[:, dy : dy + h]).contiguous()  # (B, H, nT, tile, span)
        s = prod.stride()
        # element (x, dx) of the band is prod[..., x, x + dx]
        band = prod.as_strided((b, h, n_tiles, tile, k), (s[0], s[1], s[2], span + 1, 1))
        out[:, dy] = band.reshape(b, h, wp, k)[:, :, :w]
    return out.permute(0, 1, 4, 2, 3).reshape(b, k * k, h, w) / c


def local_correlation_reference(source: Tensor, target: Tensor, max_displacement: int = 4) -> Tensor:
    """Slow per-pixel, per-displacement loop implementation of :func:`local_correlation`,
    kept here (not in the exported :mod:`mcjepa.ops` API) as the numerical reference for the
    tests and the ``benchmarks.ops`` timings. Returns the same layout."""
    d = int(max_displacement)
    b, c, h, w = source.shape
    out = source.new_zeros(b, (2 * d + 1) ** 2, h, w)
    k = 0
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            for y in range(h):
                for x in range(w):
                    ty, tx = y + dy, x + dx
                    if 0 <= ty < h and 0 <= tx < w:
                        out[:, k, y, x] = (source[:, :, y, x] * target[:, :, ty, tx]).sum(1) / c
            k += 1
    return out

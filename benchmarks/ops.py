"""Correlation and warping ops per pyramid level, with numerical agreement checks.

    python -m benchmarks.ops --device cuda --out results/ops.json

Shapes: ConvNeXt-T's pyramid at ``--size`` (default 448x1024): strides (2, 4, 4, 8, 16, 32),
channels (48, 48, 96, 192, 384, 768), batch ``--batch`` (2 = one batched forward + backward
flow call, as in training). Timed, per level:

* ``local_correlation`` (:mod:`mcjepa.ops`, the model's implementation: 81 shifted
  multiply-and-sum passes);
* ``local_correlation_tiled`` (:mod:`benchmarks.ops_fast`, batched matmuls over width tiles);
* ``local_correlation_reference`` (:mod:`benchmarks.ops_fast`, the per-pixel Python loop), only
  at levels with at most ``--reference-max-positions`` positions (it is very slow);
* ``backward_warp`` with a random flow of a few pixels;
* with ``--compile``, ``torch.compile(local_correlation)`` too.

``max_abs_diff`` is the largest absolute difference from ``local_correlation`` (and, where it
ran, from the reference) in the same run, on features standardised as the flow head does.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

import torch

from mcjepa.architecture import model_config
from mcjepa.ops import backward_warp, local_correlation, normalize_feature_pair

from .common import (
    add_common_args,
    autocast,
    measure,
    parse_size,
    print_table,
    resolve_device,
    setup_threads,
    write_json,
)
from .ops_fast import local_correlation_reference, local_correlation_tiled

__all__ = ["main", "pyramid_shapes"]

COLUMNS = ["level", "stride", "shape", "op", "dtype", "median_ms", "gb_per_s", "max_abs_diff", "diff_vs"]


def pyramid_shapes(size: tuple[int, int], variant: str = "convnext_t") -> list[tuple[int, int, int, int]]:
    """``(stride, C, H, W)`` of each pyramid level of ``variant`` for an input of ``size``
    (``H`` and ``W`` multiples of 32), fine to coarse."""
    enc = model_config(variant).encoder
    h, w = size
    if h % 32 or w % 32:
        raise ValueError(f"size must be a multiple of 32 (the network stride), got {h}x{w}")
    return [(s, c, h // s, w // s) for s, c in zip(enc.pyramid_strides, enc.pyramid_channels)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ops", description=__doc__.split("\n\n")[0])
    add_common_args(p, repeats=5, warmup=2)
    p.add_argument("--size", type=parse_size, default=(448, 1024), help="input HxW, multiple of 32")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--levels", nargs="+", type=int, default=None, help="pyramid indices 0-5 (default all)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast (matmul paths)")
    p.add_argument("--tile", type=int, default=16, help="tile width of local_correlation_tiled")
    p.add_argument("--reference-max-positions", type=int, default=448, help="run the loop reference up to H*W")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(local_correlation)")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a table and return (and optionally write) the JSON payload."""
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    shapes = pyramid_shapes(args.size)
    levels = args.levels if args.levels is not None else list(range(len(shapes)))
    compiled = torch.compile(local_correlation) if args.compile else None
    rows: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(0)
    for lvl in levels:
        stride, c, h, w = shapes[lvl]
        a, t = (torch.randn(args.batch, c, h, w, generator=gen).to(device) for _ in range(2))
        a, t = normalize_feature_pair(a, t)
        flow = (torch.randn(args.batch, 2, h, w, generator=gen) * 3).to(device)
        base = dict(level=lvl, stride=stride, shape=f"{args.batch}x{c}x{h}x{w}", dtype=args.dtype)
        feat_bytes = a.numel() * a.element_size()
        cost_bytes = args.batch * 81 * h * w * 4

        ops: dict[str, Any] = {
            "local_correlation": partial(local_correlation, a, t),
            "local_correlation_tiled": partial(local_correlation_tiled, a, t, tile=args.tile),
        }
        if compiled is not None:
            ops["local_correlation_compiled"] = partial(compiled, a, t)
        with torch.inference_mode(), autocast(device, args.dtype):
            ref = local_correlation(a, t).float()
            loop = local_correlation_reference(a, t) if h * w <= args.reference_max_positions else None
            if loop is not None:
                rows.append({**base, "op": "local_correlation", "max_abs_diff": (ref - loop.float()).abs().max().item(),
                             "diff_vs": "reference loop"})  # fmt: skip
                rows.append({**base, "op": "local_correlation_reference",
                             **_timing(partial(local_correlation_reference, a, t), device, 1, 0, 0)})  # fmt: skip
            for name, fn in ops.items():
                m = _timing(fn, device, args.repeats, args.warmup, 2 * feat_bytes + cost_bytes)
                diff = (fn().float() - ref).abs().max().item()
                rows.append({**base, "op": name, **m, "max_abs_diff": diff if name != "local_correlation" else 0.0,
                             "diff_vs": "local_correlation"})  # fmt: skip
            m = _timing(partial(backward_warp, t, flow), device, args.repeats, args.warmup, 2 * feat_bytes)
            rows.append({**base, "op": "backward_warp", **m})
        print(f"  level {lvl} done", flush=True)
    args.size = f"{args.size[0]}x{args.size[1]}"
    print_table(rows, COLUMNS, title=f"Ops per pyramid level on {device} (gb_per_s: minimal bytes moved / time)")
    return write_json(args.out, "ops", args, device, rows)


def _timing(fn: Any, device: torch.device, repeats: int, warmup: int, nbytes: int) -> dict[str, Any]:
    m = measure(fn, device, repeats=repeats, warmup=warmup)
    out = {"median_ms": m["median_ms"], "times_ms": m["times_ms"]}
    if nbytes:
        out["gb_per_s"] = nbytes / (m["median_ms"] / 1e3) / 1e9
    return out


if __name__ == "__main__":
    main()

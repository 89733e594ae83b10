"""Where the time of one flow estimate goes: encoder vs each flow-head level and stage.

    python -m benchmarks.breakdown --device cpu --variant convnext_t --size 256x512

Re-runs :meth:`mcjepa.flow_head.FlowHead.forward`'s coarse-to-fine loop step by step with the
model's own modules, timing (median of ``--repeats``) and FLOP-counting (``FlopCounterMode``:
convolutions and matmuls only) each stage: ``warp`` (upsample + backward warp), ``corr``
(feature normalisation + local correlation + LeakyReLU), ``decoder`` (1x1 reduction + dense
decoder) and ``context`` (the dilated context network). The replayed flow is checked against
``model(img1, img2)`` (``max_abs_diff``), so the breakdown measures the real computation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mcjepa.encoder import imagenet_normalize
from mcjepa.model import build_model
from mcjepa.ops import backward_warp, local_correlation, upsample_flow

from .common import (
    add_common_args,
    autocast,
    build_variant,
    parse_size,
    print_table,
    resolve_device,
    setup_threads,
    write_json,
)

__all__ = ["main"]

COLUMNS = ["part", "level", "stride", "median_ms", "share_pct", "gflop"]


def _timed(fn: Any, device: torch.device, repeats: int) -> tuple[Any, float, float]:
    """Run ``fn`` ``repeats`` times; return (last result, median ms, GFLOP of one call)."""
    times, out = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return out, statistics.median(times), counter.get_total_flops() / 1e9


def _warp(prev: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    up = upsample_flow(prev, tuple(tgt.shape[-2:]))
    return up, backward_warp(tgt, up)


def _corr(head: Any, src: torch.Tensor, tgt_warped: torch.Tensor) -> torch.Tensor:
    cfg = head.config
    return F.leaky_relu(
        local_correlation(*head._normalize(src, tgt_warped), cfg.max_displacement), cfg.leaky_relu_slope
    )


def _decoder(head: Any, i: int, cost: torch.Tensor, src: torch.Tensor, flow_up: torch.Tensor) -> Any:
    return head.decoder(torch.cat((cost, head.reducers[i](src), flow_up), dim=1))


def _context(head: Any, feat: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    return head.context(torch.cat((feat, flow), dim=1))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.breakdown", description=__doc__.split("\n\n")[0])
    add_common_args(p, repeats=3, warmup=1)
    p.add_argument("--variant", default="convnext_t")
    p.add_argument("--size", type=parse_size, default=(256, 512), help="HxW, multiple of 32")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the breakdown; print a table and return (and optionally write) the JSON payload."""
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    h, w = args.size
    if h % 32 or w % 32:
        raise SystemExit(f"--size must be a multiple of 32, got {h}x{w}")
    model = build_model(build_variant(args.variant)).to(device).eval()
    head, cfg = model.flow_head, model.flow_head.config
    gen = torch.Generator().manual_seed(0)
    x = imagenet_normalize(torch.rand(2 * args.batch, 3, h, w, generator=gen)).to(device)
    b = args.batch
    rows: list[dict[str, Any]] = []
    with torch.inference_mode(), autocast(device, args.dtype):
        for _ in range(args.warmup):
            model(x[:b], x[b:])
        feats, ms, gf = _timed(lambda: model.encoder(x), device, args.repeats)
        rows.append(dict(part="encoder (both frames)", level="-", stride="-", median_ms=ms, gflop=gf))
        src, tgt = [f[:b] for f in feats], [f[b:] for f in feats]
        flow = None
        for i in reversed(head.levels):
            s, t = src[i], tgt[i]
            stride = h // s.shape[-2]
            if flow is None:
                flow_up, t_w = s.new_zeros(b, 2, *s.shape[-2:]), t
            else:
                (flow_up, t_w), ms, gf = _timed(partial(_warp, flow, t), device, args.repeats)
                rows.append(dict(part="warp", level=i, stride=stride, median_ms=ms, gflop=gf))
            cost, ms, gf = _timed(partial(_corr, head, s, t_w), device, args.repeats)
            rows.append(dict(part="corr", level=i, stride=stride, median_ms=ms, gflop=gf))
            (feat, res), ms, gf = _timed(partial(_decoder, head, i, cost, s, flow_up), device, args.repeats)
            rows.append(dict(part="decoder", level=i, stride=stride, median_ms=ms, gflop=gf))
            flow = flow_up + res
            if head.context is not None:
                ref, ms, gf = _timed(partial(_context, head, feat, flow), device, args.repeats)
                rows.append(dict(part="context", level=i, stride=stride, median_ms=ms, gflop=gf))
                flow = flow + ref
            flow = flow.clamp(-cfg.flow_clip, cfg.flow_clip)
        full = upsample_flow(flow, (h, w))
        diff = (full.float() - model(x[:b], x[b:]).float()).abs().max().item()
    total = sum(r["median_ms"] for r in rows)
    for r in rows:
        r["share_pct"] = 100.0 * r["median_ms"] / total
    by_level: dict[Any, float] = {}
    for r in rows:
        key = (r["level"], r["stride"])
        by_level[key] = by_level.get(key, 0.0) + r["median_ms"]
    summary = [
        dict(
            part="encoder" if k[0] == "-" else f"head level {k[0]} (stride {k[1]})",
            median_ms=v,
            share_pct=100 * v / total,
        )
        for k, v in by_level.items()
    ]
    args.size = f"{h}x{w}"
    title = f"Breakdown of {args.variant} flow at {args.size}, batch {b}, {args.dtype} on {device}"
    print_table(rows, COLUMNS, title=title)
    print_table(summary, ["part", "median_ms", "share_pct"], title=f"Per level (sum {total:.1f} ms)")
    print(f"replayed flow vs model(img1, img2): max abs diff {diff:.3g}")
    payload_rows = rows + [dict(summary=s) for s in summary] + [dict(replay_max_abs_diff=diff, total_ms=total)]
    return write_json(args.out, "breakdown", args, device, payload_rows)


if __name__ == "__main__":
    main()

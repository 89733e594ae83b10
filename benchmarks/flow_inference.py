"""Flow inference latency, throughput and peak memory: MC-JEPA against torchvision's RAFT.

    python -m benchmarks.flow_inference --device cuda --sizes 436x1024 375x1242 --batch 1 8 \
        --dtype fp32 bf16 --models mcjepa raft_small raft_large --out results/flow_inference.json

What is timed (``--entry``):

* ``forward`` (default): ``model(img1, img2)`` on ImageNet-normalised float tensors already on
  the device and already padded to a multiple of 32 (MC-JEPA) or 8 (RAFT), under
  ``torch.inference_mode()`` and, for ``bf16``, ``torch.autocast(device, bfloat16)``.
* ``estimate``: :func:`mcjepa.flow.estimate` on float [0, 1] tensors on the device (includes
  input validation, normalisation, padding and cropping; bf16 only on CUDA). RAFT rows always
  use the model's forward on [-1, 1] inputs.

RAFT: ``raft_small(weights=None)`` called with ``num_flow_updates=12`` and
``raft_large(weights=None)`` with ``num_flow_updates=32`` by default (random weights: the cost does not depend on them).
The ratio columns are RAFT's latency divided by MC-JEPA's at the same size, batch and dtype
(> 1 means MC-JEPA is faster).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.optical_flow import raft_large, raft_small

import mcjepa.flow
from mcjepa.architecture import MODEL_VARIANTS
from mcjepa.encoder import imagenet_normalize
from mcjepa.model import build_model

from .common import (
    add_common_args,
    autocast,
    build_variant,
    measure,
    parse_size,
    print_table,
    resolve_device,
    setup_threads,
    write_json,
)

__all__ = ["build_flow_model", "count_gflop", "flow_case", "main", "MCJEPA_PAD", "RAFT_PAD"]

MCJEPA_PAD = 32
RAFT_PAD = 8
RAFT_MODELS = ("raft_small", "raft_large")
COLUMNS = [
    "model",
    "size",
    "padded",
    "batch",
    "dtype",
    "median_ms",
    "pairs_per_s",
    "gflop",
    "memory_mib",
    "x_vs_raft_small",
    "x_vs_raft_large",
]


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def is_raft(name: str) -> bool:
    return name in RAFT_MODELS


def variant_of(name: str, default_variant: str) -> str:
    """MC-JEPA variant for a ``--models`` entry (``mcjepa`` means ``--variant``)."""
    if name == "mcjepa":
        return default_variant
    base = name.partition("+")[0]
    if base not in MODEL_VARIANTS:
        raise SystemExit(
            f"unknown model {name!r}: expected mcjepa, raft_small, raft_large or a variant "
            f"{sorted(MODEL_VARIANTS)} (optionally with '+s4')"
        )
    return name


def build_flow_model(
    name: str,
    device: torch.device,
    *,
    raft_small_iters: int = 12,
    raft_large_iters: int = 32,
    channels_last: bool = False,
    compile_model: bool = False,
) -> tuple[nn.Module, Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Return ``(module, call)`` where ``call(module, img1, img2)`` computes one flow batch.

    ``name`` is ``raft_small``, ``raft_large`` or an MC-JEPA variant name (see
    :func:`benchmarks.common.build_variant`)."""
    iters = {"raft_small": raft_small_iters, "raft_large": raft_large_iters}.get(name, 0)
    if name == "raft_small":
        model: nn.Module = raft_small(weights=None)
    elif name == "raft_large":
        model = raft_large(weights=None)
    else:
        model = build_model(build_variant(name))
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if is_raft(name):

        def call(m: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            # RAFT returns every iteration's flow; the last is the answer
            return m(a, b, num_flow_updates=iters)[-1]

    else:

        def call(m: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return m(a, b)

    if compile_model:
        model = torch.compile(model)
    return model, call


def flow_case(
    name: str,
    model: nn.Module,
    call: Callable,
    size: tuple[int, int],
    batch: int,
    dtype: str,
    device: torch.device,
    *,
    repeats: int,
    warmup: int,
    entry: str = "forward",
    channels_last: bool = False,
) -> dict[str, Any]:
    """Time one (model, size, batch, dtype) case; returns a result row (latency in ms, memory
    in MiB, throughput in pairs/s), or a row with ``error`` when it runs out of memory."""
    h, w = size
    pad = RAFT_PAD if is_raft(name) else MCJEPA_PAD
    ph, pw = _round_up(h, pad), _round_up(w, pad)
    row: dict[str, Any] = {
        "model": name,
        "size": f"{h}x{w}",
        "padded": f"{ph}x{pw}",
        "batch": batch,
        "dtype": dtype,
        "entry": "forward" if is_raft(name) else entry,
    }
    if entry == "estimate" and not is_raft(name) and dtype == "bf16" and device.type != "cuda":
        row["error"] = "flow.estimate supports bf16 only on CUDA"
        return row
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2 * batch, 3, h, w, generator=gen).to(device)
    if entry == "estimate" and not is_raft(name):
        a01, b01 = img[:batch], img[batch:]

        def fn() -> torch.Tensor:
            return mcjepa.flow.estimate(a01, b01, model=model, bf16=dtype == "bf16")

    else:
        x = img * 2 - 1 if is_raft(name) else imagenet_normalize(img)  # RAFT: [-1, 1]; ours: ImageNet
        x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        a, b = x[:batch], x[batch:]

        def fn() -> torch.Tensor:
            with torch.inference_mode(), autocast(device, dtype):
                return call(model, a, b)

    try:
        m = measure(fn, device, repeats=repeats, warmup=warmup)
    except torch.OutOfMemoryError as exc:  # scaling runs up to 1080p: report instead of crashing
        torch.cuda.empty_cache()
        row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
        return row
    row.update(
        median_ms=m["median_ms"],
        min_ms=m["min_ms"],
        times_ms=m["times_ms"],
        pairs_per_s=batch / m["median_ms"] * 1e3,
        memory_mib=m["memory_bytes"] / 2**20,
        memory_kind=m["memory_kind"],
    )
    return row


def count_gflop(name: str, padded: tuple[int, int], batch: int, **build_kwargs: Any) -> float:
    """FLOPs of one flow batch in GFLOP (convolutions and matmuls, ``FlopCounterMode``), counted
    on the ``meta`` device: no computation runs, so it is instant at any size."""
    model, call = build_flow_model(name, torch.device("cpu"), **build_kwargs)
    model = model.to("meta")
    x = torch.zeros(2 * batch, 3, *padded, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        call(model, x[:batch], x[batch:])
    return counter.get_total_flops() / 1e9


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Add ``x_vs_raft_small`` / ``x_vs_raft_large`` (RAFT ms / MC-JEPA ms) to MC-JEPA rows."""
    ref = {(r["model"], r["size"], r["batch"], r["dtype"]): r.get("median_ms") for r in rows}
    for r in rows:
        if is_raft(r["model"]) or r.get("median_ms") is None:
            continue
        for raft in RAFT_MODELS:
            t = ref.get((raft, r["size"], r["batch"], r["dtype"]))
            if t is not None:
                r[f"x_vs_{raft}"] = t / r["median_ms"]


_GFLOP_CACHE: dict[tuple, float] = {}


def _gflop_cached(name: str, padded: tuple[int, int], batch: int, iters: dict[str, int]) -> float:
    key = (name, padded, batch, tuple(sorted(iters.items())))
    if key not in _GFLOP_CACHE:
        _GFLOP_CACHE[key] = count_gflop(name, padded, batch, **iters)
    return _GFLOP_CACHE[key]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.flow_inference", description=__doc__.split("\n\n")[0])
    add_common_args(p, repeats=5, warmup=2)
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None, help="HxW; default 436x1024 375x1242 on "
                   "CUDA, 128x256 on CPU")  # fmt: skip
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument(
        "--dtype", nargs="+", choices=["fp32", "bf16"], default=None, help="default fp32 bf16 on CUDA, fp32 on CPU"
    )
    p.add_argument("--models", nargs="+", default=["mcjepa", "raft_small", "raft_large"],
                   help="mcjepa (= --variant), a variant name (micro, convnext_t_c1, convnext_t, +s4 suffix), "
                   "raft_small, raft_large")  # fmt: skip
    p.add_argument("--variant", default="convnext_t", help="MC-JEPA variant used for 'mcjepa'")
    p.add_argument("--entry", choices=["forward", "estimate"], default="forward")
    p.add_argument("--raft-small-iters", type=int, default=12)
    p.add_argument("--raft-large-iters", type=int, default=32)
    p.add_argument("--channels-last", action="store_true", help="channels_last weights and inputs (all models)")
    p.add_argument("--compile", action="store_true", help="torch.compile each model first")
    p.add_argument("--flops-only", action="store_true", help="only count FLOPs (meta device, instant; no timing)")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a table and return (and optionally write) the JSON payload."""
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    if args.sizes is None:
        args.sizes = [(436, 1024), (375, 1242)] if device.type == "cuda" else [(128, 256)]
    if args.dtype is None:
        args.dtype = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    names = [m if is_raft(m) else variant_of(m, args.variant) for m in args.models]
    rows: list[dict[str, Any]] = []
    for name in [] if args.flops_only else names:
        model, call = build_flow_model(
            name,
            device,
            raft_small_iters=args.raft_small_iters,
            raft_large_iters=args.raft_large_iters,
            channels_last=args.channels_last,
            compile_model=args.compile,
        )
        for size in args.sizes:
            for batch in args.batch:
                for dtype in args.dtype:
                    row = flow_case(
                        name, model, call, size, batch, dtype, device,
                        repeats=args.repeats, warmup=args.warmup, entry=args.entry, channels_last=args.channels_last,
                    )  # fmt: skip
                    print(f"  {name} {row['size']} b{batch} {dtype}: {row.get('median_ms', row.get('error'))} ms",
                          flush=True)  # fmt: skip
                    rows.append(row)
        del model
    if args.flops_only:
        for name in names:
            for h, w in args.sizes:
                pad = RAFT_PAD if is_raft(name) else MCJEPA_PAD
                for batch in args.batch:
                    padded = f"{_round_up(h, pad)}x{_round_up(w, pad)}"
                    rows.append(dict(model=name, size=f"{h}x{w}", padded=padded, batch=batch, dtype="any"))
    for row in rows:  # FLOPs per (model, padded size, batch), counted once on the meta device
        if "median_ms" in row or args.flops_only:
            ph, pw = (int(v) for v in row["padded"].split("x"))
            iters = dict(raft_small_iters=args.raft_small_iters, raft_large_iters=args.raft_large_iters)
            row["gflop"] = _gflop_cached(row["model"], (ph, pw), row["batch"], iters)
            if "median_ms" in row:
                row["achieved_gflop_per_s"] = row["gflop"] / (row["median_ms"] / 1e3)
    add_ratios(rows)
    args.sizes = [f"{h}x{w}" for h, w in args.sizes]
    mem = "peak CUDA memory allocated" if device.type == "cuda" else "peak RSS growth (lower bound)"
    print_table(rows, COLUMNS, title=f"Flow inference on {device} (median of {args.repeats}; memory_mib = {mem})")
    return write_json(args.out, "flow_inference", args, device, rows)


if __name__ == "__main__":
    main()

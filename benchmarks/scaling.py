"""How flow latency and memory grow with resolution, per model variant.

    python -m benchmarks.scaling --device cuda --out results/scaling.json

Default sizes: 256x256 up to 1080p (1080x1920) on CUDA, 128x128 up to 512x512 on CPU. Each
case is timed as in :mod:`benchmarks.flow_inference` (``model(img1, img2)`` on normalised,
padded tensors, median of ``--repeats``). ``ms_per_mpix`` = latency per million input pixels:
flat means linear cost in the pixel count.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_common_args, parse_size, print_table, resolve_device, setup_threads, write_json
from .flow_inference import build_flow_model, flow_case, is_raft, variant_of

__all__ = ["main", "CUDA_SIZES", "CPU_SIZES"]

CUDA_SIZES = ["256x256", "384x512", "448x1024", "720x1280", "1080x1920"]
CPU_SIZES = ["128x128", "256x256", "384x384", "512x512"]
COLUMNS = ["model", "size", "padded", "batch", "dtype", "median_ms", "ms_per_mpix", "memory_mib", "error"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0])
    add_common_args(p, repeats=3, warmup=1)
    p.add_argument("--sizes", nargs="+", default=None, help=f"HxW; default {CUDA_SIZES} on CUDA, {CPU_SIZES} on CPU")
    p.add_argument("--models", nargs="+", default=["micro", "convnext_t_c1", "convnext_t"],
                   help="variant names (+s4 suffix: head stops at stride 4), raft_small, raft_large")  # fmt: skip
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="default bf16 on CUDA, fp32 on CPU")
    p.add_argument("--channels-last", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the scaling sweep; print a table and return (and optionally write) the JSON payload."""
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    sizes = [parse_size(s) for s in (args.sizes or (CUDA_SIZES if device.type == "cuda" else CPU_SIZES))]
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    rows: list[dict[str, Any]] = []
    for name in args.models:
        name = name if is_raft(name) else variant_of(name, "convnext_t")
        model, call = build_flow_model(name, device, channels_last=args.channels_last)
        for size in sizes:
            row = flow_case(
                name, model, call, size, args.batch, dtype, device,
                repeats=args.repeats, warmup=args.warmup, channels_last=args.channels_last,
            )  # fmt: skip
            if "median_ms" in row:
                row["ms_per_mpix"] = row["median_ms"] / (size[0] * size[1] / 1e6)
            print(f"  {name} {row['size']}: {row.get('median_ms', row.get('error'))} ms", flush=True)
            rows.append(row)
        del model
    args.sizes = [f"{h}x{w}" for h, w in sizes]
    args.dtype = dtype
    mem = "peak CUDA memory allocated" if device.type == "cuda" else "peak RSS growth (lower bound)"
    print_table(rows, COLUMNS, title=f"Flow scaling on {device}, {dtype}, batch {args.batch} (memory_mib = {mem})")
    return write_json(args.out, "scaling", args, device, rows)


if __name__ == "__main__":
    main()

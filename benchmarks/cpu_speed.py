"""CPU latency of one flow estimate, MC-JEPA against torchvision's RAFT, one thread, interleaved.

    OMP_NUM_THREADS=1 python -m benchmarks.cpu_speed --variant small --out results/cpu/cpu_speed.json

All models run in one process on the same random 256x512 pair (``--size``), batch 1, on
``--threads 1`` CPU thread by default: the MC-JEPA ``--variant`` (untrained unless ``--weights``:
the cost does not depend on the weights), ``raft_small(weights=None)`` with
``num_flow_updates=12`` and ``raft_large(weights=None)`` with 12 as well (``--raft-small-iters``,
``--raft-large-iters``). What is timed is ``model(img1, img2)`` under ``torch.inference_mode()``
on inputs already normalised and padded (MC-JEPA: ImageNet statistics, to a multiple of 32;
RAFT: [-1, 1], to a multiple of 8), as ``flow_inference``'s default entry does.

Timing: ``--warmup`` untimed rounds, then ``--repeats`` timed rounds; each round runs every
model once, in an order rotated by one each round, so that a slow spell of a shared machine
falls on all models alike (``flow_inference`` times one model's repeats back to back). Reported:
the median seconds per model and ``vs_raft_small`` = its median / raft_small's (< 1: faster than
raft_small).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import mcjepa.flow
from mcjepa.architecture import MODEL_VARIANTS
from mcjepa.encoder import imagenet_normalize

from .common import add_common_args, parse_size, print_table, resolve_device, setup_threads, write_json
from .flow_inference import MCJEPA_PAD, RAFT_PAD, build_flow_model

__all__ = ["build_parser", "main"]

MODELS = ("mcjepa", "raft_small", "raft_large")
COLUMNS = ["model", "size", "padded", "iterations", "median_s", "min_s", "vs_raft_small"]


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpu_speed", description=__doc__.split("\n\n")[0])
    add_common_args(p, repeats=5, warmup=1)
    p.set_defaults(device="cpu", threads=1)
    p.add_argument("--size", type=parse_size, default=(256, 512), help="HxW of the pair (default 256x512)")
    p.add_argument("--variant", default="small", choices=sorted(MODEL_VARIANTS), help="MC-JEPA variant")
    p.add_argument("--weights", default=None, help="trained weights (anything flow.load takes; default untrained)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="which models to time")
    p.add_argument("--raft-small-iters", type=int, default=12)
    p.add_argument("--raft-large-iters", type=int, default=12)
    return p


def _flow_call(name: str, args: argparse.Namespace, device: torch.device) -> tuple[Callable[[], Any], str, int]:
    """Return ``(fn, padded "HxW", iterations)``: ``fn()`` computes one flow of the benchmark pair."""
    h, w = args.size
    raft = name != "mcjepa"
    pad = RAFT_PAD if raft else MCJEPA_PAD
    ph, pw = _round_up(h, pad), _round_up(w, pad)
    img = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    x = img * 2 - 1 if raft else imagenet_normalize(img)
    x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
    a, b = x[:1], x[1:]
    iters = {"raft_small": args.raft_small_iters, "raft_large": args.raft_large_iters}.get(name, 0)
    if not raft and args.weights:
        model = mcjepa.flow.load(args.weights, variant=args.variant, device=device)

        def call(m: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return m(a, b)

    else:
        model, call = build_flow_model(
            name if raft else args.variant,
            device,
            raft_small_iters=args.raft_small_iters,
            raft_large_iters=args.raft_large_iters,
        )

    def fn() -> Any:
        with torch.inference_mode():
            return call(model, a, b)

    return fn, f"{ph}x{pw}", iters


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a table and return (and optionally write) the JSON payload."""
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        raise SystemExit(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
    setup_threads(args.threads)
    device = resolve_device(args.device)
    if device.type != "cpu":
        raise SystemExit("cpu_speed measures CPU latency: use --device cpu (flow_inference covers CUDA)")
    names = list(dict.fromkeys(args.models))
    if any(n != "mcjepa" for n in names) and min(args.size) < 128:
        raise SystemExit(f"RAFT needs frames of at least 128x128 (its correlation pyramid), got --size {args.size}")
    calls = {name: _flow_call(name, args, device) for name in names}
    for _ in range(args.warmup):
        for name in names:
            calls[name][0]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order each round
            t0 = time.perf_counter()
            calls[name][0]()
            times[name].append(time.perf_counter() - t0)
    h, w = args.size
    rows: list[dict[str, Any]] = []
    for name in names:
        _, padded, iters = calls[name]
        rows.append(
            {
                "model": f"mcjepa {args.variant}" if name == "mcjepa" else name,
                "variant": args.variant if name == "mcjepa" else None,
                "weights": args.weights if name == "mcjepa" else None,
                "size": f"{h}x{w}",
                "padded": padded,
                "iterations": iters or None,
                "median_s": statistics.median(times[name]),
                "min_s": min(times[name]),
                "times_s": times[name],
            }
        )
    ref = next((r["median_s"] for r, n in zip(rows, names) if n == "raft_small"), None)
    for row in rows:
        row["vs_raft_small"] = row["median_s"] / ref if ref else None
    args.size = f"{h}x{w}"
    title = (
        f"Flow latency on CPU, batch 1, {torch.get_num_threads()} thread(s): median of {args.repeats} interleaved "
        "rounds, seconds; vs_raft_small = this / raft_small (< 1: faster)"
    )
    print_table(rows, COLUMNS, title=title)
    return write_json(args.out, "cpu_speed", args, device, rows)


if __name__ == "__main__":
    main()

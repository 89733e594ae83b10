"""Training-step time, throughput and model FLOPs utilisation (MFU).

    python -m benchmarks.training_step --device cuda --out results/training_step.json

Shapes default to the ``paper`` config's per-GPU batch: ``data.content_batch_size / --gpus``
content images at ``data.content.size`` (384 / 8 = 48 at 224 px; each image gives two views)
and ``data.motion_batch_size / --gpus`` frame pairs at the largest motion crop (8 / 8 = 1 pair
at 384x832). On CPU the defaults are small (override with ``--content-batch``,
``--content-size``, ``--motion-batch``, ``--motion-size``).

One step = ``MCJEPAObjective(content_views, frames, plan)`` under bf16 autocast (``--dtype``),
``total.backward()``, ``AdamW.step()``, ``zero_grad(set_to_none=True)``: the optimiser and
param groups of :class:`mcjepa.train.engine.Trainer`, without its per-step host syncs (add them
back with ``--host-syncs`` to measure their cost). Three modes: ``content`` (VICReg only),
``motion`` (flow losses only, with L_vc) and ``combined`` (both, the paper's sampling).

FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` over one forward + backward (matmuls and
convolutions; elementwise ops, ``grid_sample`` and the optimiser are not counted). MFU =
FLOPs / step time / device peak. Peaks (dense bf16, TFLOP/s): H100 SXM 989, H200 989, A100 312,
V100 125; ``--peak-tflops`` overrides. On CPU only achieved GFLOP/s is reported.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mcjepa.encoder import imagenet_normalize
from mcjepa.model import build_model
from mcjepa.train.build import build_optimizer
from mcjepa.train.config import load_config
from mcjepa.train.objective import MCJEPAObjective
from mcjepa.train.schedule import StepPlan

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

__all__ = ["PEAK_TFLOPS", "device_peak_tflops", "main"]

# dense bf16 tensor-core peaks, TFLOP/s (vendor datasheets; SXM parts)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "V100": 125.0}
MODES = ("content", "motion", "combined")
COLUMNS = ["mode", "variant", "content", "motion", "dtype", "step_ms", "images_per_s", "pairs_per_s", "gflop_per_step",
           "achieved_gflops", "mfu_pct", "memory_mib"]  # fmt: skip


def device_peak_tflops(device: torch.device, override: float | None = None) -> float | None:
    """Dense bf16 peak of ``device`` in TFLOP/s from :data:`PEAK_TFLOPS` (or ``override``);
    ``None`` on CPU or an unknown GPU."""
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def paper_shapes(gpus: int) -> dict[str, Any]:
    """Per-GPU shapes of the ``paper`` config: content batch and size, motion batch and crop."""
    cfg = load_config("paper")
    crops = [tuple(m["crop"]) for m in cfg.data.motion if "crop" in m]
    crop = max(crops, key=lambda c: c[0] * c[1])
    return {
        "content_batch": max(1, cfg.data.content_batch_size // gpus),
        "content_size": int(cfg.data.content.get("size", 224)),
        "motion_batch": max(1, cfg.data.motion_batch_size // gpus),
        "motion_size": crop,
        "loss": cfg.loss,
        "optim": cfg.optim,
    }


def _forward_backward(
    objective: MCJEPAObjective, content: Any, motion: Any, plan: StepPlan, device: torch.device, dtype: str
) -> dict[str, torch.Tensor]:
    """Losses of one step under autocast, then ``total.backward()``; returns the losses."""
    with autocast(device, dtype):
        losses = objective(content, motion, plan)
    losses["total"].backward()
    return losses


def _step(forward_backward: Any, opt: torch.optim.Optimizer, host_syncs: bool) -> None:
    """One optimisation step (optionally with :class:`Trainer`'s per-step host syncs)."""
    losses = forward_backward()
    if host_syncs:  # what Trainer.train_step does every step: one copy of the stacked losses to the host
        torch.stack([v.detach().float() for v in losses.values()]).tolist()
    opt.step()
    opt.zero_grad(set_to_none=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.training_step", description=__doc__.split("\n\n")[0])
    add_common_args(p, repeats=5, warmup=2)
    p.add_argument("--variant", default=None, help="model variant (default convnext_t on CUDA, micro on CPU)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs the paper's global batch is split over (default 8)")
    p.add_argument("--content-batch", type=int, default=None, help="images per step (default: paper/gpus; CPU 4)")
    p.add_argument("--content-size", type=int, default=None, help="content crop, px (default: paper; CPU 96)")
    p.add_argument("--motion-batch", type=int, default=None, help="pairs per step (default: paper/gpus; CPU 1)")
    p.add_argument("--motion-size", type=parse_size, default=None, help="HxW (default: paper's largest; CPU 128x256)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="default bf16 on CUDA, fp32 on CPU")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU, TFLOP/s")
    p.add_argument("--host-syncs", action="store_true", help="add the engine's per-step syncs (finite check, floats)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (it runs one extra step)")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a table and return (and optionally write) the JSON payload."""
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    shapes = paper_shapes(args.gpus)
    variant = args.variant or ("convnext_t" if cuda else "micro")
    cb = args.content_batch or (shapes["content_batch"] if cuda else 4)
    cs = args.content_size or (shapes["content_size"] if cuda else 96)
    mb = args.motion_batch or (shapes["motion_batch"] if cuda else 1)
    ms = args.motion_size or (shapes["motion_size"] if cuda else (128, 256))
    dtype = args.dtype or ("bf16" if cuda else "fp32")
    if cb < 2:
        raise SystemExit("--content-batch must be >= 2 (the expander's BatchNorm and VICReg's variance need it)")
    peak = device_peak_tflops(device, args.peak_tflops)

    model = build_model(build_variant(variant), expander=True).to(device).train()
    objective = MCJEPAObjective(model, shapes["loss"])
    opt = build_optimizer(model, shapes["optim"])  # the trainer's optimiser and parameter groups
    gen = torch.Generator().manual_seed(0)
    views = tuple(imagenet_normalize(torch.rand(cb, 3, cs, cs, generator=gen)).to(device) for _ in range(2))
    frames = tuple(torch.rand(mb, 3, *ms, generator=gen).to(device) for _ in range(2))

    rows: list[dict[str, Any]] = []
    for mode in args.modes:
        motion = mode != "content"
        plan = StepPlan(
            content=mode != "motion", motion=motion, vc=motion, occlusion=motion, detach_encoder_for_motion=False
        )
        content = views if plan.content else None
        motion = frames if plan.motion else None

        fb = partial(_forward_backward, objective, content, motion, plan, device, dtype)
        step = partial(_step, fb, opt, args.host_syncs)

        flops = None
        if not args.no_flops:
            counter = FlopCounterMode(display=False)
            with counter:
                fb()
            opt.zero_grad(set_to_none=True)
            flops = counter.get_total_flops()
        m = measure(step, device, repeats=args.repeats, warmup=args.warmup)
        sec = m["median_ms"] / 1e3
        row: dict[str, Any] = {
            "mode": mode,
            "variant": variant,
            "content": f"{cb}x{cs}x{cs}" if plan.content else "-",
            "motion": f"{mb}x{ms[0]}x{ms[1]}" if plan.motion else "-",
            "dtype": dtype,
            "step_ms": m["median_ms"],
            "times_ms": m["times_ms"],
            "images_per_s": cb / sec if plan.content else None,
            "views_per_s": 2 * cb / sec if plan.content else None,
            "pairs_per_s": mb / sec if plan.motion else None,
            "memory_mib": m["memory_bytes"] / 2**20,
            "memory_kind": m["memory_kind"],
        }
        if flops is not None:
            row["gflop_per_step"] = flops / 1e9
            row["achieved_gflops"] = flops / sec / 1e9
            if peak is not None:
                row["peak_tflops"] = peak
                row["mfu_pct"] = 100.0 * flops / sec / (peak * 1e12)
        print(f"  {mode}: {m['median_ms']:.1f} ms/step", flush=True)
        rows.append(row)
    args.motion_size = f"{ms[0]}x{ms[1]}"
    mem = "peak CUDA memory allocated" if cuda else "peak RSS growth (lower bound)"
    peak_txt = f"peak {peak} TFLOP/s" if peak else "no device peak (achieved throughput only)"
    print_table(rows, COLUMNS, title=f"Training step on {device}, {variant}, {dtype}; {peak_txt}; memory_mib = {mem}")
    return write_json(args.out, "training_step", args, device, rows)


if __name__ == "__main__":
    main()

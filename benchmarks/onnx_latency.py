"""onnxruntime (CPU) vs PyTorch (CPU) latency of the same flow model, side by side in one run.

For each ``--variants`` entry the model is built (untrained unless ``--weights``: the latency does
not depend on the weights), exported with :func:`mcjepa.export_onnx` (TorchScript exporter,
opset 17, dynamic batch / height / width; its own check skipped) to a temporary file, then
both runtimes compute the flow of the same random ``(B, 3, H, W)`` [0, 1] pair: PyTorch runs
:class:`mcjepa.release.onnx.OnnxFlowModel` (the exported graph's module: ImageNet normalisation +
encoder + flow head) under ``torch.inference_mode()``, onnxruntime runs the file with the
``CPUExecutionProvider`` and ``intra_op_num_threads = --threads``. Timing: the rule of
``benchmarks.common.measure`` (warm-up calls, then the median of ``--repeats``).
``x_vs_pytorch`` = PyTorch's median / this row's (> 1: faster than PyTorch); ``max_abs_diff`` =
max |onnxruntime - PyTorch| flow on the timed input, in pixels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mcjepa.flow
from mcjepa.model import build_model
from mcjepa.release.onnx import OnnxFlowModel, export_onnx, onnxruntime_session

from .common import add_common_args, measure, parse_size, print_table, resolve_device, setup_threads, write_json

__all__ = ["main"]

COLUMNS = ["model", "runtime", "size", "batch", "median_ms", "pairs_per_s", "x_vs_pytorch", "max_abs_diff", "export_s"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.onnx_latency", description=__doc__.split("\n\n")[0])
    add_common_args(p, repeats=5, warmup=1)
    p.add_argument("--variants", nargs="+", default=["micro", "convnext_t"], help="model variants (default both)")
    p.add_argument("--weights", default=None, help="trained weights for every variant (default: untrained)")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[(256, 512)], help="HxW, multiples of 32")
    p.add_argument("--batch", nargs="+", type=int, default=[1])
    p.add_argument("--keep", type=Path, default=None, help="keep the .onnx files in this folder")
    return p


def _randomise_heads(model: torch.nn.Module) -> None:
    """Give the zero-initialised flow output convs small random weights, so that max_abs_diff
    compares non-zero flows (an untrained head predicts exactly zero); the cost is unchanged."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.flow_head.parameters():
            if not p.any():
                p.copy_(0.01 * torch.randn(p.shape, generator=g))


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a table and return (and optionally write) the JSON payload."""
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    if device.type != "cpu":
        raise SystemExit("onnx_latency compares the CPU runtimes: use --device cpu")
    threads = args.threads or torch.get_num_threads()
    for h, w in args.sizes:
        if h % 32 or w % 32:
            raise SystemExit(f"--sizes must be multiples of 32 (the exported graph does not pad), got {h}x{w}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for variant in args.variants:
            model = mcjepa.flow.load(args.weights, variant=variant) if args.weights else build_model(variant).eval()
            if args.weights is None:
                _randomise_heads(model)
            path = folder / f"{variant}.onnx"
            start = time.perf_counter()
            export_onnx(path, model, check=False, verbose=False)
            export_s = time.perf_counter() - start
            session = onnxruntime_session(path, threads=threads)
            module = OnnxFlowModel(model).eval()
            for h, w in args.sizes:
                for batch in args.batch:
                    gen = torch.Generator().manual_seed(0)
                    a, b = torch.rand(2, batch, 3, h, w, generator=gen)
                    feeds = {"image1": a.numpy(), "image2": b.numpy()}

                    def run_torch(a=a, b=b, module=module):
                        with torch.inference_mode():
                            return module(a, b)

                    def run_ort(feeds=feeds, session=session):
                        return session.run(["flow"], feeds)[0]

                    diff = float(np.abs(run_ort() - run_torch().numpy()).max())
                    base = dict(model=variant, size=f"{h}x{w}", batch=batch, threads=threads, export_s=export_s)
                    timed = {}
                    for runtime, fn in (("pytorch", run_torch), ("onnxruntime", run_ort)):
                        m = measure(fn, device, repeats=args.repeats, warmup=args.warmup)
                        timed[runtime] = m["median_ms"]
                        row = dict(base, runtime=runtime, median_ms=m["median_ms"], min_ms=m["min_ms"])
                        row.update(times_ms=m["times_ms"], pairs_per_s=batch / m["median_ms"] * 1e3)
                        row["max_abs_diff"] = diff if runtime == "onnxruntime" else None
                        rows.append(row)
                        print(f"  {variant} {h}x{w} b{batch} {runtime}: {m['median_ms']:.1f} ms", flush=True)
                    for row in rows[-2:]:
                        row["x_vs_pytorch"] = timed["pytorch"] / row["median_ms"]
    import onnxruntime

    for row in rows:
        row["onnxruntime_version"] = onnxruntime.__version__
    args.sizes = [f"{h}x{w}" for h, w in args.sizes]
    note = f"onnxruntime {onnxruntime.__version__}, CPUExecutionProvider, {threads} thread(s)"
    print_table(rows, COLUMNS, title=f"Flow latency, PyTorch vs onnxruntime on CPU (median of {args.repeats}; {note})")
    return write_json(args.out, "onnx_latency", args, device, rows)


if __name__ == "__main__":
    main()

"""Time and memory of one flow on a 12-megapixel pair, at full size and at working size limits.

    OMP_NUM_THREADS=1 python -m benchmarks.large_input --out benchmarks/results/cpu/large_input_12mp.json

The pair: frames 0 and ``--gap`` of opencv-doc's ``vtest.avi`` (768x576, people walking; ``apt-get
install opencv-doc``, PyAV) upscaled (bicubic) to ``--size`` (default 3000x4000, H x W: 12
megapixels); without the clip, a rendered synthetic pair of that size. Each ``--max-size`` runs in
its own process (``none``: full size), so that its peak resident memory (``ru_maxrss`` of that
process, which includes the model and both frames) is its own; time is one call of
:func:`mcjepa.flow.video.estimate_resized` (what ``mcjepa-flow --max-size`` runs), after one
untimed call at 256x256 that warms the model up. Also reported: the mean |flow| in input pixels,
and the photometric error of the flow at full size, ``warp_mae``: the mean absolute difference
between frame 1 and frame 2 warped back by the flow (``flow.warp``; [0, 1] units, all pixels;
``zero_flow_mae`` is frame 1 against frame 2), since the pair has no ground truth.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

from .common import parse_size, print_table, write_json
from .common import run_json_child as _run_child  # a module global, so tests can run children in-process

__all__ = ["build_parser", "main"]

COLUMNS = ["max_size", "model_size", "seconds", "peak_rss_gib", "mean_flow_px", "warp_mae", "zero_flow_mae"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.large_input", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="weights for flow.load (default: the bundled model)")
    p.add_argument("--size", type=parse_size, default=(3000, 4000), help="H x W of the pair (default 3000x4000)")
    p.add_argument("--gap", type=int, default=5, help="frame gap in vtest.avi (default 5)")
    p.add_argument("--max-sizes", nargs="+", default=["none", "1024", "640"], help="'none' = full size")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one --max-size, in a child process
    return p


def _pair(size: tuple[int, int], gap: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """float32 (1, 3, H, W) frames in [0, 1] and where they come from."""
    import torch.nn.functional as F

    try:
        from mcjepa.data.video import require_opencv_sample_videos
        from mcjepa.flow.sequences import open_sequence

        clip = next(p for p in require_opencv_sample_videos() if p.name == "vtest.avi")
        frames = []
        for i, frame in enumerate(open_sequence(clip).frames()):
            if i in (0, gap):
                frames.append(frame)
            if i >= gap:
                break
        source = f"{clip.name} frames 0 and {gap}, bicubic to {size[0]}x{size[1]}"
    except (ImportError, FileNotFoundError, StopIteration):
        from mcjepa.data.synthetic import render_pair

        pair = render_pair(0, size=(576, 768))
        frames, source = [pair.image1, pair.image2], f"synthetic pair, bicubic to {size[0]}x{size[1]}"
    x = torch.stack(frames).float() / 255
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    return x[:1], x[1:], source


def _worker(args: argparse.Namespace) -> dict:
    from mcjepa import flow
    from mcjepa.flow.video import estimate_resized, resized_size

    torch.set_num_threads(args.threads)
    max_size = None if args.worker == "none" else int(args.worker)
    model = flow.load(args.weights)
    flow.estimate(torch.rand(3, 256, 256), torch.rand(3, 256, 256), model)  # warm-up
    image1, image2, source = _pair(args.size, args.gap)
    start = time.perf_counter()
    f = estimate_resized(image1, image2, model, max_size=max_size, check_colour=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux; before the warp below
    warp_mae = float((flow.warp(image2, f) - image1).abs().mean())
    h, w = resized_size(*args.size, max_size)
    return {
        "max_size": args.worker,
        "model_size": f"{w}x{h}",
        "seconds": seconds,
        "peak_rss_gib": peak,
        "mean_flow_px": float(f.norm(dim=1).mean()),
        "warp_mae": warp_mae,
        "zero_flow_mae": float((image2 - image1).abs().mean()),
        "source": source,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(args)))
        return {}
    rows = []
    for m in args.max_sizes:
        cmd = [sys.executable, "-m", "benchmarks.large_input", "--worker", m, "--threads", str(args.threads),
               "--size", f"{args.size[0]}x{args.size[1]}", "--gap", str(args.gap)]  # fmt: skip
        if args.weights:
            cmd += ["--weights", args.weights]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        rows.append(_run_child(cmd, env))
        print_table(rows[-1:], COLUMNS)
    print_table(rows, COLUMNS, title=f"one flow, {args.size[0]}x{args.size[1]} (H x W), {rows[0]['source']}")
    return write_json(args.out, "large_input", args, torch.device("cpu"), rows)


if __name__ == "__main__":
    main()

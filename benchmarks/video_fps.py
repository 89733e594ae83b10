"""Frames per second of ``mcjepa-flow`` on a video clip, end to end (decode, flow, encode).

Renders a clip of ``--frames`` frames at ``--size`` (default 360x640, H x W): a camera panning
over one scene of the embedded synthetic generator (``mcjepa.data.synthetic.render_image``), 2 px
down and 3 px right per frame, encoded with PyAV (H.264, CRF 18, 25 fps). Then, per
``--variants`` x ``--max-size`` x ``--batch``, runs ``mcjepa-flow CLIP -o OUT.mp4 --variant V
--device cpu --no-progress`` in this process (:func:`mcjepa.cli.flow.main`), untrained unless
``--weights``: the speed does not depend on the weights. ``pairs_per_s`` is the command's own
figure: output frames (one per pair) per second of its streaming loop (decoding, flow,
colour coding and encoding; model loading excluded); ``total_s`` also counts building the model.

Memory: ``peak_rss_growth_mib`` is the growth of this process's peak resident set size
(``ru_maxrss``) over the case. The clip is rendered in a child process so that rendering does
not raise the peak beforehand; the first case of a run is exact, later ones are lower bounds (0
when an earlier case peaked higher). Run the same command with ``--frames 20`` and ``--frames
200`` to see whether memory grows with the length of the video.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mcjepa.cli.flow import main as flow_main
from mcjepa.data.synthetic import render_image

from .common import (
    _peak_rss_bytes,
    add_common_args,
    parse_size,
    print_table,
    resolve_device,
    setup_threads,
    write_json,
)

__all__ = ["main", "render_clip"]

COLUMNS = ["model", "size", "max_size", "batch", "pairs", "loop_s", "pairs_per_s", "total_s", "peak_rss_growth_mib"]


def render_clip(path: Path, frames: int, size: tuple[int, int], rate: int = 25) -> Path:
    """Write a panning synthetic clip of ``frames`` frames of ``size = (H, W)`` to ``path``."""
    import av

    h, w = size
    scene = render_image(11, size=(h + 2 * frames, w + 3 * frames), num_shapes=(6, 10)).permute(1, 2, 0).numpy()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18"}
        for i in range(frames):
            rgb = np.ascontiguousarray(scene[2 * i : 2 * i + h, 3 * i : 3 * i + w])
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _max_size(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.video_fps", description=__doc__.split("\n\n")[0])
    add_common_args(p, repeats=1, warmup=0)
    p.add_argument("--variants", nargs="+", default=["micro"], help="model variants (default micro)")
    p.add_argument("--weights", default=None, help="trained weights (default: an untrained --variants model)")
    p.add_argument("--size", type=parse_size, default=(360, 640), help="clip size HxW (default 360x640)")
    p.add_argument("--frames", type=int, default=11, help="clip length (default 11 frames = 10 pairs)")
    p.add_argument("--max-size", nargs="+", type=_max_size, default=[None], help="--max-size values ('none': off)")
    p.add_argument("--batch", nargs="+", type=int, default=[1], help="--batch values")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a table and return (and optionally write) the JSON payload."""
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    device = resolve_device(args.device)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        child = multiprocessing.get_context("spawn").Process(target=render_clip, args=(clip, args.frames, args.size))
        child.start()
        child.join()
        if child.exitcode != 0 or not clip.is_file():
            raise SystemExit(f"rendering the clip failed (exit code {child.exitcode})")
        for variant in args.variants:
            for max_size in args.max_size:
                for batch in args.batch:
                    argv_flow = [str(clip), "-o", str(Path(tmp) / "out.mp4"), "--variant", variant]
                    argv_flow += ["--device", str(device), "--no-progress", "--batch", str(batch)]
                    if max_size is not None:
                        argv_flow += ["--max-size", str(max_size)]
                    # without --weights: an untrained model of this variant (the speed does not depend on them)
                    argv_flow += ["--weights", args.weights or "random"]
                    text = io.StringIO()
                    rss, start = _peak_rss_bytes(), time.perf_counter()
                    with contextlib.redirect_stdout(text):
                        status = flow_main(argv_flow)
                    total = time.perf_counter() - start
                    rss_growth = max(0, _peak_rss_bytes() - rss) / 2**20
                    found = re.search(r"(\d+) pair\(s\) in ([\d.]+) s", text.getvalue())
                    if status != 0 or found is None:
                        raise SystemExit(f"mcjepa-flow failed ({status}):\n{text.getvalue()}")
                    pairs, loop_s = int(found.group(1)), float(found.group(2))
                    row = dict(
                        model=variant,
                        trained=bool(args.weights),
                        size=f"{args.size[0]}x{args.size[1]}",
                        max_size=max_size,
                        batch=batch,
                        pairs=pairs,
                        loop_s=loop_s,
                        pairs_per_s=pairs / loop_s,
                        total_s=total,
                        peak_rss_growth_mib=rss_growth,
                        frames=args.frames,
                        command="mcjepa-flow "
                        + " ".join({str(clip): "CLIP.mp4", argv_flow[2]: "OUT.mp4"}.get(a, a) for a in argv_flow),
                    )
                    rows.append(row)
                    print(
                        f"  {variant} max_size={max_size} batch={batch}: {row['pairs_per_s']:.3g} pairs/s", flush=True
                    )
    args.size = f"{args.size[0]}x{args.size[1]}"
    print_table(rows, COLUMNS, title=f"mcjepa-flow on a {args.size} clip, {device} (pairs/s = output frames/s)")
    return write_json(args.out, "video_fps", args, device, rows)


if __name__ == "__main__":
    main()

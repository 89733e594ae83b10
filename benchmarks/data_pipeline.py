"""What the training data pipeline costs on the CPU, and how many cores a GPU needs to be fed.

    OMP_NUM_THREADS=1 python -m benchmarks.data_pipeline --out benchmarks/results/cpu/data_pipeline.json \\
        --plot docs/data_pipeline.png

One process, one thread: what one DataLoader worker does, item by item, through the training
code's own datasets:

* content: an ImageNet-style folder of JPEGs (``--jpegs`` images of 500x375, ImageNet's typical
  size, cut from the bundled photos and saved at quality 90), read by
  :class:`mcjepa.data.content.ContentDataset`: decode, two VICReg views (random resized crop 224,
  flip, colour jitter, grayscale, blur, solarize), normalise;
* motion: folders of PNG frames at the sizes of Sintel (436x1024, crop 384x832), KITTI
  (375x1242, crop 256x832) and FlyingThings3D (540x960, crop 384x512), read by the ``frames``
  motion dataset: decode both frames, crop, flip.

From the rates it derives the cores per GPU that keep a step of the paper's recipe fed (384
images and 8 pairs per step, all GPUs together; arXiv 2307.12698) at a given step time:
``cores = images per GPU per step / (images/s per core * step time) + pairs likewise`` (the
motion rate is the mean over the three datasets). Step times are inputs (``--step-times``): no
GPU step of the recipe has been timed yet.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .common import print_table, setup_threads, write_json

__all__ = ["build_parser", "cores_per_gpu", "main"]

CONTENT_SIZE = (375, 500)  # (h, w): ImageNet's typical image
MOTION_SETS = {  # name: (frame size, crop), the paper's crops (section 5)
    "sintel": ((436, 1024), (384, 832)),
    "kitti": ((375, 1242), (256, 832)),
    "flyingthings3d": ((540, 960), (384, 512)),
}
PAPER_CONTENT_BATCH, PAPER_MOTION_BATCH = 384, 8


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jpegs", type=int, default=48, help="content images written and read (default 48)")
    p.add_argument("--pairs", type=int, default=12, help="frame pairs per motion set (default 12)")
    p.add_argument("--repeats", type=int, default=3, help="passes over the items; the median rate is kept")
    p.add_argument("--step-times", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="seconds per step")
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8], help="GPU counts to plan for")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a worker uses 1 by default)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="write the figure here (PNG)")
    return p


def _photo_crops(n: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """``n`` RGB crops of ``size`` (h, w) from the bundled photos (resized up where needed): real
    image statistics, so that JPEG and PNG decoding costs what they cost on photographs."""
    from mcjepa.data.real_texture import photo_files

    photos = [np.asarray(Image.open(f).convert("RGB")) for f in photo_files("bundled")]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = size
        scale = max(h / img.shape[0], w / img.shape[1], 1.0)
        if scale > 1.0:
            img = np.asarray(
                Image.fromarray(img).resize((int(img.shape[1] * scale) + 1, int(img.shape[0] * scale) + 1))
            )
        y = int(rng.integers(0, img.shape[0] - h + 1))
        x = int(rng.integers(0, img.shape[1] - w + 1))
        out.append(np.ascontiguousarray(img[y : y + h, x : x + w]))
    return out


def _rate(dataset: Any, repeats: int) -> tuple[float, float]:
    """Items per second reading every item of ``dataset`` in this process (median of ``repeats``
    passes) and the spread (max / min rate)."""
    rates = []
    for r in range(repeats):
        torch.manual_seed(r)
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        rates.append(len(dataset) / (time.perf_counter() - start))
    return statistics.median(rates), max(rates) / min(rates)


def cores_per_gpu(images_per_s: float, pairs_per_s: float, gpus: int, step_s: float) -> float:
    """CPU cores (one worker each) that one GPU's loaders need for a ``step_s``-second step of
    the paper's global batches on ``gpus`` GPUs."""
    images, pairs = PAPER_CONTENT_BATCH / gpus, PAPER_MOTION_BATCH / gpus
    return images / (images_per_s * step_s) + pairs / (pairs_per_s * step_s)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    from mcjepa.data.content import ContentDataset
    from mcjepa.data.motion import build_motion_datasets

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "imagenet" / "n00000000"
        folder.mkdir(parents=True)
        sizes = []
        for i, img in enumerate(_photo_crops(args.jpegs, CONTENT_SIZE, seed=0)):
            path = folder / f"{i:05d}.JPEG"
            Image.fromarray(img).save(path, quality=90)
            sizes.append(path.stat().st_size)
        rate, spread = _rate(ContentDataset(root / "imagenet", size=224), args.repeats)
        rows.append(
            {
                "stream": "content",
                "source": f"JPEG {CONTENT_SIZE[1]}x{CONTENT_SIZE[0]}, {statistics.mean(sizes) / 1024:.0f} KiB",
                "output": "2 views 224x224",
                "items_per_s": round(rate, 2),
                "ms_per_item": round(1000 / rate, 1),
                "spread": round(spread, 2),
            }
        )
        for name, (size, crop) in MOTION_SETS.items():
            seq = root / name / "seq"
            seq.mkdir(parents=True)
            for i, img in enumerate(_photo_crops(args.pairs + 1, size, seed=1)):
                Image.fromarray(img).save(seq / f"{i:06d}.png")
            (ds,) = build_motion_datasets([{"name": "frames", "root": str(root / name), "crop": list(crop)}], seed=0)
            rate, spread = _rate(ds, args.repeats)
            rows.append(
                {
                    "stream": "motion",
                    "source": f"{name}: PNG {size[1]}x{size[0]}",
                    "output": f"pair, crop {crop[1]}x{crop[0]}",
                    "items_per_s": round(rate, 2),
                    "ms_per_item": round(1000 / rate, 1),
                    "spread": round(spread, 2),
                }
            )
    content_rate = rows[0]["items_per_s"]
    motion_rate = statistics.mean(r["items_per_s"] for r in rows[1:])
    plan = [
        {
            "gpus": g,
            "step_s": t,
            "images_per_gpu_step": PAPER_CONTENT_BATCH / g,
            "pairs_per_gpu_step": PAPER_MOTION_BATCH / g,
            "cores_per_gpu": round(cores_per_gpu(content_rate, motion_rate, g, t), 1),
            "content_share": round(
                (PAPER_CONTENT_BATCH / g / content_rate) / (cores_per_gpu(content_rate, motion_rate, g, t) * t), 2
            ),
        }
        for g in args.gpus
        for t in args.step_times
    ]
    print_table(rows, ["stream", "source", "output", "items_per_s", "ms_per_item", "spread"], "one worker process")
    print_table(plan, ["gpus", "step_s", "images_per_gpu_step", "pairs_per_gpu_step", "cores_per_gpu", "content_share"])
    results = [{"row": "rate", **r} for r in rows] + [{"row": "cores_per_gpu", **p} for p in plan]
    payload = write_json(args.out, "data_pipeline", args, torch.device("cpu"), results)
    if args.plot is not None:
        _plot(rows, plan, args.plot)
    return payload


def _plot(rows: list[dict[str, Any]], plan: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = [("content\n" if r["stream"] == "content" else "") + r["source"].split(",")[0] for r in rows]
    labels = [label.replace(": PNG", "\nPNG") for label in labels]
    a.barh(labels, [r["items_per_s"] for r in rows], color=["tab:green"] + ["tab:orange"] * (len(rows) - 1))
    a.set_xlabel("items per second, one worker process (one core)")
    a.set_title("content images (2 views) and motion pairs")
    a.invert_yaxis()
    for g in sorted({p["gpus"] for p in plan}):
        pts = [p for p in plan if p["gpus"] == g]
        b.plot([p["step_s"] for p in pts], [p["cores_per_gpu"] for p in pts], "o-", label=f"{g} GPU(s)")
    b.set_xlabel("GPU step time (s), paper's global batch 384 + 8")
    b.set_ylabel("CPU cores per GPU")
    b.set_title("cores one GPU needs to be fed")
    b.set_xscale("log")
    b.set_yscale("log")
    b.legend()
    b.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

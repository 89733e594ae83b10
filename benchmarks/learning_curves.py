"""Does the recipe keep improving with compute? Held-out EPE against training steps, one resumable grid.

    python -m benchmarks.learning_curves --out-dir runs/curves [--cells recipe pixels ...]
        [--seeds 0 1] [--steps 1200] [--score-every 150] [--jobs 2] [--plot docs/learning_curves.png]

Each cell is a shipped config plus ``--set`` overrides (:data:`CELLS`, the only place they are
defined). Each (cell, seed) trains ``--steps`` steps with ``mcjepa-train`` in
``DIR/runs/<cell>__<N>steps__seed<k>/``, keeping a checkpoint every ``--score-every`` steps;
every checkpoint is then scored and its scores written atomically to
``DIR/scores/<cell>__<N>steps__seed<k>.json``. Runs of one cell with different ``--steps`` are
different schedules (the cosine decay ends at the last step) and are kept apart: the curves show
``recipe (300 steps)`` beside ``recipe (1200 steps)``.
A rerun resumes a killed run from its newest checkpoint (``--resume``), scores only the
checkpoints not scored yet, and rewrites ``DIR/learning_curves.json``, ``DIR/learning_curves.md``
(mean over seeds, ± half the spread) and the plot from every score on disk. Phase boundaries
keep their epoch marks (the demo's motion starts at step 30 and L_vc at step 60 whatever
``--steps``); the cosine decay stretches to the last step. The final checkpoint's encoder is
also scored on Fashion-MNIST k-NN when Debian's ``dataset-fashion-mnist`` is installed.

Scores per checkpoint (all held out: dataset seeds no training set uses):

* ``synthetic_96x128`` / ``synthetic_192x256``: EPE (pixels, pooled) on 32 / 16 rich-preset
  synthetic pairs (seed 10000 + run seed), the demo's own learning check and a 2x larger size;
* ``real_texture_96x128`` / ``real_texture_192x256``: EPE on 32 / 16 real-texture pairs (the
  five bundled photos no training set uses, seed :data:`REAL_TEXTURE_SEED_OFFSET` + run seed);
* ``still_flow``: mean |flow| (pixels) of the model on a frame against itself (the first frames
  of the 96x128 real-texture pairs): 0 for a model that does not invent motion.

The same sets are scored once for zero flow, OpenCV DIS (medium preset) and Farnebäck
(``DIR/baselines.json``; the OpenCV rows need ``opencv-python-headless``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mcjepa.eval.flow_eval import REAL_TEXTURE_SEED_OFFSET  # held-out real-texture pairs: 10000 + seed
from mcjepa.utils.atomic import atomic_write_bytes, json_bytes

# name -> (config, overrides). "recipe" is the whole MC-JEPA objective as the `demo` config had it
# before docs/scaling.md (the paper's alpha = 0.1 and L_reg training features and flows);
# "pixels" the photometric losses alone on the motion stream (flow-demo at the demo's sizes); the
# others are "recipe" plus the changes docs/scaling.md measures. "scaled" is the `demo` config as
# it ships now.
_PAPER_BALANCE = ("loss.reg_gradient=both", "loss.alpha=0.1")
CELLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "recipe": ("demo", _PAPER_BALANCE),
    "pixels": (
        "flow-demo",
        ("schedule.steps_per_epoch=30", "data.motion[0].size=[64,96]", "data.eval_synthetic_size=[96,128]"),
    ),
    "recipe_reg_features": ("demo", (*_PAPER_BALANCE, "loss.reg_gradient=features")),
    "recipe_reg_flow": ("demo", (*_PAPER_BALANCE, "loss.reg_gradient=flow")),
    "recipe_census": ("demo", (*_PAPER_BALANCE, "loss.photo_census=1.0")),
    "recipe_range_map": ("demo", (*_PAPER_BALANCE, "loss.occlusion_estimate=range_map")),
    "recipe_encoder_lr": ("demo", (*_PAPER_BALANCE, "optim.lr_encoder=3e-4", "optim.lr_expander=3e-4")),
    "recipe_reg_flow_alpha1": ("demo", (*_PAPER_BALANCE, "loss.reg_gradient=flow", "loss.alpha=1.0")),
    "recipe_reg_flow_alpha1_static": (
        "demo",
        (*_PAPER_BALANCE, "loss.reg_gradient=flow", "loss.alpha=1.0", "data.motion[0].static_fraction=0.1"),
    ),
    "recipe_crop128x192": ("demo", (*_PAPER_BALANCE, "data.motion[0].size=[128,192]")),
    "scaled": ("demo", ()),
    "scaled_coarsest3": ("demo", ("model.flow_head.coarsest_level=3",)),
    "scaled_range_map": ("demo", ("loss.occlusion_estimate=range_map",)),
    "scaled_range_map_static": (
        "demo",
        ("loss.occlusion_estimate=range_map", "data.motion[0].static_fraction=0.1"),
    ),
}
STEPS_PER_EPOCH = 30  # every cell's schedule.steps_per_epoch (the demo's)
SETS = {
    "synthetic_96x128": (32, (96, 128), None),
    "synthetic_192x256": (16, (192, 256), None),
    "real_texture_96x128": (32, (96, 128), "bundled"),
    "real_texture_192x256": (16, (192, 256), "bundled"),
}
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist (content check)


def run_name(cell: str, steps: int, seed: int) -> str:
    """The folder / file stem of one (cell, schedule length, seed)."""
    return f"{cell}__{steps}steps__seed{seed}"


def _cell_dir(out_dir: Path, cell: str, steps: int, seed: int) -> Path:
    return out_dir / "runs" / run_name(cell, steps, seed)


def train_command(
    cell: str, seed: int, steps: int, score_every: int, threads: int, out_dir: Path, extra: tuple[str, ...] = ()
) -> list[str]:
    """The ``mcjepa-train`` command line of one (cell, seed); ``extra``: ``--set`` overrides for every cell."""
    config, overrides = CELLS[cell]
    sets = [
        *overrides,
        *extra,
        f"schedule.epochs={steps / STEPS_PER_EPOCH}",
        f"schedule.steps_per_epoch={STEPS_PER_EPOCH}",
        f"run.seed={seed}",
        f"run.threads={threads}",
        f"run.checkpoint_every={score_every}",
        "run.keep_last=0",
        "run.export_release=false",
        "data.eval_synthetic_pairs=0",
        "data.eval_content_images=0",
        'data.eval_fashion_mnist_root=""',
    ]
    run_dir = _cell_dir(out_dir, cell, steps, seed)
    cmd = [sys.executable, "-m", "mcjepa.cli.train", "--config", config, "--out", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    if any(run_dir.glob("checkpoints/ckpt_*.pt")):
        cmd.append("--resume")
    return cmd


def _datasets(seed: int) -> dict[str, list[dict[str, torch.Tensor]]]:
    from mcjepa.data.real_texture import RealTextureFlowDataset
    from mcjepa.data.synthetic import SyntheticFlowDataset

    out = {}
    for name, (pairs, size, photos) in SETS.items():
        if photos:
            data = RealTextureFlowDataset(pairs, size, seed=REAL_TEXTURE_SEED_OFFSET + seed, photos=photos)
        else:
            data = SyntheticFlowDataset(pairs, size, seed=10_000 + seed)
        out[name] = [data[i] for i in range(pairs)]
    return out


def score_method(method, sets: dict[str, list[dict[str, torch.Tensor]]]) -> dict[str, float]:
    """EPE (pixels, pooled over all pixels) of ``method(image1, image2) -> (2, H, W)`` on every set,
    and its mean |flow| on a frame against itself (``still_flow``)."""
    out: dict[str, float] = {}
    for name, items in sets.items():
        err = count = 0.0
        for it in items:
            pred = method(it["image1"], it["image2"])
            err += float((pred - it["flow"]).norm(dim=0).sum())
            count += it["flow"][0].numel()
        out[name] = err / count
    still = [method(it["image1"], it["image1"]).norm(dim=0).mean() for it in sets["real_texture_96x128"]]
    out["still_flow"] = float(torch.stack(still).mean())
    return out


def _model_method(model):
    from mcjepa.encoder import imagenet_normalize

    @torch.no_grad()
    def run(im1: torch.Tensor, im2: torch.Tensor) -> torch.Tensor:
        return model.estimate_flow(imagenet_normalize(im1[None]), imagenet_normalize(im2[None])).flow[0].float()

    return run


def score_run(out_dir: Path, cell: str, steps: int, seed: int) -> dict[str, Any]:
    """Score every checkpoint of one (cell, schedule length, seed) not scored yet; return its record."""
    from mcjepa.release.export import model_from_checkpoint
    from mcjepa.train.checkpoint import list_checkpoints

    path = out_dir / "scores" / f"{run_name(cell, steps, seed)}.json"
    record = (
        json.loads(path.read_text())
        if path.exists()
        else {"cell": cell, "schedule_steps": steps, "seed": seed, "steps": {}}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sets = None
    for ckpt in list_checkpoints(_cell_dir(out_dir, cell, steps, seed)):
        step = str(int(ckpt.stem.split("_")[-1]))
        if step in record["steps"]:
            continue
        sets = sets or _datasets(seed)
        model, _ = model_from_checkpoint(ckpt)
        record["steps"][step] = score_method(_model_method(model.eval()), sets)
        atomic_write_bytes(path, json_bytes(record))
    final = _cell_dir(out_dir, cell, steps, seed) / "checkpoints" / f"ckpt_{steps:09d}.pt"
    if "content" not in record and final.exists() and Path(FASHION_MNIST_ROOT).is_dir():
        record["content"] = content_scores(model_from_checkpoint(final)[0].eval(), seed)
        atomic_write_bytes(path, json_bytes(record))
    return record


def content_scores(model, seed: int) -> dict[str, float]:
    """Fashion-MNIST weighted 20-NN top-1 (%) of the encoder's pooled embedding (first 5,000 train /
    2,000 test images at 64 px, the demo's end-of-run check), with a random encoder of the same
    variant (seed ``seed``) and raw pixels beside it."""
    from mcjepa.model import MCJEPA
    from mcjepa.train.evaluate import content_knn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random_encoder = MCJEPA(model.config, flow_head=False).encoder
    res = content_knn(model.encoder, random_encoder, 0, seed=seed, fashion_mnist_root=FASHION_MNIST_ROOT)
    return {k: 100.0 * v for k, v in res.items()}


def _uint8(image: torch.Tensor) -> torch.Tensor:
    """A [0, 1] float frame as the uint8 frame OpenCV's methods take."""
    return (image * 255.0).round().clamp(0, 255).to(torch.uint8)


def baselines(out_dir: Path, seed: int) -> dict[str, dict[str, float]]:
    """Zero flow, DIS and Farnebäck on the scored sets of ``seed`` (cached in ``DIR/baselines.json``)."""
    from mcjepa.eval import baselines as B

    path = out_dir / "baselines.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    if str(seed) not in cache:
        sets = _datasets(seed)
        rows = {"zero": score_method(lambda a, b: torch.zeros(2, *a.shape[-2:]), sets)}
        for name, fn in (("dis", B.dis_flow), ("farneback", B.farneback_flow)):
            try:
                rows[name] = score_method(lambda a, b, fn=fn: fn(_uint8(a), _uint8(b)).float(), sets)
            except ImportError as exc:
                print(f"learning_curves: {name} skipped ({exc})", file=sys.stderr)
        cache[str(seed)] = rows
        atomic_write_bytes(path, json_bytes(cache))
    return cache[str(seed)]


def summarize(out_dir: Path) -> dict[str, Any]:
    """Every score on disk as ``{"<cell> (<N> steps)": {step: {metric: [per seed]}}}`` plus the baselines."""
    cells: dict[str, dict[str, dict[str, list[float]]]] = {}
    content: dict[str, dict[str, list[float]]] = {}
    for path in sorted((out_dir / "scores").glob("*.json")):
        rec = json.loads(path.read_text())
        label = f"{rec['cell']} ({rec['schedule_steps']} steps)"
        for metric, value in rec.get("content", {}).items():
            content.setdefault(label, {}).setdefault(metric, []).append(value)
        for step, scores in rec["steps"].items():
            for metric, value in scores.items():
                cells.setdefault(label, {}).setdefault(step, {}).setdefault(metric, []).append(value)
    base = json.loads((out_dir / "baselines.json").read_text()) if (out_dir / "baselines.json").exists() else {}
    summary = {
        "cells": {
            c: {"config": CELLS[c][0], "set": list(CELLS[c][1])}
            for c in {k.split(" (")[0] for k in cells}
            if c in CELLS
        },
        "scores": cells,
        "content": content,
        "baselines": base,
    }
    atomic_write_bytes(out_dir / "learning_curves.json", json_bytes(summary))
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: per cell and scored step, each metric's mean over seeds (with the
    spread, max - min, when there are several), then the baselines (mean over seeds)."""
    metrics = [*SETS, "still_flow"]
    head = "| cell | step | seeds | " + " | ".join(metrics) + " |\n|" + "---|" * (3 + len(metrics)) + "\n"
    rows = []
    for cell, steps in summary["scores"].items():
        for step in sorted(steps, key=int):
            vals = steps[step]
            n = len(vals[metrics[0]])
            cells = [
                f"{sum(v) / len(v):.3f}" + (f" ± {(max(v) - min(v)) / 2:.3f}" if len(v) > 1 else "")
                for v in (vals[m] for m in metrics)
            ]
            rows.append(f"| `{cell}` | {step} | {n} | " + " | ".join(cells) + " |")
    for name in ("zero", "farneback", "dis"):
        vals = [b[name] for b in summary["baselines"].values() if name in b]
        if vals:
            cells = [f"{sum(v[m] for v in vals) / len(vals):.3f}" for m in metrics]
            rows.append(f"| {name} | - | {len(vals)} | " + " | ".join(cells) + " |")
    text = head + "\n".join(rows) + "\n"
    if summary.get("content"):
        text += "\n| cell (final checkpoint) | seeds | Fashion-MNIST k-NN % | random encoder | raw pixels |\n|---|---|---|---|---|\n"
        for label, vals in summary["content"].items():
            n = len(vals["fmnist_knn"])
            cells = [
                f"{sum(v) / len(v):.1f}" + (f" ± {(max(v) - min(v)) / 2:.1f}" if len(v) > 1 else "")
                for v in (vals[k] for k in ("fmnist_knn", "fmnist_knn_random", "fmnist_knn_pixels"))
            ]
            text += f"| `{label}` | {n} | " + " | ".join(cells) + " |\n"
    return text


def plot(summary: dict[str, Any], path: Path, cells: list[str] | None = None) -> None:
    """EPE against steps (log axis) per scored set, one line per cell and schedule (mean over
    seeds; only ``cells`` when given), zero flow, Farnebäck and DIS as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, metric in zip(axes.flat, SETS):
        for label, steps in summary["scores"].items():
            if cells is not None and label.split(" (")[0] not in cells:
                continue
            xs = sorted(int(s) for s in steps)
            ys = [sum(steps[str(x)][metric]) / len(steps[str(x)][metric]) for x in xs]
            ax.plot(xs, ys, marker="o", ms=3, label=label)
        for name, style in (("zero", ":"), ("farneback", "--"), ("dis", "-.")):
            vals = [b[name][metric] for b in summary["baselines"].values() if name in b]
            if vals:
                ax.axhline(sum(vals) / len(vals), color="grey", ls=style, lw=1, label=name)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([150, 300, 600, 1200])
        ax.set_title(metric.replace("_", " ") + " (held out)")
        ax.set_xlabel("training step")
        ax.set_ylabel("EPE (px)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--cells", nargs="+", default=["recipe", "pixels"], choices=sorted(CELLS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--score-every", type=int, default=150)
    p.add_argument("--jobs", type=int, default=2, help="training runs at once (one thread each by default)")
    p.add_argument("--threads", type=int, default=0, help="threads per run (0: CPUs // jobs)")
    p.add_argument("--plot", type=Path, default=None, help="write the EPE-vs-steps figure here (PNG)")
    p.add_argument("--score-only", action="store_true", help="score and summarise what is on disk")
    p.add_argument("--set", action="append", default=[], dest="extra", metavar="KEY=VALUE",
                   help="an override for every cell (repeatable), applied after the cell's own")  # fmt: skip
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    todo = [(c, s) for c in args.cells for s in args.seeds]
    if not args.score_only:
        running: list[tuple[subprocess.Popen, str, int]] = []
        while todo or running:
            while todo and len(running) < args.jobs:
                cell, seed = todo.pop(0)
                run_dir = _cell_dir(args.out_dir, cell, args.steps, seed)
                final = run_dir / "checkpoints" / f"ckpt_{args.steps:09d}.pt"
                if final.exists():
                    continue
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                log = open(run_dir.parent / f"{run_name(cell, args.steps, seed)}.log", "a")  # noqa: SIM115 - closed by the child's end
                cmd = train_command(cell, seed, args.steps, args.score_every, threads, args.out_dir, tuple(args.extra))
                print("learning_curves:", " ".join(cmd), flush=True)
                running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), cell, seed))
            time.sleep(5)
            for entry in list(running):
                if entry[0].poll() is not None:
                    running.remove(entry)
                    print(f"learning_curves: {entry[1]} seed {entry[2]} exited {entry[0].returncode}", flush=True)
    for seed in args.seeds:
        baselines(args.out_dir, seed)
    for cell in args.cells:
        for seed in args.seeds:
            score_run(args.out_dir, cell, args.steps, seed)
    summary = summarize(args.out_dir)
    atomic_write_bytes(args.out_dir / "learning_curves.md", markdown(summary).encode())
    for cell, steps in summary["scores"].items():
        for step in sorted(steps, key=int):
            row = " ".join(f"{m} {sum(v) / len(v):.3f}" for m, v in steps[step].items())
            print(f"{cell:<22} step {step:>5}: {row}")
    if args.plot:
        plot(summary, args.plot, args.cells)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

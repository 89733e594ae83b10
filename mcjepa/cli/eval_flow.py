"""``mcjepa-eval flow``: EPE / Fl of the model and the baselines on one loop over each dataset."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from mcjepa.cli.eval_models import add_model_args, load_eval_model, model_label

__all__ = ["NAME", "add_parser", "run"]

NAME = "flow"
BASELINE_CHOICES = ("zero", "dis", "farneback", "all")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``flow`` subcommand to ``subparsers``; return its parser."""
    from mcjepa.eval.flow_eval import FLOW_DATASETS, REAL_TEXTURE_SEED_OFFSET

    f = subparsers.add_parser(
        NAME,
        help="optical flow EPE / Fl (model and baselines in one table)",
        description="Optical flow: EPE pooled over all valid pixels and averaged per image, occluded / "
        "non-occluded EPE where masks exist, Fl-all. Frames are padded to the stride (replicate) and the "
        "flow cropped back; nothing is resized. synthetic and real-texture are rendered, with exact ground "
        "truth: they need no --root.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    f.add_argument(
        "--dataset",
        nargs="+",
        required=True,
        choices=FLOW_DATASETS,
        metavar="NAME",
        help=f"one or more of {', '.join(FLOW_DATASETS)}",
    )
    f.add_argument(
        "--root",
        help="dataset root (holds Sintel/, KittiFlow/ or FlyingChairs/; or a .flo folder); unused by the rendered sets",
    )
    f.add_argument("--split", default="val", help="FlyingChairs split (Sintel / KITTI use their training split)")
    f.add_argument(
        "--baseline",
        nargs="*",
        default=[],
        choices=BASELINE_CHOICES,
        help="reference rows on the same pairs (dis / farneback need opencv-python-headless)",
    )
    f.add_argument("--no-model", action="store_true", help="evaluate only the baselines")
    f.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the model (CUDA only)")
    f.add_argument("--max-pairs", type=int, help="evaluate only the first N pairs (quick checks)")
    f.add_argument(
        "--dump-worst",
        type=int,
        default=0,
        metavar="K",
        help="write [frame | GT | prediction] flow images of the K worst pairs per method",
    )
    f.add_argument("--dump-dir", default="flow_worst", help="folder for --dump-worst images")
    f.add_argument("--synthetic-pairs", type=int, default=16, help="pairs in the synthetic set")
    f.add_argument("--synthetic-size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    f.add_argument("--real-texture-pairs", type=int, default=100, metavar="N", help="pairs in the real-texture set")
    f.add_argument(
        "--real-texture-size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"), help="real-texture frames"
    )
    f.add_argument(
        "--real-texture-photos",
        default="bundled",
        metavar="PHOTOS",
        help="real-texture photos: 'bundled' (the five shipped with the package, which training never uses), "
        "'installed' (those of opencv-doc / scikit-image, which the real config trains on) or a folder. The "
        f"pairs use dataset seed {REAL_TEXTURE_SEED_OFFSET} + --seed, which no training set uses",
    )
    add_model_args(f)
    return f


def baseline_names(requested: list[str]) -> list[str]:
    """Expand ``--baseline`` (``all`` = zero, dis, farneback), dropping repeats, order kept."""
    return ["zero", "dis", "farneback"] if "all" in requested else list(dict.fromkeys(requested))


def run(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    """Evaluate the model and the baselines on every ``--dataset``; return (results, table)."""
    from mcjepa.eval.baselines import get_baseline
    from mcjepa.eval.flow_eval import (
        FLOW_TABLE_COLUMNS,
        evaluate_flow,
        flow_table_rows,
        model_method,
        open_flow_dataset,
    )
    from mcjepa.eval.report import format_table

    methods = {}
    if not args.no_model:
        model = load_eval_model(args, ("encoder", "flow_head"), device)
        methods[model_label(args)] = model_method(model, device, args.bf16)
    for b in baseline_names(args.baseline):
        methods[b] = get_baseline(b)
    if not methods:
        raise ValueError("nothing to evaluate: drop --no-model or add --baseline")
    per_dataset, rows = {}, []
    for name in args.dataset:
        ds = open_flow_dataset(
            name,
            args.root,
            args.split,
            synthetic_pairs=args.synthetic_pairs,
            synthetic_size=tuple(args.synthetic_size),
            seed=args.seed,
            real_texture_pairs=args.real_texture_pairs,
            real_texture_size=tuple(args.real_texture_size),
            real_texture_photos=args.real_texture_photos,
        )
        res = evaluate_flow(
            ds, methods, args.max_pairs, args.dump_worst, f"{args.dump_dir}/{name}", progress=not args.no_progress
        )
        per_dataset[name] = res
        rows += [{"dataset": name, **r} for r in flow_table_rows(res)]
    table = format_table(rows, [("dataset", "dataset"), *FLOW_TABLE_COLUMNS])
    return {"datasets": per_dataset, "methods": list(methods)}, table

"""``mcjepa-eval davis``: DAVIS 2017 label propagation, J / F / (J&F)m."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from mcjepa.cli.eval_models import add_model_args, load_eval_model

__all__ = ["NAME", "add_parser", "propagation_config", "run"]

NAME = "davis"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``davis`` subcommand to ``subparsers``; return its parser."""
    d = subparsers.add_parser(
        NAME,
        help="DAVIS 2017 label propagation, J / F / (J&F)m",
        description="Propagate the first frame's masks by feature affinity (top-k neighbours among the first "
        "frame and the previous --context frames, within --radius feature cells, softmax at --temperature) "
        "and score J, F and (J&F)m as the DAVIS 2017 toolkit does.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("--root", required=True, help="DAVIS root (JPEGImages/, Annotations/, ImageSets/)")
    d.add_argument("--split", default="val", help="ImageSets/2017/<split>.txt")
    d.add_argument("--sequences", nargs="+", help="only these sequences")
    d.add_argument("--resolution", default="480p")
    d.add_argument("--level", type=int, default=3, help="pyramid level of the features (3 = stride 8)")
    d.add_argument("--topk", type=int, default=10)
    d.add_argument("--context", type=int, default=7, help="previous frames kept besides the first")
    d.add_argument("--radius", type=int, default=12, help="spatial window in feature cells (<0: unlimited)")
    d.add_argument("--temperature", type=float, default=0.07)
    d.add_argument("--no-norm-mask", action="store_true", help="skip DINO's per-object min-max rescaling")
    d.add_argument("--save-masks", metavar="DIR", help="write the predicted palette PNGs (DAVIS results layout)")
    add_model_args(d)
    return d


def propagation_config(args: argparse.Namespace):
    """The :class:`mcjepa.eval.davis.PropagationConfig` the options describe."""
    from mcjepa.eval.davis import PropagationConfig

    return PropagationConfig(
        level=args.level,
        topk=args.topk,
        n_context=args.context,
        radius=None if args.radius < 0 else args.radius,
        temperature=args.temperature,
        normalize_masks=not args.no_norm_mask,
    )


def run(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    """Propagate and score every sequence of ``--split``; return (results, table)."""
    from mcjepa.eval.davis import evaluate_davis
    from mcjepa.eval.report import format_table

    cfg = propagation_config(args)
    encoder = load_eval_model(args, ("encoder",), device).encoder
    res = evaluate_davis(
        encoder,
        args.root,
        args.split,
        args.sequences,
        cfg,
        args.resolution,
        device,
        args.save_masks,
        progress=not args.no_progress,
    )
    row = {k: 100 * res[k] for k in ("JF_mean", "J_mean", "F_mean", "J_recall", "F_recall")}
    row.update(n_sequences=res["n_sequences"], n_objects=res["n_objects"])
    columns = [
        ("JF_mean", "(J&F)m"),
        ("J_mean", "Jm"),
        ("F_mean", "Fm"),
        ("J_recall", "Jr"),
        ("F_recall", "Fr"),
        ("n_sequences", "sequences"),
        ("n_objects", "objects"),
    ]
    return res, format_table([row], columns, digits=1)

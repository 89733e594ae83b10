"""What every ``mcjepa-eval`` protocol shares: the model options and loading the model they name.

Each protocol lives in its own module (``mcjepa.cli.eval_<protocol>``) with ``NAME``,
``add_parser(subparsers)`` and ``run(args, device) -> (results, table)``; :mod:`mcjepa.cli.eval`
assembles them into one command.
"""

from __future__ import annotations

import argparse
import warnings
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..model import MCJEPA

__all__ = ["PROG", "WORKERS_HELP", "add_model_args", "load_eval_model", "model_info", "model_label", "has_weights"]

PROG = "mcjepa-eval"
WORKERS_HELP = "data-loading processes (None: min(4, the CPUs available))"


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add the options every protocol takes: the model (``--weights``, ``--pretrained``,
    ``--variant``), ``--device``, ``--out``, ``--no-progress`` and ``--seed``."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--weights",
        metavar="W",
        help="trained weights: a release folder, a .safetensors file, hf://org/repo[@revision], a URL or a "
        "weights_manifest.json key",
    )
    g.add_argument("--pretrained", action="store_true", help="the published weights of --variant")
    g.add_argument("--variant", default="convnext_t", help="architecture when the weights record none")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... or auto (cuda when available)")
    g.add_argument("--out", metavar="JSON", help="write the full results to this JSON file")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    g.add_argument("--seed", type=int, default=0, help="random seed")


def has_weights(args: argparse.Namespace) -> bool:
    """True when ``--weights`` or ``--pretrained`` names trained weights (else: a random init)."""
    return args.weights is not None or bool(args.pretrained)


def model_info(args: argparse.Namespace) -> dict[str, Any]:
    """The ``"model"`` entry of the JSON results: weights, pretrained, variant, random_init."""
    return {
        "weights": args.weights,
        "pretrained": args.pretrained,
        "variant": args.variant,
        "random_init": not has_weights(args),
    }


def model_label(args: argparse.Namespace) -> str:
    """The model's row label in the tables: ``mcjepa``, or ``mcjepa (random init)`` without weights."""
    return "mcjepa" if has_weights(args) else "mcjepa (random init)"


def load_eval_model(args: argparse.Namespace, components: tuple[str, ...], device: torch.device) -> MCJEPA:
    """Return the model the options name, in eval mode on ``device``, with ``components``
    (:func:`mcjepa.eval.common.load_for_eval`). Without weights it is a random init, and a note says so.

    Only the "was NOT verified" warning of an unhashed weights file is shown; the loader's other
    UserWarnings (the random-init one) are replaced by that note.
    """
    from ..eval.common import load_for_eval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("default", message=".* was NOT verified")  # an unhashed weights file shows
        model = load_for_eval(args.weights, args.variant, args.pretrained, components, device)
    if not has_weights(args):
        print(f"note: no --weights: evaluating a randomly initialised {args.variant!r} (a reference, not a result)")
    return model

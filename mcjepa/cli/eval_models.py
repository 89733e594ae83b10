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

from mcjepa.cli.common import RANDOM_WEIGHTS, add_threads_argument, add_weights_arguments

if TYPE_CHECKING:
    from mcjepa.model import MCJEPA

__all__ = ["PROG", "WORKERS_HELP", "add_model_args", "load_eval_model", "model_info", "model_label", "has_weights"]

PROG = "mcjepa-eval"
WORKERS_HELP = "data-loading processes (None: min(4, the CPUs available))"


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add the options every protocol takes: the model (``--weights``, ``--pretrained``,
    ``--variant``), ``--device``, ``--threads``, ``--out``, ``--no-progress`` and ``--seed``."""
    g = p.add_argument_group("model")
    add_weights_arguments(g)
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... or auto (cuda when available)")
    add_threads_argument(g)
    g.add_argument("--out", metavar="JSON", help="write the full results to this JSON file")
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress (a bar on a terminal; one line per 10%% or 30 s in a pipe or log file)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed")


def has_weights(args: argparse.Namespace) -> bool:
    """True unless ``--weights random`` asks for a random init (no weights: the bundled trained model)."""
    return args.weights != RANDOM_WEIGHTS


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
    (:func:`mcjepa.release.load_model`): with no ``--weights`` / ``--pretrained`` the
    trained model bundled with mcjepa; ``--weights random`` a random init, and a note says so.

    Only the "was NOT verified" warning of an unhashed weights file is shown; the loader's other
    UserWarnings (the random-init one) are replaced by that note.
    """
    from mcjepa.release import BUNDLED_SCHEME, DEFAULT_MODEL, load_model

    if args.weights == RANDOM_WEIGHTS and args.pretrained:
        raise ValueError("--weights random and --pretrained contradict each other: give one of them")
    if args.weights is None and not args.pretrained and args.variant is not None:
        raise ValueError(
            f"--variant {args.variant} without --weights: with no --weights the trained model bundled with mcjepa is "
            "evaluated, which has its own architecture; add --weights random for an untrained --variant"
        )
    variant = args.variant or "convnext_t"
    weights = args.weights
    if weights is None and not args.pretrained:
        weights = f"{BUNDLED_SCHEME}{DEFAULT_MODEL}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("default", message=".* was NOT verified")  # an unhashed weights file shows
        model = load_model(
            None if weights == RANDOM_WEIGHTS else weights,
            pretrained=args.pretrained,
            variant=variant,
            components=components,
            map_location=device,
        )
    if not has_weights(args):
        print(f"note: --weights random: evaluating a randomly initialised {variant!r} (a reference, not a result)")
    else:
        print(f"model: {getattr(model, 'weights_description', None) or weights}")
    return model

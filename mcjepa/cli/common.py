"""What every command shares: ``--threads`` (:mod:`mcjepa.utils.threads`), the rule for "no weights
given", and output that suits a pipe (:mod:`mcjepa.utils.progress`).

The weights rule, one for ``mcjepa-flow``, ``mcjepa-eval`` and ``mcjepa-export --onnx``: no
weights means the trained model bundled with mcjepa (:data:`mcjepa.release.DEFAULT_MODEL`);
``random`` (``--weights random``, or ``random`` as the SOURCE of ``mcjepa-export --onnx``) asks
for an untrained model of ``--variant``, with a warning.
"""

from __future__ import annotations

import argparse

from mcjepa.flow import RANDOM_WEIGHTS
from mcjepa.utils.progress import line_buffered_stdout
from mcjepa.utils.threads import set_threads

__all__ = [
    "NO_WEIGHTS_RULE",
    "RANDOM_WEIGHTS",
    "THREADS_HELP",
    "add_threads_argument",
    "add_weights_arguments",
    "apply_threads",
    "line_buffered_stdout",
    "parse_args",
]

THREADS_HELP = (
    "CPU threads for torch (default: OMP_NUM_THREADS when set, else half the CPUs this process may use, at "
    "least 1, so that another busy process does not stall the run)"
)
NO_WEIGHTS_RULE = (
    "default: the trained model bundled with mcjepa (mcjepa_small_real); 'random' for an untrained --variant"
)


def add_threads_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--threads N`` (:data:`THREADS_HELP`)."""
    parser.add_argument("--threads", type=int, metavar="N", default=None, help=THREADS_HELP)


def apply_threads(args: argparse.Namespace) -> str:
    """Set torch's CPU threads from ``args.threads`` (:func:`mcjepa.utils.threads.set_threads`) and
    return a phrase for the command's first line, e.g. ``"1 CPU thread (default: half of 2 CPUs)"``.

    Raises:
        ValueError: ``--threads`` below 1, or a bad ``OMP_NUM_THREADS``.
    """
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    count, source = set_threads(args.threads)
    return f"{count} CPU thread{'s' * (count != 1)} ({source})"


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit status argparse chose (0 after ``--help``, 2 after a
    usage error it has already explained) instead of raising ``SystemExit``: every command's
    ``main`` returns its status."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def add_weights_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--weights``, ``--pretrained`` and ``--variant``, the same for every command that runs a model."""
    parser.add_argument(
        "--weights",
        metavar="W",
        help="trained weights: a release folder, a .safetensors file, hf://org/repo[@revision], a URL or a "
        f"weights_manifest.json key ({NO_WEIGHTS_RULE})",
    )
    parser.add_argument("--pretrained", action="store_true", help="the published weights of --variant (none yet)")
    parser.add_argument(
        "--variant",
        default=None,
        help="architecture of --weights random and of a weights file that records none (default: convnext_t; "
        "'micro' is a tiny test model); with no --weights it is an error (the bundled model has its own)",
    )

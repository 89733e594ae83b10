"""``mcjepa-export``: turn a training run (or checkpoint) into a release folder with a model card, or
(``--onnx``) write the flow model as an ONNX file checked against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse
import json
import sys

from mcjepa.cli.common import (
    NO_WEIGHTS_RULE,
    RANDOM_WEIGHTS,
    add_threads_argument,
    apply_threads,
    line_buffered_stdout,
    parse_args,
)

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  mcjepa-export runs/demo --out releases/mcjepa-micro-demo
  mcjepa-export runs/paper/checkpoints/ckpt_000100000.pt --out releases/mcjepa-convnext-t \\
      --eval-results sintel.json kitti.json --name mcjepa-convnext-t
  mcjepa-export --onnx flow.onnx runs/demo/release        # ONNX: encoder + flow head, checked
  mcjepa-export --onnx small.onnx                         # the trained model bundled with mcjepa
  mcjepa-export --onnx micro.onnx random --variant micro  # an untrained model (for testing a pipeline)

The release's release.json is its manifest entry; no manifest is changed unless you ask:
--update-manifest PATH merges the entry into PATH (e.g. weights_manifest.json) with status "local"
and the folder's file:// URL, so that weights="NAME" loads it. `mcjepa-publish` uploads the folder
to the Hugging Face Hub and pins the repository manifest's entry to the resulting commit.

--onnx FILE: SOURCE is a run folder or checkpoint, or anything --weights of mcjepa-flow takes (a
release folder, a .safetensors file, hf://org/repo, a manifest key); without SOURCE the model is
the trained model bundled with mcjepa (mcjepa_small_real), as for mcjepa-flow and mcjepa-eval;
SOURCE random gives an untrained --variant. The graph takes image1, image2: float32
(B, 3, H, W) RGB in [0, 1] (ImageNet normalisation and padding to a multiple of 32 inside) with
dynamic batch, H and W (any size from 32 up), and returns flow: (B, 2, H, W) in pixels. The file
is then run in onnxruntime on a random pair, on the built-in example pair and on a pair of a size
that is no multiple of 32; the max |onnxruntime - PyTorch| is printed and must stay within
0.001 px + 1e-4 x max |flow| (exit status 1 otherwise). Needs pip install "mcjepa[onnx]".
--threads N sets the CPU threads of PyTorch and onnxruntime (default: OMP_NUM_THREADS when set,
else half the CPUs).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcjepa-export",
        description="Export a training run or checkpoint as a release folder (safetensors + config + model card).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        nargs="?",
        help="a run folder (its newest checkpoint is used) or a checkpoint file; with --onnx also a release "
        f"folder or any weights= form ({NO_WEIGHTS_RULE})",
    )
    p.add_argument("--out", help="the release folder to write (required without --onnx)")
    p.add_argument("--with-expander", action="store_true", help="also export the expander (only needed to resume)")
    p.add_argument("--eval-results", nargs="+", default=[], metavar="JSON", help="mcjepa-eval result files")
    p.add_argument("--name", default=None, help="manifest key (default: the --out folder name)")
    p.add_argument("--license", default="MIT", help="license of the weights (default MIT)")
    p.add_argument(
        "--update-manifest",
        dest="update_manifest",
        default=None,
        metavar="PATH",
        help="also merge the entry into this manifest under --name (default: no manifest is changed)",
    )
    p.add_argument("--force", action="store_true", help="replace a published manifest entry of the same name")
    onnx = p.add_argument_group("ONNX export (instead of a release)")
    onnx.add_argument("--onnx", metavar="FILE", help="write the flow model (encoder + flow head) as ONNX to FILE")
    onnx.add_argument(
        "--variant", default=None, help="architecture of SOURCE random and of weights that record none (convnext_t)"
    )
    onnx.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; 18 with --exporter dynamo)")
    onnx.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch.onnx.export(dynamo=False) (default: seconds) or the torch.export-based one (minutes)",
    )
    onnx.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    add_threads_argument(p)
    return p


def _onnx_model(source: str | None):
    """The model of a run folder or checkpoint, or None: then ``source`` is for
    :func:`mcjepa.flow.load` (None: the bundled model; ``random``: an untrained --variant)."""
    from pathlib import Path

    if source is None or source == RANDOM_WEIGHTS:
        return None
    path = Path(source)
    if (path.is_file() and path.suffix == ".pt") or (path / "checkpoints").is_dir():
        from mcjepa.release.export import find_checkpoint, model_from_checkpoint

        return model_from_checkpoint(find_checkpoint(path))[0]
    return None


def _main_onnx(args: argparse.Namespace) -> int:
    from mcjepa.release import WeightsError
    from mcjepa.release.onnx import OnnxCheckError, export_onnx

    if args.out:
        print(
            "mcjepa-export: error: --out names a release folder; --onnx writes one file, give one of them",
            file=sys.stderr,
        )
        return 2
    try:
        print(f"mcjepa-export: {apply_threads(args)}", file=sys.stderr)
        if args.source is None and args.variant is not None:
            raise ValueError(
                f"--variant {args.variant} without SOURCE: with no SOURCE the trained model bundled with mcjepa is "
                "exported; --variant is for SOURCE random (an untrained model) or a weights file that records none"
            )
        model = _onnx_model(args.source)
        if model is not None and args.variant is not None:
            raise ValueError("--variant applies to SOURCE random or a weights file; a run or checkpoint has its own")
        if args.source == RANDOM_WEIGHTS:
            print(f"WARNING: SOURCE random: exporting an UNTRAINED {args.variant or 'convnext_t'} (random weights)",
                  file=sys.stderr)  # fmt: skip
        elif args.source is None and args.variant is None:
            print("no SOURCE: exporting the trained model bundled with mcjepa (mcjepa_small_real)", file=sys.stderr)
        export_onnx(
            args.onnx,
            model,
            weights=None if model is not None else args.source,
            variant=args.variant,
            exporter=args.exporter,
            opset=args.opset,
            check=not args.no_check,
        )
    except OnnxCheckError as err:
        print(f"mcjepa-export: error: the ONNX check failed: {err}", file=sys.stderr)
        return 1
    except (ImportError, WeightsError, FileNotFoundError, ValueError, TypeError, RuntimeError) as err:
        print(f"mcjepa-export: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the exit status (0 ok, 1 the ONNX check failed, 2 bad usage or input)."""
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    line_buffered_stdout()
    if args.onnx:
        return _main_onnx(args)
    missing = [n for n, v in (("SOURCE", args.source), ("--out", args.out)) if v is None]
    if missing:
        print(f"mcjepa-export: error: {' and '.join(missing)} required (or --onnx FILE)", file=sys.stderr)
        return 2
    from mcjepa.release.export import ExportError, export_release

    try:
        print(f"mcjepa-export: {apply_threads(args)}", file=sys.stderr)
        entry = export_release(
            args.source,
            args.out,
            with_expander=args.with_expander,
            eval_results=args.eval_results,
            name=args.name,
            license=args.license,
            manifest=args.update_manifest,
            force=args.force,
        )
    except (ExportError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"mcjepa-export: error: {err}", file=sys.stderr)
        return 2
    shown = {k: entry[k] for k in ("name", "variant", "status", "license", "files", "metrics") if k in entry}
    print(json.dumps(shown, indent=2))
    print(f"release written to {args.out} (its release.json is the manifest entry)", file=sys.stderr)
    if args.update_manifest:
        print(f"entry {entry['name']!r} merged into {args.update_manifest}", file=sys.stderr)
    else:
        print("no manifest changed; --update-manifest PATH would add the entry to PATH", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``mcjepa-flow``: estimate the optical flow between two frames and save it as an image."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

__all__ = ["build_parser", "main"]

_PROG = "mcjepa-flow"
_EPILOG = """\
examples:
  mcjepa-flow                                   # built-in synthetic example pair -> flow.png
  mcjepa-flow a.png b.png -o flow.png --weights runs/demo/release
  mcjepa-flow a.png b.png --save-flo flow.flo --weights hf://org/repo@v1 --device cuda --bf16

The flow goes from frame 1 to frame 2, in pixels (u right, v down). flow.png colour-codes it:
hue = direction, saturation = speed (normalised by the largest motion in the image).
Without --weights or --pretrained the model is untrained (random weights), so its flow is
meaningless: train one with `mcjepa-train` and pass its release folder to --weights.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Estimate the optical flow from FRAME1 to FRAME2 with MC-JEPA and save it as a colour image. "
        "With no frames, runs on a built-in synthetic pair and compares with its ground truth.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("frames", nargs="*", metavar="FRAME", help="two image files (PNG, JPEG, ...), same size")
    parser.add_argument(
        "-o", "--output", default="flow.png", metavar="PNG", help="colour-coded flow image (default: flow.png)"
    )
    parser.add_argument("--save-flo", metavar="FLO", help="also save the raw flow as a Middlebury .flo file")
    parser.add_argument(
        "--weights",
        metavar="W",
        help="trained weights: a release folder, a .safetensors file, hf://org/repo[@revision], a URL or a "
        "weights_manifest.json key",
    )
    parser.add_argument("--pretrained", action="store_true", help="use the published weights (none are published yet)")
    parser.add_argument(
        "--variant",
        default="convnext_t",
        help="architecture when no weights are given or the weights do not record one (default: convnext_t; "
        "'micro' is a tiny test model)",
    )
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only; ignored on CPU)")
    return parser


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 2


def _read_image(path: str) -> Image.Image:
    from ..image_io import read_rgb  # 16-bit frames scaled, not clipped; folders refused

    return read_rgb(path)


def _check_output(path: str, option: str) -> None:
    """Refuse an output path that cannot be written, before the model runs."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(
            f"cannot write the output: {option} {path} is a folder; give a file name, e.g. {p / 'flow.png'}"
        )
    if not p.parent.is_dir():
        raise ValueError(f"cannot write the output: {option} {path}: folder {p.parent} does not exist")
    if option == "-o" and Image.registered_extensions().get(p.suffix.lower()) not in Image.SAVE:
        raise ValueError(f"cannot write the output: -o {path}: unknown image extension {p.suffix!r} (use .png)")


def _epe(flow: Tensor, gt: Tensor, mask: Tensor | None = None) -> float:
    err = (flow - gt).norm(dim=0)
    return (err[mask] if mask is not None else err).mean().item()


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad usage or unreadable input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed why
        return int(exc.code or 0)
    if len(args.frames) not in (0, 2):
        return _fail(f"give two frames (or none for the built-in example), got {len(args.frames)}")

    from .. import flow
    from ..data.synthetic import example_pair
    from ..devices import resolve_device

    example = None
    try:
        _check_output(args.output, "-o")
        if args.save_flo:
            _check_output(args.save_flo, "--save-flo")
        if args.frames:
            image1, image2 = (_read_image(f) for f in args.frames)
            what = f"{args.frames[0]} -> {args.frames[1]}"
        else:
            example = example_pair()
            image1, image2 = example.image1, example.image2
            what = f"the built-in synthetic example pair ({image1.shape[1]}x{image1.shape[2]}, H x W)"
        device = resolve_device(args.device)
        untrained = args.weights is None and not args.pretrained
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the untrained warning is printed below instead
            warnings.filterwarnings("default", message=".* was NOT verified")  # but an unhashed weights file shows
            model = flow.load(args.weights, pretrained=args.pretrained, variant=args.variant, device=device)
        if args.bf16 and device.type != "cuda":
            print(f"note: --bf16 needs CUDA; running in float32 on {device}")
        estimate = flow.estimate(image1, image2, model, bf16=args.bf16 and device.type == "cuda").cpu()
        bad = int((~torch.isfinite(estimate)).sum())
        if bad:
            raise ValueError(
                f"the model produced non-finite flow ({bad} of {estimate.numel()} values are NaN or inf); "
                "nothing written. Check the weights (a diverged training run?)"
            )
    except (OSError, ValueError, RuntimeError) as err:  # includes mcjepa.weights.WeightsError
        return _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)

    print(f"{_PROG}: flow of {what}, model {model.config.name} on {device}")
    if untrained:
        print("WARNING: no --weights given, so the model is UNTRAINED (random weights) and its flow is meaningless.")
        print("         Train one with `mcjepa-train` and pass its release folder with --weights.")
    magnitude = estimate.norm(dim=0)
    print(
        f"flow: {estimate.shape[1]}x{estimate.shape[2]} px, |flow| mean {magnitude.mean():.3f} px, "
        f"max {magnitude.max():.3f} px; mean u {estimate[0].mean():+.3f}, mean v {estimate[1].mean():+.3f} px"
    )
    if example is not None:
        gt, visible = example.flow, ~example.occlusion[0]
        print(
            f"example ground truth: EPE {_epe(estimate, gt):.3f} px (all pixels), "
            f"{_epe(estimate, gt, visible):.3f} px (non-occluded); "
            f"zero flow: EPE {_epe(torch.zeros_like(gt), gt):.3f} px"
        )
    try:
        rgb = flow.to_image(estimate).permute(1, 2, 0).numpy()
        Image.fromarray(rgb).save(args.output)
        print(f"wrote {args.output} (colour-coded flow)")
        if args.save_flo:
            flow.write_flo(args.save_flo, estimate)
            print(f"wrote {args.save_flo} (Middlebury .flo, pixels)")
    except (OSError, ValueError) as err:
        return _fail(f"cannot write the output: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

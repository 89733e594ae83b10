"""``mcjepa-flow``: estimate the optical flow between two frames and save it as an image, or over a
whole video or frame folder (streamed: see :mod:`mcjepa.flow.video`) and save it as a video.
The work is in :mod:`mcjepa.flow` and :mod:`mcjepa.flow.video`; this module is the argument parser.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from fractions import Fraction
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from mcjepa.cli.common import NO_WEIGHTS_RULE, add_threads_argument, apply_threads, line_buffered_stdout
from mcjepa.utils.atomic import atomic_writer

__all__ = ["LARGE_FRAME_MEGAPIXELS", "build_parser", "main"]

_PROG = "mcjepa-flow"
# frames above this many megapixels are refused unless --max-size is given: at 12 megapixels one
# pair took 56 s and 5.1 GiB at full size against 3.4 s and 1.4 GiB at --max-size 1024
# (benchmarks/large_input.py, docs/flow.md#large-frames); the user chooses, nothing is resized silently
LARGE_FRAME_MEGAPIXELS = 4.0
_OUTPUT_NAME = re.compile(r"^\d{6}$")  # the names a sequence run writes: 000000.png, 000001.flo, ...
_EPILOG = """\
examples:
  mcjepa-flow                                   # built-in synthetic example pair -> flow.png
  mcjepa-flow a.png b.png -o flow.png --weights runs/demo/release
  mcjepa-flow a.png b.png --save-flo flow.flo --weights hf://org/repo@v1 --device cuda --bf16
  mcjepa-flow clip.mp4 -o flow.mp4 --weights runs/demo/release    # video: frame | flow, side by side
  mcjepa-flow clip.mp4 -o flow.mp4 --layout flow --every 2 --max-size 640 --batch 4 --save-flo flo/
  mcjepa-flow frames/ -o colour/ --save-kitti kitti/   # a folder of frames; PNGs out (no PyAV needed)
  mcjepa-flow clip.mp4 --start 100 --end 200 --threads 1   # frames 100-199 only, one CPU thread
  mcjepa-flow frames/ --save-flo flo/ --overwrite       # replace the .flo files of an earlier run

The flow goes from frame 1 to frame 2, in pixels (u right, v down). flow.png colour-codes it:
hue = direction, saturation = speed (normalised by the largest motion in the image).

A video file or a folder of frames (its images sorted by name) gives one flow per pair of
consecutive kept frames: with --every N, frames 0, N, 2N, ... are kept and the flow of pair k
goes from frame kN to frame (k+1)N. -o is then a video file (.mp4, .mkv, .mov, .avi, .webm;
needs PyAV: pip install "mcjepa[video]") with one frame per pair, at the input's frame rate / N
(or --fps), or a folder (a path ending in / or an existing folder) of colour-coded PNGs.
--start S / --end E use frames S <= t < E only (0-based frame numbers, the same for a video and a
folder): frames S, S + N, ... are kept. Asking for frames that do not exist is an error: before
the run when the frame count is known, after the last pair when a video turns out shorter than its
container says (exit status 3; a truncated video without --end gets a warning naming how many
frames were expected and read).
--save-flo / --save-kitti name folders, one file per pair named after its first frame:
000000.flo, 000001.flo, ... (0-based input frame numbers). A folder that already holds such files
(from an earlier run) is refused unless --overwrite, which deletes them first: a folder never mixes
two runs. Frames are decoded one at a time;
Ctrl-C stops after the file being written, leaving every file written so far complete.
Without --weights the model is the trained `small` model bundled with mcjepa (mcjepa_small_real;
the first line of output names it and what it was trained on), as for mcjepa-eval and
mcjepa-export. --weights random gives an untrained model (random weights, meaningless flow;
--variant sets its architecture); train your own with `mcjepa-train` and pass its release folder
to --weights.

Frames above 4 megapixels need a choice: --max-size PX runs the model on them downscaled (the flow
is resized back, in input pixels), --max-size 0 at full size (a 12-megapixel pair: about a minute
and 5 GiB on one CPU thread); without either they are refused before the model runs.
Arrays and images are RGB; a grayscale frame paired with a colour one is refused.
On a terminal the progress is a bar; in a pipe or a log file one line per 10% (and every 30 s).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Estimate the optical flow from FRAME1 to FRAME2 with MC-JEPA and save it as a colour image, "
        "or over every frame pair of a video file or frame folder. With no input, runs on a built-in synthetic "
        "pair and compares with its ground truth.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "frames",
        nargs="*",
        metavar="INPUT",
        help="two image files (PNG, JPEG, ...) of the same size; or one video file or folder of frames",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="two frames: colour-coded flow image (default flow.png); a video or folder: a video file "
        "(default flow.mp4) or a folder of PNGs (a path ending in /)",
    )
    parser.add_argument(
        "--save-flo",
        metavar="PATH",
        help="also save the raw flow as Middlebury .flo: a file for two frames, a folder for a video or folder",
    )
    parser.add_argument(
        "--save-kitti",
        metavar="PATH",
        help="also save the raw flow as a KITTI 16-bit PNG (1/64 px steps, +-512 px): a file for two frames, "
        "a folder for a video or folder",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        metavar="PX",
        help="downscale frames whose long side is larger before the model runs; the flow is resized back "
        f"and rescaled to input pixels (0: full size; default: full size, but frames above "
        f"{LARGE_FRAME_MEGAPIXELS:g} megapixels are refused until --max-size is given)",
    )
    parser.add_argument(
        "--max-flow",
        type=float,
        metavar="PX",
        help="colour scale: this speed (pixels) is shown fully saturated, the same for every pair (default: each "
        "flow's own largest motion)",
    )
    add_threads_argument(parser)
    seq = parser.add_argument_group("video and frame-folder input")
    seq.add_argument("--every", type=int, metavar="N", help="frame gap: flow from frame t to t + N (default 1)")
    seq.add_argument("--batch", type=int, metavar="B", help="frame pairs per model call (default 1)")
    seq.add_argument(
        "--layout",
        choices=("side", "flow"),
        help="output video frames: 'side' = frame | flow colour, side by side (default); 'flow' = flow colour only",
    )
    seq.add_argument(
        "--fps",
        type=float,
        help="frame rate of the output video (default: the input's / N; a frame folder: 10 / N)",
    )
    seq.add_argument("--start", type=int, metavar="S", help="first frame to use (0-based frame number; default 0)")
    seq.add_argument(
        "--end",
        type=int,
        metavar="E",
        help="stop before this frame number (default: the last frame; frames S <= t < E)",
    )
    seq.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the flow files of an earlier run (NNNNNN.png / .flo) from the output folders first; "
        "without it such a folder is refused",
    )
    seq.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (a bar on a terminal; one line per 10%% or 30 s in a pipe or log file)",
    )
    parser.add_argument(
        "--weights",
        metavar="W",
        help="trained weights: a release folder, a .safetensors file, hf://org/repo[@revision], a URL or a "
        f"weights_manifest.json key ({NO_WEIGHTS_RULE})",
    )
    parser.add_argument("--pretrained", action="store_true", help="use the published weights (none are published yet)")
    parser.add_argument(
        "--variant",
        default=None,
        help="architecture of --weights random, or of a weights file that records none (default: convnext_t; "
        "'micro' is a tiny test model)",
    )
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only; ignored on CPU)")
    return parser


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 2


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _read_image(path: str) -> Image.Image:
    from mcjepa.utils.image_files import read_rgb  # 16-bit frames scaled, not clipped; folders refused

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


def _is_folder_path(path: str) -> bool:
    return path.endswith(("/", os.sep)) or Path(path).is_dir()


def _check_folder_output(path: str, option: str) -> None:
    """A folder output of the sequence mode: it may exist (as a folder) or will be created."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(
            f"cannot write the output: {option} {path} is a file; for a video or folder input it names a folder"
        )


def _epe(flow: Tensor, gt: Tensor, mask: Tensor | None = None) -> float:
    err = (flow - gt).norm(dim=0)
    return (err[mask] if mask is not None else err).mean().item()


def _check_options(args: argparse.Namespace, sequence: bool) -> None:
    """Refuse option values that make no sense, before anything is read or loaded."""
    if not sequence:
        given = [o for o, v in (("--every", args.every), ("--batch", args.batch), ("--layout", args.layout),
                                ("--fps", args.fps), ("--start", args.start), ("--end", args.end),
                                ("--overwrite", args.overwrite or None)) if v is not None]  # fmt: skip
        if given:
            raise ValueError(f"{', '.join(given)}: only for a video file or frame folder input, not for two frames")
    if args.every is not None and args.every < 1:
        raise ValueError(f"--every must be at least 1 (the frame gap), got {args.every}")
    if args.batch is not None and args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    if args.max_size is not None and args.max_size != 0 and args.max_size < 32:
        raise ValueError(
            f"--max-size must be at least 32 pixels (the model's minimum), or 0 for full size, got {args.max_size}"
        )
    if args.max_flow is not None and not args.max_flow > 0:
        raise ValueError(f"--max-flow must be a positive number of pixels, got {args.max_flow}")
    if args.start is not None and args.start < 0:
        raise ValueError(f"--start must be a frame number >= 0, got {args.start}")
    if args.end is not None and args.end <= (args.start or 0):
        raise ValueError(f"--end must be above --start ({args.start or 0}), got {args.end}")


def _max_size(args: argparse.Namespace) -> int | None:
    """The working size limit in pixels (None: full size)."""
    return args.max_size or None


def _check_large(args: argparse.Namespace, height: int, width: int) -> None:
    """Refuse frames above :data:`LARGE_FRAME_MEGAPIXELS` when no --max-size was given, saying
    what each choice costs."""
    megapixels = height * width / 1e6
    if args.max_size is None and megapixels > LARGE_FRAME_MEGAPIXELS:
        raise ValueError(
            f"frames are {width}x{height} (W x H, {megapixels:.1f} megapixels), above the {LARGE_FRAME_MEGAPIXELS:g} "
            "megapixels run at full size without asking (a 12-megapixel pair: 56 s and 5.1 GiB at full size, 3.4 s "
            "and 1.4 GiB downscaled to 1024 px, one CPU thread); pass --max-size 1024 (or another long side in "
            "pixels) to downscale, or --max-size 0 to run at full size"
        )
    if args.fps is not None and not args.fps > 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")


def _load_model(args: argparse.Namespace):
    from mcjepa import flow
    from mcjepa.utils.devices import resolve_device

    device = resolve_device(args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the untrained warning is printed below instead
        warnings.filterwarnings("default", message=".* was NOT verified")  # but an unhashed weights file shows
        model = flow.load(args.weights, pretrained=args.pretrained, variant=args.variant, device=device)
    if args.bf16 and device.type != "cuda":
        print(f"note: --bf16 needs CUDA; running in float32 on {device}")
    return model, device


def _print_model(args: argparse.Namespace, model) -> None:
    """Say which weights the model holds (``model: mcjepa_small_real (bundled, trained on ...)``), and
    warn loudly when they are random."""
    print(f"model: {getattr(model, 'weights_description', None) or model.config.name}")
    if args.weights == "random":
        print("WARNING: --weights random: the model is UNTRAINED (random weights) and its flow is meaningless.")
        print("         Drop --weights for the bundled trained model, or pass your release folder with --weights.")


def _refuse_nonfinite(estimate: Tensor, what: str = "") -> None:
    bad = int((~torch.isfinite(estimate)).sum())
    if bad:
        raise ValueError(
            f"the model produced non-finite flow{what} ({bad} of {estimate.numel()} values are NaN or inf); "
            "nothing written for it. Check the weights (a diverged training run?)"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad usage or unreadable input, 3 the
    video ended before the requested --end frame, 130 interrupted by Ctrl-C: the files written
    until then are complete)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed why
        return int(exc.code or 0)
    line_buffered_stdout()
    if len(args.frames) not in (0, 1, 2):
        return _fail(f"give two frames, one video file or frame folder (or none for the built-in example), "
                     f"got {len(args.frames)} inputs")  # fmt: skip
    if len(args.frames) == 1:
        from mcjepa.flow.video import is_image_file

        if not Path(args.frames[0]).is_dir() and is_image_file(args.frames[0]):
            return _fail(f"give two frames (one image given: {args.frames[0]}), or one video file or frame folder")
        return _main_sequence(args)
    return _main_pair(args)


# ---------------------------------------------------------------------------- two frames


def _main_pair(args: argparse.Namespace) -> int:
    from mcjepa import flow
    from mcjepa.data.synthetic import example_pair
    from mcjepa.flow.video import estimate_resized

    example = None
    output = args.output or "flow.png"
    try:
        _check_options(args, sequence=False)
        _check_output(output, "-o")
        if args.save_flo:
            _check_output(args.save_flo, "--save-flo")
        if args.save_kitti:
            _check_output(args.save_kitti, "--save-kitti")
        if args.frames:
            image1, image2 = (_read_image(f) for f in args.frames)
            what = f"{args.frames[0]} -> {args.frames[1]}"
        else:
            example = example_pair()
            image1, image2 = example.image1, example.image2
            what = f"the built-in synthetic example pair ({image1.shape[1]}x{image1.shape[2]}, H x W)"
        height, width = (image1.size[1], image1.size[0]) if isinstance(image1, Image.Image) else image1.shape[-2:]
        _check_large(args, int(height), int(width))
        threads = apply_threads(args)
        model, device = _load_model(args)
        bf16 = args.bf16 and device.type == "cuda"
        estimate = estimate_resized(image1, image2, model, max_size=_max_size(args), bf16=bf16).cpu()
        _refuse_nonfinite(estimate)
    except (OSError, ValueError, RuntimeError) as err:  # includes mcjepa.release.WeightsError
        return _fail(_first_line(err))

    print(f"{_PROG}: flow of {what}, model {model.config.name} on {device}, {threads}")
    _print_model(args, model)
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
        rgb = flow.to_image(estimate, max_flow=args.max_flow).permute(1, 2, 0).numpy()
        with atomic_writer(output) as fh:  # the format from the extension, checked when parsing -o
            Image.fromarray(rgb).save(fh, format=Image.registered_extensions()[Path(output).suffix.lower()])
        print(f"wrote {output} (colour-coded flow)")
        if args.save_flo:
            flow.write_flo(args.save_flo, estimate)
            print(f"wrote {args.save_flo} (Middlebury .flo, pixels)")
        if args.save_kitti:
            flow.write_kitti_flow(args.save_kitti, estimate)
            print(f"wrote {args.save_kitti} (KITTI 16-bit PNG, 1/64 px steps)")
    except (OSError, ValueError) as err:
        return _fail(f"cannot write the output: {err}")
    return 0


# ---------------------------------------------------------------------------- video / frame folder


def _stale_files(folder: str, suffix: str, option: str, overwrite: bool) -> list[Path]:
    """The flow files of an earlier run in ``folder`` (``NNNNNN{suffix}``), which --overwrite
    deletes; without --overwrite any of them is an error, and so is any other ``*{suffix}`` file
    (the folder would mix two sets). Returns the files to delete (none when the folder is new)."""
    p = Path(folder)
    if not p.is_dir():
        return []
    found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == suffix)
    ours = [f for f in found if _OUTPUT_NAME.match(f.stem)]
    others = [f for f in found if not _OUTPUT_NAME.match(f.stem)]
    if others:
        raise ValueError(
            f"cannot write the output: {option} {folder} already holds {len(others)} other {suffix} file(s) "
            f"(e.g. {others[0].name}); give an empty or new folder so that it holds one run only"
        )
    if ours and not overwrite:
        raise ValueError(
            f"cannot write the output: {option} {folder} already holds {len(ours)} {suffix} file(s) of an earlier run "
            f"({ours[0].name} ...); pass --overwrite to delete them first, or give an empty or new folder"
        )
    return ours


class _Outputs:
    """The files of a sequence run, created at the first pair and finished by :meth:`close`.
    ``stale``: earlier runs' files (:func:`_stale_files`), deleted before the first is written."""

    def __init__(self, args: argparse.Namespace, output: str, fps: Fraction, stale: list[Path]) -> None:
        self.args, self.output, self.fps, self.stale = args, output, fps, stale
        self.to_folder = _is_folder_path(output)
        self.video = None
        self.pairs = 0
        self.folders_made = False

    def _folders(self) -> None:
        for d in (self.output if self.to_folder else None, self.args.save_flo, self.args.save_kitti):
            if d:
                Path(d).mkdir(parents=True, exist_ok=True)
        if self.stale:
            for f in self.stale:
                f.unlink(missing_ok=True)
            folders = sorted({str(f.parent) for f in self.stale})
            print(f"--overwrite: deleted {len(self.stale)} file(s) of an earlier run from {', '.join(folders)}")
        self.folders_made = True

    def write(self, pair) -> None:
        from mcjepa import flow
        from mcjepa.flow.video import VideoWriter

        if not self.folders_made:
            self._folders()
        name = f"{pair.index1:06d}"
        if self.args.save_flo:
            flow.write_flo(Path(self.args.save_flo) / f"{name}.flo", pair.flow)  # atomic
        if self.args.save_kitti:
            flow.write_kitti_flow(Path(self.args.save_kitti) / f"{name}.png", pair.flow)  # atomic
        colour = flow.to_image(pair.flow, max_flow=self.args.max_flow)  # default: per pair, by its largest motion
        picture = colour if self.args.layout == "flow" else torch.cat((pair.frame1, colour), dim=2)
        rgb = picture.permute(1, 2, 0).contiguous().numpy()
        if self.to_folder:
            with atomic_writer(Path(self.output) / f"{name}.png") as fh:
                Image.fromarray(rgb).save(fh, format="PNG")
        else:
            if self.video is None:
                self.video = VideoWriter(self.output, rgb.shape[1], rgb.shape[0], self.fps)
            self.video.write(rgb)
        self.pairs += 1

    def close(self) -> None:
        if self.video is not None:
            self.video.close()

    def report(self) -> list[str]:
        lines = []
        if self.to_folder:
            lines.append(f"wrote {self.pairs} colour-coded PNGs to {self.output}")
        elif self.video is not None:
            v = self.video
            lines.append(
                f"wrote {self.output} ({v.frames_written} frames, {v.width}x{v.height}, {v.codec}, "
                f"{float(self.fps):.4g} fps)"
            )
        if self.args.save_flo:
            lines.append(f"wrote {self.pairs} .flo files to {self.args.save_flo} (Middlebury, pixels)")
        if self.args.save_kitti:
            lines.append(f"wrote {self.pairs} KITTI 16-bit PNGs to {self.args.save_kitti}")
        return lines


def _main_sequence(args: argparse.Namespace) -> int:
    from mcjepa.flow.video import (
        AV_INSTALL_HINT,
        VIDEO_OUTPUT_CODECS,
        IncompleteSequenceError,
        InterruptGuard,
        iter_flows,
        open_sequence,
        require_av,
    )
    from mcjepa.utils.progress import progress_bar

    source = args.frames[0]
    output = args.output or "flow.mp4"
    every, batch = args.every or 1, args.batch or 1
    try:
        _check_options(args, sequence=True)
        if _is_folder_path(output):
            _check_folder_output(output, "-o")
        else:
            p = Path(output)
            if p.suffix.lower() not in VIDEO_OUTPUT_CODECS:
                raise ValueError(
                    f"cannot write the output: -o {output}: for a video or folder input, -o is a video file "
                    f"({', '.join(VIDEO_OUTPUT_CODECS)}) or a folder for PNGs (a path ending in /)"
                )
            if not p.parent.is_dir():
                raise ValueError(f"cannot write the output: -o {output}: folder {p.parent} does not exist")
            if p.exists() and p.resolve() == Path(source).resolve():
                raise ValueError(f"cannot write the output: -o {output} is the input itself")
            try:
                require_av()
            except ImportError:
                raise ValueError(
                    f"cannot write the output: -o {output}: writing a video needs PyAV ({AV_INSTALL_HINT}); "
                    "or give -o a folder (a path ending in /) to write PNGs"
                ) from None
        stale = []
        for option, path, suffix in (("-o", output if _is_folder_path(output) else None, ".png"),
                                     ("--save-flo", args.save_flo, ".flo"), ("--save-kitti", args.save_kitti, ".png")):  # fmt: skip
            if path:
                _check_folder_output(path, option)
                stale += _stale_files(path, suffix, option, args.overwrite)
        sequence = open_sequence(source)
        _check_large(args, sequence.height, sequence.width)
        fps = Fraction(args.fps).limit_denominator(1001) if args.fps else (sequence.fps or Fraction(10)) / every
        threads = apply_threads(args)
        model, device = _load_model(args)
        first, end = args.start or 0, args.end
        pairs = iter_flows(sequence, model, every=every, batch=batch, max_size=_max_size(args),
                           bf16=args.bf16 and device.type == "cuda", start=first, end=end)  # fmt: skip
    except (ImportError, OSError, ValueError, RuntimeError) as err:
        return _fail(_first_line(err))

    span = "" if args.start is None and end is None else f", frames {first} to {'the end' if end is None else end - 1}"
    print(f"{_PROG}: flow of {sequence.describe()}{span}, every {every} frame(s), batch {batch}, "
          f"model {model.config.name} on {device}, {threads}")  # fmt: skip
    _print_model(args, model)
    count = end if end is not None else sequence.num_frames
    total = None if count is None else max(0, (count - first - 1) // every)
    outputs = _Outputs(args, output, fps, stale)
    bar = None
    status, start = 0, time.perf_counter()
    with InterruptGuard() as guard, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            bar = progress_bar(total=total, unit="pair", desc=_PROG, enabled=not args.no_progress)
            for pair in pairs:
                _refuse_nonfinite(pair.flow, f" for frames {pair.index1} -> {pair.index2}")
                with guard.writing():
                    outputs.write(pair)
                bar.update(1)
        except KeyboardInterrupt:
            status = 130
        except IncompleteSequenceError as err:
            status, message = 3, _first_line(err)
        except (OSError, ValueError, RuntimeError) as err:
            status = 2
            message = _first_line(err)
        finally:
            if bar is not None:
                bar.close()
            with guard.writing(raise_pending=False):
                try:
                    outputs.close()
                except (OSError, ValueError, RuntimeError) as err:  # an encoder that fails to flush
                    status, message = 2, f"cannot finish {output}: {_first_line(err)}"
    seconds = time.perf_counter() - start
    for w in caught:  # e.g. a truncated video: how many frames were expected and read
        print(f"{_PROG}: warning: {w.message}", file=sys.stderr)
    if status in (2, 3):
        done = f" ({outputs.pairs} pair(s) written before it, complete)" if outputs.pairs else ""
        _fail(message + done)
        if status == 3:
            for line in outputs.report():
                print(line)
        return status
    rate = outputs.pairs / seconds if seconds > 0 else 0.0
    if status == 130:
        print(f"{_PROG}: interrupted (Ctrl-C) after {outputs.pairs} pair(s); every file written so far is complete")
    else:
        print(f"{_PROG}: {outputs.pairs} pair(s) in {seconds:.2f} s: {rate:.3g} pairs/s "
              f"(decoding, flow and encoding)")  # fmt: skip
    for line in outputs.report():
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())

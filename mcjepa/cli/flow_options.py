"""The options of ``mcjepa-flow`` and their help: :func:`build_parser` (two frames, a video file
or a frame folder)."""

from __future__ import annotations

import argparse

from mcjepa.cli.common import add_threads_argument, add_weights_arguments

__all__ = ["LARGE_FRAME_MEGAPIXELS", "PROG", "build_parser"]

PROG = "mcjepa-flow"
# frames above this many megapixels are refused unless --max-size is given: at 12 megapixels one
# pair took 56 s and 5.1 GiB at full size against 3.4 s and 1.4 GiB at --max-size 1024
# (benchmarks/large_input.py, docs/flow.md#large-frames); the user chooses, nothing is resized silently
LARGE_FRAME_MEGAPIXELS = 4.0

EPILOG = """\
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
        prog=PROG,
        description="Estimate the optical flow from FRAME1 to FRAME2 with MC-JEPA and save it as a colour image, "
        "or over every frame pair of a video file or frame folder. With no input, runs on a built-in synthetic "
        "pair and compares with its ground truth.",
        epilog=EPILOG,
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
    add_weights_arguments(parser)
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only; ignored on CPU)")
    return parser

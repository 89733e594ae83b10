"""Does a flow model invent motion? Still-scene flow and the warp error on a mostly static video.

    python -m benchmarks.still_scenes --weights mcjepa_small_real \\
        --out benchmarks/results/real/still_scenes_small_real.json

Two measures, each beside zero flow, OpenCV DIS (medium) and Farnebäck:

* ``still_flow``: mean |flow| (pixels) of a frame against itself, on the first frames of the
  held-out real-texture pairs at 96x128 (the five bundled photos, dataset seed 10000) and on
  frames of the video at ``--size``; 0 for a method that does not invent motion;
* occlusion estimates: on the held-out pairs (with their true occlusion) and on the still
  photos, the share of pixels the forward-backward check and the range map keep for the
  photometric loss; a flow with a constant error ``d`` fails the forward-backward check where
  ``|2d|`` exceeds about 0.7 px even on a still pair, hiding exactly those pixels from the loss;
* ``video``: on ``--pairs`` evenly spaced consecutive-frame pairs of ``--video`` (default
  opencv-doc's ``vtest.avi``, a fixed camera over a hall where a few people walk), the mean
  absolute warp error of frame 2 warped onto frame 1 in [0, 1] units
  (:func:`mcjepa.eval.real_pairs.photometric_errors`); on such a scene zero flow is already
  good, and a method that invents motion on the static background is worse than zero flow.

Needs ``apt-get install opencv-doc`` (the video) and ``pip install -e ".[real]"`` (PyAV,
OpenCV). One thread by default: the figures are errors, not speeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mcjepa.data.video import VideoFramePairs
from mcjepa.eval.baselines import get_baseline
from mcjepa.eval.flow_eval import REAL_TEXTURE_SEED_OFFSET, model_method, open_flow_dataset
from mcjepa.eval.real_pairs import photometric_errors
from mcjepa.ops import forward_backward_occlusion, range_map_visibility

from .common import write_json

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
BASELINES = ("zero", "dis", "farneback")


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def video_pairs(video: str | Path = VTEST, pairs: int = 12, size: int = 288) -> list[tuple[Tensor, Tensor]]:
    """``pairs`` evenly spaced consecutive-frame pairs of ``video``, uint8 (3, H, W), shorter side ``size``."""
    frames = VideoFramePairs(video, max_pairs_per_video=pairs, resize_shorter=size)
    return [frames[i] for i in range(len(frames))]


def still_scene_scores(
    methods: dict[str, Any], items: list[tuple[Tensor, Tensor]], still_photos: int = 16
) -> dict[str, Any]:
    """Score every method (``(image1, image2) -> (2, H, W)`` flow in pixels, uint8 (3, H, W) in)
    on ``still_photos`` held-out photos against themselves and on the frame pairs ``items``.

    Returns ``{"n_video_pairs", "video_size", "methods": {name: {"still_flow_photos_96x128",
    "still_flow_video" (pixels), "video_mae_all", "video_mae_visible" ([0, 1] units),
    "video_visible_fraction", "visible_*" (fractions)}}}``: ``visible_*`` are the shares of
    pixels the forward-backward check (on still photos and on the moving held-out pairs) and the
    range map (moving pairs) keep, beside the true share of non-occluded pixels.
    """
    photos = open_flow_dataset(
        "real-texture", real_texture_pairs=still_photos, real_texture_size=(96, 128), seed=REAL_TEXTURE_SEED_OFFSET
    )
    out: dict[str, Any] = {"n_video_pairs": len(items), "video_size": list(items[0][0].shape[-2:]), "methods": {}}
    for name, fn in methods.items():
        still_photo, fb_still, fb_moving, range_moving, truth = [], [], [], [], []
        for s in (photos[i] for i in range(len(photos))):
            still = torch.as_tensor(fn(s.image1, s.image1)).float()[None]
            still_photo.append(float(still.norm(dim=1).mean()))
            fb_still.append(float(forward_backward_occlusion(still, still).float().mean()))
            fwd = torch.as_tensor(fn(s.image1, s.image2)).float()[None]
            bwd = torch.as_tensor(fn(s.image2, s.image1)).float()[None]
            fb_moving.append(float(forward_backward_occlusion(fwd, bwd).float().mean()))
            range_moving.append(float(range_map_visibility(bwd).float().mean()))
            truth.append(1.0 - float(s.occluded.float().mean()))
        still_video, errs = [], []
        for a, b in items:
            still_video.append(float(torch.as_tensor(fn(a, a)).norm(dim=0).mean()))
            errs.append(photometric_errors(a, b, torch.as_tensor(fn(a, b)), torch.as_tensor(fn(b, a))))
        out["methods"][name] = {
            "still_flow_photos_96x128": _mean(still_photo),
            # share of pixels each occlusion estimate keeps for the photometric loss (1 = all)
            "visible_fb_still_photos": _mean(fb_still),
            "visible_fb_moving_photos": _mean(fb_moving),
            "visible_range_map_moving_photos": _mean(range_moving),
            "visible_truth_moving_photos": _mean(truth),
            "still_flow_video": _mean(still_video),
            "video_mae_all": _mean([e["mae_all"] for e in errs]),
            "video_mae_visible": _mean([e["mae_visible"] for e in errs]),
            "video_visible_fraction": _mean([e["visible_fraction"] for e in errs]),
        }
    return out


@torch.no_grad()
def still_flow_per_level(model: torch.nn.Module, still_photos: int = 16) -> dict[str, dict[str, float]]:
    """Where a model's still-scene flow comes from: on the held-out photos at 96x128 against
    themselves, each head level's flow (``FlowHeadOutput.level_flows``) as mean |flow| and mean
    (u, v), converted to input pixels. Returns ``{"level i (stride s)": {"mean_abs", "mean_u",
    "mean_v"}}``, coarse to fine; an offset shows as a mean (u, v) near the mean |flow|, noise as
    a mean (u, v) near 0."""
    from mcjepa.encoder import imagenet_normalize

    photos = open_flow_dataset(
        "real-texture", real_texture_pairs=still_photos, real_texture_size=(96, 128), seed=REAL_TEXTURE_SEED_OFFSET
    )
    device = next(model.parameters()).device
    sums: dict[int, Tensor] = {}
    for i in range(len(photos)):
        x = imagenet_normalize(photos[i].image1[None].float().div(255).to(device))
        out = model.estimate_flow(x, x)
        for level, f in zip(out.levels, out.level_flows):
            f = f.float().cpu() * torch.tensor([128 / f.shape[-1], 96 / f.shape[-2]]).view(1, 2, 1, 1)
            stats = torch.stack((f.norm(dim=1).mean(), f[:, 0].mean(), f[:, 1].mean()))
            sums[level] = sums.get(level, 0) + stats / len(photos)
    result = {}
    for level in sorted(sums, reverse=True):
        stride = model.encoder.feature_info[level]["reduction"]
        result[f"level {level} (stride {stride})"] = dict(zip(("mean_abs", "mean_u", "mean_v"), sums[level].tolist()))
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="mcjepa_small_real", help="a release name, folder or file (mcjepa.flow.load)")
    p.add_argument("--video", default=VTEST)
    p.add_argument("--pairs", type=int, default=12, help="evenly spaced consecutive-frame pairs of the video")
    p.add_argument("--size", type=int, default=288, help="the video's frames are resized to this shorter side")
    p.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=BASELINES)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mcjepa import flow

    if args.weights.endswith(".pt"):  # a training checkpoint (mcjepa-train's checkpoints/ckpt_*.pt)
        from mcjepa.release.export import model_from_checkpoint

        model = model_from_checkpoint(args.weights)[0].eval()
    else:
        model = flow.load(args.weights)
    methods = {"mcjepa": model_method(model)} | {b: get_baseline(b) for b in args.baselines}
    scores = still_scene_scores(methods, video_pairs(args.video, args.pairs, args.size))
    scores["weights"] = args.weights
    scores["mcjepa_still_flow_per_level"] = still_flow_per_level(model)
    print("mcjepa still |flow| per head level, input pixels:", scores["mcjepa_still_flow_per_level"])
    for name, s in scores["methods"].items():
        print(
            f"{name:10s} still |flow| photos {s['still_flow_photos_96x128']:.3f} px, video "
            f"{s['still_flow_video']:.3f} px; video warp error {s['video_mae_all']:.4f}; visible: forward-backward "
            f"{s['visible_fb_still_photos']:.2f} still, {s['visible_fb_moving_photos']:.2f} moving, range map "
            f"{s['visible_range_map_moving_photos']:.2f}, truth {s['visible_truth_moving_photos']:.2f}"
        )
    write_json(args.out, "still_scenes", args, torch.device("cpu"), [scores])


if __name__ == "__main__":
    main()

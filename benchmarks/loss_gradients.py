"""Which way does each motion loss push the flow? Gradient alignment per pyramid level.

For a model (a release folder, or an untrained micro model) and held-out synthetic pairs with
ground truth, this evaluates every feature-space motion loss at *given* per-level flows and
reports, per level, the cosine between the loss's descent direction ``-dL/df`` and the direction
to the true flow ``f_true - f``, pooled over the non-occluded positions of the batch. Positive:
the loss pulls the flow towards the truth; negative: away from it.

The flows evaluated are the ground truth resized to each level plus a perturbation (``--noise``
level pixels of Gaussian noise, so that "towards the truth" is defined everywhere), in both
directions (t -> t+1 and t+1 -> t: the backward truth is the forward truth of the swapped pair
only where visible, so the backward flow is the model's own estimate).

    python -m benchmarks.loss_gradients --weights runs/demo/release --pairs 16 --size 96 128

``--zero-flow`` asks what an untrained head (which predicts exactly zero) is taught first: L_reg's
descent direction at zero flow for the forward flow (frame t+1 onto t) and the backward flow
(frame t onto t+1), per level, with the cosine between the two (a motion signal gives about -1,
since the true backward flow undoes the forward one; a push shared by both flows gives > 0), the
cosine of the forward one with the true flow, and each one's mean vector (level pixels per unit
loss):

    python -m benchmarks.loss_gradients --zero-flow --norm standardize --pairs 8 --size 64 96

Prints a table and, with ``--out``, writes JSON.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from mcjepa.data.synthetic import SyntheticFlowDataset
from mcjepa.encoder import imagenet_normalize
from mcjepa.model import build_model
from mcjepa.train import losses as L


def _level_truth(flow: torch.Tensor, occ: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth at a level: area-averaged flow in level pixels, and a visibility mask."""
    h, w = flow.shape[-2:]
    f = F.adaptive_avg_pool2d(flow, size)
    f = torch.cat((f[:, :1] * size[1] / w, f[:, 1:] * size[0] / h), dim=1)
    vis = F.adaptive_avg_pool2d((~occ).float(), size) > 0.99
    return f, vis


def alignment(model, batch: dict[str, torch.Tensor], noise: float, seed: int, settings: dict) -> dict[str, list[float]]:
    """Per-level cosine between ``-grad`` and ``truth - flow`` for L_reg and L_cycle."""
    im1, im2 = batch["image1"], batch["image2"]
    with torch.no_grad():
        both = model.flow_both_ways(imagenet_normalize(im1), imagenet_normalize(im2))
    feats1, feats2 = both.feats1, both.feats2
    levels = both.forward.levels
    g = torch.Generator().manual_seed(seed)
    truths, flows, masks = [], [], []
    for lvl in levels:
        size = tuple(feats1[lvl].shape[-2:])
        t, vis = _level_truth(batch["flow"], batch["occlusion"], size)
        f = (t + noise * torch.randn(t.shape, generator=g)).requires_grad_(True)
        truths.append(t)
        flows.append(f)
        masks.append(vis)
    bwd = [b.detach() for b in both.backward.level_flows]
    weights = [1.0] * len(feats1)
    out: dict[str, list[float]] = {}
    losses = {
        "L_reg": lambda fl: L.feature_regression_loss(
            feats1, feats2, fl, levels, weights, mask_out_of_image=False, feature_norm=settings["norm"]
        ),
        "L_cycle": lambda fl: L.cycle_consistency_loss(
            feats1,
            fl,
            bwd,
            levels,
            [torch.ones_like(m[:, :1].float()) for m in masks],
            weight=1.0,
            feature_norm=settings["norm"],
        ),
    }
    for name, fn in losses.items():
        grads = torch.autograd.grad(fn(flows), flows)
        cos = []
        for gr, f, t, m in zip(grads, flows, truths, masks):
            d, want = -gr.detach(), (t - f.detach())
            m = m.expand_as(d)
            cos.append(float(F.cosine_similarity(d[m].view(1, -1), want[m].view(1, -1)).item()))
        out[name] = cos
    out["levels"] = list(levels)
    return out


def zero_flow_drift(model, batch: dict[str, torch.Tensor], settings: dict) -> dict[str, list]:
    """Per level: L_reg's descent directions at zero flow, forward and backward (see module doc)."""
    im1, im2 = batch["image1"], batch["image2"]
    with torch.no_grad():
        both = model.flow_both_ways(imagenet_normalize(im1), imagenet_normalize(im2))
    feats1, feats2, levels = both.feats1, both.feats2, both.forward.levels
    weights = [1.0] * len(feats1)

    def descent(src, tgt):
        flows = [torch.zeros_like(f).requires_grad_(True) for f in both.forward.level_flows]
        loss = L.feature_regression_loss(
            src, tgt, flows, levels, weights, mask_out_of_image=True, feature_norm=settings["norm"]
        )
        return [-g for g in torch.autograd.grad(loss, flows)]

    fwd, bwd = descent(feats1, feats2), descent(feats2, feats1)
    out: dict[str, list] = {
        "levels": list(levels),
        "cos_fwd_bwd": [],
        "cos_fwd_truth": [],
        "mean_fwd": [],
        "mean_bwd": [],
    }
    for f, b in zip(fwd, bwd):
        truth, vis = _level_truth(batch["flow"], batch["occlusion"], tuple(f.shape[-2:]))
        out["cos_fwd_bwd"].append(float(F.cosine_similarity(f.reshape(1, -1), b.reshape(1, -1)).item()))
        m = vis.expand_as(f)
        out["cos_fwd_truth"].append(float(F.cosine_similarity(f[m].view(1, -1), truth[m].view(1, -1)).item()))
        out["mean_fwd"].append([round(float(v), 6) for v in f.mean(dim=(0, 2, 3))])
        out["mean_bwd"].append([round(float(v), 6) for v in b.mean(dim=(0, 2, 3))])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="release folder (default: an untrained micro model)")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--size", type=int, nargs=2, default=[96, 128])
    p.add_argument("--motion", default="rich")
    p.add_argument("--noise", type=float, default=0.5, help="level pixels of noise added to the truth")
    p.add_argument("--norm", default="none", help="feature_norm of the losses: none | standardize")
    p.add_argument("--zero-flow", action="store_true", help="L_reg's push on an untrained head (module doc)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.weights:
        from mcjepa.release import load_model

        model = load_model(args.weights)
    else:
        torch.manual_seed(0)
        model = build_model("micro").eval()
    data = SyntheticFlowDataset(args.pairs, tuple(args.size), seed=777, motion=args.motion)
    items = [data[i] for i in range(args.pairs)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    if args.zero_flow:
        res = zero_flow_drift(model, batch, {"norm": args.norm})
        print("L_reg at zero flow: descent directions per level (cos fwd/bwd > 0: a push shared by both flows)")
        for i, lvl in enumerate(res["levels"]):
            print(
                f"stride {(2, 4, 4, 8, 16, 32)[lvl]:>2}: cos(fwd, bwd) {res['cos_fwd_bwd'][i]:+.3f}  "
                f"cos(fwd, truth) {res['cos_fwd_truth'][i]:+.3f}  mean fwd {res['mean_fwd'][i]}  "
                f"mean bwd {res['mean_bwd'][i]}"
            )
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"args": vars(args), **res}, fh, indent=2)
        return 0
    res = alignment(model, batch, args.noise, 0, {"norm": args.norm})
    strides = [(2, 4, 4, 8, 16, 32)[lvl] for lvl in res["levels"]]
    print("cosine(-dL/df, f_true - f) per level (positive = towards the truth)")
    print("loss     " + " ".join(f"s{s:<6}" for s in strides))
    for name in ("L_reg", "L_cycle"):
        print(f"{name:<8} " + " ".join(f"{c:+.3f} " for c in res[name]))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), **res}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

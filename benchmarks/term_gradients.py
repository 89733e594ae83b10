"""Which loss terms teach the flow? Per-term gradients on the flow head and the encoder.

For a training run's newest checkpoint, one batch of held-out synthetic pairs (with ground truth)
and one content batch, this computes the gradient of each weighted term of the objective
(``L_ssl`` and ``alpha`` times ``L_reg``, ``L_rec``, ``L_smooth``, ``L_cycle``, ``L_vc``) with
respect to the parameters, grouped into the flow head and the encoder's stem and stages, and
reports per group:

* the gradient's norm (how loud the term is: AdamW follows the loudest term's direction);
* the cosine between the term's gradient and the gradient of the supervised end-point error of
  the forward flow on the same pairs (positive: descending the term also lowers the EPE; this is
  the "oracle" direction no self-supervised run can see).

``total`` is the whole objective, as the optimiser sees it.

    python -m benchmarks.term_gradients --run runs/demo [--config demo] [--set key=value ...]
        [--pairs 8] [--out term_gradients.json]

The config must be the run's (pass the same ``--config`` / ``--set`` as the run). The step plan is
the schedule's at the checkpoint's step (occlusion mask, L_vc), with the motion stream on.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace

import torch
import torch.nn.functional as F

from mcjepa.data.synthetic import SyntheticFlowDataset
from mcjepa.encoder import imagenet_normalize
from mcjepa.train.config import load_config
from mcjepa.train.engine import Trainer

TERMS = ("ssl", "reg", "rec", "smooth", "cycle", "vc")


def parameter_groups(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """The model's trainable parameters by part: ``head``, ``stem``, ``stage0``..``stage3``."""
    groups: dict[str, list[torch.nn.Parameter]] = defaultdict(list)
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "flow_head":
            groups["head"].append(p)
        elif parts[0] == "encoder":
            groups["stem" if parts[1] == "stem" else f"stage{parts[2]}"].append(p)
    return dict(groups)


def _flat(grads: tuple[torch.Tensor | None, ...], params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def supervised_epe(model, image1: torch.Tensor, image2: torch.Tensor, flow: torch.Tensor, occ: torch.Tensor):
    """Mean end-point error (pixels) of the forward flow over the visible pixels."""
    pred = model.flow_both_ways(imagenet_normalize(image1), imagenet_normalize(image2)).forward.flow
    epe = (pred - flow).square().sum(1, keepdim=True).sqrt()
    vis = (~occ).float()
    return (epe * vis).sum() / vis.sum().clamp_min(1.0)


def term_gradients(trainer: Trainer, pairs: int, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """``{term: {group: {"norm": ..., "cos_epe": ...}}}`` at the trainer's current parameters."""
    model, objective, cfg = trainer.model, trainer.objective, trainer.cfg
    size = tuple(cfg.data.motion[0].get("size", (64, 96)))
    data = SyntheticFlowDataset(pairs, size, seed=seed, motion=cfg.data.eval_synthetic_motion)
    items = [data[i] for i in range(pairs)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    content = next(trainer.content_stream) if trainer.content_stream is not None else None
    # the schedule's plan at the checkpoint's step, with the motion stream on
    plan = replace(trainer.schedule.plan(trainer.step), motion=True, content=content is not None)
    groups = parameter_groups(model)
    params = [p for ps in groups.values() for p in ps]
    model.train()

    torch.manual_seed(seed)
    epe = supervised_epe(model, batch["image1"], batch["image2"], batch["flow"], batch["occlusion"])
    g_sup = _flat(torch.autograd.grad(epe, params, allow_unused=True), params)

    torch.manual_seed(seed)
    out = objective(content, (batch["image1"], batch["image2"]), plan)
    alpha = cfg.loss.alpha
    weighted = {t: (out[t] if t == "ssl" else alpha * out[t]) for t in TERMS if t in out}
    weighted["total"] = out["total"]
    result: dict[str, dict[str, dict[str, float]]] = {"epe": {"value": {"norm": float(epe.detach())}}}
    names = list(weighted)
    for i, term in enumerate(names):
        value = weighted[term]
        grads = (
            torch.autograd.grad(value, params, retain_graph=i < len(names) - 1, allow_unused=True)
            if value.requires_grad
            else (None,) * len(params)  # a term weighted 0 in this config
        )
        g = _flat(grads, params)
        per_group: dict[str, dict[str, float]] = {}
        start = 0
        for group, ps in groups.items():
            n = sum(p.numel() for p in ps)
            gg, ss = g[start : start + n], g_sup[start : start + n]
            start += n
            cos = float(F.cosine_similarity(gg.view(1, -1), ss.view(1, -1), eps=1e-20)) if gg.norm() > 0 else 0.0
            per_group[group] = {"norm": float(gg.norm()), "cos_epe": cos}
        result[term] = per_group
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="training run folder (its newest checkpoint is used)")
    p.add_argument("--config", default="demo")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--seed", type=int, default=4242, help="synthetic pairs' dataset seed (held out)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.config, args.overrides + ["data.num_workers=0"])
    trainer = Trainer(cfg, args.run, resume=True, allow_config_change=True)
    res = term_gradients(trainer, args.pairs, args.seed)
    print(f"step {trainer.step}; supervised EPE of the batch {res['epe']['value']['norm']:.3f} px")
    groups = list(res["total"])
    print("term     " + "".join(f"{g:>22}" for g in groups))
    print("         " + "".join(f"{'|grad|  cos(EPE)':>22}" for _ in groups))
    for term in [t for t in res if t != "epe"]:
        row = "".join(f"{res[term][g]['norm']:>12.2e} {res[term][g]['cos_epe']:+9.3f}" for g in groups)
        print(f"{term:<8} {row}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "step": trainer.step, **res}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

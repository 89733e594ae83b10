"""One optimisation step on a fixed global batch, in one process or as one rank of many.

``tests/test_train_world_size.py`` runs :func:`one_step` in the test process (world size 1) and
under ``torchrun --nproc_per_node 2`` (Gloo) through ``python -m tests.world_size_step OUT
CONTENT_CAP MOTION_CAP``; every process builds the same model and the same global batch and takes
its rank's rows. Rank 0 saves the step's losses and the parameters and buffers after it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from mcjepa.train.config import load_config

GLOBAL_CONTENT, GLOBAL_MOTION = 8, 4

SETTINGS = [
    "model.encoder.drop_path_rate=0.0",  # every rank draws its own masks: not comparable
    "loss.vc_max_samples=0",  # every position (a random subset differs by split)
    'loss.masked_mean="image"',
    "loss.alpha=1.0",
    "schedule.epochs=1",
    "schedule.steps_per_epoch=1",
    "schedule.motion_start_epoch=0",
    "schedule.vc_start_epoch=0",
    "schedule.occlusion_start_epoch=0",
    "optim.warmup_epochs=0",
    "optim.lr_encoder=1e-4",
    "optim.lr_expander=1e-4",
    "optim.lr_flow_head=1e-4",
    f"data.content_batch_size={GLOBAL_CONTENT}",
    f"data.motion_batch_size={GLOBAL_MOTION}",
    "run.threads=1",
]


class _Once:
    """A stream that yields one fixed batch."""

    def __init__(self, batch: tuple[torch.Tensor, ...]) -> None:
        self.batch = batch

    def __next__(self) -> tuple[torch.Tensor, ...]:
        return self.batch


def global_batch() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The same content views (normalised) and frame pairs (in [0, 1]) in every process."""
    g = torch.Generator().manual_seed(123)
    views = (torch.randn(GLOBAL_CONTENT, 3, 32, 32, generator=g), torch.randn(GLOBAL_CONTENT, 3, 32, 32, generator=g))
    frame1 = torch.rand(GLOBAL_MOTION, 3, 32, 48, generator=g)
    frame2 = torch.roll(frame1, shifts=(1, 2), dims=(2, 3)) * 0.9 + 0.1 * torch.rand(frame1.shape, generator=g)
    return views, (frame1, frame2)


def one_step(content_cap: int, motion_cap: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """:func:`_one_step` in float64, where a split that changes the arithmetic shows up as more
    than rounding (float32 rounding alone differs by ~1e-4 relative in gradients that cancel)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _one_step(content_cap, motion_cap)
    finally:
        torch.set_default_dtype(previous)


def _one_step(content_cap: int, motion_cap: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    runner, model, grads = build_runner(content_cap, motion_cap)
    losses = runner.run(0)
    assert losses is not None
    return losses, {**{k: v.detach().clone() for k, v in model.state_dict().items()}, **grads}


def build_runner(content_cap: int, motion_cap: int, precision: Any = None) -> tuple[Any, Any, dict[str, torch.Tensor]]:
    """The step runner of :func:`one_step` (``precision``: default fp32), its model and the dict
    that receives each parameter's gradient as AdamW gets it (``grad/<name>``)."""
    from mcjepa.train.build import build_model, build_optimizer, step_split, wrap_ddp
    from mcjepa.train.distributed import init_distributed
    from mcjepa.train.objective import MCJEPAObjective
    from mcjepa.train.precision import resolve_precision
    from mcjepa.train.schedule import Schedule
    from mcjepa.train.step import StepRunner

    cfg = load_config(
        "demo",
        [*SETTINGS, f"data.content_max_per_device={content_cap}", f"data.motion_max_per_device={motion_cap}"],
    )
    info, device = init_distributed("cpu")
    torch.manual_seed(0)
    model = build_model(cfg.model.resolve(), info, device)
    with torch.no_grad():
        for p in model.flow_head.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    objective = MCJEPAObjective(model, cfg.loss)
    forward = wrap_ddp(objective, device) if info.enabled else objective
    split = step_split(cfg, info.world_size)
    views, frames = global_batch()
    c, m = split.content.per_rank, split.motion.per_rank
    mine_c = tuple(v[info.rank * c : (info.rank + 1) * c] for v in views)
    mine_m = tuple(f[info.rank * m : (info.rank + 1) * m] for f in frames)
    optimizer = build_optimizer(model, cfg.optim)
    grads: dict[str, torch.Tensor] = {}

    def keep_grads(*_: object) -> None:
        grads.update({f"grad/{k}": p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})

    optimizer.register_step_pre_hook(keep_grads)
    runner = StepRunner(
        forward=forward,
        objective=objective,
        model=model,
        optimizer=optimizer,
        schedule=Schedule(cfg, 1),
        content_stream=_Once(mine_c),  # type: ignore[arg-type]
        motion_stream=_Once(mine_m),  # type: ignore[arg-type]
        device=device,
        split=split,
        precision=precision or resolve_precision("fp32", device),
        grad_clip=0.0,
        max_nonfinite_in_row=1,
        run_dir=Path("."),
    )
    return runner, model, grads


if __name__ == "__main__":
    import torch.distributed as dist

    out, content_cap, motion_cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    losses, state = one_step(content_cap, motion_cap)
    if dist.get_rank() == 0:
        torch.save({"losses": losses, "state": state}, out)
    dist.barrier()
    dist.destroy_process_group()

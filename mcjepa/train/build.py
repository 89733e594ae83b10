"""Building a training run from its config: the model, the objective (wrapped for DDP), the
optimiser, the two data streams and the schedule. :class:`~mcjepa.train.engine.Trainer` calls
:func:`build_run` once; nothing here trains."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from mcjepa.architecture import ModelConfig
from mcjepa.model import MCJEPA
from mcjepa.train.batching import StepSplit, split_step
from mcjepa.train.config import ConfigError, OptimSection, TrainConfig
from mcjepa.train.data import build_content_stream, build_motion_stream
from mcjepa.train.distributed import DistInfo
from mcjepa.train.global_stats import convert_global_batchnorm
from mcjepa.train.objective import MCJEPAObjective
from mcjepa.train.precision import apply_compile, to_memory_format
from mcjepa.train.schedule import Schedule
from mcjepa.train.streams import ResumableStream

__all__ = [
    "RunParts",
    "apply_optim_config",
    "build_model",
    "build_optimizer",
    "build_run",
    "check_run_dir",
    "step_split",
    "wrap_ddp",
]


@dataclass
class RunParts:
    """Everything a run trains with."""

    model_config: ModelConfig
    model: MCJEPA  # with flow head and expander (GlobalBatchNorm1d: statistics over every process)
    objective: MCJEPAObjective
    forward: nn.Module  # what a step calls: the objective, or its DDP wrapper under torchrun
    optimizer: torch.optim.AdamW
    content_stream: ResumableStream | None
    motion_stream: ResumableStream | None
    schedule: Schedule
    split: StepSplit  # per-process batches and gradient accumulation of both streams


def check_run_dir(path: Path) -> None:
    """Create the run folder and make sure a file can be written in it.

    Raises:
        ConfigError: ``path`` is an existing file, or the folder cannot be created or written.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: is an existing file, not a folder; give a folder for the run's outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {path}: cannot write the run folder there ({exc.strerror or exc})") from None


def build_model(model_config: ModelConfig, info: DistInfo, device: torch.device) -> MCJEPA:
    """The model to train; under torchrun with identical initial weights on every rank. The
    expander's BatchNorm takes its statistics over every process's batch (GlobalBatchNorm1d, on
    any backend; the same state-dict keys)."""
    model = convert_global_batchnorm(MCJEPA(model_config, flow_head=True, expander=True)).to(device)
    if info.enabled:
        for p in model.state_dict().values():  # same initial weights everywhere
            dist.broadcast(p, src=0)
    return model


def _base_lrs(o: OptimSection) -> dict[str, float]:
    return {"encoder": o.lr_encoder, "flow_head": o.lr_flow_head, "expander": o.lr_expander}


def build_optimizer(model: MCJEPA, o: OptimSection) -> torch.optim.AdamW:
    """AdamW with one parameter group per component, each named and carrying its ``base_lr``."""
    base = _base_lrs(o)
    groups = [
        {"params": list(getattr(model, name).parameters()), "base_lr": base[name], "lr": base[name], "name": name}
        for name in ("encoder", "flow_head", "expander")
    ]
    return torch.optim.AdamW(groups, betas=tuple(o.betas), weight_decay=o.weight_decay)


def apply_optim_config(optimizer: torch.optim.Optimizer, o: OptimSection) -> None:
    """Set each group's base rate, weight decay and betas from the config:
    ``optimizer.load_state_dict`` restores the checkpoint's, which differ after an allowed config
    change (and are the same numbers otherwise)."""
    base = _base_lrs(o)
    for g in optimizer.param_groups:
        g["base_lr"] = base[g["name"]]
        g["weight_decay"] = o.weight_decay
        g["betas"] = tuple(o.betas)


def step_split(cfg: TrainConfig, world_size: int) -> StepSplit:
    """Both streams' per-process batch and accumulation for ``world_size`` processes.

    Raises:
        ConfigError: a global batch that ``world_size`` does not divide, naming its key.
    """
    d = cfg.data
    return split_step(
        d.content_batch_size,
        d.motion_batch_size,
        world_size,
        d.content_max_per_device,
        d.motion_max_per_device,
        content=cfg.schedule.content_enabled,
        motion=cfg.schedule.motion_enabled,
    )


def wrap_ddp(objective: MCJEPAObjective, device: torch.device) -> nn.Module:
    """The objective under DDP. Every pass uses every parameter (a component a step does not
    train joins the graph with a zero term, and its gradient is dropped before AdamW), so DDP
    needs no search for unused parameters; gradients live in DDP's buckets (no copy); buffers
    are not broadcast (the expander's BatchNorm statistics are the same on every process)."""
    objective.touch_unused = True
    for p in objective.parameters():
        # depthwise kernels (C, 1, k, k): their gradients come with stride 1 on the size-1 axis;
        # give the parameters that layout (the same memory) so DDP's bucket views match it
        if p.dim() == 4 and p.shape[1] == 1 and p.stride(1) != 1:
            p.data = p.data.as_strided(p.shape, (p.stride(0), 1, p.stride(2), p.stride(3)))
    return nn.parallel.DistributedDataParallel(
        objective,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=False,
        gradient_as_bucket_view=True,
        **_no_buffer_broadcast(),
    )


def _no_buffer_broadcast() -> dict[str, bool]:
    """DDP's switch for broadcasting buffers before every forward, under this torch's name."""
    import inspect

    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def build_run(cfg: TrainConfig, info: DistInfo, device: torch.device) -> RunParts:
    """Build every part of a run from ``cfg`` (the caller seeds torch first).

    Raises:
        ConfigError: a bad architecture override, missing data, a global batch the number of
            processes does not divide, or too little content data for one batch per epoch.
    """
    split = step_split(cfg, info.world_size)
    model_config = cfg.model.resolve()
    model = to_memory_format(build_model(model_config, info, device), cfg.run.channels_last)
    apply_compile([model.encoder, model.flow_head], cfg.run.compile)
    objective = MCJEPAObjective(model, cfg.loss)
    forward: nn.Module = wrap_ddp(objective, device) if info.enabled else objective
    optimizer = build_optimizer(model, cfg.optim)
    content_stream, content_len = build_content_stream(cfg, info) if cfg.schedule.content_enabled else (None, 0)
    motion_stream, motion_batches = build_motion_stream(cfg, info) if cfg.schedule.motion_enabled else (None, 0)
    steps = cfg.schedule.steps_per_epoch
    if steps <= 0:
        steps = content_len // cfg.data.content_batch_size if content_len else motion_batches
    if steps <= 0:
        raise ConfigError("schedule.steps_per_epoch resolved to 0: the content data is smaller than one batch")
    return RunParts(
        model_config, model, objective, forward, optimizer, content_stream, motion_stream, Schedule(cfg, steps), split
    )

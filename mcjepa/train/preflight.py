"""``mcjepa-train --preflight``: check a run before it takes a GPU, then exit.

It reads every data root (a torchvision dataset's folder or its parent), counts samples, and
prints the schedule in steps, each stream's per-process batch and gradient accumulation for a
world size, the precision each kind of GPU would use, an estimate of memory per device and the
checkpoint size. Nothing is trained and no GPU is needed. :func:`run_preflight` returns the exit
status: 0 when every check passed, 2 otherwise (each problem printed on one line).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mcjepa.train.batching import StepSplit
from mcjepa.train.config import TrainConfig
from mcjepa.train.precision import resolve_precision
from mcjepa.utils.schema import ConfigError

__all__ = ["MemoryEstimate", "estimate_memory", "run_preflight"]

GiB = 2**30
# the GPUs a paper-scale run meets: name, compute capability, memory (GiB)
GPUS = (("V100 32 GB", (7, 0), 32), ("A100 80 GB", (8, 0), 80), ("H100 80 GB", (9, 0), 80))


@dataclass
class MemoryEstimate:
    """Bytes per device: model state and the activations of one micro-step."""

    parameters: int  # count
    state_bytes: int  # fp32 weights, gradients and AdamW's two moments (16 bytes a parameter)
    content_bytes_per_sample: int  # saved activations of one content image (both views), fp32
    motion_bytes_per_pair: int  # saved activations of one frame pair at the largest crop, fp32
    checkpoint_bytes: int  # weights, buffers and AdamW moments (about 12 bytes a parameter)
    notes: list[str] = field(default_factory=list)

    def peak(self, content_micro: int, motion_micro: int, half_activations: bool) -> int:
        """Estimated peak bytes of a micro-step holding both streams' micro-batches (activations
        halved under bf16 / fp16 autocast)."""
        act = content_micro * self.content_bytes_per_sample + motion_micro * self.motion_bytes_per_pair
        return int(self.state_bytes + (act / 2 if half_activations else act))


def _saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn`` runs (meta tensors: shapes
    only). Tensors saved twice count twice, so this is an upper estimate."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def largest_crop(cfg: TrainConfig) -> tuple[int, int] | None:
    """The largest ``crop`` (or ``size``) among the motion datasets, by area."""
    sizes = [tuple(s.get("crop") or s.get("size") or ()) for s in cfg.data.motion if isinstance(s, dict)]
    sizes = [s for s in sizes if len(s) == 2]
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None  # type: ignore[return-value]


def estimate_memory(cfg: TrainConfig) -> MemoryEstimate:
    """Measure the model's saved activations for one content image and one frame pair at the
    config's sizes on the meta device (shapes only: instant, no memory), plus the model state.
    The loss terms' own buffers are not counted (small next to the flow head's)."""
    from mcjepa.model import MCJEPA

    model = MCJEPA(cfg.model.resolve(), flow_head=True, expander=True).to("meta").train()
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    size = int(cfg.data.content.get("size", 224)) if isinstance(cfg.data.content, dict) else 224

    def content() -> None:
        emb = model.encoder.forward_embedding(torch.empty(2, 3, size, size, device="meta"))
        model.expander(emb)

    per_image = _saved_bytes(content) // 1  # one image, both views
    crop = largest_crop(cfg)
    per_pair = 0
    notes = [f"content image {size}x{size} (two views)"]
    if crop is not None and cfg.schedule.motion_enabled:
        frame = torch.empty(1, 3, *crop, device="meta")
        per_pair = _saved_bytes(lambda: model.flow_both_ways(frame, frame))
        notes.append(f"frame pair {crop[0]}x{crop[1]} (the largest crop)")
    return MemoryEstimate(params, 16 * params, per_image, per_pair, 12 * params + buffers, notes)


def _human(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / 2**20:.0f} MiB"


def run_preflight(cfg: TrainConfig, world_size: int, out: Callable[[str], None] = print) -> int:
    """Print the checks for ``cfg`` on ``world_size`` processes; return 0 (all passed) or 2."""
    from mcjepa.train.build import step_split

    problems: list[str] = []
    out(f"preflight: config {cfg.name!r}, {world_size} process(es)")
    content_len = _check_content(cfg, out, problems)
    motion_pairs = _check_motion(cfg, out, problems)
    split = None
    try:
        split = step_split(cfg, world_size)
    except ConfigError as exc:
        problems.append(str(exc))
    if split is not None:
        _print_split(cfg, split, out)
    _print_schedule(cfg, content_len, motion_pairs, out, problems)
    _print_precision(cfg, out, problems)
    if split is not None:
        _print_memory(cfg, split, out)
    for p in problems:
        out(f"PROBLEM: {p}")
    out(f"preflight: {'all checks passed' if not problems else f'{len(problems)} problem(s)'}")
    return 0 if not problems else 2


def _check_content(cfg: TrainConfig, out: Callable[[str], None], problems: list[str]) -> int:
    if not cfg.schedule.content_enabled:
        out("content: off (schedule.content_enabled = false)")
        return 0
    from mcjepa.train.data import build_content_dataset

    try:
        n = len(build_content_dataset(cfg))
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        problems.append(f"data.content: {exc}")
        return 0
    out(f"content: {n:,} images ({cfg.data.content.get('type')} {cfg.data.content.get('root', '')})".rstrip())
    if n < cfg.data.content_batch_size:
        problems.append(f"data.content holds {n} images, fewer than one global batch ({cfg.data.content_batch_size})")
    return n


def _check_motion(cfg: TrainConfig, out: Callable[[str], None], problems: list[str]) -> int:
    """Each motion dataset on its own line; returns the pairs per epoch (repeats counted)."""
    if not cfg.schedule.motion_enabled:
        out("motion: off (schedule.motion_enabled = false)")
        return 0
    from mcjepa.data.motion import build_motion_datasets, reader_root

    total = 0
    for i, spec in enumerate(cfg.data.motion):
        key = f"data.motion[{i}]"
        try:
            (ds,) = build_motion_datasets([dict(spec)])
        except (ValueError, FileNotFoundError, TypeError, KeyError) as exc:
            problems.append(f"{key}: {str(exc).replace('motion dataset spec [0]', key)}")
            continue
        name, root = spec.get("name"), spec.get("root", "")
        read = (
            f" (read as {reader_root(str(name), root)})" if root and str(reader_root(str(name), root)) != root else ""
        )
        out(f"motion: {key} {name} {root}{read}: {len(ds):,} pairs x {ds.repeat} = {len(ds) * ds.repeat:,} per epoch")
        total += len(ds) * ds.repeat
    return total


def _print_split(cfg: TrainConfig, split: StepSplit, out: Callable[[str], None]) -> None:
    from mcjepa.data.workers import resolve_num_workers
    from mcjepa.train.data import stream_workers

    out(f"batch: content {split.content.describe()} per step")
    if cfg.schedule.motion_enabled:
        out(f"batch: motion  {split.motion.describe()} per step")
    budget = resolve_num_workers(cfg.data.num_workers, default=8, processes=split.content.world_size)
    c, m = stream_workers(budget, cfg.schedule.content_enabled, cfg.schedule.motion_enabled)
    out(f"loading: {budget} worker process(es) per training process: content {c}, motion {m}")


def _print_schedule(
    cfg: TrainConfig, content_len: int, motion_pairs: int, out: Callable[[str], None], problems: list[str]
) -> None:
    from mcjepa.train.schedule import Schedule

    steps = cfg.schedule.steps_per_epoch
    if steps <= 0:
        steps = (
            content_len // cfg.data.content_batch_size if content_len else motion_pairs // cfg.data.motion_batch_size
        )
    if steps <= 0:
        problems.append("schedule: no steps per epoch (no readable data; set schedule.steps_per_epoch)")
        return
    sched = Schedule(cfg, steps)
    s = cfg.schedule

    def at(epoch: float) -> str:
        return f"step {math.ceil(epoch * steps):,} (epoch {epoch:g})"

    out(f"schedule: {steps:,} steps per epoch, {sched.total_steps:,} steps in all ({s.epochs:g} epochs)")
    out(f"schedule: warm-up ends at {at(cfg.optim.warmup_epochs)}; cosine to {cfg.optim.end_lr:g} at the last step")
    if s.motion_enabled:
        out(f"schedule: motion from {at(s.motion_start_epoch)}, L_vc from {at(s.vc_start_epoch)}")
        if cfg.loss.occlusion_masking:
            out(f"schedule: occlusion mask from {at(max(s.occlusion_start_epoch, s.motion_start_epoch))}")
    if cfg.run.checkpoint_every:
        out(
            f"checkpoints: every {cfg.run.checkpoint_every:,} steps, {sched.total_steps // cfg.run.checkpoint_every:,} "
            f"writes, the last {cfg.run.keep_last or 'all'} kept"
        )


def _print_precision(cfg: TrainConfig, out: Callable[[str], None], problems: list[str]) -> None:
    here = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        p = resolve_precision(cfg.run.precision, here)
        out(f"precision: this machine ({here.type}): {p.name} ({p.reason})")
    except ConfigError as exc:
        out(f"precision: this machine ({here.type}): {exc}")
    for name, cap, _ in GPUS:
        try:
            p = resolve_precision(cfg.run.precision, torch.device("cuda"), capability=cap)
            tf32 = " + TF32" if cfg.run.tf32 and cap >= (8, 0) and p.name == "fp32" else ""
            out(f"precision: {name}: {p.name}{' with a gradient scaler' if p.needs_scaler else ''}{tf32}")
        except ConfigError as exc:
            out(f"precision: {name}: {exc}")
    extras = [k for k in ("channels_last", "compile") if getattr(cfg.run, k)]
    out(f"precision: TF32 for fp32 work {'on' if cfg.run.tf32 else 'off'}; {', '.join(extras) or 'no'} extra options")


def _print_memory(cfg: TrainConfig, split: StepSplit, out: Callable[[str], None]) -> None:
    est = estimate_memory(cfg)
    cm = split.content.micro if cfg.schedule.content_enabled else 0
    mm = split.motion.micro if cfg.schedule.motion_enabled else 0
    out(
        f"memory: {est.parameters / 1e6:.1f}M parameters: {_human(est.state_bytes)} of weights, gradients and "
        f"AdamW moments per device"
    )
    out(
        f"memory: activations (fp32, upper estimate): {_human(est.content_bytes_per_sample)} per "
        f"{est.notes[0]}, {_human(est.motion_bytes_per_pair)} per {est.notes[-1] if len(est.notes) > 1 else 'pair'}"
    )
    for half, label in ((True, "bf16 / fp16"), (False, "fp32")):
        peak = est.peak(cm, mm, half)
        fits = ", ".join(f"{'under' if peak < gib * GiB * 0.9 else 'over'} 90% of {n}" for n, _, gib in GPUS)
        out(
            f"memory: at most about {_human(peak)} per device at {label} ({cm} images + {mm} pairs per pass; "
            f"{fits}); lower data.*_max_per_device to trade time for memory"
        )
    out(f"checkpoint: about {_human(est.checkpoint_bytes)} each (weights, buffers, AdamW moments)")

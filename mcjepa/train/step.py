"""One optimisation step, and the faults it watches for.

:class:`StepRunner` runs a step: the schedule's plan, learning rates, the batches, the forward
pass (autocast at the run's precision), backward, gradient clipping and AdamW. A process's batch
larger than ``data.*_max_per_device`` runs as micro-batches whose gradients accumulate (DDP
synchronises only the last); the batch statistics stay those of the global batch: the content
embeddings and L_vc's statistics of every micro-batch are computed first without gradient, with
the RNG replayed so that drop path draws the same masks in both passes
(:class:`~mcjepa.train.objective.MicroBatch`).

A step whose loss or gradient norm is non-finite is skipped (gradients dropped, parameters
untouched) and counted; the check costs one host synchronisation per step, the same one that
fetches the logged losses (averaged over processes). :meth:`StepRunner.check_streak` stops the
run with :class:`TrainingDiverged` after ``run.max_nonfinite_in_row`` of them in a row.
:func:`nonfinite_tensors` and :func:`parameters_diverged` catch parameters that went non-finite
in a step that looked finite.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mcjepa.train.batching import StepSplit
from mcjepa.train.checkpoint import capture_rng_state, latest_checkpoint, restore_rng_state
from mcjepa.train.global_stats import distributed_world, freeze_running_stats
from mcjepa.train.objective import CONTENT_TERMS, MCJEPAObjective, MicroBatch, all_reduce_statistics
from mcjepa.train.precision import Precision
from mcjepa.train.schedule import Schedule, StepPlan
from mcjepa.train.streams import ResumableStream

__all__ = ["StepRunner", "TrainingDiverged", "nonfinite_tensors", "parameters_diverged", "to_device"]


class TrainingDiverged(RuntimeError):
    """The parameters went non-finite, or too many non-finite losses came in a row."""


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """``batch`` (tensors, possibly nested in lists, tuples and dicts) moved to ``device``
    (4-d tensors in NHWC memory with ``channels_last``)."""
    if isinstance(batch, torch.Tensor):
        out = batch.to(device, non_blocking=True)
        return out.contiguous(memory_format=torch.channels_last) if channels_last and out.dim() == 4 else out
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def _newest(run_dir: Path) -> str:
    newest = latest_checkpoint(run_dir)
    return str(newest) if newest is not None else "none"


def _chunks(batch: tuple[torch.Tensor, ...] | None, parts: int) -> list[tuple[torch.Tensor, ...]]:
    """``batch`` (a tuple of equally long tensors) in ``parts`` equal micro-batches."""
    if batch is None or parts == 0:
        return []
    if parts == 1:
        return [tuple(batch)]
    return list(zip(*(t.chunk(parts) for t in batch)))


class StepRunner:
    """Runs the optimisation steps of one run and counts the skipped ones.

    Args:
        forward: the objective (or its DDP wrapper): ``forward(content, frames, plan, micro)``
            returns the loss components with ``total``.
        objective: the unwrapped objective (for the gradient-free first pass of an accumulated step).
        model: the model whose parameters the optimiser updates (for gradient clipping).
        split: how each stream's global batch is shared by processes and micro-batches.
        precision: the autocast precision (fp16 brings a gradient scaler).
        grad_clip: max global gradient norm; 0 disables clipping.
        channels_last: move image batches to NHWC memory.
        run_dir: the run folder, to name the newest checkpoint in a divergence report.
    """

    def __init__(
        self,
        *,
        forward: nn.Module,
        objective: MCJEPAObjective,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        content_stream: ResumableStream | None,
        motion_stream: ResumableStream | None,
        device: torch.device,
        split: StepSplit,
        precision: Precision,
        grad_clip: float,
        max_nonfinite_in_row: int,
        run_dir: Path,
        channels_last: bool = False,
    ) -> None:
        self.forward, self.objective, self.model = forward, objective, model
        self.optimizer, self.schedule, self.split = optimizer, schedule, split
        self.content_stream, self.motion_stream = content_stream, motion_stream
        self.device, self.precision, self.grad_clip = device, precision, grad_clip
        self.channels_last = channels_last
        self.scaler = precision.make_scaler()
        self.max_nonfinite_in_row, self.run_dir = max_nonfinite_in_row, run_dir
        self.nonfinite_total = 0  # skipped steps over the whole run (carried in checkpoints)
        self.nonfinite_in_row = 0
        self.nonfinite_terms: set[str] = set()  # the non-finite terms of the current streak

    def set_lrs(self, step: int) -> None:
        """Each parameter group's learning rate at ``step``."""
        for g in self.optimizer.param_groups:
            g["lr"] = self.schedule.lr(g["base_lr"], step, g["name"])

    def _batch(self, stream: ResumableStream | None, wanted: bool) -> Any:
        return to_device(next(stream), self.device, self.channels_last) if wanted and stream else None

    def run(self, step: int) -> dict[str, float] | None:
        """Run step ``step`` (0-based); return its loss components (averaged over processes) and
        ``grad_norm``, or None if it was skipped."""
        plan = self.schedule.plan(step)
        self.set_lrs(step)
        content = self._batch(self.content_stream, plan.content)
        frames = self._batch(self.motion_stream, plan.motion)
        kc = self.split.content.accumulation if content is not None else 0
        km = self.split.motion.accumulation if frames is not None else 0
        steps = max(kc, km, 1)
        # micro-step i holds content micro-batch i - (steps - kc) and likewise for motion: both
        # streams end together, so the synchronising last pass always sees both
        content_parts = [None] * (steps - kc) + _chunks(content, kc)
        motion_parts = [None] * (steps - km) + _chunks(frames, km)
        micros, rng = self._first_pass(plan, content_parts, motion_parts, kc, km)
        self.forward.train()
        sums: dict[str, torch.Tensor] = {}
        ddp = isinstance(self.forward, nn.parallel.DistributedDataParallel)
        for i in range(steps):
            if rng is not None:
                restore_rng_state(rng[i], self.device)
            last = i == steps - 1
            sync = self.forward.no_sync() if ddp and not last else contextlib.nullcontext()
            with sync, freeze_running_stats(self.model, enabled=not last):
                with self.precision.autocast():
                    losses = self.forward(content_parts[i], motion_parts[i], plan, micros[i])
                total = losses["total"]
                (self.scaler.scale(total) if self.scaler is not None else total).backward()
            for key, value in losses.items():
                w = (
                    1.0
                    if key == "total"
                    else micros[i].content_weight
                    if key in CONTENT_TERMS
                    else micros[i].motion_weight
                )
                sums[key] = sums[key] + w * value.detach().float() if key in sums else w * value.detach().float()
        self._drop_unused_grads(content is not None, frames is not None)
        return self._finish(sums)

    def _first_pass(
        self, plan: StepPlan, content_parts: list, motion_parts: list, kc: int, km: int
    ) -> tuple[list[MicroBatch], list[dict[str, Any]] | None]:
        """Each micro-step's :class:`MicroBatch`; with accumulation, the gradient-free pass that
        gathers the whole batch's content embeddings and L_vc statistics first, and the RNG
        state at the start of each micro-step (to replay in the pass with gradient)."""
        world = distributed_world()
        weights = {"content_weight": 1.0 / max(kc, 1), "motion_weight": 1.0 / max(km, 1)}
        need_content = kc > 1
        need_vc = km > 1 and plan.vc and self.objective.cfg.vc_pooling == "batch"
        if not (need_content or need_vc):
            return [MicroBatch(**weights) for _ in content_parts], None
        rng: list[dict[str, Any]] = []
        e1, e2, stats = [], [], None
        self.objective.train()
        with torch.no_grad(), self.precision.autocast():
            for c, m in zip(content_parts, motion_parts):
                rng.append(capture_rng_state(self.device))
                if c is not None:  # the content encoder runs first in the objective's forward too
                    a, b = self.objective.content_embeddings(*c)
                    e1.append(a)
                    e2.append(b)
                if m is not None and need_vc:
                    part = self.objective.frame_statistics(*m)
                    stats = (
                        part
                        if stats is None
                        else [None if s is None else (s[0] + p[0], s[1] + p[1]) for s, p in zip(stats, part)]
                    )  # type: ignore[index]
        vc_global = all_reduce_statistics(stats) if stats is not None else None
        embeddings = (torch.cat(e1), torch.cat(e2)) if need_content else None
        micros = []
        for i, c in enumerate(content_parts):
            j = i - (len(content_parts) - kc)
            rows = (j * c[0].shape[0], (j + 1) * c[0].shape[0]) if c is not None else (0, 0)
            micros.append(
                MicroBatch(
                    **weights,
                    content_embeddings=embeddings if c is not None else None,
                    content_rows=rows,
                    content_scale=float(kc),
                    vc_global=vc_global,
                    vc_scale=float(km * world),
                )
            )
        return micros, rng

    def _drop_unused_grads(self, content: bool, motion: bool) -> None:
        """A component this step did not train keeps no gradient, so AdamW leaves it (and its
        moments) alone, as without DDP (under DDP it joined the graph with a zero term)."""
        model = self.objective.model  # (idle_parameters never reach the forward: their values do not matter)
        unused = [] if content else list(model.expander.parameters())
        unused += [] if motion else list(model.flow_head.parameters())
        for p in unused:
            p.grad = None

    def _finish(self, sums: dict[str, torch.Tensor]) -> dict[str, float] | None:
        """Clip, check and apply the accumulated gradients; one host synchronisation."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        # the global gradient norm (clipped to optim.grad_clip when set); a non-finite one, e.g. an
        # overflow in the backward pass, skips the step like a non-finite loss (identical on every
        # rank after DDP's all-reduce, so all ranks skip together)
        max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        keys = list(sums)
        vector = torch.stack([*(sums[k] for k in keys), grad_norm.detach().float().to(sums["total"].device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(vector)
            vector = vector / dist.get_world_size()
        values = dict(zip([*keys, "grad_norm"], vector.tolist(), strict=True))  # the step's one host sync
        finite = {k: v == v and abs(v) != float("inf") for k, v in values.items()}
        if not finite["total"]:
            return self._skip(values, finite)
        if self.scaler is not None:  # fp16: the scaler skips an overflowing step and lowers its scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif not finite["grad_norm"]:
            return self._skip(values, finite)
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_row = 0
        return values

    def _skip(self, values: dict[str, float], finite: dict[str, bool]) -> None:
        """Drop this step's gradients and count it, noting which terms were non-finite."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update()  # (after unscale_, the scaler expects an update)
        if self.nonfinite_in_row == 0:
            self.nonfinite_terms = set()
        self.nonfinite_terms.update(k for k in values if not finite[k])
        self.nonfinite_total += 1
        self.nonfinite_in_row += 1
        return None

    def check_streak(self, steps_done: int) -> None:
        """Raise :class:`TrainingDiverged`, naming the steps and every term that was non-finite
        in them, once ``max_nonfinite_in_row`` steps in a row were skipped (``steps_done``: the
        steps run so far, the skipped ones included)."""
        if self.nonfinite_in_row < self.max_nonfinite_in_row:
            return
        first = steps_done - self.nonfinite_in_row + 1
        raise TrainingDiverged(
            f"{self.nonfinite_in_row} non-finite losses or gradients in a row at step {steps_done} "
            f"(steps {first}-{steps_done} skipped; non-finite terms: {sorted(self.nonfinite_terms)}; "
            f"learning rates {[round(g['lr'], 8) for g in self.optimizer.param_groups]}). Skipped steps "
            f"leave the parameters as they were; the newest checkpoint is {_newest(self.run_dir)}. "
            "Try a lower learning rate, optim.grad_clip > 0, or check the data for NaNs."
        )


def nonfinite_tensors(model: nn.Module, distributed: bool) -> list[str]:
    """Names of the model's parameters and buffers that hold NaN or inf on any rank (a
    collective call when ``distributed``)."""
    items = [(k, v) for k, v in model.state_dict().items() if v.is_floating_point()]
    if not items:
        return []
    flags = torch.stack([torch.isfinite(v).all() for _, v in items]).to(torch.float32)
    if distributed:
        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    return [k for (k, _), ok in zip(items, flags.tolist(), strict=True) if not ok]


def parameters_diverged(bad: list[str], step: int, action: str, run_dir: Path) -> TrainingDiverged:
    """The error for non-finite tensors ``bad`` found at ``step``; ``action`` says what is then
    not done (e.g. "no checkpoint written")."""
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return TrainingDiverged(
        f"the parameters went non-finite by step {step}: NaN or inf in {len(bad)} model tensor(s) "
        f"({shown}); {action}. The newest checkpoint is {_newest(run_dir)}. Try a lower learning "
        "rate or optim.grad_clip > 0, or check the data for NaNs"
    )

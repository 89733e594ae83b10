"""One optimisation step, and the faults it watches for.

:class:`StepRunner` runs a step: the schedule's plan, learning rates, the batches, the forward
pass (bf16 autocast on CUDA), backward, gradient clipping and AdamW. A step whose loss or
gradient norm is non-finite is skipped (gradients dropped, parameters untouched) and counted;
:meth:`StepRunner.check_streak` stops the run with :class:`TrainingDiverged` after
``run.max_nonfinite_in_row`` of them in a row. :func:`nonfinite_tensors` and
:func:`parameters_diverged` catch parameters that went non-finite in a step that looked finite.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import latest_checkpoint
from .distributed import all_finite
from .schedule import Schedule
from .streams import ResumableStream

__all__ = ["StepRunner", "TrainingDiverged", "nonfinite_tensors", "parameters_diverged", "to_device"]


class TrainingDiverged(RuntimeError):
    """The parameters went non-finite, or too many non-finite losses came in a row."""


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (tensors, possibly nested in lists, tuples and dicts) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _newest(run_dir: Path) -> str:
    newest = latest_checkpoint(run_dir)
    return str(newest) if newest is not None else "none"


class StepRunner:
    """Runs the optimisation steps of one run and counts the skipped ones.

    Args:
        forward: the objective (or its DDP wrapper): ``forward(content, frames, plan)`` returns
            the loss components with ``total``.
        model: the model whose parameters the optimiser updates (for gradient clipping).
        grad_clip: max global gradient norm; 0 disables clipping.
        bf16: autocast the forward pass to bf16 (CUDA only).
        run_dir: the run folder, to name the newest checkpoint in a divergence report.
    """

    def __init__(
        self,
        *,
        forward: nn.Module,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        content_stream: ResumableStream | None,
        motion_stream: ResumableStream | None,
        device: torch.device,
        bf16: bool,
        grad_clip: float,
        max_nonfinite_in_row: int,
        run_dir: Path,
    ) -> None:
        self.forward, self.model, self.optimizer, self.schedule = forward, model, optimizer, schedule
        self.content_stream, self.motion_stream = content_stream, motion_stream
        self.device, self.bf16, self.grad_clip = device, bf16, grad_clip
        self.max_nonfinite_in_row, self.run_dir = max_nonfinite_in_row, run_dir
        self.nonfinite_total = 0  # skipped steps over the whole run (carried in checkpoints)
        self.nonfinite_in_row = 0
        self.nonfinite_terms: set[str] = set()  # the non-finite terms of the current streak

    def set_lrs(self, step: int) -> None:
        """Each parameter group's learning rate at ``step``."""
        for g in self.optimizer.param_groups:
            g["lr"] = self.schedule.lr(g["base_lr"], step, g["name"])

    def run(self, step: int) -> dict[str, float] | None:
        """Run step ``step`` (0-based); return its loss components, or None if it was skipped."""
        plan = self.schedule.plan(step)
        self.set_lrs(step)
        content = to_device(next(self.content_stream), self.device) if plan.content and self.content_stream else None
        frames = to_device(next(self.motion_stream), self.device) if plan.motion and self.motion_stream else None
        self.forward.train()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with autocast:
            losses = self.forward(content, frames, plan)
        total = losses["total"]
        if not all_finite(total):
            return self._skip(losses)
        total.backward()
        # the global gradient norm (clipped to optim.grad_clip when set); a non-finite one, e.g. a
        # bf16 overflow in the backward pass, skips the step like a non-finite loss (identical on
        # every rank after DDP's all-reduce, so all ranks skip together)
        max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not all_finite(grad_norm):
            return self._skip({"grad_norm": grad_norm})
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_row = 0
        return {k: float(v.detach()) for k, v in losses.items()}

    def _skip(self, values: dict[str, torch.Tensor]) -> None:
        """Drop this step's gradients and count it, noting which terms were non-finite."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.nonfinite_in_row == 0:
            self.nonfinite_terms = set()
        self.nonfinite_terms.update(k for k, v in values.items() if not torch.isfinite(v.detach()).all())
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

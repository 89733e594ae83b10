"""Learning-rate schedule and the two-phase stream schedule (paper, Table 5; docs/method.md#schedule)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mcjepa.train.config import TrainConfig

__all__ = ["StepPlan", "Schedule"]


@dataclass(frozen=True)
class StepPlan:
    """What one optimisation step does."""

    content: bool  # compute L_ssl on a content batch
    motion: bool  # compute the motion losses on a frame-pair batch
    vc: bool  # include L_vc in the motion losses
    occlusion: bool  # mask L_rec and L_cycle with the forward-backward occlusion check
    detach_encoder_for_motion: bool  # "flow estimator only": motion gradients stop at the features


class Schedule:
    """Per-step learning rates and stream switches.

    Learning rate: linear warm-up from 0 to each group's base LR over ``warmup_epochs``, then
    cosine decay to ``end_lr`` at the last step (docs/method.md#optimiser). Epoch boundaries are measured in steps:
    ``epoch(step) = step / steps_per_epoch``.
    """

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(1, round(cfg.schedule.epochs * steps_per_epoch))
        self.warmup_steps = min(round(cfg.optim.warmup_epochs * steps_per_epoch), self.total_steps)

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def lr(self, base_lr: float, step: int, group: str | None = None) -> float:
        """Learning rate of the parameter ``group`` (``"encoder"``, ``"flow_head"``, ...) with
        ``base_lr`` at ``step`` (0-based). The flow head's rate is further ramped up over
        ``optim.flow_head_warmup_epochs`` from the start of the motion stream (0 before it)."""
        rate = self._lr(base_lr, step)
        ramp = self.cfg.optim.flow_head_warmup_epochs
        if group == "flow_head" and ramp > 0:
            since = self.epoch(step) - self.cfg.schedule.motion_start_epoch
            rate *= min(1.0, max(0.0, since + 1.0 / self.steps_per_epoch) / ramp)
        return rate

    def _lr(self, base_lr: float, step: int) -> float:
        end = self.cfg.optim.end_lr
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps - 1)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def plan(self, step: int) -> StepPlan:
        """Which streams and terms are active at ``step``."""
        s = self.cfg.schedule
        epoch = self.epoch(step)
        content = s.content_enabled
        motion = s.motion_enabled and epoch >= s.motion_start_epoch
        if motion and content:
            if s.sampling == "batch_alternation":
                steps_in_phase = step - math.ceil(s.motion_start_epoch * self.steps_per_epoch)
                motion = steps_in_phase % 2 == 0
                content = not motion
            elif s.sampling == "epoch_alternation":
                epochs_in_phase = int(math.floor(epoch - s.motion_start_epoch))
                motion = epochs_in_phase % 2 == 0
                content = not motion
        vc = motion and self.cfg.loss.vc_mode != "off" and epoch >= s.vc_start_epoch
        occlusion = motion and self.cfg.loss.occlusion_masking and epoch >= s.occlusion_start_epoch
        return StepPlan(
            content=content,
            motion=motion,
            vc=vc,
            occlusion=occlusion,
            detach_encoder_for_motion=s.sampling == "frozen_encoder_flow",
        )

"""The training engine: one process on CPU or GPU, or many under ``torchrun`` (DDP).

:class:`Trainer` owns a run's state (step, wall time, checkpoints, resume) and its loop,
:meth:`Trainer.fit`, which calls the pieces that do the work:

* :mod:`~mcjepa.train.build`: the model, objective, optimiser, data streams and schedule;
* :mod:`~mcjepa.train.step`: one optimisation step (autocast at the hardware's precision,
  :mod:`~mcjepa.train.precision`; gradient accumulation over micro-batches with global batch
  statistics; optional gradient clipping; non-finite steps skipped and counted);
* :mod:`~mcjepa.train.metrics_log`: ``metrics.jsonl``, TensorBoard and progress (rank 0);
* :mod:`~mcjepa.train.evaluate`: held-out synthetic EPE and the content k-NN at the end;
* :mod:`~mcjepa.release.from_run`: the safetensors release, carrying the summary's metrics;
* :mod:`~mcjepa.train.resume` and :mod:`~mcjepa.train.checkpoint`: atomic checkpoints every N
  steps and an exact resume.

Faults: a run whose parameters go non-finite, or whose losses stay non-finite for
``run.max_nonfinite_in_row`` steps, stops with :class:`TrainingDiverged`, and no checkpoint or
release with non-finite values is ever written (:meth:`Trainer.save` checks). A resume falls back
past unreadable checkpoints, refuses a config that changes the model, data, schedule, loss or
optimiser unless allowed, truncates ``metrics.jsonl`` to the checkpoint's step and carries the
wall time across.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from mcjepa.release.from_run import release_metrics, write_release
from mcjepa.train.build import apply_optim_config, build_run, check_run_dir
from mcjepa.train.checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_state,
    latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from mcjepa.train.config import ConfigError, TrainConfig
from mcjepa.train.distributed import init_distributed
from mcjepa.train.evaluate import run_content_knn, run_synthetic_epe
from mcjepa.train.metrics_log import MetricsLog, Progress, truncate_metrics
from mcjepa.train.precision import apply_tf32, resolve_precision
from mcjepa.train.resume import RESUME_FREE_KEYS, check_config_change, config_changes, load_newest_intact
from mcjepa.train.step import StepRunner, TrainingDiverged, nonfinite_tensors, parameters_diverged
from mcjepa.utils.threads import set_threads

__all__ = [
    "RESUME_FREE_KEYS",
    "TrainingDiverged",
    "Trainer",
    "check_run_dir",
    "config_changes",
]


class Trainer:
    """Runs one training job into ``run_dir``.

    Args:
        cfg: the validated training config.
        run_dir: output folder (config, metrics, checkpoints, summary, release).
        resume: continue from the newest intact checkpoint in ``run_dir``.
        allow_config_change: on resume, accept a config that changes more than the keys in
            :data:`~mcjepa.train.resume.RESUME_FREE_KEYS` (every change is printed either way).
    """

    def __init__(
        self, cfg: TrainConfig, run_dir: str | Path, resume: bool = False, allow_config_change: bool = False
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist, self.device = init_distributed(cfg.run.device)
        if self.dist.is_main:
            check_run_dir(self.run_dir)
        try:
            set_threads(cfg.run.threads or None)  # 0: the shared default (mcjepa.utils.threads)
        except ValueError as exc:  # a bad OMP_NUM_THREADS
            raise ConfigError(f"run.threads: {exc}") from None
        self.precision = resolve_precision(cfg.run.precision, self.device)
        self.tf32 = apply_tf32(cfg.run.tf32, self.device)
        torch.manual_seed(cfg.run.seed + self.dist.rank)

        parts = build_run(cfg, self.dist, self.device)
        self.model_config, self.model, self.objective = parts.model_config, parts.model, parts.objective
        self.ddp = parts.forward
        self.optimizer, self.schedule = parts.optimizer, parts.schedule
        self.content_stream, self.motion_stream = parts.content_stream, parts.motion_stream
        self.split = parts.split
        self.runner = StepRunner(
            forward=self.ddp,
            objective=self.objective,
            model=self.model,
            optimizer=self.optimizer,
            schedule=self.schedule,
            content_stream=self.content_stream,
            motion_stream=self.motion_stream,
            device=self.device,
            split=self.split,
            precision=self.precision,
            channels_last=cfg.run.channels_last,
            grad_clip=cfg.optim.grad_clip,
            max_nonfinite_in_row=cfg.run.max_nonfinite_in_row,
            run_dir=self.run_dir,
        )
        self.step = 0
        self.elapsed_before = 0.0  # training seconds before this fit (carried in checkpoints)
        self._fit_start: float | None = None
        self.baseline_metrics: dict[str, float] = {}
        if resume:
            self._resume(allow_config_change)
        elif self.dist.is_main and latest_checkpoint(self.run_dir) is not None:
            raise ConfigError(f"{self.run_dir} already holds checkpoints: pass --resume, or choose a new --out")

    @property
    def nonfinite_total(self) -> int:
        """Steps skipped as non-finite so far, over every resume."""
        return self.runner.nonfinite_total

    # ------------------------------------------------------------------------------- state
    def _rank_rng_states(self) -> list[dict[str, Any]]:
        """Every rank's RNG states, in rank order (a collective call under torchrun): each rank
        draws its own dropout / drop-path masks, so an exact resume restores each its own."""
        state = capture_rng_state(self.device)
        if not self.dist.enabled:
            return [state]
        states: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(states, state)
        return states

    def _payload(self, rank_rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rank_rng": rank_rng,  # one entry per rank, rank 0 first
            "content_stream": self.content_stream.state_dict() if self.content_stream else None,
            "motion_stream": self.motion_stream.state_dict() if self.motion_stream else None,
            "nonfinite_total": self.nonfinite_total,
            "grad_scaler": self.runner.scaler.state_dict() if self.runner.scaler is not None else None,
            "elapsed_s": self.elapsed_s(),
            "baseline_metrics": self.baseline_metrics,
            "config": json.dumps(self.cfg.to_dict()),
            "model_config": json.dumps(self.model_config.to_dict()),
        }

    def elapsed_s(self) -> float:
        """Seconds spent in training loops so far, over every resume."""
        running = time.time() - self._fit_start if self._fit_start is not None else 0.0
        return self.elapsed_before + running

    def _note(self, message: str) -> None:
        if self.dist.is_main:
            tqdm.write(message)

    def _resume(self, allow_config_change: bool = False) -> None:
        path, state = load_newest_intact(self.run_dir, self._note, self.dist.is_main)
        check_config_change(path, state, self.cfg, self.model_config, allow_config_change, self._note)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"--resume: {path} does not fit this model: {reason}") from None
        apply_optim_config(self.optimizer, self.cfg.optim)
        self.step = int(state["step"])
        self.runner.nonfinite_total = int(state.get("nonfinite_total", 0))
        if self.runner.scaler is not None and state.get("grad_scaler"):
            self.runner.scaler.load_state_dict(state["grad_scaler"])
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.baseline_metrics = dict(state.get("baseline_metrics", {}))
        if self.content_stream and state.get("content_stream"):
            self.content_stream.load_state_dict(state["content_stream"])
        if self.motion_stream and state.get("motion_stream"):
            self.motion_stream.load_state_dict(state["motion_stream"])
        rank_rng = state["rank_rng"]
        if len(rank_rng) == self.dist.world_size:
            restore_rng_state(rank_rng[self.dist.rank], self.device)  # exact: each rank continues its own streams
        else:  # resumed on a different number of processes: deterministic, but not the same run
            restore_rng_state(rank_rng[0], self.device)
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()) + self.dist.rank)
            self._note(
                f"note: {path} was written by {len(rank_rng)} process(es), this run has "
                f"{self.dist.world_size}: RNG streams are re-derived, so the resume is not bit-exact"
            )
        if self.dist.is_main:
            dropped = truncate_metrics(self.run_dir, self.step)
            if dropped:
                self._note(
                    f"metrics.jsonl: dropped {dropped} record(s) after step {self.step} (the resumed run repeats them)"
                )
        self._note(f"resumed from {path} at step {self.step}")

    def check_finite(self, action: str) -> None:
        """Raise :class:`TrainingDiverged`, naming the step and the tensors, when any parameter or
        buffer is non-finite on any rank; ``action`` says what is then not done (e.g. "no
        checkpoint written")."""
        bad = nonfinite_tensors(self.model, self.dist.enabled)
        if bad:
            raise parameters_diverged(bad, self.step, action, self.run_dir)

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0) and return its path; the one place checkpoints are written.

        Raises:
            TrainingDiverged: a parameter or buffer is non-finite (nothing is written, so the last
                good checkpoint stays the newest).
        """
        self.check_finite("no checkpoint written")
        path = None
        rank_rng = self._rank_rng_states()
        if self.dist.is_main:
            path = save_checkpoint(self.run_dir, self.step, self._payload(rank_rng), keep_last=self.cfg.run.keep_last)
        if self.dist.enabled:
            dist.barrier()
        return path

    # --------------------------------------------------------------------------------- run
    def train_step(self) -> dict[str, float] | None:
        """Run one optimisation step; return its loss components, or None if it was skipped.

        Raises:
            TrainingDiverged: ``run.max_nonfinite_in_row`` steps in a row were skipped.
        """
        losses = self.runner.run(self.step)
        self.step += 1
        if losses is None:
            self.runner.check_streak(self.step)
        return losses

    def _write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {
            "train": self.cfg.to_dict(),
            "model": self.model_config.to_dict(),
            "world_size": self.dist.world_size,
            "content_split": self.split.content.describe(),
            "motion_split": self.split.motion.describe(),
            "precision": self.precision.name,
            "tf32": self.tf32,
            "steps_per_epoch": self.schedule.steps_per_epoch,
            "total_steps": self.schedule.total_steps,
        }
        (self.run_dir / "config.json").write_text(json.dumps(resolved, indent=2))

    def _step_limit(self, max_steps: int | None) -> int:
        limit = self.schedule.total_steps
        for cap in (max_steps, self.cfg.run.max_steps or None):
            if cap:
                limit = min(limit, cap)
        return limit

    def _log_record(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": round(self.schedule.epoch(self.step), 4),
            "lr": {g["name"]: g["lr"] for g in self.optimizer.param_groups},
            "nonfinite_skipped": self.nonfinite_total,
        }

    def evaluate(self) -> dict[str, float]:
        """The end-of-run metrics of the model as it is now (held-out synthetic EPE, prefixed
        ``trained_``, and the content k-NN check), as configured by the ``data.eval_*`` keys."""
        metrics = {f"trained_{k}": v for k, v in run_synthetic_epe(self.model, self.cfg).items()}
        metrics.update(run_content_knn(self.model, self.model_config, self.cfg, self.device))
        return metrics

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train until the end of the schedule (or ``max_steps`` / ``run.max_steps``).

        Returns a summary dict (also ``summary.json``): steps, wall time (training loops only,
        over every resume), skipped steps, final losses and, when enabled, held-out synthetic EPE
        of the untrained model, the trained model and zero flow, and the content k-NN. A run that
        reaches the end of its schedule writes the release (``run.export_release``), whose
        ``metrics`` are the summary's (:func:`~mcjepa.release.from_run.release_metrics`).

        Raises:
            TrainingDiverged: the parameters went non-finite (checked at every
                ``run.log_every``-th step that trained, and before anything is written), or
                ``run.max_nonfinite_in_row`` steps in a row were non-finite.
        """
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
        main, every = self.dist.is_main, self.cfg.run.log_every
        if main:
            self._write_config()
            if not self.baseline_metrics:
                base = run_synthetic_epe(self.model, self.cfg)
                self.baseline_metrics = {f"untrained_{k}": v for k, v in base.items()}
        limit = self._step_limit(max_steps)
        log = MetricsLog(self.run_dir, self.step, self.cfg.run.tensorboard) if main else None
        progress = Progress(limit, self.step, main, every)
        self._fit_start, last = time.time(), None
        while self.step < limit:
            losses = self.train_step()
            if losses is not None:
                last = losses
            progress.update(self.step, losses)
            if losses is not None and self.step % every == 0:
                # a step that trained but left NaN / inf behind (e.g. in BatchNorm statistics,
                # which the losses of later steps need not show); skipped steps are counted above
                self.check_finite("training stopped")
            if log is not None and losses is not None and (self.step % every == 0 or self.step == limit):
                log.write(self._log_record(), losses)
            if self.cfg.run.checkpoint_every > 0 and self.step % self.cfg.run.checkpoint_every == 0:
                self.save()
        progress.close()
        self.check_finite("no checkpoint or release written")
        if self.cfg.run.checkpoint_every > 0 and (
            latest_checkpoint(self.run_dir) is None or self.step % self.cfg.run.checkpoint_every
        ):
            self.save()
        self.elapsed_before, self._fit_start = self.elapsed_s(), None
        summary: dict[str, Any] = {
            "steps": self.step,
            "wall_time_s": round(self.elapsed_before, 2),
            "nonfinite_skipped": self.nonfinite_total,
            "last_losses": last,
        }
        if main:
            summary.update(self.baseline_metrics)
            summary.update(self.evaluate())
            if self.cfg.run.export_release and self.step >= self.schedule.total_steps:
                release = write_release(
                    self.model, self.run_dir, self.cfg, self.step, release_metrics(summary), self.dist.enabled
                )
                summary["release"] = str(release)
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if log is not None:
            log.close()
        if self.dist.enabled:
            self._record_rank_hashes()
            dist.barrier()
        return summary

    def _record_rank_hashes(self) -> None:
        """Write every rank's parameter digest to ``rank_param_hashes.json`` (a DDP sanity check:
        all ranks must hold identical parameters)."""
        digest = hashlib.sha256()
        for value in self.model.parameters():  # (BatchNorm running stats are per rank on CPU)
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        hashes: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(hashes, digest.hexdigest())
        if self.dist.is_main:
            (self.run_dir / "rank_param_hashes.json").write_text(json.dumps({str(i): h for i, h in enumerate(hashes)}))

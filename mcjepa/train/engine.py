"""The training engine: one process on CPU or GPU, or many under ``torchrun`` (DDP).

Responsibilities: build the model, optimiser, schedule and data streams from a
:class:`~mcjepa.train.config.TrainConfig`; run the steps (bf16 autocast on CUDA, optional
gradient clipping, non-finite steps skipped and counted); write atomic checkpoints every N steps
and resume exactly; log JSON lines (and TensorBoard when installed) on rank 0; at the end,
evaluate held-out synthetic EPE and export a safetensors release.

Faults: a run whose parameters go non-finite, or whose losses stay non-finite for
``run.max_nonfinite_in_row`` steps, stops with :class:`TrainingDiverged`, and no checkpoint or
release with non-finite values is ever written (:meth:`Trainer.save` checks). A resume falls back
past unreadable checkpoints, refuses a config that changes the model, data, schedule, loss or
optimiser unless allowed, truncates ``metrics.jsonl`` to the checkpoint's step and carries the
wall time across.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..config import ModelConfig
from ..io_atomic import atomic_write_bytes
from ..model import MCJEPA
from .checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_resumable,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .config import ConfigError, TrainConfig
from .data import build_content_stream, build_motion_stream
from .distributed import all_finite, init_distributed
from .objective import MCJEPAObjective
from .schedule import Schedule

__all__ = ["TrainingDiverged", "Trainer", "build_model_config", "check_run_dir", "config_changes"]

# Keys a resume may change freely: where and how the run executes, how it logs, and the
# end-of-run evaluation. Any other change (model, data, schedule, loss, optimiser, seed) makes the
# resumed run differ from an uninterrupted one and needs --allow-config-change.
RESUME_FREE_KEYS = frozenset(
    {
        "name",
        "run.device",
        "run.bf16",
        "run.checkpoint_every",
        "run.keep_last",
        "run.log_every",
        "run.max_nonfinite_in_row",
        "run.tensorboard",
        "run.export_release",
        "run.max_steps",
        "run.threads",
        "data.num_workers",  # every sample is seeded by its position: any worker count, same batches
    }
)
RESUME_FREE_PREFIXES = ("data.eval_",)


class TrainingDiverged(RuntimeError):
    """The parameters went non-finite, or too many non-finite losses came in a row."""


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


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The ``(dotted key, old, new)`` differences of two config dicts, values as JSON (``<unset>``
    where a key is missing); tables are compared key by key, lists as a whole."""
    a, b = _flatten(old), _flatten(new)
    missing = "<unset>"
    return [
        (k, json.dumps(a[k]) if k in a else missing, json.dumps(b[k]) if k in b else missing)
        for k in sorted(set(a) | set(b))
        if a.get(k, missing) != b.get(k, missing)
    ]


def _resume_free(key: str) -> bool:
    return key in RESUME_FREE_KEYS or key.startswith(RESUME_FREE_PREFIXES)


def build_model_config(cfg: TrainConfig) -> ModelConfig:
    """The architecture: the named variant with the config's overrides applied
    (:meth:`mcjepa.train.config.ModelSection.resolve`)."""
    return cfg.model.resolve()


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """Runs one training job into ``run_dir``.

    Args:
        cfg: the validated training config.
        run_dir: output folder (config, metrics, checkpoints, release).
        resume: continue from the newest intact checkpoint in ``run_dir``.
        allow_config_change: on resume, accept a config that changes more than the keys in
            :data:`RESUME_FREE_KEYS` (every change is printed either way).
    """

    def __init__(
        self, cfg: TrainConfig, run_dir: str | Path, resume: bool = False, allow_config_change: bool = False
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist, self.device = init_distributed(cfg.run.device)
        if self.dist.is_main:
            check_run_dir(self.run_dir)
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        self.use_bf16 = cfg.run.bf16 and self.device.type == "cuda"
        torch.manual_seed(cfg.run.seed + self.dist.rank)

        self.model_config = build_model_config(cfg)
        model = MCJEPA(self.model_config, flow_head=True, expander=True).to(self.device)
        if self.dist.enabled:
            if self.device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            # same initial weights everywhere
            for p in model.state_dict().values():
                dist.broadcast(p, src=0)
        self.model = model
        self.objective = MCJEPAObjective(model, cfg.loss)
        self.ddp: nn.Module = self.objective
        if self.dist.enabled:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # content-only steps leave the flow head unused
            )
        o = cfg.optim
        groups = [
            {"params": list(model.encoder.parameters()), "base_lr": o.lr_encoder, "name": "encoder"},
            {"params": list(model.flow_head.parameters()), "base_lr": o.lr_flow_head, "name": "flow_head"},
            {"params": list(model.expander.parameters()), "base_lr": o.lr_expander, "name": "expander"},
        ]
        for g in groups:
            g["lr"] = g["base_lr"]
        self.optimizer = torch.optim.AdamW(groups, betas=tuple(o.betas), weight_decay=o.weight_decay)

        self.content_stream = None
        if cfg.schedule.content_enabled:
            self.content_stream, content_len = build_content_stream(cfg, self.dist)
        else:
            content_len = 0
        self.motion_stream = None
        if cfg.schedule.motion_enabled:
            self.motion_stream, motion_batches = build_motion_stream(cfg, self.dist)
        else:
            motion_batches = 0
        steps = cfg.schedule.steps_per_epoch
        if steps <= 0:
            steps = content_len // cfg.data.content_batch_size if content_len else motion_batches
        if steps <= 0:
            raise ConfigError("schedule.steps_per_epoch resolved to 0: the content data is smaller than one batch")
        self.schedule = Schedule(cfg, steps)
        self.step = 0
        self.nonfinite_total = 0
        self.nonfinite_in_row = 0
        self.nonfinite_terms: set[str] = set()  # the non-finite terms of the current streak
        self.elapsed_before = 0.0  # training seconds before this fit (carried in checkpoints)
        self._fit_start: float | None = None
        self.baseline_metrics: dict[str, float] = {}
        if resume:
            self._resume(allow_config_change)
        elif self.dist.is_main and latest_checkpoint(self.run_dir) is not None:
            raise ConfigError(f"{self.run_dir} already holds checkpoints: pass --resume, or choose a new --out")

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
            "format": "mcjepa-train-checkpoint-v1",
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rank_rng": rank_rng,  # one entry per rank, rank 0 first
            "content_stream": self.content_stream.state_dict() if self.content_stream else None,
            "motion_stream": self.motion_stream.state_dict() if self.motion_stream else None,
            "nonfinite_total": self.nonfinite_total,
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

    def _load_newest_intact(self) -> tuple[Path, dict[str, Any]]:
        """The newest checkpoint that loads, moving unreadable newer ones aside (``.corrupt``)."""
        candidates = list_checkpoints(self.run_dir)
        if not candidates:
            raise ConfigError(f"--resume: no checkpoint found in {self.run_dir / 'checkpoints'}")
        problems = []
        for path in candidates:
            try:
                # on the CPU: load_state_dict moves each tensor to its parameter's device
                # (optimizer step counters stay on the CPU, where AdamW expects them)
                state = load_checkpoint(path, map_location="cpu")
                check_resumable(path, state)
            except CheckpointError as exc:
                problems.append(str(exc))
                self._note(f"warning: {exc}")
                if self.dist.is_main:
                    aside = path.with_name(path.name + ".corrupt")
                    with contextlib.suppress(OSError):
                        path.replace(aside)
                        self._note(f"         moved aside to {aside} (kept for inspection)")
                continue
            if problems:
                self._note(f"falling back to {path}, the newest intact checkpoint")
            return path, state
        raise ConfigError(f"--resume: none of the checkpoints in {self.run_dir / 'checkpoints'} loads: {problems}")

    def _check_config_change(self, path: Path, state: dict[str, Any], allow: bool) -> None:
        """Print every difference between the checkpoint's config and this one; refuse those
        outside :data:`RESUME_FREE_KEYS` unless ``allow``."""
        old = json.loads(state.get("config") or "{}")
        changes = config_changes(old, json.loads(json.dumps(self.cfg.to_dict())))
        if not any(k.startswith("model.") for k, _, _ in changes) and state.get("model_config"):
            # the same model keys, but this version defines the variant differently
            old_model = json.loads(state["model_config"])
            new_model = json.loads(json.dumps(self.model_config.to_dict()))
            changes += [(f"model (resolved).{k}", a, b) for k, a, b in config_changes(old_model, new_model)]
        if not changes:
            return
        refused = [c for c in changes if not _resume_free(c[0])]
        lines = [f"  {k}: {a} -> {b}{'' if _resume_free(k) else '   [changes the run]'}" for k, a, b in changes]
        self._note(f"resume: the config differs from {path.name}'s:\n" + "\n".join(lines))
        if refused and not allow:
            raise ConfigError(
                f"--resume: {len(refused)} change(s) to the model, data, schedule, loss, optimiser or seed since "
                f"{path.name} ({', '.join(k for k, _, _ in refused)}); a resumed run would no longer match an "
                "uninterrupted one. Resume with the original --config and --set values, or pass "
                "--allow-config-change to continue with the new ones"
            )
        if refused:
            self._note("resume: continuing with the changed config (--allow-config-change)")

    def _apply_optim_config(self) -> None:
        """Set each parameter group's base rate, weight decay and betas from the config:
        ``optimizer.load_state_dict`` restores the checkpoint's, which differ after an allowed
        config change (and are the same numbers otherwise)."""
        o = self.cfg.optim
        base = {"encoder": o.lr_encoder, "flow_head": o.lr_flow_head, "expander": o.lr_expander}
        for g in self.optimizer.param_groups:
            g["base_lr"] = base[g["name"]]
            g["weight_decay"] = o.weight_decay
            g["betas"] = tuple(o.betas)

    def _truncate_metrics(self, step: int) -> None:
        """Drop the ``metrics.jsonl`` records after ``step``: the resumed run writes them again."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        kept, dropped = [], 0
        for line in path.read_text().splitlines():
            try:
                keep = int(json.loads(line)["step"]) <= step
            except (ValueError, KeyError, TypeError):  # a line cut short by the interruption
                keep = False
            if keep:
                kept.append(line + "\n")
            else:
                dropped += 1
        if dropped:
            atomic_write_bytes(path, "".join(kept).encode())
            self._note(f"metrics.jsonl: dropped {dropped} record(s) after step {step} (the resumed run repeats them)")

    def _resume(self, allow_config_change: bool = False) -> None:
        path, state = self._load_newest_intact()
        self._check_config_change(path, state, allow_config_change)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"--resume: {path} does not fit this model: {reason}") from None
        self._apply_optim_config()
        self.step = int(state["step"])
        self.nonfinite_total = int(state.get("nonfinite_total", 0))
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
            self._truncate_metrics(self.step)
        self._note(f"resumed from {path} at step {self.step}")

    def _nonfinite_tensors(self) -> list[str]:
        """Names of the model's parameters and buffers that hold NaN or inf on any rank (a
        collective call under torchrun)."""
        items = [(k, v) for k, v in self.model.state_dict().items() if v.is_floating_point()]
        if not items:
            return []
        flags = torch.stack([torch.isfinite(v).all() for _, v in items]).to(torch.float32)
        if self.dist.enabled:
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        return [k for (k, _), ok in zip(items, flags.tolist(), strict=True) if not ok]

    def check_finite(self, action: str) -> None:
        """Raise :class:`TrainingDiverged`, naming the step and the tensors, when any parameter or
        buffer is non-finite; ``action`` says what is then not done (e.g. "no checkpoint written")."""
        bad = self._nonfinite_tensors()
        if not bad:
            return
        newest = latest_checkpoint(self.run_dir)
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise TrainingDiverged(
            f"the parameters went non-finite by step {self.step}: NaN or inf in {len(bad)} model tensor(s) "
            f"({shown}); {action}. The newest checkpoint is "
            f"{newest if newest is not None else 'none'}. Try a lower learning rate or optim.grad_clip > 0, "
            "or check the data for NaNs"
        )

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

    # -------------------------------------------------------------------------------- step
    def _set_lrs(self) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.schedule.lr(g["base_lr"], self.step, g["name"])

    def _skip_nonfinite(self, values: dict[str, torch.Tensor]) -> None:
        """Drop this step's gradients, count it, and stop after too many in a row (naming the
        steps and every term that was non-finite in them)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.nonfinite_in_row == 0:
            self.nonfinite_terms = set()
        self.nonfinite_terms.update(k for k, v in values.items() if not torch.isfinite(v.detach()).all())
        self.nonfinite_total += 1
        self.nonfinite_in_row += 1
        self.step += 1
        if self.nonfinite_in_row >= self.cfg.run.max_nonfinite_in_row:
            first = self.step - self.nonfinite_in_row + 1
            newest = latest_checkpoint(self.run_dir)
            raise TrainingDiverged(
                f"{self.nonfinite_in_row} non-finite losses or gradients in a row at step {self.step} "
                f"(steps {first}-{self.step} skipped; non-finite terms: {sorted(self.nonfinite_terms)}; "
                f"learning rates {[round(g['lr'], 8) for g in self.optimizer.param_groups]}). Skipped steps "
                f"leave the parameters as they were; the newest checkpoint is "
                f"{newest if newest is not None else 'none'}. Try a lower learning rate, optim.grad_clip > 0, "
                "or check the data for NaNs."
            )
        return None

    def train_step(self) -> dict[str, float] | None:
        """Run one optimisation step; return its loss components, or None if it was skipped."""
        plan = self.schedule.plan(self.step)
        self._set_lrs()
        content = _to_device(next(self.content_stream), self.device) if plan.content and self.content_stream else None
        frames = _to_device(next(self.motion_stream), self.device) if plan.motion and self.motion_stream else None
        self.ddp.train()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.use_bf16 else contextlib.nullcontext()
        with autocast:
            losses = self.ddp(content, frames, plan)
        total = losses["total"]
        if not all_finite(total):
            return self._skip_nonfinite(losses)
        total.backward()
        # the global gradient norm (clipped to optim.grad_clip when set); a non-finite one, e.g. a
        # bf16 overflow in the backward pass, skips the step like a non-finite loss (identical on
        # every rank after DDP's all-reduce, so all ranks skip together)
        max_norm = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not all_finite(grad_norm):
            return self._skip_nonfinite({"grad_norm": grad_norm})
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_row = 0
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    # --------------------------------------------------------------------------------- run
    def _write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {
            "train": self.cfg.to_dict(),
            "model": self.model_config.to_dict(),
            "world_size": self.dist.world_size,
            "steps_per_epoch": self.schedule.steps_per_epoch,
            "total_steps": self.schedule.total_steps,
        }
        (self.run_dir / "config.json").write_text(json.dumps(resolved, indent=2))

    def _evaluate_synthetic(self) -> dict[str, float]:
        n = self.cfg.data.eval_synthetic_pairs
        if n <= 0:
            return {}
        from .evaluate import synthetic_epe

        return synthetic_epe(
            self.model,
            n,
            tuple(self.cfg.data.eval_synthetic_size),
            seed=10_000 + self.cfg.run.seed,
            motion=self.cfg.data.eval_synthetic_motion,
            photos=self.cfg.data.eval_synthetic_photos or None,
        )

    def _evaluate_content(self) -> dict[str, float]:
        d = self.cfg.data
        if d.eval_content_images <= 0 and not d.eval_fashion_mnist_root:
            return {}
        from .evaluate import content_knn

        # the baseline: the same variant, randomly initialised with the run's seed (on one process
        # that is exactly this run's starting encoder: a before / after comparison)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.run.seed)
            random_encoder = MCJEPA(self.model_config, flow_head=False).encoder.to(self.device)
        return content_knn(
            self.model.encoder,
            random_encoder,
            d.eval_content_images,
            seed=self.cfg.run.seed,
            fashion_mnist_root=d.eval_fashion_mnist_root,
        )

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train until the end of the schedule (or ``max_steps`` / ``run.max_steps``).

        Returns a summary dict: steps, wall time (training loops only, over every resume), skipped
        steps, final losses and, when enabled, held-out synthetic EPE of the untrained model, the
        trained model and zero flow.

        Raises:
            TrainingDiverged: the parameters went non-finite (checked at every
                ``run.log_every``-th step that trained, and before anything is written), or
                ``run.max_nonfinite_in_row`` steps in a row were non-finite.
        """
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
        main = self.dist.is_main
        if main:
            self._write_config()
            if not self.baseline_metrics:
                base = self._evaluate_synthetic()
                self.baseline_metrics = {f"untrained_{k}": v for k, v in base.items()}
        limit = self.schedule.total_steps
        for cap in (max_steps, self.cfg.run.max_steps or None):
            if cap:
                limit = min(limit, cap)
        writer = _maybe_tensorboard(self.run_dir, self.step) if main and self.cfg.run.tensorboard else None
        log_path = self.run_dir / "metrics.jsonl"
        progress = _Progress(limit, self.step, main, self.cfg.run.log_every)
        self._fit_start, last = time.time(), None
        while self.step < limit:
            losses = self.train_step()
            if losses is not None:
                last = losses
            progress.update(self.step, losses)
            if losses is not None and self.step % self.cfg.run.log_every == 0:
                # a step that trained but left NaN / inf behind (e.g. in BatchNorm statistics,
                # which the losses of later steps need not show); skipped steps are counted above
                self.check_finite("training stopped")
            if main and losses is not None and (self.step % self.cfg.run.log_every == 0 or self.step == limit):
                record = {
                    "step": self.step,
                    "epoch": round(self.schedule.epoch(self.step), 4),
                    "lr": {g["name"]: g["lr"] for g in self.optimizer.param_groups},
                    "nonfinite_skipped": self.nonfinite_total,
                    **losses,
                }
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if writer is not None:
                    for k, v in losses.items():
                        writer.add_scalar(f"loss/{k}", v, self.step)
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
            summary.update({f"trained_{k}": v for k, v in self._evaluate_synthetic().items()})
            summary.update(self._evaluate_content())
            if self.cfg.run.export_release and self.step >= self.schedule.total_steps:
                metrics = {k: v for k, v in summary.items() if isinstance(v, float) and k != "wall_time_s"}
                summary["release"] = str(self._export(metrics))
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            if writer is not None:
                writer.close()
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

    def _export(self, metrics: dict[str, float]) -> Path:
        """Write the release; ``metrics`` (the trained model's held-out figures and their
        baselines, as in ``summary.json``) go into its metadata."""
        from ..weights import save_release

        out = self.run_dir / "release"
        metadata = {
            "trained_on": self.cfg.name,
            "steps": self.step,
            "train_config": self.cfg.to_dict(),
            "metrics": dict(metrics),
        }
        model = copy.deepcopy(self.model).cpu()
        if self.dist.enabled:
            model = _revert_sync_bn(model)
        save_release(model, out, components=("encoder", "flow_head"), metadata=metadata)
        return out


_SHOWN = ("total", "ssl", "motion", "reg", "rec")


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


class _Progress:
    """Training progress on stderr (rank 0): a tqdm bar on a terminal; otherwise (a log file, a
    pipe, a batch system) one plain line every ``every`` steps and at the end, with no carriage
    returns, so that logs stay readable and their length bounded by steps / every."""

    def __init__(self, total: int, initial: int, enabled: bool, every: int) -> None:
        self.total, self.every, self.enabled = total, every, enabled
        self.bar = None
        if enabled and _stderr_is_terminal():
            self.bar = tqdm(total=total, initial=initial, desc="mcjepa-train", dynamic_ncols=True, file=sys.stderr)
        self.start, self.initial = time.time(), initial
        self.losses: dict[str, float] | None = None

    def update(self, step: int, losses: dict[str, float] | None) -> None:
        if losses is not None:
            self.losses = losses
        shown = {k: v for k, v in (self.losses or {}).items() if k in _SHOWN}
        at_line = step % self.every == 0 or step == self.total
        if self.bar is not None:
            self.bar.update(1)
            if at_line and losses is not None:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()})
        elif self.enabled and at_line:
            seconds = time.time() - self.start
            rate = (step - self.initial) / seconds if seconds > 0 else 0.0
            eta = (self.total - step) / rate if rate > 0 else 0.0
            text = " ".join(f"{k} {v:.4g}" for k, v in shown.items())
            skipped = "" if losses is not None else " (this step skipped: non-finite)"
            print(
                f"mcjepa-train: step {step}/{self.total} ({100 * step / self.total:.0f}%) "
                f"{rate:.2f} steps/s, eta {_duration(eta)} | {text}{skipped}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _revert_sync_bn(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            bn = nn.BatchNorm1d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            bn.load_state_dict(child.state_dict())
            setattr(module, name, bn)
        else:
            _revert_sync_bn(child)
    return module


def _maybe_tensorboard(run_dir: Path, step: int = 0) -> Any:
    """A TensorBoard writer, or None without the package; on a resume (``step`` > 0) the events
    logged after the checkpoint are purged, as in metrics.jsonl."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=step or None)

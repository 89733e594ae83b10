"""Resuming a run: finding the newest checkpoint that loads, and deciding whether the config
given now may continue it (:data:`RESUME_FREE_KEYS`). Restoring the state itself is
:meth:`mcjepa.train.engine.Trainer` 's job (it owns the model, optimiser and streams)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcjepa.architecture import ModelConfig
from mcjepa.train.checkpoint import CheckpointError, check_resumable, list_checkpoints, load_checkpoint
from mcjepa.train.config import ConfigError, TrainConfig

__all__ = ["RESUME_FREE_KEYS", "RESUME_FREE_PREFIXES", "check_config_change", "config_changes", "load_newest_intact"]

# Keys a resume may change freely: where and how the run executes, how it logs, and the
# end-of-run evaluation. Any other change (model, data, schedule, loss, optimiser, seed) makes the
# resumed run differ from an uninterrupted one and needs --allow-config-change.
RESUME_FREE_KEYS = frozenset(
    {
        "name",
        "run.device",
        "run.bf16",  # (the precision key of earlier versions)
        "run.precision",
        "run.tf32",
        "run.channels_last",
        "run.compile",
        "run.checkpoint_every",
        "run.keep_last",
        "run.log_every",
        "run.max_nonfinite_in_row",
        "run.tensorboard",
        "run.export_release",
        "run.max_steps",
        "run.threads",
        "data.num_workers",  # every sample is seeded by its position: any worker count, same batches
        # micro-batching changes memory and time, not the objective (batch statistics stay global)
        "data.content_max_per_device",
        "data.motion_max_per_device",
    }
)
RESUME_FREE_PREFIXES = ("data.eval_",)


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


def load_newest_intact(run_dir: Path, note: Callable[[str], None], is_main: bool) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint in ``run_dir`` that loads, and its contents; unreadable newer ones
    are moved aside (``.corrupt``, by rank 0) and reported through ``note``.

    Raises:
        ConfigError: there is no checkpoint, or none loads.
    """
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise ConfigError(f"--resume: no checkpoint found in {run_dir / 'checkpoints'}")
    problems = []
    for path in candidates:
        try:
            # on the CPU: load_state_dict moves each tensor to its parameter's device
            # (optimizer step counters stay on the CPU, where AdamW expects them)
            state = load_checkpoint(path, map_location="cpu")
            check_resumable(path, state)
        except CheckpointError as exc:
            problems.append(str(exc))
            note(f"warning: {exc}")
            if is_main:
                aside = path.with_name(path.name + ".corrupt")
                with contextlib.suppress(OSError):
                    path.replace(aside)
                    note(f"         moved aside to {aside} (kept for inspection)")
            continue
        if problems:
            note(f"falling back to {path}, the newest intact checkpoint")
        return path, state
    raise ConfigError(f"--resume: none of the checkpoints in {run_dir / 'checkpoints'} loads: {problems}")


def check_config_change(
    path: Path,
    state: dict[str, Any],
    cfg: TrainConfig,
    model_config: ModelConfig,
    allow: bool,
    note: Callable[[str], None],
) -> None:
    """Report every difference between the checkpoint's config and ``cfg`` through ``note``;
    refuse those outside :data:`RESUME_FREE_KEYS` unless ``allow``.

    Raises:
        ConfigError: a refused change, listing the keys.
    """
    old = json.loads(state.get("config") or "{}")
    changes = config_changes(old, json.loads(json.dumps(cfg.to_dict())))
    if not any(k.startswith("model.") for k, _, _ in changes) and state.get("model_config"):
        # the same model keys, but this version defines the variant differently
        old_model = json.loads(state["model_config"])
        new_model = json.loads(json.dumps(model_config.to_dict()))
        changes += [(f"model (resolved).{k}", a, b) for k, a, b in config_changes(old_model, new_model)]
    if not changes:
        return
    refused = [c for c in changes if not _resume_free(c[0])]
    lines = [f"  {k}: {a} -> {b}{'' if _resume_free(k) else '   [changes the run]'}" for k, a, b in changes]
    note(f"resume: the config differs from {path.name}'s:\n" + "\n".join(lines))
    if refused and not allow:
        raise ConfigError(
            f"--resume: {len(refused)} change(s) to the model, data, schedule, loss, optimiser or seed since "
            f"{path.name} ({', '.join(k for k, _, _ in refused)}); a resumed run would no longer match an "
            "uninterrupted one. Resume with the original --config and --set values, or pass "
            "--allow-config-change to continue with the new ones"
        )
    if refused:
        note("resume: continuing with the changed config (--allow-config-change)")

"""What a run writes as it trains (rank 0): ``metrics.jsonl`` records, TensorBoard scalars when
the package is installed, and progress on stderr."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mcjepa.utils.atomic import atomic_write_bytes
from mcjepa.utils.progress import is_terminal

__all__ = ["METRICS_FILE", "MetricsLog", "Progress", "truncate_metrics"]

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON record per logged step to ``run_dir/metrics.jsonl`` and, with
    ``tensorboard``, the losses to ``run_dir/tensorboard`` (events after ``step`` purged, as on a
    resume)."""

    def __init__(self, run_dir: Path, step: int, tensorboard: bool) -> None:
        self.path = run_dir / METRICS_FILE
        self.writer = _maybe_tensorboard(run_dir, step) if tensorboard else None

    def write(self, record: dict[str, Any], losses: dict[str, float]) -> None:
        """Append ``record`` (with ``step``) and ``losses`` as one line; the losses also go to
        TensorBoard."""
        with open(self.path, "a") as fh:
            fh.write(json.dumps({**record, **losses}) + "\n")
        if self.writer is not None:
            for k, v in losses.items():
                self.writer.add_scalar(f"loss/{k}", v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Drop the ``metrics.jsonl`` records after ``step`` (a resumed run writes them again) and
    return how many were dropped."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return 0
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
    return dropped


def _maybe_tensorboard(run_dir: Path, step: int = 0) -> Any:
    """A TensorBoard writer, or None without the package; on a resume (``step`` > 0) the events
    logged after the checkpoint are purged, as in metrics.jsonl."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=step or None)


_SHOWN = ("total", "ssl", "motion", "reg", "rec")


class Progress:
    """Training progress on stderr (rank 0): a tqdm bar on a terminal; otherwise (a log file, a
    pipe, a batch system) one plain line every ``every`` steps and at the end, with no carriage
    returns, so that logs stay readable and their length bounded by steps / every."""

    def __init__(self, total: int, initial: int, enabled: bool, every: int) -> None:
        self.total, self.every, self.enabled = total, every, enabled
        self.bar = None
        if enabled and is_terminal(sys.stderr):
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

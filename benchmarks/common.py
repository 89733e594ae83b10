"""Shared helpers for the benchmarks: devices, timing, peak memory, tables and JSON output.

Timing rule used everywhere: ``warmup`` untimed calls, then ``repeats`` timed calls, each
bracketed by ``torch.cuda.synchronize()`` on CUDA; the reported latency is the median in
milliseconds. Memory: on CUDA the peak of ``torch.cuda.max_memory_allocated`` during the timed
calls (bytes allocated by tensors, after ``reset_peak_memory_stats``); on CPU the growth of the
process's peak resident set size (``resource.getrusage(...).ru_maxrss``) across the measurement,
which is only a lower bound (0 when an earlier measurement already reached a higher peak).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mcjepa.architecture import ModelConfig, model_config
from mcjepa.utils.devices import DeviceError
from mcjepa.utils.devices import resolve_device as _resolve_device

__all__ = [
    "CPU_NOTE",
    "Measurement",
    "add_common_args",
    "autocast",
    "build_variant",
    "environment",
    "measure",
    "parse_size",
    "print_table",
    "resolve_device",
    "run_json_child",
    "setup_threads",
    "write_json",
]

CPU_NOTE = (
    "CPU timings are indicative only: taken on a shared machine (2 cores shared with other jobs) "
    "unless stated otherwise"
)


def run_json_child(cmd: list[str], env: dict[str, str]) -> dict:
    """Run one benchmark setting in a child process; returns the row it prints last, as JSON."""
    import subprocess

    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``436x1024``) into ``(H, W)`` pixels."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or min(int(p) for p in parts) < 1:
        raise argparse.ArgumentTypeError(f"expected a size as HxW with positive integers (e.g. 436x1024), got {text!r}")
    return int(parts[0]), int(parts[1])


def resolve_device(name: str) -> torch.device:
    """:func:`mcjepa.utils.devices.resolve_device` for ``--device``; ``auto`` picks CUDA when present.

    Raises ``SystemExit`` with its message (e.g. when CUDA is asked for but absent)."""
    try:
        return _resolve_device(name, option="--device")
    except DeviceError as exc:
        raise SystemExit(str(exc)) from None


def autocast(device: torch.device, dtype: str) -> AbstractContextManager:
    """``torch.autocast`` to bfloat16 for ``dtype == "bf16"`` (CUDA or CPU), else a no-op."""
    if dtype == "fp32":
        return nullcontext()
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")


def build_variant(name: str) -> ModelConfig:
    """Model config for a variant name, optionally with ``+s4`` (the head stops at stride 4,
    ``finest_level=1``: the documented speed knob), e.g. ``convnext_t+s4``."""
    base, _, suffix = name.partition("+")
    cfg = model_config(base)
    if suffix == "":
        return cfg
    if suffix == "s4":
        return replace(cfg, flow_head=replace(cfg.flow_head, finest_level=1))
    raise ValueError(f"unknown variant suffix {suffix!r} in {name!r}; the only one is '+s4'")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


class Measurement(dict):
    """Result of :func:`measure`: ``median_ms``, ``min_ms``, ``times_ms``, ``memory_bytes`` and
    ``memory_kind`` (``cuda_max_allocated`` or ``cpu_peak_rss_delta``)."""


def measure(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> Measurement:
    """Time ``fn`` (see module docstring for the rule) and record peak memory.

    Returns a :class:`Measurement` with latencies in milliseconds and memory in bytes."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    rss_before = _peak_rss_bytes()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    if device.type == "cuda":
        mem, kind = int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    else:
        mem, kind = max(0, _peak_rss_bytes() - rss_before), "cpu_peak_rss_delta"
    return Measurement(
        median_ms=statistics.median(times), min_ms=min(times), times_ms=times, memory_bytes=mem, memory_kind=kind
    )


def environment(device: torch.device) -> dict[str, Any]:
    """Describe the machine: torch version, device name, CPU count and threads, a CPU caveat."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        # fp32 convolutions run in TF32 when the first is True (torch's default), fp32 matmuls when the
        # second is (torch's default: False, full fp32)
        from mcjepa.train.precision import tf32_state

        info["matmul_allow_tf32"], info["cudnn_allow_tf32"] = tf32_state()
    else:
        info["device_name"] = platform.processor() or platform.machine()
        info["note"] = CPU_NOTE
    return info


def add_common_args(parser: argparse.ArgumentParser, repeats: int = 5, warmup: int = 2) -> None:
    """Add ``--device``, ``--repeats``, ``--warmup``, ``--threads`` and ``--out``."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when present)")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs; the median is reported")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")


def setup_threads(threads: int) -> None:
    """Set torch's CPU thread count when ``threads > 0``."""
    if threads > 0:
        torch.set_num_threads(threads)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> str:
    """Print ``rows`` as a Markdown table with the given columns; returns the text."""
    lines = []
    if title:
        lines.append(f"\n{title}")
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: Path | None, benchmark: str, args: argparse.Namespace, device: torch.device, rows: list) -> dict:
    """Assemble ``{"benchmark", "args", "environment", "results"}``, write it to ``path`` when
    given, and return it."""
    payload = {
        "benchmark": benchmark,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment(device),
        "results": rows,
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {path}")
    return payload

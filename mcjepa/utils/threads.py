"""The one place CPU threads are chosen: every command (``--threads N``; ``run.threads`` for
training) and the benchmarks set torch's intra-op thread count here.

The rule, in order:

1. an explicit count (``--threads N``, ``run.threads = N``), N >= 1;
2. else ``OMP_NUM_THREADS`` when it is set to a positive integer (so ``torchrun``, which sets it
   to 1 per process, and a user's shell habit both keep working);
3. else :func:`default_threads`: half the CPUs this process may run on, at least 1.

Why half, not torch's default (one per core): torch's OpenMP threads spin while they wait for each
other, so on a machine where other processes keep cores busy one slow thread holds up all the
others. Half the cores leaves room for one other job, at a cost in speed on an idle machine
(measured with ``benchmarks/threads.py``: docs/cli.md#threads).

:func:`mcjepa.flow.estimate` itself never changes the thread count: it runs with whatever
``torch.get_num_threads()`` is (set it with :func:`set_threads` or ``torch.set_num_threads``).
"""

from __future__ import annotations

import os

import torch

__all__ = ["THREADS_ENV", "available_cpus", "default_threads", "resolve_threads", "set_threads"]

THREADS_ENV = "OMP_NUM_THREADS"


def available_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where
    the platform has none), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Half the available CPUs (rounded down), at least 1: the thread count used when neither an
    explicit count nor ``OMP_NUM_THREADS`` is given."""
    return max(1, available_cpus() // 2)


def resolve_threads(threads: int | None = None) -> tuple[int, str]:
    """Return ``(count, where it came from)`` by the module's rule; ``threads`` None or 0 means
    "not given". The second item is a short phrase for a log line, e.g. ``"--threads"`` or
    ``"default: half of 2 CPUs"``.

    Raises:
        ValueError: ``threads`` is negative, or ``OMP_NUM_THREADS`` is set but not a positive integer.
    """
    if threads is not None and threads != 0:
        if int(threads) != threads or threads < 1:
            raise ValueError(f"the thread count must be a positive integer, got {threads}")
        return int(threads), "--threads"
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            count = int(env)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"{THREADS_ENV}={env!r}: expected a positive integer (or unset it)")
        return count, THREADS_ENV
    return default_threads(), f"default: half of {available_cpus()} CPUs"


def set_threads(threads: int | None = None) -> tuple[int, str]:
    """Set torch's intra-op CPU thread count by the module's rule and return ``(count, where it
    came from)`` (see :func:`resolve_threads`). Inter-op threads are left alone."""
    count, source = resolve_threads(threads)
    torch.set_num_threads(count)
    return count, source

"""How many DataLoader worker processes to start: one rule for training and evaluation.

PyTorch warns ("This DataLoader will create 4 worker processes in total. Our suggested max number
of worker in current system is 2") when a loader asks for more workers than the CPUs this process
may run on, and such workers only compete for the same cores. Defaults therefore follow the
machine: ``min(default, CPUs available / processes on this machine)``, at least 1. A count the
user gives explicitly is used as given.
"""

from __future__ import annotations

import os

__all__ = ["AUTO", "available_cpus", "resolve_num_workers"]

AUTO = -1  # the config value (and the CLI default, None) meaning "choose from the machine"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or ``taskset``'s
    limit), falling back to the machine's count where affinity is not supported."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_num_workers(requested: int | None, default: int = 4, processes: int | None = None) -> int:
    """The number of DataLoader workers to start.

    Args:
        requested: an explicit count (>= 0, used as given), or None / :data:`AUTO` for the default.
        default: the most workers the default starts.
        processes: training processes sharing this machine's CPUs (default: torchrun's
            ``LOCAL_WORLD_SIZE``, else 1); each gets its share.
    """
    if requested is not None and requested != AUTO:
        if requested < 0:
            raise ValueError(f"the number of data-loading workers must be >= 0 or {AUTO} (auto), got {requested}")
        return requested
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    share = available_cpus() // max(1, processes)
    return max(1, min(default, share))

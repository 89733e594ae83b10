"""Flow latency with torch's default thread count against mcjepa's default, on a busy machine.

    python -m benchmarks.threads --busy 1 --out benchmarks/results/cpu/threads_busy.json

Each setting runs in its own process with ``OMP_NUM_THREADS`` unset (so torch picks its own
default) and times ``flow.estimate`` on a random ``--size`` pair (default 480x640) with the bundled
model: ``--warmup`` untimed calls, then ``--repeats`` timed ones, median reported. Settings:
``torch`` (torch's default, one thread per core), ``mcjepa`` (:func:`mcjepa.utils.threads.default_threads`:
half the CPUs) and any explicit counts in ``--counts``. ``--busy K`` starts K processes that spin
on the CPU for the whole measurement (another user's job); the machine's load average before the
run is recorded too, since other jobs may already be running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from .common import parse_size, print_table, write_json
from .common import run_json_child as _run_child  # a module global, so tests can run children in-process

__all__ = ["build_parser", "main"]

COLUMNS = ["setting", "threads", "median_s", "min_s", "max_s"]
_SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=(480, 640), help="H x W of the pair (default 480x640)")
    p.add_argument("--counts", type=int, nargs="*", default=[], help="explicit thread counts to add")
    p.add_argument("--busy", type=int, default=1, help="CPU-spinning processes during the measurement (default 1)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one setting, in a child process
    return p


def _worker(args: argparse.Namespace) -> dict:
    from mcjepa import flow
    from mcjepa.utils.threads import default_threads

    if args.worker == "mcjepa":
        torch.set_num_threads(default_threads())
    elif args.worker != "torch":
        torch.set_num_threads(int(args.worker))
    model = flow.load()
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, *args.size, generator=g), torch.rand(3, *args.size, generator=g)
    for _ in range(args.warmup):
        flow.estimate(a, b, model)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        flow.estimate(a, b, model)
        times.append(time.perf_counter() - t0)
    return {
        "setting": args.worker,
        "threads": torch.get_num_threads(),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
    }


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(args)))
        return {}
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    load_before = os.getloadavg()
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=3600)]) for _ in range(args.busy)]
    rows = []
    try:
        for setting in ["torch", "mcjepa", *map(str, args.counts)]:
            cmd = [sys.executable, "-m", "benchmarks.threads", "--worker", setting, "--size",
                   f"{args.size[0]}x{args.size[1]}", "--repeats", str(args.repeats), "--warmup", str(args.warmup)]  # fmt: skip
            rows.append(_run_child(cmd, env))
            print_table(rows[-1:], COLUMNS)
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    for r in rows:
        r["busy_processes"], r["load_average_before"] = args.busy, list(load_before)
    print_table(rows, COLUMNS, title=f"flow.estimate {args.size[0]}x{args.size[1]}, {args.busy} busy process(es)")
    return write_json(args.out, "threads", args, torch.device("cpu"), rows)


if __name__ == "__main__":
    main()

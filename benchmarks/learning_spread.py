"""The spread of the learning tests' figures over seeds and thread counts, to set their bounds.

    python -m benchmarks.learning_spread --test full --seeds 0 1 2 --threads 1 2 --out spread.json
    python -m benchmarks.learning_spread --test fashion-mnist --seeds 0 1 2 --threads 1

``full`` runs ``tests/test_learning.py``'s FULL settings (the demo config, 300 steps, 48x64 pairs)
and reports the held-out EPE against the untrained model and the shapes k-NN against the run's
initial encoder; ``fashion-mnist`` runs its FMNIST_SHORT settings (240 steps on 5,000 training
images; needs Debian's dataset-fashion-mnist) and reports the Fashion-MNIST k-NN figures. One
training run per (seed, thread count), one after another in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

TESTS = {"full": ("demo", "FULL"), "fashion-mnist": ("fashion-mnist", "FMNIST_SHORT")}
KEYS = ("trained_epe", "untrained_epe", "shapes_knn", "shapes_knn_random", "shapes_knn_pixels")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.learning_spread", description=__doc__.split("\n")[0])
    p.add_argument("--test", choices=sorted(TESTS), default="full")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=None, help="JSON file of every run's figures")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_learning

    from mcjepa.train.config import load_config
    from mcjepa.train.engine import Trainer

    config, name = TESTS[args.test]
    settings = [s for s in getattr(test_learning, name) if not s.startswith("run.threads")]
    rows = []
    for threads in args.threads:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.time()
                cfg = load_config(config, [*settings, f"run.threads={threads}", f"run.seed={seed}"])
                summary = Trainer(cfg, Path(tmp) / "run").fit()
            row = {"seed": seed, "threads": threads, "wall_s": round(time.time() - start)}
            row.update({k: v for k, v in summary.items() if k in KEYS or k.startswith("fmnist_knn")})
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "learning_spread", "args": vars(args) | {"out": str(args.out)},
                                        "results": rows}, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``mcjepa-train``: the MC-JEPA two-phase recipe, from a laptop demo to 8-GPU ``torchrun``."""

from __future__ import annotations

import argparse
import json
import sys

from mcjepa.cli.common import THREADS_HELP, line_buffered_stdout
from mcjepa.train.config import ConfigError, available_configs, load_config

EPILOG = """\
examples:
  mcjepa-train --config demo --out runs/demo              # embedded data, CPU, a few minutes
  mcjepa-train --config flow-demo --out runs/flow         # self-supervised flow alone, ~1 minute
  mcjepa-train --config demo --out runs/demo --resume     # continue after an interruption
  mcjepa-train --config paper --out runs/paper \\
      --set data.content.root=/data/imagenet/train --set data.motion[0].root=...   (see README)
  mcjepa-train --config paper --preflight --world-size 8   # check data and plan before the GPUs
  torchrun --nproc_per_node 8 -m mcjepa.cli.train --config paper --out runs/paper
  mcjepa-train --config demo --set loss.alpha=0.5 --set schedule.sampling=batch_alternation --out runs/ab

--set takes dotted keys and TOML values: numbers, true/false, "strings", [lists], {tables}.
List items are addressed as key[i], e.g. data.motion[0].root=/data/Sintel.
Outputs in --out: config.json (resolved), metrics.jsonl, checkpoints/, summary.json, release/.

--resume continues from the newest intact checkpoint (an unreadable newer one is moved aside to
*.corrupt) and truncates metrics.jsonl to its step. Give it the same --config and --set values:
every difference is printed, and one that changes the model, data, schedule, loss, optimiser or
seed is refused unless --allow-config-change is given (device, logging, checkpointing, max_steps,
num_workers and the end-of-run evaluation may change freely).
On a terminal progress is a bar; otherwise (a log file, a pipe) one line every run.log_every steps.
--threads N is --set run.threads=N (default: OMP_NUM_THREADS when set, else half the CPUs).

exit status: 0 done, 2 bad config, data or --out, 3 training diverged (non-finite parameters,
or run.max_nonfinite_in_row non-finite steps in a row; no non-finite checkpoint is written).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcjepa-train",
        description="Train MC-JEPA: VICReg content learning (phase 1), then joint self-supervised "
        "optical flow + VICReg (phase 2), on one CPU/GPU or many GPUs with torchrun.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        default="demo",
        help=f"a shipped config name ({', '.join(available_configs())}) or a path to a .toml file (default: demo)",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    p.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest intact checkpoint in --out")
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept a config that changes the model, data, schedule, loss, optimiser or seed",
    )
    p.add_argument("--threads", type=int, metavar="N", default=None, help=f"{THREADS_HELP}; sets run.threads")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (>= 1; for smoke tests)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument(
        "--preflight",
        action="store_true",
        help="check the data roots, count samples, print the schedule in steps, the per-process batch and "
        "accumulation, the precision, memory and checkpoint estimates, and exit without training",
    )
    p.add_argument(
        "--world-size",
        type=int,
        default=None,
        help="with --preflight: the number of training processes to plan for (default: torchrun's "
        "WORLD_SIZE, else 1), e.g. 16 for 2 nodes of 8 GPUs",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    line_buffered_stdout()
    from mcjepa.train.engine import TrainingDiverged

    try:
        if args.max_steps is not None and args.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {args.max_steps}")
        if args.allow_config_change and not args.resume:
            raise ConfigError("--allow-config-change only applies with --resume")
        if args.threads is not None and args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        threads = [] if args.threads is None else [f"run.threads={args.threads}"]
        cfg = load_config(args.config, [*args.overrides, *threads])
        if args.print_config:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        if args.world_size is not None and not args.preflight:
            raise ConfigError("--world-size only applies with --preflight (torchrun sets the real one)")
        if args.preflight:
            import os

            from mcjepa.train.preflight import run_preflight

            world = args.world_size if args.world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
            if world < 1:
                raise ConfigError(f"--world-size must be >= 1, got {world}")
            return run_preflight(cfg, world)
        from mcjepa.train.engine import Trainer

        trainer = Trainer(
            cfg, args.out or f"runs/{cfg.name}", resume=args.resume, allow_config_change=args.allow_config_change
        )
        summary = trainer.fit(max_steps=args.max_steps)
    except ConfigError as exc:
        print(f"mcjepa-train: config error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"mcjepa-train: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"mcjepa-train: training diverged: {exc}", file=sys.stderr)
        return 3
    if trainer.dist.is_main:
        _print_summary(summary)
    from mcjepa.train.distributed import shutdown_distributed

    shutdown_distributed()  # every rank got here: a clean teardown of the process group
    return 0


def _print_summary(summary: dict) -> None:
    print(
        f"\nfinished {summary['steps']} steps in {summary['wall_time_s']:.1f} s "
        f"({summary['nonfinite_skipped']} non-finite steps skipped)"
    )
    if "trained_epe" in summary:
        print("held-out synthetic EPE (pixels, lower is better):")
        print(f"  zero flow        {summary['trained_zero_flow_epe']:.3f}")
        print(f"  untrained model  {summary.get('untrained_epe', float('nan')):.3f}")
        print(f"  trained model    {summary['trained_epe']:.3f}")
    for name, title in (("shapes", "synthetic shapes (6 classes)"), ("fmnist", "Fashion-MNIST (5,000 / 2,000)")):
        if f"{name}_knn" in summary:
            print(f"content: 20-NN top-1 % on {title}:")
            print(f"  raw pixels       {100 * summary[f'{name}_knn_pixels']:.1f}")
            print(f"  random encoder   {100 * summary[f'{name}_knn_random']:.1f}")
            print(f"  trained encoder  {100 * summary[f'{name}_knn']:.1f}")
    if "release" in summary:
        print(
            f"release written to {summary['release']} (load it with mcjepa.flow.load(weights='{summary['release']}'))"
        )


if __name__ == "__main__":
    raise SystemExit(main())

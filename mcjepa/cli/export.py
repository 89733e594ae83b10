"""``mcjepa-export``: turn a training run (or checkpoint) into a release folder with a model card."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  mcjepa-export runs/demo --out releases/mcjepa-micro-demo
  mcjepa-export runs/paper/checkpoints/ckpt_000100000.pt --out releases/mcjepa-convnext-t \\
      --eval-results sintel.json kitti.json --name mcjepa-convnext-t

The release's release.json is its manifest entry; no manifest is changed unless you ask:
--update-manifest PATH merges the entry into PATH (e.g. weights_manifest.json) with status "local"
and the folder's file:// URL, so that weights="NAME" loads it. `mcjepa-publish` uploads the folder
to the Hugging Face Hub and pins the repository manifest's entry to the resulting commit.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcjepa-export",
        description="Export a training run or checkpoint as a release folder (safetensors + config + model card).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="a run folder (its newest checkpoint is used) or a checkpoint file")
    p.add_argument("--out", required=True, help="the release folder to write")
    p.add_argument("--with-expander", action="store_true", help="also export the expander (only needed to resume)")
    p.add_argument("--eval-results", nargs="+", default=[], metavar="JSON", help="mcjepa-eval result files")
    p.add_argument("--name", default=None, help="manifest key (default: the --out folder name)")
    p.add_argument("--license", default="MIT", help="license of the weights (default MIT)")
    p.add_argument(
        "--update-manifest",
        "--manifest",  # the old spelling, kept for scripts
        dest="update_manifest",
        default=None,
        metavar="PATH",
        help="also merge the entry into this manifest under --name (default: no manifest is changed)",
    )
    p.add_argument("--no-manifest", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    p.add_argument("--force", action="store_true", help="replace a published manifest entry of the same name")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the exit status (0 ok, 2 bad usage or input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.no_manifest and args.update_manifest:
        print("mcjepa-export: error: --no-manifest contradicts --update-manifest", file=sys.stderr)
        return 2
    from ..export import ExportError, export_release

    try:
        entry = export_release(
            args.source,
            args.out,
            with_expander=args.with_expander,
            eval_results=args.eval_results,
            name=args.name,
            license=args.license,
            manifest=args.update_manifest,
            force=args.force,
        )
    except (ExportError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"mcjepa-export: error: {err}", file=sys.stderr)
        return 2
    shown = {k: entry[k] for k in ("name", "variant", "status", "license", "files", "metrics") if k in entry}
    print(json.dumps(shown, indent=2))
    print(f"release written to {args.out} (its release.json is the manifest entry)", file=sys.stderr)
    if args.update_manifest:
        print(f"entry {entry['name']!r} merged into {args.update_manifest}", file=sys.stderr)
    else:
        print("no manifest changed; --update-manifest PATH would add the entry to PATH", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

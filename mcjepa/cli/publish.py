"""``mcjepa-publish``: upload a release folder to the Hugging Face Hub and pin it in the manifest."""

from __future__ import annotations

import argparse
import json
import sys

from mcjepa.cli.common import parse_args

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  hf auth login
  mcjepa-publish releases/mcjepa-convnext-t --repo-id my-org/mcjepa-convnext-t
  mcjepa-publish releases/mcjepa-convnext-t --repo-id my-org/mcjepa-convnext-t --revision v1 --private

The manifest entry then holds repo_id, revision (the pinned 40-hex commit sha) and status
"published": torch.hub.load(..., weights="<name>") downloads exactly that commit.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcjepa-publish",
        description="Upload a release folder to the Hugging Face Hub and record its commit in weights_manifest.json.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("release_dir", help="a folder written by mcjepa-export")
    p.add_argument("--repo-id", required=True, help="Hugging Face model repository, ORG/NAME")
    p.add_argument("--revision", default=None, help="branch to commit to (created if needed; default main)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--name", default=None, help="manifest key (default: the release's name)")
    p.add_argument("--manifest", default=None, help="manifest to update (default: the repository's)")
    p.add_argument("--force", action="store_true", help="replace a published manifest entry of the same name")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the exit status (0 ok, 1 upload failed, 2 bad usage or input)."""
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    from huggingface_hub.errors import HfHubHTTPError

    from mcjepa.release.publish import PublishError, publish_release

    try:
        entry = publish_release(
            args.release_dir,
            args.repo_id,
            revision=args.revision,
            private=args.private,
            name=args.name,
            manifest=args.manifest,
            force=args.force,
        )
    except (PublishError, FileNotFoundError, ValueError) as err:
        print(f"mcjepa-publish: error: {err}", file=sys.stderr)
        return 2
    except HfHubHTTPError as err:
        print(f"mcjepa-publish: upload failed: {err}", file=sys.stderr)
        return 1
    print(json.dumps({k: entry[k] for k in ("name", "repo_id", "revision", "status", "files")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

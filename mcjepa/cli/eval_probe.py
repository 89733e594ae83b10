"""``mcjepa-eval probe``: k-NN and linear probes on the pooled embedding."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from mcjepa.cli.eval_models import WORKERS_HELP, add_model_args, load_eval_model

__all__ = ["NAME", "add_parser", "run"]

NAME = "probe"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``probe`` subcommand to ``subparsers``; return its parser."""
    from mcjepa.eval.probes import FASHION_MNIST_ROOT

    p = subparsers.add_parser(
        NAME,
        help="k-NN and linear probes on the pooled 768-d embedding",
        description="Embed train and val images (resize + centre crop to --image-size) with the average-pooled "
        "stride-32 map; report weighted k-NN (cosine, exp(s/T)) and linear-probe accuracy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, choices=["imagefolder", "fashion-mnist", "idx"])
    p.add_argument(
        "--root",
        help="required: root/train and root/val (imagefolder), or the folder of IDX files (fashion-mnist, idx; "
        f"Debian's dataset-fashion-mnist package installs them in {FASHION_MNIST_ROOT})",
    )
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--linear-epochs", type=int, default=100)
    p.add_argument("--linear-lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    p.add_argument("--max-train", type=int, help="use only the first N training images")
    p.add_argument("--max-val", type=int, help="use only the first N validation images")
    add_model_args(p)
    return p


def run(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    """Embed the train and val images, run both probes; return (results, table)."""
    from mcjepa.data.workers import resolve_num_workers
    from mcjepa.eval.probes import FASHION_MNIST_ROOT, evaluate_probes, extract_embeddings, open_probe_dataset
    from mcjepa.eval.report import format_table

    if args.root is None:
        what = (
            "root/train and root/val class folders"
            if args.dataset == "imagefolder"
            else f"the folder of IDX files (Debian's dataset-fashion-mnist package installs them in {FASHION_MNIST_ROOT})"
        )
        raise ValueError(f"--root is required: {what}")
    encoder = load_eval_model(args, ("encoder",), device).encoder
    kw = dict(
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=resolve_num_workers(args.workers),
        device=device,
        progress=not args.no_progress,
    )
    train = extract_embeddings(
        encoder, open_probe_dataset(args.dataset, args.root, "train"), max_items=args.max_train, **kw
    )
    val = extract_embeddings(encoder, open_probe_dataset(args.dataset, args.root, "val"), max_items=args.max_val, **kw)
    res = evaluate_probes(train, val, args.k, args.temperature, args.linear_epochs, args.linear_lr)
    res.update(image_size=args.image_size)
    row = {k: 100 * res[k] for k in ("knn_top1", "knn_top5", "linear_top1", "linear_top5")}
    row.update(dataset=args.dataset, n_train=res["n_train"], n_val=res["n_val"])
    columns = [
        ("dataset", "dataset"),
        ("knn_top1", f"{args.k}-NN top-1 %"),
        ("knn_top5", "k-NN top-5 %"),
        ("linear_top1", "linear top-1 %"),
        ("linear_top5", "linear top-5 %"),
        ("n_train", "train"),
        ("n_val", "val"),
    ]
    return res, format_table([row], columns, digits=1)

"""``mcjepa-eval segmentation``: a linear head on frozen (or fine-tuned) pyramid features, mIoU."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from mcjepa.cli.eval_models import WORKERS_HELP, add_model_args, load_eval_model

__all__ = ["NAME", "add_parser", "run", "train_config"]

NAME = "segmentation"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``segmentation`` subcommand to ``subparsers``; return its parser."""
    from mcjepa.eval.segmentation import DEFAULT_LEVELS, SEG_DATASETS

    s = subparsers.add_parser(
        NAME,
        help="linear segmentation head on frozen (or fine-tuned) features, mIoU",
        description="Train a linear 1x1-conv head on pyramid levels --levels (BatchNorm per level, upsampled to "
        "stride 4, concatenated) with the encoder frozen (or, with --finetune, trained too), then report mIoU "
        "on the validation split at full resolution.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("--dataset", required=True, choices=sorted(SEG_DATASETS))
    s.add_argument("--root", required=True, help="dataset root (see docs/evaluation.md for each layout)")
    s.add_argument(
        "--levels",
        type=int,
        nargs="+",
        default=list(DEFAULT_LEVELS),
        help="pyramid levels (0..5 = strides 2,4,4,8,16,32)",
    )
    s.add_argument("--finetune", action="store_true", help="train the encoder too")
    s.add_argument("--epochs", type=int, default=20)
    s.add_argument("--max-steps", type=int, help="stop training after N steps")
    s.add_argument("--lr", type=float, default=1e-3, help="head learning rate (AdamW, cosine)")
    s.add_argument("--encoder-lr-mult", type=float, default=0.1, help="encoder LR = lr x this (--finetune)")
    s.add_argument("--weight-decay", type=float, default=1e-4)
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--crop-size", type=int, default=512)
    s.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    s.add_argument("--max-val-images", type=int, help="score only the first N validation images")
    s.add_argument("--save-head", metavar="PT", help="save the trained head's state dict (torch.save)")
    add_model_args(s)
    return s


def train_config(args: argparse.Namespace):
    """The :class:`mcjepa.eval.segmentation.SegTrainConfig` the options describe."""
    from mcjepa.data.workers import resolve_num_workers
    from mcjepa.eval.segmentation import SegTrainConfig

    return SegTrainConfig(
        levels=tuple(args.levels),
        finetune=args.finetune,
        epochs=args.epochs,
        lr=args.lr,
        encoder_lr_mult=args.encoder_lr_mult,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        workers=resolve_num_workers(args.workers),
        max_steps=args.max_steps,
    )


def run(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    """Train the head on the train split, score the val split; return (results, table)."""
    from mcjepa.eval.report import format_table
    from mcjepa.eval.segmentation import (
        SEG_DATASETS,
        evaluate_segmentation,
        open_segmentation_dataset,
        predictor,
        train_segmentation,
    )

    cfg = train_config(args)
    n_cls = SEG_DATASETS[args.dataset]
    encoder = load_eval_model(args, ("encoder",), device).encoder
    train_set = open_segmentation_dataset(args.dataset, args.root, "train")
    val_set = open_segmentation_dataset(args.dataset, args.root, "val")
    t0 = time.perf_counter()
    model = train_segmentation(encoder, train_set, n_cls, cfg, device, progress=not args.no_progress)
    train_s = time.perf_counter() - t0
    res = evaluate_segmentation(predictor(model, device), val_set, n_cls, args.max_val_images, not args.no_progress)
    if args.save_head:
        torch.save(model.head.state_dict(), args.save_head)
    mode = "finetune" if cfg.finetune else "frozen"
    res.update(
        mode=mode,
        levels=list(cfg.levels),
        train_seconds=train_s,
        num_classes=n_cls,
        n_train=len(train_set),
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        crop_size=cfg.crop_size,
    )
    row = {
        "dataset": args.dataset,
        "mode": mode,
        "miou": 100 * res["miou"],
        "pixel_acc": 100 * res["pixel_acc"],
        "n_images": res["n_images"],
    }
    columns = [
        ("dataset", "dataset"),
        ("mode", "mode"),
        ("miou", "mIoU %"),
        ("pixel_acc", "pixel acc %"),
        ("n_images", "val images"),
    ]
    return res, format_table([row], columns, digits=1)

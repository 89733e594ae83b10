"""``mcjepa-eval``: the paper's evaluation protocols from the command line.

Subcommands: ``flow`` (EPE / Fl, with baselines on the same loop), ``segmentation`` (linear head,
frozen or fine-tuned, mIoU), ``davis`` (label propagation, (J&F)m) and ``probe`` (k-NN and linear
probes). Each prints a table and, with ``--out``, writes the full results as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Any

import torch

__all__ = ["build_parser", "main"]

_PROG = "mcjepa-eval"
_EPILOG = """\
examples:
  mcjepa-eval flow --dataset sintel-clean sintel-final --root data --weights runs/r1/release --baseline zero dis
  mcjepa-eval flow --dataset kitti-2015 --root data --weights runs/r1/release --out kitti.json --dump-worst 5
  mcjepa-eval flow --dataset synthetic --no-model --baseline all          # baselines only, no download
  mcjepa-eval segmentation --dataset voc --root data/voc --weights runs/r1/release --epochs 20
  mcjepa-eval segmentation --dataset ade20k --root data/ADEChallengeData2016 --weights W --finetune
  mcjepa-eval davis --root data/DAVIS --weights runs/r1/release --out davis.json
  mcjepa-eval probe --dataset fashion-mnist --root /usr/share/datasets/fashion-mnist --weights W

Without --weights / --pretrained a randomly initialised --variant is evaluated (a reference row,
not a result). See docs/evaluation.md for the command behind each number of the paper.
"""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--weights",
        metavar="W",
        help="trained weights: a release folder, a .safetensors file, hf://org/repo[@revision], a URL or a "
        "weights_manifest.json key",
    )
    g.add_argument("--pretrained", action="store_true", help="the published weights of --variant")
    g.add_argument(
        "--variant", default="convnext_t", help="architecture when the weights record none (default: convnext_t)"
    )
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--out", metavar="JSON", help="write the full results to this JSON file")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


_WORKERS_HELP = "data-loading processes (default: min(4, the CPUs available))"


def build_parser() -> argparse.ArgumentParser:
    """Return the command's argument parser."""
    from ..eval.flow_eval import FLOW_DATASETS
    from ..eval.segmentation import DEFAULT_LEVELS, SEG_DATASETS

    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Evaluate an MC-JEPA checkpoint with the paper's protocols: optical flow EPE / Fl, "
        "frozen or fine-tuned segmentation mIoU, DAVIS 2017 (J&F)m, k-NN / linear probes.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="task", required=True, metavar="{flow,segmentation,davis,probe}")

    f = sub.add_parser(
        "flow",
        help="optical flow EPE / Fl (model and baselines in one table)",
        description="Optical flow: EPE pooled over all valid pixels and averaged per image, occluded / "
        "non-occluded EPE where masks exist, Fl-all. Frames are padded to the stride (replicate) and the "
        "flow cropped back; nothing is resized.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    f.add_argument(
        "--dataset",
        nargs="+",
        required=True,
        choices=FLOW_DATASETS,
        metavar="NAME",
        help=f"one or more of {', '.join(FLOW_DATASETS)}",
    )
    f.add_argument("--root", help="dataset root (holds Sintel/, KittiFlow/ or FlyingChairs/; or a .flo folder)")
    f.add_argument("--split", default="val", help="FlyingChairs split (Sintel / KITTI use their training split)")
    f.add_argument(
        "--baseline",
        nargs="*",
        default=[],
        choices=["zero", "dis", "farneback", "all"],
        help="reference rows on the same pairs (dis / farneback need opencv-python-headless)",
    )
    f.add_argument("--no-model", action="store_true", help="evaluate only the baselines")
    f.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the model (CUDA only)")
    f.add_argument("--max-pairs", type=int, help="evaluate only the first N pairs (quick checks)")
    f.add_argument(
        "--dump-worst",
        type=int,
        default=0,
        metavar="K",
        help="write [frame | GT | prediction] flow images of the K worst pairs per method",
    )
    f.add_argument("--dump-dir", default="flow_worst", help="folder for --dump-worst images")
    f.add_argument("--synthetic-pairs", type=int, default=16, help="pairs in the synthetic set")
    f.add_argument("--synthetic-size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    _add_model_args(f)

    s = sub.add_parser(
        "segmentation",
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
    s.add_argument("--workers", type=int, default=None, help=_WORKERS_HELP)
    s.add_argument("--max-val-images", type=int, help="score only the first N validation images")
    s.add_argument("--save-head", metavar="PT", help="save the trained head's state dict (torch.save)")
    _add_model_args(s)

    d = sub.add_parser(
        "davis",
        help="DAVIS 2017 label propagation, J / F / (J&F)m",
        description="Propagate the first frame's masks by feature affinity (top-k neighbours among the first "
        "frame and the previous --context frames, within --radius feature cells, softmax at --temperature) "
        "and score J, F and (J&F)m as the DAVIS 2017 toolkit does.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("--root", required=True, help="DAVIS root (JPEGImages/, Annotations/, ImageSets/)")
    d.add_argument("--split", default="val", help="ImageSets/2017/<split>.txt")
    d.add_argument("--sequences", nargs="+", help="only these sequences")
    d.add_argument("--resolution", default="480p")
    d.add_argument("--level", type=int, default=3, help="pyramid level of the features (3 = stride 8)")
    d.add_argument("--topk", type=int, default=10)
    d.add_argument("--context", type=int, default=7, help="previous frames kept besides the first")
    d.add_argument("--radius", type=int, default=12, help="spatial window in feature cells (<0: unlimited)")
    d.add_argument("--temperature", type=float, default=0.07)
    d.add_argument("--no-norm-mask", action="store_true", help="skip DINO's per-object min-max rescaling")
    d.add_argument("--save-masks", metavar="DIR", help="write the predicted palette PNGs (DAVIS results layout)")
    _add_model_args(d)

    p = sub.add_parser(
        "probe",
        help="k-NN and linear probes on the pooled 768-d embedding",
        description="Embed train and val images (resize + centre crop to --image-size) with the average-pooled "
        "stride-32 map; report weighted k-NN (cosine, exp(s/T)) and linear-probe accuracy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, choices=["imagefolder", "fashion-mnist", "idx"])
    p.add_argument(
        "--root",
        default=None,
        help="root/train and root/val (imagefolder), or the IDX folder "
        "(fashion-mnist default: /usr/share/datasets/fashion-mnist)",
    )
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--linear-epochs", type=int, default=100)
    p.add_argument("--linear-lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help=_WORKERS_HELP)
    p.add_argument("--max-train", type=int, help="use only the first N training images")
    p.add_argument("--max-val", type=int, help="use only the first N validation images")
    _add_model_args(p)
    return parser


def _fail(msg: str) -> int:
    print(f"{_PROG}: error: {msg}", file=sys.stderr)
    return 2


def _model_info(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "weights": args.weights,
        "pretrained": args.pretrained,
        "variant": args.variant,
        "random_init": args.weights is None and not args.pretrained,
    }


def _load(args: argparse.Namespace, components: tuple[str, ...], device: torch.device):
    from ..eval.common import load_for_eval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("default", message=".* was NOT verified")  # an unhashed weights file shows
        model = load_for_eval(args.weights, args.variant, args.pretrained, components, device)
    if args.weights is None and not args.pretrained:
        print(f"note: no --weights: evaluating a randomly initialised {args.variant!r} (a reference, not a result)")
    return model


def _run_flow(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    from ..eval.baselines import get_baseline
    from ..eval.flow_eval import FLOW_TABLE_COLUMNS, evaluate_flow, flow_table_rows, model_method, open_flow_dataset
    from ..eval.report import format_table

    names = ["zero", "dis", "farneback"] if "all" in args.baseline else list(dict.fromkeys(args.baseline))
    methods = {}
    if not args.no_model:
        model = _load(args, ("encoder", "flow_head"), device)
        label = "mcjepa" if not (args.weights is None and not args.pretrained) else "mcjepa (random init)"
        methods[label] = model_method(model, device, args.bf16)
    for b in names:
        methods[b] = get_baseline(b)
    if not methods:
        raise ValueError("nothing to evaluate: drop --no-model or add --baseline")
    per_dataset, rows = {}, []
    for name in args.dataset:
        ds = open_flow_dataset(name, args.root, args.split, args.synthetic_pairs, tuple(args.synthetic_size), args.seed)
        res = evaluate_flow(
            ds, methods, args.max_pairs, args.dump_worst, f"{args.dump_dir}/{name}", progress=not args.no_progress
        )
        per_dataset[name] = res
        rows += [{"dataset": name, **r} for r in flow_table_rows(res)]
    table = format_table(rows, [("dataset", "dataset"), *FLOW_TABLE_COLUMNS])
    return {"datasets": per_dataset, "methods": list(methods)}, table


def _run_segmentation(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    from ..data.workers import resolve_num_workers
    from ..eval.report import format_table
    from ..eval.segmentation import (
        SEG_DATASETS,
        evaluate_segmentation,
        open_segmentation_dataset,
        predictor,
        train_segmentation,
    )

    n_cls = SEG_DATASETS[args.dataset]
    encoder = _load(args, ("encoder",), device).encoder
    train_set = open_segmentation_dataset(args.dataset, args.root, "train")
    val_set = open_segmentation_dataset(args.dataset, args.root, "val")
    t0 = time.perf_counter()
    model = train_segmentation(
        encoder,
        train_set,
        n_cls,
        args.levels,
        args.finetune,
        args.epochs,
        args.lr,
        args.encoder_lr_mult,
        args.weight_decay,
        args.batch_size,
        args.crop_size,
        resolve_num_workers(args.workers),
        device,
        args.max_steps,
        progress=not args.no_progress,
    )
    train_s = time.perf_counter() - t0
    res = evaluate_segmentation(predictor(model, device), val_set, n_cls, args.max_val_images, not args.no_progress)
    if args.save_head:
        torch.save(model.head.state_dict(), args.save_head)
    mode = "finetune" if args.finetune else "frozen"
    res.update(
        mode=mode,
        levels=list(args.levels),
        train_seconds=train_s,
        num_classes=n_cls,
        n_train=len(train_set),
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
    )
    row = {
        "dataset": args.dataset,
        "mode": mode,
        "miou": 100 * res["miou"],
        "pixel_acc": 100 * res["pixel_acc"],
        "n_images": res["n_images"],
    }
    table = format_table(
        [row],
        [
            ("dataset", "dataset"),
            ("mode", "mode"),
            ("miou", "mIoU %"),
            ("pixel_acc", "pixel acc %"),
            ("n_images", "val images"),
        ],
        digits=1,
    )
    return res, table


def _run_davis(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    from ..eval.davis import PropagationConfig, evaluate_davis
    from ..eval.report import format_table

    cfg = PropagationConfig(
        level=args.level,
        topk=args.topk,
        n_context=args.context,
        radius=None if args.radius < 0 else args.radius,
        temperature=args.temperature,
        normalize_masks=not args.no_norm_mask,
    )
    encoder = _load(args, ("encoder",), device).encoder
    res = evaluate_davis(
        encoder,
        args.root,
        args.split,
        args.sequences,
        cfg,
        args.resolution,
        device,
        args.save_masks,
        progress=not args.no_progress,
    )
    row = {k: 100 * res[k] for k in ("JF_mean", "J_mean", "F_mean", "J_recall", "F_recall")}
    row.update(n_sequences=res["n_sequences"], n_objects=res["n_objects"])
    table = format_table(
        [row],
        [
            ("JF_mean", "(J&F)m"),
            ("J_mean", "Jm"),
            ("F_mean", "Fm"),
            ("J_recall", "Jr"),
            ("F_recall", "Fr"),
            ("n_sequences", "sequences"),
            ("n_objects", "objects"),
        ],
        digits=1,
    )
    return res, table


def _run_probe(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], str]:
    from ..data.workers import resolve_num_workers
    from ..eval.probes import FASHION_MNIST_ROOT, evaluate_probes, extract_embeddings, open_probe_dataset
    from ..eval.report import format_table

    root = args.root or (FASHION_MNIST_ROOT if args.dataset == "fashion-mnist" else None)
    if root is None:
        raise ValueError("--root is required for imagefolder")
    encoder = _load(args, ("encoder",), device).encoder
    kw = dict(
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=resolve_num_workers(args.workers),
        device=device,
        progress=not args.no_progress,
    )
    train = extract_embeddings(encoder, open_probe_dataset(args.dataset, root, "train"), max_items=args.max_train, **kw)
    val = extract_embeddings(encoder, open_probe_dataset(args.dataset, root, "val"), max_items=args.max_val, **kw)
    res = evaluate_probes(train, val, args.k, args.temperature, args.linear_epochs, args.linear_lr)
    res.update(image_size=args.image_size)
    row = {k: 100 * res[k] for k in ("knn_top1", "knn_top5", "linear_top1", "linear_top5")}
    row.update(dataset=args.dataset, n_train=res["n_train"], n_val=res["n_val"])
    table = format_table(
        [row],
        [
            ("dataset", "dataset"),
            ("knn_top1", f"{args.k}-NN top-1 %"),
            ("knn_top5", "k-NN top-5 %"),
            ("linear_top1", "linear top-1 %"),
            ("linear_top5", "linear top-5 %"),
            ("n_train", "train"),
            ("n_val", "val"),
        ],
        digits=1,
    )
    return res, table


_RUNNERS = {"flow": _run_flow, "segmentation": _run_segmentation, "davis": _run_davis, "probe": _run_probe}


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the exit status (0 ok, 2 bad usage, missing data or missing extra)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed why
        return int(exc.code or 0)
    from ..devices import resolve_device
    from ..eval.report import write_json

    torch.manual_seed(args.seed)
    try:
        device = resolve_device(args.device)
        results, table = _RUNNERS[args.task](args, device)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as err:  # includes WeightsError
        return _fail(str(err))
    out = {
        "task": args.task,
        "model": _model_info(args),
        "device": str(device),
        "dataset": getattr(args, "dataset", "davis"),
        "root": args.root,
        **results,
    }
    print(table)
    if args.out:
        print(f"results written to {write_json(args.out, out)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

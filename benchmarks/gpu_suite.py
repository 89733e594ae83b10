"""Every GPU check in one command, under 8 minutes: one JSON per check and a ``summary.json``.

    python -m benchmarks.gpu_suite --out-dir benchmarks/results/gpu          # one CUDA GPU
    python -m benchmarks.gpu_suite --quick --device cpu --out-dir /tmp/gpu   # CI smoke run

Parts, in this order (each file is ``{"benchmark", "args", "environment", "results"}`` like the
other benchmarks'; the work is done by their functions, nothing is re-timed here). Every figure is
single-process, on one GPU, with inputs already on the device: no DDP all-reduce, no data
loading, no other process on the GPU (``summary.json`` says so per part, :data:`SCOPE`):

* ``flow_inference.json``: :func:`benchmarks.flow_inference.main` for ``convnext_t``,
  ``raft_small`` (12 iterations) and ``raft_large`` (32), 448x1024, batch 1 and 8, fp32 and bf16,
  one call per model, then the ``x_vs_raft_*`` ratios over all rows.
* ``training_step.json``: :func:`benchmarks.training_step.main` at the ``paper`` config's per-GPU
  shapes over 8 GPUs (48 images at 224, 1 pair at 384x832), bf16, with FLOPs and MFU, one call
  per mode (content, motion, combined): one GPU's share of an 8-GPU step in a single process, so
  the step time of a real 8-GPU run adds the gradient all-reduce (about 177M parameters) and any
  wait for data (``benchmarks.data_pipeline``).
* ``memory_1080p.json``: :func:`benchmarks.scaling.main`, ``convnext_t`` at 1080x1920, bf16,
  batch 1: latency and peak ``torch.cuda.max_memory_allocated``.
* ``bf16_vs_fp32.json``: the flow of ``convnext_t`` on the built-in synthetic pair
  (:func:`mcjepa.data.synthetic.example_pair`, 448x1024) under bf16 autocast and under fp32
  with TF32 for both convolutions and matmuls (torch's default allows it for cuDNN convolutions
  only; matmuls stay full fp32 unless ``torch.backends.cuda.matmul`` allows it, as training's
  ``run.tf32`` does), each against strict fp32 (TF32 off), as max / mean / 99th
  percentile absolute difference in pixels, through ``model(img1, img2)`` and through
  :func:`mcjepa.flow.estimate`. Without ``--weights`` the model is untrained; as its flow
  predictors start at zero (zero flow in any precision), the all-zero parameters are first drawn
  from N(0, 0.05) with seed 0, so the flow is non-zero and depends on the images.

Time: each part runs in its own Python process (a crash, an out-of-memory or a CUDA error in one
cannot stop the others) with a budget (:data:`BUDGET_S`, 450 s in all); a part starts its next
item (a model, a mode) only while its time left exceeds its longest item so far, writes its JSON
after every item, and is killed at its budget. The suite stops starting parts at ``--deadline-s``
(default 450 s). ``summary.json`` lists each part's file, wall time, status (``ok`` or ``error``
with a message) and log (``logs/<part>.log``); it is rewritten after every part.

``--quick``: tiny sizes, the ``micro`` variant, 1 repeat and no warm-up, 2 RAFT iterations, and
on CPU no bf16 in ``flow_inference`` (CPU bf16 autocast made that part 5x slower). It checks that
the suite runs, not the numbers (CI). ``--in-process`` runs the parts in the calling process: no
kill at the budget and no isolation, but no interpreter start per part (the CPU test uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BUDGET_S", "DEADLINE_S", "FILES", "PARTS", "SCOPE", "bf16_vs_fp32_rows", "main"]

PARTS = ("flow_inference", "training_step", "memory_1080p", "bf16_vs_fp32")
FILES = {name: f"{name}.json" for name in PARTS}
BUDGET_S = {"flow_inference": 180.0, "training_step": 150.0, "memory_1080p": 60.0, "bf16_vs_fp32": 60.0}
DEADLINE_S = 450.0  # the whole suite; 8 minutes = 480 s
MIN_PART_S = 15.0  # do not start a part with less time than this left before the deadline
CHILD_MARGIN_S = 5.0  # a part's process starts its last item this long before it is killed
ROOT = Path(__file__).resolve().parents[1]
DIFF_INIT_STD = 0.05  # std of the draw for an untrained model's all-zero parameters (bf16_vs_fp32)
SCOPE = {  # what each part's figures cover (written to summary.json)
    "flow_inference": "single process, one GPU, inputs on the GPU",
    "training_step": "single process, one GPU: one GPU's share of an 8-GPU step; no DDP all-reduce, no data loading",
    "memory_1080p": "single process, one GPU, batch 1",
    "bf16_vs_fp32": "single process, one GPU",
}


@dataclass
class Part:
    """What one part runs: ``items`` (label, callable returning result rows) in order, an
    optional ``finalize(rows)`` applied after each item, and a record of the settings."""

    items: list[tuple[str, Callable[[], list[dict[str, Any]]]]]
    settings: dict[str, Any]
    finalize: Callable[[list[dict[str, Any]]], None] | None = None


def _timing(quick: bool) -> list[str]:
    return ["--repeats", "1", "--warmup", "0"] if quick else ["--repeats", "5", "--warmup", "2"]


def _flow_inference_part(device: str, quick: bool, weights: str | None) -> Part:
    from . import flow_inference

    ours = "micro" if quick else "convnext_t"
    iters = ["--raft-small-iters", "2", "--raft-large-iters", "2"] if quick else []
    argv = ["--device", device, "--sizes", "128x128" if quick else "448x1024", "--batch", *(["1"] if quick else ["1", "8"]),
            "--dtype", *(["fp32"] if quick and device == "cpu" else ["fp32", "bf16"]), *_timing(quick), *iters]  # fmt: skip

    def one(model: str) -> Callable[[], list[dict[str, Any]]]:
        return lambda: flow_inference.main([*argv, "--models", model])["results"]

    models = [ours, "raft_small", "raft_large"]
    return Part(
        items=[(m, one(m)) for m in models],
        settings={"module": "benchmarks.flow_inference", "argv": argv, "models": models},
        finalize=flow_inference.add_ratios,
    )


def _training_step_part(device: str, quick: bool, weights: str | None) -> Part:
    from . import training_step

    if quick:
        argv = ["--variant", "micro", "--content-batch", "2", "--content-size", "32", "--motion-batch", "1",
                "--motion-size", "64x64"]  # fmt: skip
    else:
        s = training_step.paper_shapes(8)
        argv = ["--variant", "convnext_t", "--gpus", "8", "--dtype", "bf16", "--content-batch", str(s["content_batch"]),
                "--content-size", str(s["content_size"]), "--motion-batch", str(s["motion_batch"]),
                "--motion-size", "{}x{}".format(*s["motion_size"])]  # fmt: skip
    argv = ["--device", device, *argv, *_timing(quick)]

    def one(mode: str) -> Callable[[], list[dict[str, Any]]]:
        return lambda: training_step.main([*argv, "--modes", mode])["results"]

    modes = list(training_step.MODES)
    return Part(items=[(m, one(m)) for m in modes], settings={"module": "benchmarks.training_step", "argv": argv})


def _memory_part(device: str, quick: bool, weights: str | None) -> Part:
    from . import scaling

    argv = ["--device", device, "--sizes", "64x96" if quick else "1080x1920", "--models", "micro" if quick else "convnext_t",
            "--batch", "1", "--dtype", "bf16", *(["--repeats", "1", "--warmup", "0"] if quick else ["--repeats", "3",
            "--warmup", "1"])]  # fmt: skip
    return Part(
        items=[("1080p" if not quick else "quick", lambda: scaling.main(argv)["results"])],
        settings={"module": "benchmarks.scaling", "argv": argv},
    )


def _bf16_part(device: str, quick: bool, weights: str | None) -> Part:
    variant, size = ("micro", (64, 64)) if quick else ("convnext_t", (448, 1024))
    settings = {"variant": variant, "size": f"{size[0]}x{size[1]}", "weights": weights, "pair": "example_pair"}
    return Part(
        items=[("diff", lambda: bf16_vs_fp32_rows(device, variant, size, weights))],
        settings=settings,
    )


BUILDERS: dict[str, Callable[[str, bool, str | None], Part]] = {
    "flow_inference": _flow_inference_part,
    "training_step": _training_step_part,
    "memory_1080p": _memory_part,
    "bf16_vs_fp32": _bf16_part,
}


# ------------------------------------------------------------------------ bf16 vs fp32 (part d)


@contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """Set cuDNN's and cuBLAS's TF32 switches for the block (they only matter on CUDA)."""
    from mcjepa.train.precision import set_tf32, tf32_state

    saved = tf32_state()
    set_tf32(enabled, enabled)
    try:
        yield
    finally:
        set_tf32(*saved)


def _diff_model(variant: str, device: Any, weights: str | None) -> tuple[Any, str]:
    """The model for the precision comparison and a description of its weights."""
    import torch

    from mcjepa import flow
    from mcjepa.model import build_model

    from .common import build_variant

    if weights is not None:
        return flow.load(weights=weights, variant=variant, device=device), str(weights)
    model = build_model(build_variant(variant)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():  # the zero-initialised flow predictors: an untrained model's flow is exactly 0
                p.copy_(torch.randn(p.shape, generator=gen) * DIFF_INIT_STD)
    return model.to(device), f"untrained; all-zero parameters drawn from N(0, {DIFF_INIT_STD}), seed 0"


def _diff_stats(got: Any, ref: Any, gt: Any) -> dict[str, float]:
    d = (got.float() - ref.float()).abs().flatten()
    mag = ref.float().norm(dim=-3)
    return {
        "max_abs_diff_px": d.max().item(),
        "mean_abs_diff_px": d.mean().item(),
        "p99_abs_diff_px": d.double().quantile(0.99).item() if d.numel() <= 2**24 else None,
        "ref_mean_magnitude_px": mag.mean().item(),
        "ref_max_magnitude_px": mag.max().item(),
        "epe_ref_vs_gt": (ref.float() - gt).norm(dim=-3).mean().item(),
        "epe_vs_gt": (got.float() - gt).norm(dim=-3).mean().item(),
    }


def bf16_vs_fp32_rows(device_name: str, variant: str, size: tuple[int, int], weights: str | None) -> list[dict]:
    """Compare the flow of ``variant`` on :func:`~mcjepa.data.synthetic.example_pair` at ``size``
    under bf16 autocast and under fp32 with TF32 against strict fp32 (TF32 off), through
    ``model(img1, img2)`` and :func:`mcjepa.flow.estimate`. Differences are in pixels of flow;
    ``epe_*_vs_gt`` is the end-point error against the pair's ground truth (meaningful only with
    trained ``weights``)."""
    import torch
    import torch.nn.functional as F

    from mcjepa import flow
    from mcjepa.data.synthetic import example_pair
    from mcjepa.encoder import imagenet_normalize

    from .common import autocast, resolve_device

    device = resolve_device(device_name)
    model, weights_text = _diff_model(variant, device, weights)
    pair = example_pair(size)
    img1, img2 = ((im.float() / 255)[None].to(device) for im in (pair.image1, pair.image2))
    gt = pair.flow[None].to(device)
    h, w = size
    x = F.pad(imagenet_normalize(torch.cat((img1, img2))), (0, (-w) % 32, 0, (-h) % 32), mode="replicate")

    def forward(dtype: str) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, dtype):
            return model(x[:1], x[1:])[..., :h, :w].float()

    def estimate(bf16: bool) -> torch.Tensor:
        with torch.inference_mode():
            return flow.estimate(img1, img2, model=model, bf16=bf16).float()

    base = {"variant": variant, "size": f"{h}x{w}", "batch": 1, "weights": weights_text}
    with _tf32(False):
        ref_fwd, ref_est = forward("fp32"), estimate(False)
    with _tf32(True):
        tf32_fwd = forward("fp32")
    rows = [
        {**base, "entry": "forward", "compare": "bf16 autocast vs strict fp32", **_diff_stats(forward("bf16"), ref_fwd, gt)},
        {**base, "entry": "forward", "compare": "fp32 with TF32 vs strict fp32", **_diff_stats(tf32_fwd, ref_fwd, gt)},
        {**base, "entry": "estimate", "compare": "estimate vs forward, both strict fp32", **_diff_stats(ref_est, ref_fwd, gt)},
    ]  # fmt: skip
    if device.type == "cuda":
        rows.append({**base, "entry": "estimate", "compare": "bf16=True vs strict fp32",
                     **_diff_stats(estimate(True), ref_est, gt)})  # fmt: skip
    else:
        rows.append({**base, "entry": "estimate", "compare": "bf16=True vs strict fp32",
                     "skipped": "flow.estimate runs bf16 only on CUDA (elsewhere it warns and runs float32)"})  # fmt: skip
    if device.type != "cuda":
        for row in rows:
            row["note"] = "TF32 exists only on CUDA: on CPU 'fp32 with TF32' is strict fp32"
    return rows


# ------------------------------------------------------------------------------- one part


def run_part(name: str, out_dir: Path, device_name: str, quick: bool, deadline: float, weights: str | None) -> int:
    """Run one part in this process, writing its JSON after every item; start no item after
    ``deadline`` (a ``time.time()``) or when the time left is shorter than the longest item so
    far. Returns 0 when every item ran without an exception, 3 otherwise (an item failed or was
    skipped)."""
    budget_s = round(deadline - time.time(), 1)
    from .common import resolve_device, write_json

    device = resolve_device(device_name)
    part = BUILDERS[name](device_name, quick, weights)
    rows: list[dict[str, Any]] = []
    done: list[str] = []
    skipped: list[str] = []
    errors: list[dict[str, str]] = []
    record = argparse.Namespace(
        part=name, quick=quick, device=device_name, budget_s=budget_s, **part.settings,
        items=[label for label, _ in part.items], done=done, skipped=skipped, item_errors=errors, complete=False,
    )  # fmt: skip
    path = out_dir / FILES[name]
    longest = 0.0
    for label, fn in part.items:
        left = deadline - time.time()
        if left <= 0 or left < longest:
            skipped.append(label)
            print(f"[{name}] skipping {label}: {left:.0f} s left, the longest item took {longest:.0f} s", flush=True)
            continue
        t0 = time.monotonic()
        try:
            rows.extend(fn())
            done.append(label)
        except (Exception, SystemExit) as exc:  # one failing item must not lose the others' rows
            traceback.print_exc()
            errors.append({"item": label, "error": f"{type(exc).__name__}: {exc}"})
            _free_cuda()
        longest = max(longest, time.monotonic() - t0)
        if part.finalize is not None:
            part.finalize(rows)
        write_json(path, name, record, device, rows)
    record.complete = not skipped and not errors
    write_json(path, name, record, device, rows)
    return 0 if record.complete else 3


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------- the suite


def _status(path: Path, rc: int, crash: str | None) -> dict[str, Any]:
    """``ok`` or ``error`` with a message, from the part's exit code, crash note and JSON."""
    problems = [crash] if crash else []
    data = None
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            problems.append(f"{path.name} does not parse: {exc}")
    else:
        problems.append(f"{path.name} was not written")
    if data is not None:
        rec = data.get("args", {})
        if rec.get("skipped"):
            problems.append(f"time budget: skipped {', '.join(rec['skipped'])}")
        for err in rec.get("item_errors", []):
            problems.append(f"{err['item']}: {err['error']}")
        if not data.get("results"):
            problems.append("no results")
        bad = [r for r in data.get("results", []) if r.get("error")]
        if bad:
            problems.append(f"{len(bad)} result row(s) report an error, first: {bad[0]['error']}")
    if rc not in (0, 3) and not problems:
        problems.append(f"exit status {rc}")
    return {"status": "error", "message": "; ".join(problems)} if problems else {"status": "ok"}


def _run_child(cmd: list[str], budget: float, log: Path) -> tuple[int, str | None]:
    """Run one part's process with its output in ``log``; kill it at ``budget`` seconds.
    Returns ``(exit status, crash note or None)``."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as fh:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=budget).returncode
        except subprocess.TimeoutExpired:  # subprocess.run has killed the child
            return -9, f"killed at its {budget:.0f} s budget"
    if rc in (0, 3):  # 3: the part ran but an item failed or was skipped; its JSON says which
        return rc, None
    return rc, f"exit status {rc}; log tail: " + log.read_text(errors="replace")[-1500:]


def _run_inline(
    name: str, out_dir: Path, device: str, quick: bool, budget: float, weights: str | None
) -> tuple[int, str | None]:
    """Run one part in this process (``--in-process``); an exception becomes a crash note."""
    try:
        return run_part(name, out_dir, device, quick, time.time() + budget, weights), None
    except (Exception, SystemExit) as exc:  # one failing part must not stop the others (argparse exits)
        traceback.print_exc()
        _free_cuda()
        return 1, f"{type(exc).__name__}: {exc}"


def _write_summary(out_dir: Path, payload: dict[str, Any]) -> None:
    (out_dir / "summary.json").write_text(json.dumps(payload, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_suite", description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, required=True, help="folder for the JSON files and summary.json")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"], help="default: cuda when present")
    p.add_argument("--quick", action="store_true", help="tiny sizes, micro variant, 1 repeat (CI smoke run)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="a subset of the parts, in order")
    p.add_argument("--deadline-s", type=float, default=DEADLINE_S, help="start no part after this many seconds")
    p.add_argument("--weights", default=None, help="weights for bf16_vs_fp32 (flow.load); default: untrained")
    p.add_argument("--in-process", action="store_true", help="run the parts in this process (no isolation, no "
                   "kill at the budget; the items' time checks still apply): faster to start, for tests")  # fmt: skip
    p.add_argument("--part", choices=PARTS, default=None, help=argparse.SUPPRESS)  # internal: run one part
    p.add_argument("--part-deadline", type=float, default=None, help=argparse.SUPPRESS)  # a time.time()
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the suite (each part in a child process) and return the summary."""
    args = build_parser().parse_args(argv)
    if args.part is not None:  # child process: one part
        sys.exit(run_part(args.part, args.out_dir, args.device, args.quick, args.part_deadline, args.weights))
    import torch

    from .common import resolve_device

    device = resolve_device(args.device)  # fails here, before any part, when CUDA is asked for but absent
    if device.type == "cpu" and not args.quick:
        print("gpu_suite: running the GPU sizes on a CPU; parts will hit their time budgets", flush=True)
    out_dir = args.out_dir
    (out_dir if args.in_process else out_dir / "logs").mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    summary: dict[str, Any] = {
        "suite": "gpu_suite",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("part")},
        "device": str(device),
        "torch": torch.__version__,
        "budgets_s": {name: BUDGET_S[name] for name in args.parts},
        "parts": [],
    }
    for name in args.parts:
        path, log = out_dir / FILES[name], out_dir / "logs" / f"{name}.log"
        entry: dict[str, Any] = {"part": name, "file": FILES[name], "log": f"logs/{name}.log", "scope": SCOPE[name]}
        path.unlink(missing_ok=True)  # never report a previous run's file as this one's
        left = args.deadline_s - (time.monotonic() - start)
        if left < MIN_PART_S:
            entry.update(status="error", message=f"not started: {left:.0f} s left before the {args.deadline_s:.0f} s deadline",
                         wall_s=0.0)  # fmt: skip
            summary["parts"].append(entry)
            continue
        budget = min(BUDGET_S[name], left)
        print(f"gpu_suite: {name} (budget {budget:.0f} s) ...", flush=True)
        t0 = time.monotonic()
        if args.in_process:
            entry["log"] = None
            rc, crash = _run_inline(name, out_dir, str(device), args.quick, budget, args.weights)
        else:
            cmd = [sys.executable, "-m", "benchmarks.gpu_suite", "--part", name, "--out-dir", str(out_dir),
                   "--device", str(device), "--part-deadline", f"{time.time() + budget - CHILD_MARGIN_S:.1f}"]  # fmt: skip
            cmd += ["--quick"] if args.quick else []
            cmd += ["--weights", args.weights] if args.weights else []
            rc, crash = _run_child(cmd, budget, log)
        entry.update(wall_s=round(time.monotonic() - t0, 2), budget_s=round(budget, 1), **_status(path, rc, crash))
        print(f"gpu_suite: {name}: {entry['status']} in {entry['wall_s']:.0f} s"
              + (f" ({entry['message'][:300]})" if entry["status"] != "ok" else ""), flush=True)  # fmt: skip
        summary["parts"].append(entry)
        summary["wall_s"] = round(time.monotonic() - start, 2)
        _write_summary(out_dir, summary)
    summary["wall_s"] = round(time.monotonic() - start, 2)
    summary["ok"] = all(p["status"] == "ok" for p in summary["parts"])
    _write_summary(out_dir, summary)
    print(f"gpu_suite: wrote {out_dir / 'summary.json'} ({summary['wall_s']:.0f} s, "
          f"{sum(p['status'] == 'ok' for p in summary['parts'])}/{len(summary['parts'])} parts ok)")  # fmt: skip
    return summary


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)

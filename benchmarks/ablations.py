"""The paper's ablations (Tables 3, 5, 11, alpha, M-JEPA) as one resumable grid on the ``demo`` config.

    python -m benchmarks.ablations --out-dir runs/ablations [--seeds 0 1] [--quick] [--cells NAME ...]
        [--jobs N] [--set run.threads=1]

Every cell is a list of ``--set`` overrides on ``demo`` (the grid below, :data:`CELLS`, is the only
place they are defined). Each (cell, seed) trains with :class:`mcjepa.train.engine.Trainer` in
``DIR/runs/<cell>__seed<k>/`` and writes its result atomically to ``DIR/cells/<cell>__seed<k>.json``;
a rerun skips the (cell, seed) pairs that have a result, resumes a killed one from its newest
checkpoint (a fresh start when none loads), and rewrites ``DIR/ablations.md`` and
``DIR/ablations.json`` from every result on disk. ``--jobs N`` trains N cells at once in separate
processes (default 2 on 2 or more CPUs), each with ``run.threads`` = CPUs // N, so a cell's result
does not depend on N. After training, each cell's newest checkpoint is also evaluated on 100
held-out real-texture pairs (the five bundled photos no training set uses); a rerun adds that
measure to results written before it existed.

Epoch scaling. The paper trains 100 epochs, motion from epoch 10, L_vc from epoch 11 (one epoch of
warm-up). ``demo`` trains 10 epochs of 30 steps with motion from epoch 1, i.e. the paper's
schedule times 10/100 = 0.1. The Table 11 warm-ups of 0 / 1 / 2 paper epochs after the start of
motion are scaled by the same factor: ``schedule.vc_start_epoch`` = 1.0 / 1.1 / 1.2 (0 / 3 / 6
steps of warm-up). ``demo`` itself starts L_vc at epoch 2 (one *demo* epoch after motion, not
proportional); the grid's reference cell ``baseline`` uses the proportional 1.1 so that it is
also Table 11's "all layers, 1-epoch warm-up" row, and every table compares against this one cell.
M-JEPA (no content stream) must start motion at epoch 0, so its L_vc starts at 0.1.

Channel factor. ``demo`` uses the ``micro`` variant, whose flow head has C = 0.25 (the paper's
C = 2 scaled down with the encoder); the paper's C = 1 row is the same ratio, C = 0.125.

Metrics map onto the paper's as follows: held-out synthetic EPE (zero flow beside it) stands for
KITTI / Sintel EPE; the content k-NN (Fashion-MNIST when installed, else synthetic shapes) stands
for ISeg mIoU / VSeg (J&F)m. The paper's figures are quoted from the seed, not reproduced.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcjepa.utils.atomic import atomic_write_bytes

# Expectations per metric relative to the reference cell: "worse", "better", "similar", "crash".
# A cell's EPE expectation holds for both flow measures: the synthetic pairs (EPE) and the
# real-texture pairs (RT_EPE, photos the training never sees).
EPE, KNN, RT_EPE = "epe", "knn", "rt_epe"
METRICS = (EPE, RT_EPE, KNN)

# real-texture evaluation per cell: the five bundled photos (held out from every training set),
# dataset seed REAL_TEXTURE_SEED_OFFSET + run seed, the size of the README's real-texture figure
REAL_TEXTURE_PAIRS, REAL_TEXTURE_SIZE = 100, (96, 128)
QUICK_REAL_TEXTURE_PAIRS, QUICK_REAL_TEXTURE_SIZE = 2, (32, 48)


@dataclass(frozen=True)
class Cell:
    name: str
    table: str  # the paper table (group in the output)
    row: str  # the paper's row this cell reproduces
    overrides: tuple[str, ...]
    paper: str  # the paper's figure(s) for the row, quoted from the seed
    expect: dict[str, str] = field(default_factory=dict)  # metric -> expected direction vs baseline
    reference: str = "baseline"


_T3 = "Table 3 (flow estimator)"
_T5 = "Table 5 (data sampling)"
_T11 = "Table 11 (L_vc)"
_ALPHA = "alpha (docs/method.md#total-objective)"
_MT = "Multi-task (M-JEPA vs MC-JEPA)"

CELLS: tuple[Cell, ...] = (
    Cell(
        "baseline",
        "reference",
        "MC-JEPA as configured: C=2 (micro: 0.25), LayerNorm, combined sampling, L_vc all, 1-epoch warm-up, alpha 0.1",
        ("schedule.vc_start_epoch=1.1",),
        "Table 3/5 C=2 LN, combined: KITTI 2.67, Sintel 2.81, ISeg 67.1, VSeg 70.5; Table 11 all+1 ep: ISeg 67.1, VSeg 70.5",
        reference="",
    ),
    Cell(
        "layernorm_off",
        _T3,
        "C=1, no LayerNorm",
        ("schedule.vc_start_epoch=1.1", "model.flow_head.use_layernorm=false"),
        "Table 3: CRASHED",
        {EPE: "crash"},
    ),
    Cell(
        "featnorm_l2",
        _T3,
        "C=1, LayerNorm + L2-Norm",
        ("schedule.vc_start_epoch=1.1", 'model.flow_head.feature_normalization="l2"'),
        "Table 3: KITTI 6.21, ISeg 53.2, VSeg 47.9",
        {EPE: "worse", KNN: "worse"},
    ),
    Cell(
        "featnorm_none",
        _T3,
        "LayerNorm, raw features (the paper's plain row; 'standardize' is this project's default)",
        ("schedule.vc_start_epoch=1.1", 'model.flow_head.feature_normalization="none"'),
        "Table 3 C=2 LN (no feature normalisation in the paper): KITTI 2.67, ISeg 67.1, VSeg 70.5",
        {},
    ),
    Cell(
        "channel_c1",
        _T3,
        "C=1 (micro: 0.125), LayerNorm",
        ("schedule.vc_start_epoch=1.1", "model.flow_head.channel_factor=0.125"),
        "Table 3: KITTI 2.68, ISeg 67.0, VSeg 70.2 (C=2: 2.67, 67.1, 70.5)",
        {EPE: "similar", KNN: "similar"},
    ),
    Cell(
        "sampling_batch_alternation",
        _T5,
        "Batch alternation",
        ("schedule.vc_start_epoch=1.1", 'schedule.sampling="batch_alternation"'),
        "Table 5: KITTI 2.78, Sintel 2.95, ISeg 67.1, VSeg 70.5",
        {EPE: "worse", KNN: "similar"},
    ),
    Cell(
        "sampling_epoch_alternation",
        _T5,
        "Epoch alternation",
        ("schedule.vc_start_epoch=1.1", 'schedule.sampling="epoch_alternation"'),
        "Table 5: KITTI 4.54, Sintel 4.91, ISeg 63.5, VSeg 66.9",
        {EPE: "worse", KNN: "worse"},
    ),
    Cell(
        "sampling_frozen_encoder",
        _T5,
        "Flow estimator only (separate training)",
        ("schedule.vc_start_epoch=1.1", 'schedule.sampling="frozen_encoder_flow"'),
        "Table 5: KITTI 13.52, Sintel 13.82, ISeg 60.1, VSeg 65.2",
        {EPE: "worse", KNN: "worse"},
    ),
    Cell(
        "vc_off",
        _T11,
        "No L_vc",
        ("schedule.vc_start_epoch=1.1", 'loss.vc_mode="off"'),
        "Table 11: ISeg 47.3, VSeg 37.8",
        {KNN: "worse"},
    ),
    Cell(
        "vc_last",
        _T11,
        "L_vc on the last layer only, 1-epoch warm-up",
        ("schedule.vc_start_epoch=1.1", 'loss.vc_mode="last"'),
        "Table 11: ISeg 65.6, VSeg 69.2",
        {KNN: "worse"},
    ),
    Cell(
        "vc_all_warmup0",
        _T11,
        "L_vc on all layers, no warm-up",
        ("schedule.vc_start_epoch=1.0",),
        "Table 11: ISeg 66.2, VSeg 69.4",
        {KNN: "worse"},
    ),
    Cell(
        "vc_all_warmup2",
        _T11,
        "L_vc on all layers, 2-epoch warm-up",
        ("schedule.vc_start_epoch=1.2",),
        "Table 11: ISeg 62.5, VSeg 64.1",
        {KNN: "worse"},
    ),
    Cell(
        "alpha_1",
        _ALPHA,
        "alpha = 1.0",
        ("schedule.vc_start_epoch=1.1", "loss.alpha=1.0"),
        "paper: 'higher values significantly degrade content learning' (no figures)",
        {KNN: "worse"},
    ),
    Cell(
        "mjepa",
        _MT,
        "M-JEPA (motion only)",
        ("schedule.content_enabled=false", "schedule.motion_start_epoch=0", "schedule.vc_start_epoch=0.1"),
        "Multi-task table: M-JEPA KITTI 3.01, Sintel 2.98 vs MC-JEPA 2.67, 2.81",
        {EPE: "worse"},
    ),
)
CELLS_BY_NAME = {c.name: c for c in CELLS}
TABLE_ORDER = ("reference", _T3, _T5, _T11, _ALPHA, _MT)

# --quick: a few steps, small evaluations, no Fashion-MNIST (CI)
QUICK_OVERRIDES = (
    "schedule.epochs=2",
    "schedule.steps_per_epoch=3",
    "data.content_batch_size=4",
    "data.motion_batch_size=2",
    "data.content.num_images=32",
    "data.content.image_size=[48, 48]",
    "data.content.size=32",
    'data.motion=[{name = "synthetic", num_pairs = 16, size = [32, 48], seed = 1, repeat = 1}]',
    "data.eval_synthetic_pairs=2",
    "data.eval_synthetic_size=[32, 48]",
    "data.eval_content_images=24",
    'data.eval_fashion_mnist_root=""',
    "run.checkpoint_every=3",
    "run.log_every=1",
)
# every run: one thread per run (deterministic on a given machine), no release export
COMMON_OVERRIDES = ("run.export_release=false", "run.tensorboard=false")
# the grid measures the paper's balance of the two streams (alpha = 0.1, L_reg training features
# and flows), not the demo's (docs/scaling.md); applied before each cell's own keys, so alpha_1 wins
PAPER_BALANCE = ('loss.reg_gradient="both"', "loss.alpha=0.1")

VERDICT_RULE = (
    "Verdict per metric, cell vs `baseline`, paired by seed (each seed draws its own held-out "
    "pairs and k-NN images): d_s = cell - baseline for every seed both finished without "
    "diverging; d = mean of d_s, spread = max(d_s) - min(d_s). |d| <= spread: *inconclusive* "
    "(with one seed the spread is unknown: always inconclusive, except for crashes). Otherwise "
    "the paper's direction (EPE: worse = higher; k-NN: worse = lower) decides *agrees* / "
    "*disagrees*; an expected 'similar' agrees only when inconclusive by this rule and is reported "
    "as *agrees (within spread)*. An expected crash agrees when every seed diverged. "
    "A cell that diverged has no metrics and is compared on divergence only."
)


def cell_config_overrides(cell: Cell, seed: int, quick: bool) -> list[str]:
    """The full override list for ``load_config("demo", ...)``: the cell's, the run's, --quick's."""
    return [*PAPER_BALANCE, *cell.overrides, *COMMON_OVERRIDES, f"run.seed={seed}", *(QUICK_OVERRIDES if quick else ())]


def result_path(out_dir: Path, cell: str, seed: int) -> Path:
    return out_dir / "cells" / f"{cell}__seed{seed}.json"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _last_diag(metrics_path: Path) -> dict[str, float]:
    """``diag_l{3,4,5}_{frame_diff,within}`` of the last metrics.jsonl row that has them."""
    if not metrics_path.exists():
        return {}
    last: dict[str, float] = {}
    for line in metrics_path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        keys = {f"diag_l{i}_{m}" for i in (3, 4, 5) for m in ("frame_diff", "within")}
        found = {k: row[k] for k in sorted(keys) if k in row}
        if found:
            last = found
    return last


def real_texture_metrics(run_dir: Path, seed: int, quick: bool) -> dict[str, float]:
    """Held-out real-texture EPE (pixels) of the newest checkpoint in ``run_dir`` and of zero flow on
    the same pairs: ``{"real_texture_epe", "real_texture_zero_flow_epe"}``. Raises when the run
    folder holds no loadable checkpoint."""
    from mcjepa.eval.flow_eval import REAL_TEXTURE_SEED_OFFSET
    from mcjepa.release.export import model_from_checkpoint
    from mcjepa.train.checkpoint import latest_checkpoint
    from mcjepa.train.evaluate import synthetic_epe

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint to evaluate on real-texture pairs")
    model, _ = model_from_checkpoint(ckpt)
    pairs, size = (
        (QUICK_REAL_TEXTURE_PAIRS, QUICK_REAL_TEXTURE_SIZE) if quick else (REAL_TEXTURE_PAIRS, REAL_TEXTURE_SIZE)
    )
    result = synthetic_epe(model, pairs, size, seed=REAL_TEXTURE_SEED_OFFSET + seed, photos="bundled")
    return {"real_texture_epe": result["epe"], "real_texture_zero_flow_epe": result["zero_flow_epe"]}


def add_real_texture(record: dict[str, Any], out_dir: Path) -> bool:
    """Fill ``record``'s real-texture EPE from its run's checkpoint when it lacks one (results
    written before this measure existed); return True when the record changed. A diverged cell
    or a run folder without a checkpoint is left as it is."""
    if "real_texture_epe" in record or record.get("diverged"):
        return False
    run_dir = out_dir / "runs" / f"{record['cell']}__seed{record['seed']}"
    try:
        record.update(real_texture_metrics(run_dir, record["seed"], bool(record.get("quick"))))
        record.pop("real_texture_error", None)  # an earlier attempt's failure
    except Exception as exc:  # noqa: BLE001 - recorded; the grid goes on
        record["real_texture_error"] = f"{type(exc).__name__}: {exc}"
    return True


def run_cell(cell: Cell, seed: int, out_dir: Path, quick: bool, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train one (cell, seed), return its result record (never raises for a training failure)."""
    from mcjepa.train.checkpoint import latest_checkpoint
    from mcjepa.train.config import load_config
    from mcjepa.train.engine import Trainer

    run_dir = out_dir / "runs" / f"{cell.name}__seed{seed}"
    overrides = [*cell_config_overrides(cell, seed, quick), *extra]
    cfg = load_config("demo", overrides)
    record: dict[str, Any] = {
        "cell": cell.name,
        "seed": seed,
        "table": cell.table,
        "row": cell.row,
        "overrides": list(cell.overrides),
        "quick": quick,
        "paper": cell.paper,
    }
    start = time.time()
    summary: dict[str, Any] = {}
    error = None
    try:
        trainer = None
        if run_dir.exists() and latest_checkpoint(run_dir) is not None:
            try:
                trainer = Trainer(cfg, run_dir, resume=True)
                record["resumed"] = True
            except Exception as exc:  # no checkpoint loads, or the config changed: start again
                print(f"  {cell.name} seed {seed}: cannot resume ({exc}); starting again", file=sys.stderr)
                trainer = None
        if trainer is None:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            trainer = Trainer(cfg, run_dir)
        summary = trainer.fit()
    except Exception as exc:  # divergence or any failure: recorded, the grid goes on
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    metric_keys = (
        "trained_epe",
        "trained_zero_flow_epe",
        "untrained_epe",
        "fmnist_knn",
        "fmnist_knn_random",
        "shapes_knn",
        "shapes_knn_random",
    )
    metrics = {k: summary.get(k) for k in metric_keys if k in summary}
    nonfinite_metric = any(not _finite(v) for v in metrics.values() if v is not None)
    record.update(metrics)
    record["nonfinite_skipped"] = summary.get("nonfinite_skipped")
    record["diverged"] = bool(error is not None or nonfinite_metric)
    record["error"] = error
    record["collapse"] = _last_diag(run_dir / "metrics.jsonl")
    record["wall_time_s"] = summary.get("wall_time_s")
    add_real_texture(record, out_dir)
    record["elapsed_s"] = round(time.time() - start, 2)
    return record


# ---------------------------------------------------------------------------------------------
# the table


def _knn_key(records: list[dict[str, Any]]) -> str:
    return "fmnist_knn" if any(_finite(r.get("fmnist_knn")) for r in records) else "shapes_knn"


def _stats(values: list[float]) -> dict[str, Any] | None:
    vals = [v for v in values if _finite(v)]
    if not vals:
        return None
    return {"mean": statistics.fmean(vals), "spread": max(vals) - min(vals), "n": len(vals)}


def _paired(cell: dict[int, float], ref: dict[int, float]) -> list[float]:
    """Per-seed differences cell - reference over the seeds both have a finite value for (the
    held-out EPE pairs and k-NN images are drawn from the run's seed, so only the same seed
    compares like with like)."""
    return [cell[k] - ref[k] for k in sorted(set(cell) & set(ref)) if _finite(cell[k]) and _finite(ref[k])]


def _verdict(expect: str | None, metric: str, diffs: list[float], cell_div: list[bool]) -> str:
    if expect is None:
        return "no paper claim"
    if expect == "crash":
        if cell_div and all(cell_div):
            return "agrees (diverged)"
        if cell_div and not any(cell_div):
            return "disagrees (trained)"
        return "inconclusive (some seeds diverged)"
    if not diffs:
        return "inconclusive (no paired result)"
    if len(diffs) < 2:
        return "inconclusive (one seed)"
    d = statistics.fmean(diffs)
    spread = max(diffs) - min(diffs)
    if abs(d) <= spread:
        return "agrees (within spread)" if expect == "similar" else "inconclusive"
    if expect == "similar":
        return "disagrees"
    worse = d > 0 if metric in (EPE, RT_EPE) else d < 0
    return "agrees" if worse == (expect == "worse") else "disagrees"


def _fmt(s: dict[str, Any] | None, digits: int, scale: float = 1.0) -> str:
    if s is None:
        return "-"
    mean, spread = s["mean"] * scale, s["spread"] * scale
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if s["n"] > 1 else f"{mean:.{digits}f}"


def build_table(records: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Markdown and JSON of the grid from the per-cell result records."""
    knn = _knn_key(records)
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_cell.setdefault(r["cell"], []).append(r)
    summary: dict[str, Any] = {}
    for name, rs in by_cell.items():
        ok = [r for r in rs if not r.get("diverged")]
        coll = {}
        for key in sorted({k for r in ok for k in (r.get("collapse") or {})}):
            coll[key] = _stats([r["collapse"][key] for r in ok if key in (r.get("collapse") or {})])
        summary[name] = {
            "seeds": sorted(r["seed"] for r in rs),
            "diverged": [bool(r.get("diverged")) for r in sorted(rs, key=lambda r: r["seed"])],
            "epe": _stats([r.get("trained_epe") for r in ok]),
            "zero_flow_epe": _stats([r.get("trained_zero_flow_epe") for r in ok]),
            "rt_epe": _stats([r.get("real_texture_epe") for r in ok]),
            "rt_zero_flow_epe": _stats([r.get("real_texture_zero_flow_epe") for r in ok]),
            "knn": _stats([r.get(knn) for r in ok]),
            "knn_random": _stats([r.get(f"{knn}_random") for r in ok]),
            "nonfinite_skipped": sum(r.get("nonfinite_skipped") or 0 for r in rs),
            "collapse": coll,
            "wall_time_s": _stats([r.get("wall_time_s") for r in ok]),
            "per_seed": {
                EPE: {r["seed"]: r.get("trained_epe") for r in ok},
                RT_EPE: {r["seed"]: r.get("real_texture_epe") for r in ok if "real_texture_epe" in r},
                KNN: {r["seed"]: r.get(knn) for r in ok},
            },
        }
    ref = summary.get("baseline")
    for name, s in summary.items():
        cell = CELLS_BY_NAME.get(name)
        s["verdict"] = {}
        if cell is None or not cell.reference:
            continue
        for metric in METRICS:
            expect = cell.expect.get(EPE if metric == RT_EPE else metric)
            diffs = _paired(s["per_seed"][metric], ref["per_seed"][metric]) if ref else []
            s["paired_diff"] = {**s.get("paired_diff", {}), metric: diffs}
            s["verdict"][metric] = _verdict(expect, metric, diffs, s["diverged"])
            if metric == RT_EPE and not s["per_seed"][RT_EPE] and expect != "crash":
                s["verdict"][metric] = "not measured"
    knn_name = "Fashion-MNIST" if knn == "fmnist_knn" else "shapes"
    lines = [
        "# MC-JEPA ablations on the `demo` config",
        "",
        "Generated by `python -m benchmarks.ablations`. Values: mean ± range (max - min) over seeds.",
        f"EPE: held-out synthetic pairs, px (zero flow beside it). Real-texture EPE: {REAL_TEXTURE_PAIRS} held-out "
        f"pairs at {REAL_TEXTURE_SIZE[0]}x{REAL_TEXTURE_SIZE[1]} textured with the five bundled photos no training "
        "set uses, px (zero flow beside it; the same expectation as EPE).",
        f"k-NN: {knn_name} top-1 % (random encoder beside it).",
        "Collapse: the last logged `diag_l5_frame_diff` / `diag_l5_within` (coarsest level; l3, l4 in ablations.json).",
        "Paper figures are quoted from arXiv 2307.12698 (KITTI/Sintel EPE, ISeg mIoU, VSeg (J&F)m); they are not comparable in",
        "absolute terms, only in direction.",
        "",
        f"**Rule.** {VERDICT_RULE}",
        "",
    ]
    header = (
        "| cell | paper row | seeds | diverged | EPE (zero flow) | real-texture EPE (zero flow) | k-NN (random) "
        "| nonfinite steps | l5 frame_diff / within | wall s | paper | verdict EPE | verdict real-texture EPE "
        "| verdict k-NN |"
    )
    order = [c.name for c in CELLS] + sorted(n for n in summary if n not in CELLS_BY_NAME)
    for table in TABLE_ORDER + ("other",):
        names = [
            n for n in order if n in summary and (CELLS_BY_NAME[n].table if n in CELLS_BY_NAME else "other") == table
        ]
        if not names:
            continue
        lines += [f"## {table}", "", header, "|" + "---|" * 14]
        for n in names:
            s, cell = summary[n], CELLS_BY_NAME.get(n)
            coll = s["collapse"]
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"`{n}`",
                        cell.row if cell else "-",
                        ",".join(map(str, s["seeds"])),
                        f"{sum(s['diverged'])}/{len(s['diverged'])}",
                        f"{_fmt(s['epe'], 3)} ({_fmt(s['zero_flow_epe'], 3)})",
                        f"{_fmt(s['rt_epe'], 3)} ({_fmt(s['rt_zero_flow_epe'], 3)})",
                        f"{_fmt(s['knn'], 1, 100)} ({_fmt(s['knn_random'], 1, 100)})",
                        str(s["nonfinite_skipped"]),
                        f"{_fmt(coll.get('diag_l5_frame_diff'), 3)} / {_fmt(coll.get('diag_l5_within'), 3)}",
                        _fmt(s["wall_time_s"], 0),
                        cell.paper if cell else "-",
                        *(s["verdict"].get(m, "reference" if cell and not cell.reference else "-") for m in METRICS),
                    ]
                )
                + " |"
            )
        lines.append("")
    data = {"knn_metric": knn, "rule": VERDICT_RULE, "cells": summary, "records": records}
    return "\n".join(lines), data


def write_table(out_dir: Path) -> dict[str, Any]:
    records = []
    for p in sorted((out_dir / "cells").glob("*.json")):
        try:
            records.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    md, data = build_table(records)
    atomic_write_bytes(out_dir / "ablations.md", md.encode())
    atomic_write_bytes(out_dir / "ablations.json", (json.dumps(data, indent=2, default=str) + "\n").encode())
    return data


# ---------------------------------------------------------------------------------------------


def default_jobs() -> int:
    """Cells trained at once by default: 2 when the process may use 2 or more CPUs, else 1."""
    from mcjepa.data.workers import available_cpus

    return 2 if available_cpus() >= 2 else 1


def _finish(out_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_bytes(
        result_path(out_dir, record["cell"], record["seed"]),
        (json.dumps(record, indent=2, default=str) + "\n").encode(),
    )


def backfill_real_texture(out_dir: Path, pairs: list[tuple[Cell, int]]) -> int:
    """Add the real-texture EPE to finished results of ``pairs`` that lack it; return how many."""
    done = 0
    for cell, seed in pairs:
        path = result_path(out_dir, cell.name, seed)
        if not path.exists():
            continue
        record = json.loads(path.read_text())
        if add_real_texture(record, out_dir):
            _finish(out_dir, record)
            done += 1
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--quick", action="store_true", help="tiny settings for CI (2 epochs of 3 steps, no Fashion-MNIST)")
    p.add_argument("--cells", nargs="+", default=None, help=f"subset of: {' '.join(CELLS_BY_NAME)}")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="cells trained at once, each in its own process with run.threads = CPUs // jobs unless --set "
        "run.threads is given (default: 2 on 2 or more CPUs, else 1)",
    )
    p.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a run-level override for every cell that does not change the method, e.g. run.threads=1",
    )
    args = p.parse_args(argv)
    names = args.cells or list(CELLS_BY_NAME)
    unknown = [n for n in names if n not in CELLS_BY_NAME]
    if unknown:
        p.error(f"unknown cell(s) {unknown}; known: {list(CELLS_BY_NAME)}")
    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        p.error(f"--jobs must be 1 or more, got {jobs}")
    extra = list(args.extra)
    threads = next((e.strip() for e in extra if e.split("=", 1)[0].strip() == "run.threads"), None)
    if threads is None:
        from mcjepa.data.workers import available_cpus

        # one fixed thread count per run: a cell's result does not depend on what else runs
        threads = f"run.threads={max(1, available_cpus() // jobs)}"
        extra.append(threads)
    out_dir: Path = args.out_dir
    (out_dir / "cells").mkdir(parents=True, exist_ok=True)
    # Seed-major: the whole grid for the first seed comes first, so a partial run gives a full table.
    pairs = [(CELLS_BY_NAME[n], s) for s in args.seeds for n in names]
    todo = [(c, s) for c, s in pairs if not result_path(out_dir, c.name, s).exists()]
    print(
        f"ablations: {len(pairs)} (cell, seed) pairs, {len(pairs) - len(todo)} done, {len(todo)} to run, "
        f"{min(jobs, max(1, len(todo)))} at a time, {threads} each",
        flush=True,
    )
    filled = backfill_real_texture(out_dir, [pc for pc in pairs if pc not in todo])
    if filled:
        print(f"added the real-texture EPE to {filled} earlier result(s)", flush=True)
    t0, durations = time.time(), []

    def report(i: int, record: dict[str, Any]) -> None:
        _finish(out_dir, record)
        durations.append(record["elapsed_s"])
        left = statistics.fmean(durations) * (len(todo) - i) / min(jobs, max(1, len(todo) - i))
        status = "DIVERGED" if record["diverged"] else f"EPE {record.get('trained_epe')}"
        print(
            f"[{i}/{len(todo)}] {record['cell']} seed {record['seed']}: {status}, {record['elapsed_s']:.0f} s; "
            f"elapsed {time.time() - t0:.0f} s, about {left:.0f} s left",
            flush=True,
        )
        write_table(out_dir)

    if jobs == 1 or len(todo) <= 1:
        for i, (cell, seed) in enumerate(todo, 1):
            report(i, run_cell(cell, seed, out_dir, args.quick, tuple(extra)))
    else:
        ctx = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(run_cell, c, s, out_dir, args.quick, tuple(extra)) for c, s in todo]
            for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
                report(i, future.result())
    write_table(out_dir)
    print(f"table: {out_dir / 'ablations.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

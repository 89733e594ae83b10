"""The method learns: flow and content under the full objective, and the collapse it must avoid.

Each test trains the micro model for a short run on the embedded synthetic data and measures
on held-out data (seeds training never sees) against the untrained model's figures. Together
they take a few minutes on 2 CPU cores; ``docs/learning_dynamics.md`` has the longer runs.
"""

from __future__ import annotations

import json

import pytest

from mcjepa.train.config import load_config
from mcjepa.train.engine import Trainer

QUIET = ["run.export_release=false", "run.checkpoint_every=100000", "run.log_every=10", "run.threads=2"]


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _collapse_run(tmp_path, name: str, guard: list[str]) -> tuple[dict, dict]:
    """75 steps of L_reg alone on the motion stream (no pixel loss, no content stream, no L_vc
    unless ``guard`` adds it): return the first and last logged collapse measures."""
    overrides = [
        "schedule.epochs=3",
        "schedule.steps_per_epoch=25",
        "loss.photo_l1=0",
        "loss.photo_ssim=0",
        "loss.smooth_weight=0",
        "loss.cycle_weight=0",
        "loss.reg_weights_coarse_to_fine=[1, 1, 1, 1, 0.1, 0.01]",
        "data.eval_synthetic_pairs=0",
        'data.motion=[{name = "synthetic", num_pairs = 1024, size = [48, 64], seed = 1}]',
        *QUIET,
        *guard,
    ]
    cfg = load_config("flow-demo", overrides)
    Trainer(cfg, tmp_path / name).fit()
    records = _records(tmp_path / name)
    return records[0], records[-1]


def test_l_reg_alone_collapses_the_features_and_the_guard_prevents_it(tmp_path):
    """The failure the paper's Table 11 is about: with nothing but L_reg shaping the encoder the
    two frames' features become identical and flat over each image (L_reg is then lower at zero
    flow than at the true flow). The standardised feature losses this project uses by default
    prevent it (the paper's batch-pooled L_vc does not: docs/learning_dynamics.md)."""
    coarse = (3, 4, 5)  # strides 8, 16, 32
    first, last = _collapse_run(tmp_path, "none", ['loss.feature_loss_norm="none"', 'loss.vc_mode="off"'])
    for lvl in coarse:  # measured: frame_diff falls 15-70x, within 2-4x
        assert last[f"diag_l{lvl}_frame_diff"] < 0.1 * first[f"diag_l{lvl}_frame_diff"], lvl
        assert last[f"diag_l{lvl}_within"] < 0.6 * first[f"diag_l{lvl}_within"], lvl
    first_g, guarded = _collapse_run(tmp_path, "guard", ['loss.feature_loss_norm="standardize"', 'loss.vc_mode="off"'])
    for lvl in coarse:  # no spatial collapse: the spread within each image grows instead
        assert guarded[f"diag_l{lvl}_within"] > first_g[f"diag_l{lvl}_within"], lvl
    # the frames stay distinguishable at stride 8 (measured at the coarser levels, L_reg alone
    # still makes the two frames' maps nearly equal relative to their spread: what keeps them
    # apart in training is the content stream, docs/learning_dynamics.md)
    assert guarded["diag_l3_frame_diff"] > 0.5 * first_g["diag_l3_frame_diff"]


# The full objective, shortened: every motion loss (L_reg, L_rec, L_smooth, L_cycle, L_vc) and
# VICReg on, the demo's schedule (300 steps) with smaller batches and 48x64 frame pairs.
FULL = [
    "schedule.epochs=10",
    "schedule.steps_per_epoch=30",
    "data.content_batch_size=8",
    'data.motion=[{name = "synthetic", num_pairs = 2048, size = [48, 64], seed = 1}]',
    "data.eval_synthetic_pairs=24",
    "data.eval_synthetic_size=[64, 96]",
    "data.eval_content_images=1200",  # 600 held-out queries: a k-NN spread of about 0.02
    'data.eval_fashion_mnist_root=""',
    *QUIET,
]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    summary = Trainer(load_config("demo", FULL), run_dir).fit()
    return summary, _records(run_dir)


def test_full_objective_learns_flow_on_held_out_pairs(full_run):
    summary, records = full_run
    assert summary["nonfinite_skipped"] == 0
    untrained, trained = summary["untrained_epe"], summary["trained_epe"]
    assert untrained == pytest.approx(summary["untrained_zero_flow_epe"])  # zero-initialised head
    assert untrained > 3.0  # the rich preset: camera homography, rotating and scaling shapes
    # measured 0.65x-0.71x over seeds 0-2 and 1 or 2 threads: large motion is far from learnt in 270
    # motion steps at 48x64, but a run whose flow does not learn stays at 0.99x (docs/learning_dynamics.md)
    assert trained < 0.9 * untrained, (trained, untrained)
    # every term of the objective is active in phase 2 (after L_vc starts)
    late = [r for r in records if r["epoch"] >= 2.5]
    for key in ("ssl", "reg", "rec", "smooth", "cycle", "vc"):
        assert all(r[key] > 0 for r in late), key


def test_full_objective_learns_content_features(full_run):
    """k-NN on 600 held-out labelled shape images (6 silhouettes, chance 1/6): the trained encoder's
    pooled embedding beats the same encoder at initialisation (``shapes_knn_random``: the run's own
    starting weights).

    The margin is small at this scale and varies with the seed and the thread count: measured
    +0.050, +0.038, +0.048 (seeds 0-2, one thread) and +0.035, +0.010, +0.065 (two threads), with
    this file's FULL settings; a bound of +0.05 failed 3 of those 6 runs, so the bound is "above
    its initialisation". An encoder that does not learn has a margin of exactly 0. The label-based
    content claim at a useful scale is ``test_content_stream_learns_fashion_mnist``."""
    summary, _ = full_run
    assert summary["shapes_knn"] > summary["shapes_knn_random"], summary


# The content stream on a real labelled set (Debian's dataset-fashion-mnist; skipped without it):
# the `fashion-mnist` config shortened to 240 steps on the first 5,000 training images, with the
# paper's VICReg invariance weight (the setting its bound was measured with).
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FMNIST_SHORT = [
    "loss.vicreg_inv=1.0",
    "schedule.epochs=8",
    "schedule.steps_per_epoch=30",
    "data.content.num_images=5000",
    "data.eval_synthetic_pairs=0",
    "data.eval_fashion_mnist_linear=[0, 0]",
    *QUIET,
]


# measured margins over the initial encoder: +0.058, +0.038, +0.027 (seeds 0-2, one thread) and
# +0.050 (seed 0, two threads); raw pixels 0.790 on the same 5,000 / 2,000 images at 32 px
# (`python -m benchmarks.learning_spread --test fashion-mnist`). An encoder that does not learn: +0.
FMNIST_MARGIN = 0.01


def test_content_stream_learns_fashion_mnist(tmp_path):
    """Weighted 20-NN on 2,000 held-out test images (5,000 training images as the bank, 32 px): the
    trained encoder beats the same encoder at initialisation by a margin set from the spread
    measured over seeds and thread counts (docs/content.md)."""
    from pathlib import Path

    if not any(Path(FASHION_MNIST_ROOT).glob("train-images-idx3-ubyte*")):
        pytest.skip(f"Fashion-MNIST is not installed at {FASHION_MNIST_ROOT}: apt-get install dataset-fashion-mnist")
    summary = Trainer(load_config("fashion-mnist", FMNIST_SHORT), tmp_path / "run").fit()
    assert summary["fmnist_knn"] > summary["fmnist_knn_random"] + FMNIST_MARGIN, summary

"""Smoke tests for ``benchmarks/`` (tiny settings, no timing asserts) and ``mcjepa.ops_fast``."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from benchmarks import breakdown, flow_inference, ops, scaling, training_step
from benchmarks.common import build_variant, measure, parse_size, resolve_device
from mcjepa.ops import local_correlation, local_correlation_reference
from mcjepa.ops_fast import local_correlation_tiled

FAST = ["--device", "cpu", "--repeats", "1", "--warmup", "0", "--threads", "1"]


def _load(path):
    data = json.loads(path.read_text())
    assert set(data) == {"benchmark", "args", "environment", "results"}
    assert data["environment"]["device"] == "cpu" and "shared" in data["environment"]["note"]
    return data


def test_flow_inference_writes_rows_and_ratios(tmp_path):
    out = tmp_path / "fi.json"
    flow_inference.main(
        [*FAST, "--sizes", "128x128", "--batch", "1", "--models", "micro", "raft_small",
         "--raft-small-iters", "1", "--out", str(out)]
    )  # fmt: skip
    data = _load(out)
    rows = {r["model"]: r for r in data["results"]}
    assert set(rows) == {"micro", "raft_small"}
    ours, raft = rows["micro"], rows["raft_small"]
    assert ours["padded"] == "128x128" and ours["memory_kind"] == "cpu_peak_rss_delta"
    assert ours["pairs_per_s"] == pytest.approx(1e3 / ours["median_ms"])
    assert ours["x_vs_raft_small"] == pytest.approx(raft["median_ms"] / ours["median_ms"])
    assert "x_vs_raft_small" not in raft


def test_flow_inference_pads_to_network_stride_and_estimate_entry(tmp_path):
    data = flow_inference.main([*FAST, "--sizes", "40x70", "--batch", "2", "--models", "micro", "--entry", "estimate"])
    (row,) = data["results"]
    assert row["padded"] == "64x96" and row["entry"] == "estimate" and row["batch"] == 2


def test_scaling_rows_per_size(tmp_path):
    out = tmp_path / "sc.json"
    scaling.main([*FAST, "--sizes", "64x64", "64x128", "--models", "micro", "--out", str(out)])
    rows = _load(out)["results"]
    assert [r["size"] for r in rows] == ["64x64", "64x128"]
    for r, pix in zip(rows, (64 * 64, 64 * 128)):
        assert r["ms_per_mpix"] == pytest.approx(r["median_ms"] / (pix / 1e6))


def test_training_step_modes_and_flops(tmp_path):
    out = tmp_path / "ts.json"
    training_step.main(
        [*FAST, "--variant", "micro", "--content-batch", "2", "--content-size", "32", "--motion-size", "64x64",
         "--out", str(out)]
    )  # fmt: skip
    rows = {r["mode"]: r for r in _load(out)["results"]}
    assert set(rows) == {"content", "motion", "combined"}
    assert rows["content"]["pairs_per_s"] is None and rows["motion"]["images_per_s"] is None
    # the combined step does the work of both streams
    assert rows["combined"]["gflop_per_step"] == pytest.approx(
        rows["content"]["gflop_per_step"] + rows["motion"]["gflop_per_step"], rel=1e-6
    )
    assert "mfu_pct" not in rows["combined"]  # no device peak on CPU


def test_training_step_paper_shapes():
    shapes = training_step.paper_shapes(8)
    assert (shapes["content_batch"], shapes["content_size"]) == (48, 224)
    assert (shapes["motion_batch"], shapes["motion_size"]) == (1, (384, 832))
    assert training_step.device_peak_tflops(torch.device("cpu")) is None
    assert training_step.device_peak_tflops(torch.device("cpu"), 100.0) == 100.0


def test_ops_benchmark_agrees_with_reference(tmp_path):
    out = tmp_path / "ops.json"
    ops.main([*FAST, "--size", "64x128", "--levels", "4", "5", "--batch", "1", "--out", str(out)])
    rows = _load(out)["results"]
    diffs = [r["max_abs_diff"] for r in rows if "max_abs_diff" in r]
    assert len(diffs) == 6 and max(diffs) < 1e-5  # 2 levels x (loop check, base, tiled)
    assert {r["op"] for r in rows} >= {"local_correlation_reference", "local_correlation_tiled", "backward_warp"}
    assert ops.pyramid_shapes((448, 1024))[0] == (2, 48, 224, 512)
    assert ops.pyramid_shapes((448, 1024))[-1] == (32, 768, 14, 32)


def test_breakdown_replays_the_model_exactly(tmp_path):
    data = breakdown.main([*FAST, "--variant", "micro", "--size", "64x64"])
    assert data["results"][-1]["replay_max_abs_diff"] == 0.0
    parts = [r for r in data["results"] if "part" in r]
    assert parts[0]["part"] == "encoder (both frames)"
    assert sum(r["share_pct"] for r in parts) == pytest.approx(100.0)
    assert {r["level"] for r in parts if r["part"] == "decoder"} == set(range(6))


@pytest.mark.parametrize(("shape", "d", "tile"), [((2, 5, 7, 11), 4, 16), ((1, 3, 6, 9), 2, 4), ((1, 4, 3, 5), 1, 1)])
def test_tiled_correlation_matches_reference_loop(shape, d, tile):
    a, b = torch.randn(shape), torch.randn(shape)
    expected = local_correlation_reference(a, b, d)
    got = local_correlation_tiled(a, b, d, tile=tile)
    assert got.shape == expected.shape == (shape[0], (2 * d + 1) ** 2, shape[2], shape[3])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, local_correlation(a, b, d), rtol=1e-5, atol=1e-6)


def test_tiled_correlation_known_value():
    # one channel, constant 2 in source and 3 in target: cost 6 where the target exists, 0 outside
    a, b = torch.full((1, 1, 3, 3), 2.0), torch.full((1, 1, 3, 3), 3.0)
    out = local_correlation_tiled(a, b, 1, tile=2)
    assert out[0, 4].eq(6.0).all()  # zero displacement
    assert out[0, 0, 0, 0] == 0.0 and out[0, 0, 1, 1] == 6.0  # (dy, dx) = (-1, -1)


def test_tiled_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        local_correlation_tiled(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match="tile must be >= 1"):
        local_correlation_tiled(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), tile=0)


def test_common_helpers(monkeypatch):
    assert parse_size("436x1024") == (436, 1024)
    with pytest.raises(argparse.ArgumentTypeError, match="HxW"):
        parse_size("436by1024")
    assert build_variant("convnext_t+s4").flow_head.finest_level == 1
    with pytest.raises(ValueError, match="suffix"):
        build_variant("micro+s8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
    calls = []
    m = measure(lambda: calls.append(1), torch.device("cpu"), repeats=3, warmup=2)
    assert len(calls) == 5 and len(m["times_ms"]) == 3 and m["min_ms"] <= m["median_ms"]


def test_flow_inference_flops_only_counts_on_meta():
    data = flow_inference.main(["--device", "cpu", "--flops-only", "--sizes", "64x64", "--batch", "1", "2",
                                "--models", "micro", "micro+s4"])  # fmt: skip
    g = {(r["model"], r["batch"]): r["gflop"] for r in data["results"]}
    assert "median_ms" not in data["results"][0]
    assert g[("micro", 2)] == pytest.approx(2 * g[("micro", 1)])  # FLOPs are linear in the batch
    assert 0 < g[("micro+s4", 1)] < g[("micro", 1)]  # stopping at stride 4 skips the finest level


def test_onnx_latency_times_both_runtimes_side_by_side(tmp_path):
    pytest.importorskip("onnxruntime", reason='onnxruntime is not installed: pip install "mcjepa[onnx]"')
    from benchmarks import onnx_latency

    out = tmp_path / "onnx.json"
    onnx_latency.main([*FAST, "--variants", "micro", "--sizes", "64x64", "--out", str(out)])
    rows = _load(out)["results"]
    assert [r["runtime"] for r in rows] == ["pytorch", "onnxruntime"]
    torch_row, ort_row = rows
    assert torch_row["x_vs_pytorch"] == 1.0 and torch_row["max_abs_diff"] is None
    assert ort_row["x_vs_pytorch"] == pytest.approx(torch_row["median_ms"] / ort_row["median_ms"])
    assert 0 < ort_row["max_abs_diff"] < 1e-4  # the same model, non-zero flow (randomised output convs)
    with pytest.raises(SystemExit, match="multiples of 32"):
        onnx_latency.main([*FAST, "--sizes", "60x64"])


def test_video_fps_runs_mcjepa_flow_on_a_rendered_clip(tmp_path):
    pytest.importorskip("av")
    from benchmarks import video_fps

    out = tmp_path / "video.json"
    video_fps.main([*FAST, "--size", "64x96", "--frames", "4", "--max-size", "none", "64", "--out", str(out)])
    rows = _load(out)["results"]
    assert [(r["pairs"], r["max_size"]) for r in rows] == [(3, None), (3, 64)]
    for r in rows:
        assert r["pairs_per_s"] == pytest.approx(3 / r["loop_s"]) and r["total_s"] >= r["loop_s"] * 0.9
        assert r["command"].startswith("mcjepa-flow CLIP.mp4 -o OUT.mp4 --variant micro") and not r["trained"]

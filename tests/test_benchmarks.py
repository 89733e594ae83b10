"""Smoke tests for ``benchmarks/`` (tiny settings, no timing asserts) and ``benchmarks.ops_fast``."""

from __future__ import annotations

import argparse
import json
import sys
import time

import pytest
import torch

from benchmarks import breakdown, cpu_speed, data_pipeline, flow_inference, gpu_suite, ops, scaling, training_step
from benchmarks.common import build_variant, measure, parse_size, resolve_device
from benchmarks.ops_fast import local_correlation_reference, local_correlation_tiled
from mcjepa.ops import local_correlation

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
    assert ours["x_vs_raft_small"] > 0 and "x_vs_raft_small" not in raft  # the reference row has no ratio


def test_flow_inference_pads_to_network_stride_and_estimate_entry(tmp_path):
    data = flow_inference.main([*FAST, "--sizes", "40x70", "--batch", "2", "--models", "micro", "--entry", "estimate"])
    (row,) = data["results"]
    assert row["padded"] == "64x96" and row["entry"] == "estimate" and row["batch"] == 2


def test_cpu_speed_interleaves_models_and_writes_ratios(tmp_path):
    out = tmp_path / "cs.json"
    cpu_speed.main(["--size", "128x128", "--repeats", "2", "--warmup", "0", "--variant", "micro", "--out", str(out)])
    data = _load(out)
    assert data["environment"]["torch_threads"] == 1 and data["args"]["size"] == "128x128"
    rows = {r["model"]: r for r in data["results"]}
    assert set(rows) == {"mcjepa micro", "raft_small", "raft_large"}
    assert rows["raft_small"]["iterations"] == rows["raft_large"]["iterations"] == 12
    for r in rows.values():
        assert len(r["times_s"]) == 2 and r["min_s"] == min(r["times_s"])
    assert rows["raft_small"]["vs_raft_small"] == 1.0
    with pytest.raises(SystemExit, match="at least 128x128"):
        cpu_speed.main(["--size", "64x96", "--repeats", "1"])


def test_cpu_speed_with_weights(tmp_path):
    from fixtures_models import seeded_micro

    from mcjepa.release import save_release

    save_release(seeded_micro(), tmp_path / "release")
    data = cpu_speed.main(["--size", "64x96", "--repeats", "1", "--warmup", "0", "--models", "mcjepa",
                           "--variant", "micro", "--weights", str(tmp_path / "release")])  # fmt: skip
    (row,) = data["results"]
    assert row["weights"] == str(tmp_path / "release") and row["padded"] == "64x96"
    assert row["vs_raft_small"] is None


def test_scaling_rows_per_size(tmp_path):
    out = tmp_path / "sc.json"
    scaling.main([*FAST, "--sizes", "64x64", "64x128", "--models", "micro", "--out", str(out)])
    rows = _load(out)["results"]
    assert [r["size"] for r in rows] == ["64x64", "64x128"]


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


def test_gpu_suite_quick_writes_every_file(tmp_path, monkeypatch):
    # the whole suite, --quick on CPU, in this process (a fresh interpreter per part costs ~10 s
    # here); test_gpu_suite_runs_a_part_in_its_own_process covers the default, one process per part
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    summary = gpu_suite.main(["--quick", "--device", "cpu", "--in-process", "--out-dir", str(tmp_path)])
    assert summary["ok"], summary
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert [p["part"] for p in on_disk["parts"]] == list(gpu_suite.PARTS)
    for part in on_disk["parts"]:
        assert part["status"] == "ok" and part["wall_s"] > 0 and part["file"] == gpu_suite.FILES[part["part"]]
        data = _load(tmp_path / part["file"])
        assert data["benchmark"] == part["part"] and data["results"]
        assert data["args"]["complete"] and data["args"]["done"] == data["args"]["items"]
    rows = {r["model"]: r for r in _load(tmp_path / "flow_inference.json")["results"]}
    assert set(rows) == {"micro", "raft_small", "raft_large"}  # one call per model, ratios added over all
    assert rows["micro"]["x_vs_raft_large"] == pytest.approx(
        rows["raft_large"]["median_ms"] / rows["micro"]["median_ms"]
    )
    assert {r["mode"] for r in _load(tmp_path / "training_step.json")["results"]} == set(training_step.MODES)
    (mem,) = _load(tmp_path / "memory_1080p.json")["results"]
    assert mem["dtype"] == "bf16" and mem["batch"] == 1 and "memory_mib" in mem
    diff = {r["compare"]: r for r in _load(tmp_path / "bf16_vs_fp32.json")["results"]}
    bf16 = diff["bf16 autocast vs strict fp32"]
    assert 0 < bf16["mean_abs_diff_px"] <= bf16["max_abs_diff_px"] < bf16["ref_max_magnitude_px"]
    assert bf16["ref_mean_magnitude_px"] > 0  # the zero-initialised predictors were randomised
    assert diff["estimate vs forward, both strict fp32"]["max_abs_diff_px"] < 1e-4
    assert "skipped" in diff["bf16=True vs strict fp32"]  # flow.estimate's bf16 is CUDA-only


def test_gpu_suite_runs_a_part_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    summary = gpu_suite.main(["--quick", "--device", "cpu", "--parts", "bf16_vs_fp32", "--out-dir", str(tmp_path)])
    (part,) = summary["parts"]
    assert part["status"] == "ok", part
    assert "wrote" in (tmp_path / part["log"]).read_text()
    assert _load(tmp_path / "bf16_vs_fp32.json")["results"]


def test_gpu_suite_one_failing_part_does_not_stop_the_others(tmp_path, monkeypatch):
    def broken(device, quick, weights):
        raise RuntimeError("simulated failure")

    monkeypatch.setitem(gpu_suite.BUILDERS, "flow_inference", broken)
    (tmp_path / "flow_inference.json").write_text("{}")  # a previous run's file is not reported as this one's
    summary = gpu_suite.main(["--quick", "--device", "cpu", "--in-process", "--parts", "flow_inference",
                              "bf16_vs_fp32", "--out-dir", str(tmp_path)])  # fmt: skip
    failed, ok = summary["parts"]
    assert failed["status"] == "error" and "RuntimeError: simulated failure" in failed["message"]
    assert "flow_inference.json was not written" in failed["message"]
    assert ok["status"] == "ok" and not summary["ok"]


def test_gpu_suite_time_limits(tmp_path, monkeypatch):
    # past the suite's deadline no part starts
    summary = gpu_suite.main(["--device", "cpu", "--in-process", "--deadline-s", "0", "--out-dir", str(tmp_path)])
    assert all(p["status"] == "error" and p["message"].startswith("not started") for p in summary["parts"])
    # a part's process is killed at its budget
    rc, crash = gpu_suite._run_child([sys.executable, "-c", "import time; time.sleep(60)"], 1.0, tmp_path / "x.log")
    assert rc != 0 and crash == "killed at its 1 s budget"

    # an item starts only while the time left exceeds the longest item so far
    def item():
        time.sleep(0.6)
        return [{"x": 1}]

    part = gpu_suite.Part(items=[("slow", item), ("next", item)], settings={})
    monkeypatch.setitem(gpu_suite.BUILDERS, "flow_inference", lambda device, quick, weights: part)
    assert gpu_suite.run_part("flow_inference", tmp_path, "cpu", True, time.time() + 1.0, None) == 3
    rec = json.loads((tmp_path / "flow_inference.json").read_text())["args"]
    assert rec["done"] == ["slow"] and rec["skipped"] == ["next"] and not rec["complete"]
    status = gpu_suite._status(tmp_path / "flow_inference.json", 3, None)
    assert status == {"status": "error", "message": "time budget: skipped next"}


def test_gpu_suite_full_settings_are_the_asked_shapes():
    # the non-quick argv (what a GPU task runs) parses with each module's own parser
    parts = {name: gpu_suite.BUILDERS[name]("cuda", False, None) for name in gpu_suite.PARTS}
    fi = parts["flow_inference"]
    assert [label for label, _ in fi.items] == ["convnext_t", "raft_small", "raft_large"]
    a = flow_inference.build_parser().parse_args(fi.settings["argv"])
    assert (a.sizes, a.batch, a.dtype, a.device) == ([(448, 1024)], [1, 8], ["fp32", "bf16"], "cuda")
    assert (a.raft_small_iters, a.raft_large_iters) == (12, 32)
    t = training_step.build_parser().parse_args(parts["training_step"].settings["argv"])
    assert (t.variant, t.dtype, t.content_batch, t.content_size, t.motion_batch, t.motion_size) == (
        "convnext_t", "bf16", 48, 224, 1, (384, 832)
    )  # fmt: skip
    m = scaling.build_parser().parse_args(parts["memory_1080p"].settings["argv"])
    assert (m.sizes, m.models, m.batch, m.dtype) == (["1080x1920"], ["convnext_t"], 1, "bf16")
    assert parts["bf16_vs_fp32"].settings["variant"] == "convnext_t"
    assert parts["bf16_vs_fp32"].settings["size"] == "448x1024"
    assert sum(gpu_suite.BUDGET_S.values()) <= gpu_suite.DEADLINE_S < 8 * 60


def test_loss_gradients_zero_flow_shows_the_push_shared_by_both_flows(tmp_path, capsys):
    """benchmarks.loss_gradients --zero-flow (docs/learning_dynamics.md, section 7): at exactly zero
    flow, L_reg's descent directions for the forward and the backward flow of an untrained micro
    model agree (positive cosine) at the coarse levels, where a motion signal would make them
    opposite; the JSON has one entry per estimated level."""
    import json

    from benchmarks import loss_gradients

    out = tmp_path / "drift.json"
    argv = ["--zero-flow", "--norm", "standardize", "--pairs", "4", "--size", "64", "96", "--out", str(out)]
    assert loss_gradients.main(argv) == 0
    res = json.loads(out.read_text())
    n = len(res["levels"])
    assert n >= 5 and all(len(res[k]) == n for k in ("cos_fwd_bwd", "cos_fwd_truth", "mean_fwd", "mean_bwd"))
    assert res["cos_fwd_bwd"][-1] > 0.3  # stride 32: one push for both flows (measured +0.66 on 8 pairs)
    assert "cos(fwd, bwd)" in capsys.readouterr().out


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


def test_learning_curves_trains_scores_every_checkpoint_and_resumes(tmp_path, monkeypatch, capsys):
    """A 4-step pixels cell: checkpoints 2 and 4 scored once, baselines beside them, a rerun
    retrains and rescores nothing; the per-term gradient benchmark reads the same run."""
    from benchmarks import learning_curves, term_gradients

    tiny = {
        "synthetic_96x128": (2, (32, 48), None),
        "synthetic_192x256": (1, (32, 64), None),
        "real_texture_96x128": (2, (32, 48), "bundled"),
        "real_texture_192x256": (1, (32, 64), "bundled"),
    }
    monkeypatch.setattr(learning_curves, "SETS", tiny)
    out = tmp_path / "curves"
    args = ["--out-dir", str(out), "--cells", "pixels", "--steps", "4", "--score-every", "2", "--jobs", "1",
            "--threads", "1", "--set", "data.motion[0].size=[32,48]", "--set", "data.motion[0].num_pairs=16",
            "--plot", str(tmp_path / "curves.png")]  # fmt: skip
    assert learning_curves.main(args) == 0
    record = json.loads((out / "scores" / "pixels__4steps__seed0.json").read_text())
    assert sorted(record["steps"], key=int) == ["2", "4"]
    assert set(record["steps"]["4"]) == set(tiny) | {"still_flow"}
    summary = json.loads((out / "learning_curves.json").read_text())
    zero = summary["baselines"]["0"]["zero"]
    assert zero["still_flow"] == 0.0 and zero["synthetic_96x128"] > 0
    if "dis" in summary["baselines"]["0"]:  # opencv-python-headless is a dev dependency
        assert summary["baselines"]["0"]["dis"]["still_flow"] < 0.05
    assert summary["scores"]["pixels (4 steps)"]["4"]["synthetic_96x128"][0] == record["steps"]["4"]["synthetic_96x128"]
    assert (tmp_path / "curves.png").stat().st_size > 0
    mtime = (out / "scores" / "pixels__4steps__seed0.json").stat().st_mtime_ns
    capsys.readouterr()
    assert learning_curves.main(args) == 0
    assert "mcjepa.cli.train" not in capsys.readouterr().out  # the finished run is not retrained
    assert (out / "scores" / "pixels__4steps__seed0.json").stat().st_mtime_ns == mtime  # nor rescored

    config, overrides = learning_curves.CELLS["pixels"]
    sets = [x for o in (*overrides, "data.motion[0].size=[32,48]", "data.motion[0].num_pairs=16") for x in ("--set", o)]
    res_path = tmp_path / "terms.json"
    term_gradients.main(["--run", str(out / "runs" / "pixels__4steps__seed0"), "--config", config, *sets, "--pairs", "2",
                         "--out", str(res_path)])  # fmt: skip
    res = json.loads(res_path.read_text())
    assert res["step"] == 4
    # the pixels cell trains no content stream and no feature-space term: only L_rec and L_smooth
    # reach the head, and the total's gradient there is their sum
    assert "ssl" not in res and res["reg"]["head"]["norm"] == 0.0 and res["rec"]["head"]["norm"] > 0
    assert res["total"]["head"]["norm"] <= res["rec"]["head"]["norm"] + res["smooth"]["head"]["norm"] + 1e-6


def test_still_scenes_scores_zero_flow_and_a_method_that_invents_motion():
    """Zero flow: no still-scene flow and a warp error equal to the frames' mean absolute
    difference. A method that always answers (1, 0) px: 1 px of still-scene flow everywhere."""
    from benchmarks.still_scenes import still_scene_scores
    from mcjepa.eval.baselines import zero_flow

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=g)

    def one_pixel_right(image1, image2):
        return torch.stack((torch.ones(image1.shape[-2:]), torch.zeros(image1.shape[-2:])))

    out = still_scene_scores({"zero": zero_flow, "right": one_pixel_right}, [(a, b)], still_photos=2)
    assert out["n_video_pairs"] == 1 and out["video_size"] == [40, 48]
    zero, right = out["methods"]["zero"], out["methods"]["right"]
    assert zero["still_flow_photos_96x128"] == 0.0 and zero["still_flow_video"] == 0.0
    expected = (a.float() - b.float()).abs().div(255).mean().item()
    assert abs(zero["video_mae_all"] - expected) < 1e-6 and zero["video_visible_fraction"] == 1.0
    assert right["still_flow_photos_96x128"] == right["still_flow_video"] == 1.0


def _in_process(module, monkeypatch):
    """Run a benchmark's child processes in this process (same worker code, no interpreter start)."""

    def run(cmd, env):
        before = torch.get_num_threads()
        try:
            return json.loads(json.dumps(module._worker(module.build_parser().parse_args(cmd[3:]))))
        finally:
            torch.set_num_threads(before)

    monkeypatch.setattr(module, "_run_child", run)


def test_large_input_one_row_per_max_size(tmp_path, monkeypatch):
    from benchmarks import large_input

    _in_process(large_input, monkeypatch)
    out = tmp_path / "li.json"
    large_input.main(["--size", "64x96", "--max-sizes", "none", "48", "--out", str(out)])
    rows = {r["max_size"]: r for r in _load(out)["results"]}
    assert set(rows) == {"none", "48"}
    assert rows["none"]["model_size"] == "96x64" and rows["48"]["model_size"] == "48x32"
    for r in rows.values():
        assert r["peak_rss_gib"] > 0.05 and r["seconds"] > 0 and r["threads"] == 1 and r["mean_flow_px"] >= 0
        assert 0 < r["zero_flow_mae"] < 1 and 0 < r["warp_mae"] < 1


def test_threads_compares_torch_default_with_mcjepa_default(tmp_path, monkeypatch):
    from benchmarks import threads
    from mcjepa.utils.threads import default_threads

    _in_process(threads, monkeypatch)
    out = tmp_path / "th.json"
    threads.main(
        ["--size", "32x32", "--busy", "1", "--counts", "1", "--repeats", "1", "--warmup", "0", "--out", str(out)]
    )
    rows = {r["setting"]: r for r in _load(out)["results"]}
    assert set(rows) == {"torch", "mcjepa", "1"}
    assert rows["mcjepa"]["threads"] == default_threads() and rows["1"]["threads"] == 1
    assert all(r["busy_processes"] == 1 and r["median_s"] > 0 for r in rows.values())


def test_data_pipeline_times_both_streams_and_plans_cores_per_gpu(tmp_path):
    out, plot = tmp_path / "dp.json", tmp_path / "dp.png"
    data_pipeline.main(["--jpegs", "3", "--pairs", "2", "--repeats", "1", "--out", str(out), "--plot", str(plot)])
    results = _load(out)["results"]
    rates = [r for r in results if r["row"] == "rate"]
    assert [r["stream"] for r in rates] == ["content", "motion", "motion", "motion"]
    assert all(r["items_per_s"] > 0 and r["ms_per_item"] > 0 for r in rates)
    plan = [r for r in results if r["row"] == "cores_per_gpu"]
    assert {(p["gpus"], p["step_s"]) for p in plan} == {(g, t) for g in (1, 8) for t in (0.5, 1.0, 2.0)}
    assert all(p["cores_per_gpu"] > 0 for p in plan) and plot.stat().st_size > 0
    # 8 GPUs: 48 images at 48/s and 1 pair at 8/s in a 1 s step = 1 + 0.125 cores
    assert data_pipeline.cores_per_gpu(48.0, 8.0, 8, 1.0) == pytest.approx(1.125)


def test_gpu_suite_labels_every_part_single_process():
    assert set(gpu_suite.SCOPE) == set(gpu_suite.PARTS)
    assert all(s.startswith("single process") for s in gpu_suite.SCOPE.values())


def test_still_flow_per_level_in_input_pixels_coarse_to_fine():
    """A head whose decoder adds one unit of u at every level (0.5 input px per level): the
    coarsest level holds 0.5 px of u, each finer level 0.5 px more, v stays 0; keys name the
    level and its stride."""
    from dataclasses import replace

    from benchmarks.still_scenes import still_flow_per_level
    from mcjepa.architecture import model_config
    from mcjepa.model import build_model

    cfg = model_config("micro")
    model = build_model(replace(cfg, flow_head=replace(cfg.flow_head, finest_level=1))).eval()
    with torch.no_grad():
        model.flow_head.decoder.predict_flow.bias.copy_(torch.tensor([1.0, 0.0]))
    levels = still_flow_per_level(model, still_photos=2)
    assert list(levels) == [f"level {i} (stride {s})" for i, s in ((5, 32), (4, 16), (3, 8), (2, 4), (1, 4))]
    for k, stats in enumerate(levels.values(), start=1):
        assert stats["mean_abs"] == pytest.approx(0.5 * k, rel=1e-5)
        assert stats["mean_u"] == pytest.approx(0.5 * k, rel=1e-5) and stats["mean_v"] == pytest.approx(0.0, abs=1e-6)

"""ONNX export of the flow model (micro variant): onnxruntime matches PyTorch at two input sizes.

Skipped when onnx / onnxruntime are missing: pip install "mcjepa[onnx]" (the dev extra has them).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from mcjepa import export_onnx
from mcjepa.cli.export import main as export_main
from mcjepa.release.onnx import OnnxFlowModel, check_onnx, onnxruntime_session

INSTALL = 'onnxruntime is not installed: pip install "mcjepa[onnx]" (or pip install onnx onnxruntime onnxscript)'
onnx = pytest.importorskip("onnx", reason=INSTALL)
ort = pytest.importorskip("onnxruntime", reason=INSTALL)

# measured max |onnxruntime - PyTorch| on this model: ~5e-6 px (float32 rounding); the bound is 20x that
TOLERANCE_PX = 1e-4


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "micro.onnx"
    result = export_onnx(path, model, verbose=False)
    return path, result


def test_export_checks_itself(exported):
    path, result = exported
    assert result.exporter == "torchscript" and result.opset == 17 and not result.notes  # a non-zero flow head
    assert [c["name"] for c in result.checks] == ["random pair", "example pair", "odd-size pair"]
    assert [c["shape"] for c in result.checks] == [(2, 3, 64, 96), (1, 3, 96, 128), (1, 3, 70, 100)]
    for c in result.checks:
        assert c["ok"] and c["max_abs_diff"] <= TOLERANCE_PX and c["max_abs_flow"] > 0.5
    assert "check example pair (1x3x96x128): max |onnxruntime - PyTorch| = " in result.summary()


def test_onnxruntime_matches_pytorch_at_two_sizes_and_batches(exported, model):
    path, _ = exported
    graph = onnx.load(str(path)).graph
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert dims == [["batch", 3, "height", "width"]] * 2  # dynamic batch, height and width
    session = onnxruntime_session(path)
    g = torch.Generator().manual_seed(7)
    for b, h, w in ((1, 128, 64), (3, 32, 160)):
        a, c = torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)
        with torch.inference_mode():
            expected = OnnxFlowModel(model)(a, c).numpy()
        got = session.run(["flow"], {"image1": a.numpy(), "image2": c.numpy()})[0]
        assert got.shape == (b, 2, h, w)
        assert np.abs(expected).max() > 0.5
        np.testing.assert_allclose(got, expected, atol=TOLERANCE_PX, rtol=0)


def test_check_reports_a_difference_over_the_bound(exported, model):
    path, _ = exported
    checks = check_onnx(path, model, atol=0.0, rtol=0.0)  # float32 rounding alone exceeds a zero bound
    assert not all(c["ok"] for c in checks) and all(c["max_abs_diff"] < TOLERANCE_PX for c in checks)


def test_cli_exports_a_release_and_fails_a_bad_check(model, tmp_path, capsys, monkeypatch):
    from mcjepa.release import save_release

    save_release(model, tmp_path / "release")
    out = tmp_path / "flow.onnx"
    assert export_main(["--onnx", str(out), str(tmp_path / "release")]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "opset 17" in text and text.count(": ok") == 3
    session = onnxruntime_session(out)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    expected = OnnxFlowModel(model)(torch.from_numpy(x), torch.from_numpy(x[:, :, ::-1].copy())).detach().numpy()
    got = session.run(["flow"], {"image1": x, "image2": x[:, :, ::-1].copy()})[0]
    np.testing.assert_allclose(got, expected, atol=TOLERANCE_PX, rtol=0)

    def failing_check(path, model, **kwargs):
        return [
            dict(name="random pair", shape=(2, 3, 64, 96), max_abs_diff=1.0, max_abs_flow=2.0, bound=1e-3, ok=False)
        ]

    monkeypatch.setattr("mcjepa.release.onnx.check_onnx", failing_check)
    assert export_main(["--onnx", str(tmp_path / "u.onnx"), "random", "--variant", "micro"]) == 1
    captured = capsys.readouterr()
    assert "UNTRAINED micro" in captured.err and "the flow head is untrained" in captured.out
    assert "the ONNX check failed" in captured.err and "by 1 px on random pair" in captured.err
    assert (tmp_path / "u.onnx").is_file()  # the file stays, for inspection


def test_bad_arguments(tmp_path, capsys, monkeypatch):
    cases = [
        (["--onnx", str(tmp_path / "a.onnx"), "--out", str(tmp_path / "rel")], "give one of them"),
        (["--onnx", str(tmp_path / "a.onnx"), "--opset", "11", "random", "--variant", "micro"], "opset must be an "),
        (["--onnx", str(tmp_path), "random", "--variant", "micro"], "give a file name in an existing folder"),
        (["--onnx", str(tmp_path / "no" / "a.onnx"), "random", "--variant", "micro"], "in an existing folder"),
        (["--onnx", str(tmp_path / "a.onnx"), "--variant", "micro"], "--variant micro without SOURCE"),
        (["--onnx", str(tmp_path / "a.onnx"), "random", "--threads", "0"], "--threads must be at least 1"),
        (["--onnx", str(tmp_path / "a.onnx"), str(tmp_path / "missing")], "missing"),
        ([], "SOURCE and --out required (or --onnx FILE)"),
        ([str(tmp_path)], "--out required"),
    ]
    for argv, message in cases:
        assert export_main(argv) == 2, argv
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # an "UNTRAINED" warning may come first
        assert last.startswith("mcjepa-export: error: ") and message in last, (argv, err)
    assert not (tmp_path / "a.onnx").exists()
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(tmp_path / "a.onnx", sample_size=(48, 64), weights="random", variant="micro")
    with pytest.raises(ValueError, match="exporter must be one of"):
        export_onnx(tmp_path / "a.onnx", exporter="tf", weights="random", variant="micro")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert export_main(["--onnx", str(tmp_path / "a.onnx"), "random", "--variant", "micro"]) == 2
    assert "needs the 'onnxruntime' package: pip install \"mcjepa[onnx]\"" in capsys.readouterr().err


def test_any_frame_size_gives_flow_estimates_flow(exported, model):
    """The padding is inside the graph: at sizes that are no multiple of 32 onnxruntime gives
    what flow.estimate gives (without it, such sizes ran and were off by pixels)."""
    from mcjepa import flow

    session = onnxruntime_session(exported[0], threads=1)
    g = torch.Generator().manual_seed(3)
    for h, w in ((33, 45), (70, 100)):
        a, c = torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)
        expected = flow.estimate(a, c, model).numpy()
        got = session.run(["flow"], {"image1": a.numpy(), "image2": c.numpy()})[0]
        assert got.shape == (1, 2, h, w) and np.abs(expected).max() > 0.5
        np.testing.assert_allclose(got, expected, atol=TOLERANCE_PX, rtol=0)


def test_export_without_source_is_the_bundled_model(tmp_path, capsys, monkeypatch):
    """One rule for no weights: mcjepa-export --onnx exports flow.load()'s bundled model, as
    mcjepa-flow and mcjepa-eval use it (an untrained ConvNeXt-T was exported before)."""
    import mcjepa.release.onnx as onnx_export
    from mcjepa.release import DEFAULT_MODEL

    seen = {}

    def fake_export(path, model=None, *, weights=None, variant=None, **kwargs):
        seen["model"] = onnx_export._resolve_model(model, weights, variant)
        return None

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export)
    assert export_main(["--onnx", str(tmp_path / "b.onnx"), "--threads", "1"]) == 0
    assert seen["model"].release_name == DEFAULT_MODEL
    assert "exporting the trained model bundled with mcjepa" in capsys.readouterr().err
    assert export_main(["--onnx", str(tmp_path / "r.onnx"), "random", "--variant", "micro"]) == 0
    assert seen["model"].release_name is None and seen["model"].config.name == "mcjepa_micro"
    assert "UNTRAINED micro" in capsys.readouterr().err

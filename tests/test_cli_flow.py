"""``mcjepa-flow`` end to end, in-process."""

import numpy as np
import pytest
import torch
from PIL import Image

from mcjepa import flow
from mcjepa.cli.flow import main
from mcjepa.data.synthetic import example_pair, render_pair


@pytest.fixture
def patched_load(model, monkeypatch):
    calls = []

    def fake_load(weights=None, **kwargs):
        calls.append((weights, kwargs))
        return model

    monkeypatch.setattr(flow, "load", fake_load)
    return calls


def test_example_with_the_real_untrained_micro_model(tmp_path, capsys):
    out, flo = tmp_path / "flow.png", tmp_path / "flow.flo"
    argv = ["--weights", "random", "--variant", "micro", "--device", "cpu", "-o", str(out), "--save-flo", str(flo)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "UNTRAINED" in text and "built-in synthetic example" in text
    assert "model: untrained mcjepa_micro (random weights)" in text
    pair = example_pair()
    zero_epe = pair.flow.norm(dim=0).mean().item()
    assert f"zero flow: EPE {zero_epe:.3f} px" in text
    # the untrained flow head is zero-initialised: its EPE equals the zero-flow EPE
    assert f"EPE {zero_epe:.3f} px (all pixels)" in text
    with Image.open(out) as im:
        assert im.size == (128, 96) and im.mode == "RGB"
    assert torch.equal(flow.read_flo(flo), torch.zeros(2, 96, 128))


def test_example_flo_matches_estimate(tmp_path, capsys, model, patched_load):
    flo = tmp_path / "f.flo"
    assert main(["-o", str(tmp_path / "f.png"), "--save-flo", str(flo), "--weights", "w/release"]) == 0
    assert patched_load[0][0] == "w/release"
    text = capsys.readouterr().out
    assert "UNTRAINED" not in text
    pair = example_pair()
    expected = flow.estimate(pair.image1, pair.image2, model)
    saved = flow.read_flo(flo)
    assert saved.abs().mean() > 1e-3
    torch.testing.assert_close(saved, expected)
    epe = (expected - pair.flow).norm(dim=0).mean().item()
    assert f"EPE {epe:.3f} px (all pixels)" in text


def test_two_png_files(tmp_path, capsys, model, patched_load):
    pair = render_pair(9, size=(45, 61))
    paths = []
    for name, img in (("a.png", pair.image1), ("b.png", pair.image2)):
        paths.append(str(tmp_path / name))
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(paths[-1])
    out, flo = tmp_path / "out.png", tmp_path / "out.flo"
    assert main([*paths, "-o", str(out), "--save-flo", str(flo), "--bf16", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "--bf16 needs CUDA" in text and "a.png -> " in text and "EPE" not in text
    expected = flow.estimate(pair.image1, pair.image2, model)
    torch.testing.assert_close(flow.read_flo(flo), expected)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), flow.to_image(expected).permute(1, 2, 0).numpy())


def test_two_files_save_kitti_and_max_size(tmp_path, capsys, model, patched_load):
    from mcjepa.flow.video import estimate_resized

    pair = render_pair(4, size=(64, 96))
    paths = []
    for name, img in (("a.png", pair.image1), ("b.png", pair.image2)):
        paths.append(str(tmp_path / name))
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(paths[-1])
    kitti = tmp_path / "k.png"
    assert main([*paths, "-o", str(tmp_path / "o.png"), "--save-kitti", str(kitti), "--max-size", "48"]) == 0
    assert f"wrote {kitti} (KITTI" in capsys.readouterr().out
    expected = estimate_resized(pair.image1, pair.image2, model, max_size=48)  # run at 32x48, flow at 64x96
    stored, valid = flow.read_kitti_flow(kitti)
    assert stored.shape == (2, 64, 96) and valid.all() and expected.abs().mean() > 1e-3
    assert (stored - expected).abs().max() <= 1 / 128 + 1e-4  # KITTI rounds to 1/64 px


def _assert_one_line_error(capsys, message):
    err = capsys.readouterr().err
    assert err.startswith("mcjepa-flow: error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_errors_exit_2_without_traceback(tmp_path, capsys, patched_load):
    assert main([str(tmp_path / "missing.png"), str(tmp_path / "missing2.png")]) == 2
    _assert_one_line_error(capsys, "missing.png: no such file")
    (tmp_path / "text.png").write_text("not an image")
    assert main([str(tmp_path / "text.png"), str(tmp_path / "text.png")]) == 2
    _assert_one_line_error(capsys, "cannot read it as an image")
    assert main([str(tmp_path / "text.png")]) == 2
    _assert_one_line_error(capsys, "give two frames")
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    Image.new("RGB", (48, 40)).save(tmp_path / "b.png")
    assert main([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "o.png")]) == 2
    _assert_one_line_error(capsys, "same size, got 40x40 and 40x48")
    assert not (tmp_path / "o.png").exists()
    assert main(["-o", str(tmp_path / "no" / "dir" / "o.png")]) == 2
    _assert_one_line_error(capsys, "cannot write the output")


def test_weights_error_is_one_line(monkeypatch, capsys):
    def failing_load(*args, **kwargs):
        raise RuntimeError("no pretrained MC-JEPA weights are published yet\nmore detail")

    monkeypatch.setattr(flow, "load", failing_load)
    assert main(["--pretrained"]) == 2
    _assert_one_line_error(capsys, "no pretrained MC-JEPA weights are published yet")


def test_variant_without_weights_is_refused(tmp_path, capsys):
    assert main(["--variant", "micro", "--device", "cpu", "-o", str(tmp_path / "f.png")]) == 2
    _assert_one_line_error(capsys, "variant='micro' with no weights")


def test_help_and_usage(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "--save-flo" in text and "--weights" in text and "untrained" in text.lower()
    text = " ".join(text.split())  # help lines wrap at the terminal's width
    for option in (
        "--threads N",
        "--start S",
        "--end E",
        "--overwrite",
        "--max-flow PX",
        "megapixels are refused until --max-size",
    ):
        assert option in text, option
    assert "one line per 10%" in text and "grayscale" in text and "exit status 3" in text
    assert main(["--no-such-option"]) == 2

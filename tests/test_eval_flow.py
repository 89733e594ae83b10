"""Flow evaluation end to end on tiny trees in the real on-disk formats, scored by the zero-flow
baseline (whose EPE is the mean ground-truth magnitude, computed here independently with numpy)."""

import json

import numpy as np
import pytest
import torch
from fixtures_eval import write_flo_folder
from fixtures_flow import random_flow, random_frames, write_flying_chairs, write_kitti2015, write_sintel

from mcjepa.cli.eval import main
from mcjepa.encoder import IMAGENET_MEAN, IMAGENET_STD
from mcjepa.eval.baselines import get_baseline, zero_flow
from mcjepa.eval.flow_eval import FloFolder, evaluate_flow, model_method, open_flow_dataset


def _mag(flow_hw2):
    return np.sqrt((np.asarray(flow_hw2, np.float64) ** 2).sum(-1))


def test_sintel_zero_baseline_with_occlusions(tmp_path):
    frames = random_frames(3, 40, 56, seed=1)
    flows = [random_flow(40, 56, seed=s) for s in (2, 3)]
    occ = [np.zeros((40, 56), bool) for _ in range(2)]
    occ[0][:, :10] = True
    occ[1][5:9, :] = True
    write_sintel(tmp_path, {"alley": (frames, flows)}, occlusions={"alley": occ})
    for name in ("sintel-clean", "sintel-final"):
        ds = open_flow_dataset(name, tmp_path)
        res = evaluate_flow(ds, {"zero": zero_flow}, progress=False)["methods"]["zero"]
        mags = [_mag(f) for f in flows]
        assert res["epe_pooled"] == pytest.approx(np.mean(np.stack(mags)), rel=1e-5)
        assert res["epe_per_image"] == pytest.approx(np.mean([m.mean() for m in mags]), rel=1e-5)
        occ_vals = np.concatenate([m[o] for m, o in zip(mags, occ)])
        noc_vals = np.concatenate([m[~o] for m, o in zip(mags, occ)])
        assert res["epe_occ_pooled"] == pytest.approx(occ_vals.mean(), rel=1e-5)
        assert res["epe_noc_pooled"] == pytest.approx(noc_vals.mean(), rel=1e-5)
        assert res["n_images"] == 2


def test_kitti2015_16bit_png_occ_and_noc(tmp_path):
    h, w = 24, 40
    pairs, expect = [], []
    for i in range(2):
        f1, f2 = random_frames(2, h, w, seed=10 + i)
        flow = random_flow(h, w, seed=20 + i, scale=6.0)
        valid_occ = np.ones((h, w), bool)
        valid_occ[: 3 + i, :] = False  # no GT at the top rows (as in KITTI)
        valid_noc = valid_occ.copy()
        valid_noc[:, -8:] = False  # occluded band
        pairs.append((f1, f2, flow, valid_occ, valid_noc))
        expect.append((_mag(flow), valid_occ, valid_noc))
    write_kitti2015(tmp_path, pairs)
    res = evaluate_flow(open_flow_dataset("kitti-2015", tmp_path), {"zero": zero_flow}, progress=False)
    s = res["methods"]["zero"]
    all_v = np.concatenate([m[v] for m, v, _ in expect])
    noc_v = np.concatenate([m[n] for m, _, n in expect])
    occ_v = np.concatenate([m[v & ~n] for m, v, n in expect])
    assert s["epe_pooled"] == pytest.approx(all_v.mean(), rel=1e-5)
    assert s["epe_per_image"] == pytest.approx(np.mean([m[v].mean() for m, v, _ in expect]), rel=1e-5)
    assert s["epe_noc_pooled"] == pytest.approx(noc_v.mean(), rel=1e-5)
    assert s["epe_occ_pooled"] == pytest.approx(occ_v.mean(), rel=1e-5)
    # zero flow: EPE = |gt|, so an outlier is any pixel with |gt| > 3 px
    assert s["fl_all"] == pytest.approx((all_v > 3).mean(), rel=1e-6)
    assert s["n_pixels"] == all_v.size


def test_flying_chairs_val_split(tmp_path):
    frames = random_frames(6, 32, 48, seed=3)
    flows = [random_flow(32, 48, seed=s) for s in range(3)]
    pairs = [(frames[2 * i], frames[2 * i + 1], flows[i]) for i in range(3)]
    write_flying_chairs(tmp_path, pairs, split_ids=[1, 2, 2])
    ds = open_flow_dataset("flying-chairs", tmp_path, split="val")
    assert len(ds) == 2
    s = evaluate_flow(ds, {"zero": zero_flow}, progress=False)["methods"]["zero"]
    assert s["epe_pooled"] == pytest.approx(np.mean([_mag(f).mean() for f in flows[1:]]), rel=1e-5)


def test_synthetic_set_zero_baseline():
    ds = open_flow_dataset("synthetic", synthetic_pairs=2, synthetic_size=(40, 48))
    s = evaluate_flow(ds, {"zero": zero_flow}, progress=False)["methods"]["zero"]
    from mcjepa.data.synthetic import SyntheticFlowDataset

    ref = SyntheticFlowDataset(2, (40, 48), 0)
    mags = [ref[i]["flow"].norm(dim=0) for i in range(2)]
    assert s["epe_pooled"] == pytest.approx(float(torch.stack(mags).double().mean()), rel=1e-5)
    assert "epe_occ_pooled" in s


class _DecodeFlowFromPixels(torch.nn.Module):
    """A fake flow model whose 'flow' is read from the input pixels: u = red (0..255), v = green - 100.

    It only sees the padded, ImageNet-normalised frames, so its output equals the ground truth
    after cropping only if the padding and the crop line up exactly.
    """

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, image1, image2):
        assert image1.shape[-2] % 32 == 0 and image1.shape[-1] % 32 == 0, "input was not padded to the stride"
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        rgb = (image1 * std + mean) * 255
        return torch.stack([rgb[:, 0], rgb[:, 1] - 100], dim=1)


@pytest.mark.parametrize("size", [(45, 70), (33, 97)])
def test_padding_and_crop_give_zero_epe(tmp_path, size):
    h, w = size
    rng = np.random.default_rng(0)
    img1 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    flow = np.stack([img1[..., 0], img1[..., 1].astype(np.float32) - 100], axis=-1).astype(np.float32)
    write_flo_folder(tmp_path, {"p": (img1, img1, flow)})
    method = model_method(_DecodeFlowFromPixels())
    s = evaluate_flow(FloFolder(tmp_path), {"oracle": method, "zero": zero_flow}, progress=False)["methods"]
    assert s["oracle"]["epe_pooled"] < 1e-3
    assert s["zero"]["epe_pooled"] == pytest.approx(_mag(flow).mean(), rel=1e-5)


def test_flo_folder_layout_and_errors(tmp_path):
    f1, f2 = random_frames(2, 32, 40, seed=5)
    flow = random_flow(32, 40, seed=6)
    occ = np.zeros((32, 40), bool)
    occ[:4] = True
    write_flo_folder(tmp_path / "set" / "sub", {"a": (f1, f2, flow, occ)})
    ds = FloFolder(tmp_path / "set")
    assert len(ds) == 1 and ds[0].name == "sub/a"
    assert torch.equal(ds[0].occluded, torch.from_numpy(occ))
    assert torch.equal(ds[0].image1.permute(1, 2, 0), torch.from_numpy(f1))
    (tmp_path / "set" / "sub" / "a_img2.png").unlink()
    with pytest.raises(FileNotFoundError, match="a_img2"):
        FloFolder(tmp_path / "set")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        FloFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no '<name>_flow.flo'"):
        FloFolder(tmp_path / "empty")


def test_opencv_baselines_recover_a_translation():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (72, 88), dtype=np.uint8)
    base = np.kron(base[::4, ::4], np.ones((4, 4), np.uint8))[:72, :88]  # blobs of 4x4 px: trackable texture
    img1 = np.repeat(base[..., None], 3, axis=2)
    img2 = np.roll(img1, shift=(1, 2), axis=(0, 1))  # content moves +2 px right, +1 px down
    t1, t2 = (torch.from_numpy(x).permute(2, 0, 1).contiguous() for x in (img1, img2))
    gt = torch.tensor([2.0, 1.0]).view(2, 1, 1).expand(2, 72, 88)
    inner = (slice(None), slice(12, -12), slice(12, -12))
    for name in ("dis", "farneback"):
        pred = get_baseline(name)(t1, t2)
        assert pred.shape == (2, 72, 88) and pred.dtype == torch.float32
        epe = (pred - gt)[inner].norm(dim=0).mean()
        assert epe < 0.5, f"{name}: EPE {epe:.3f} on a pure translation"


def test_unknown_baseline_and_dataset():
    with pytest.raises(ValueError, match="unknown baseline"):
        get_baseline("raft")
    with pytest.raises(ValueError, match="unknown flow dataset"):
        open_flow_dataset("middlebury", "x")
    with pytest.raises(ValueError, match="needs --root"):
        open_flow_dataset("kitti-2015")
    with pytest.raises(FileNotFoundError, match="KittiFlow/training"):
        open_flow_dataset("kitti-2015", "/nonexistent")


def test_cli_flow_model_and_baselines_one_table(tmp_path, capsys):
    frames = random_frames(3, 40, 56, seed=1)
    flows = [random_flow(40, 56, seed=s) for s in (2, 3)]
    write_sintel(tmp_path / "data", {"alley": (frames, flows)})
    out = tmp_path / "res.json"
    argv = [
        "flow",
        "--dataset",
        "sintel-clean",
        "sintel-final",
        "--root",
        str(tmp_path / "data"),
        "--weights",
        "random",
        "--variant",
        "micro",
        "--device",
        "cpu",
        "--baseline",
        "zero",
        "--out",
        str(out),
        "--no-progress",
        "--dump-worst",
        "1",
        "--dump-dir",
        str(tmp_path / "dumps"),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "EPE (pooled)" in text and "zero" in text and "mcjepa (random init)" in text
    res = json.loads(out.read_text())
    clean = res["datasets"]["sintel-clean"]["methods"]
    assert set(clean) == {"mcjepa (random init)", "zero"}
    assert clean["zero"]["epe_pooled"] == pytest.approx(np.mean([_mag(f).mean() for f in flows]), rel=1e-5)
    assert np.isfinite(clean["mcjepa (random init)"]["epe_pooled"])
    dumps = res["datasets"]["sintel-clean"]["dumps"]
    assert len(dumps) == 2 and all((tmp_path / "dumps").rglob("*.png"))
    from PIL import Image

    assert Image.open(dumps[0]).size == (3 * 56, 40)


def test_cli_reports_missing_data(tmp_path, capsys):
    assert main(["flow", "--dataset", "kitti-2015", "--root", str(tmp_path), "--no-model", "--baseline", "zero"]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_help_lists_subcommands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(t in text for t in ("flow", "segmentation", "davis", "probe"))
    assert main(["flow", "--help"]) == 0
    assert "--dump-worst" in capsys.readouterr().out
    assert main(["flow"]) == 2  # --dataset is required


def test_cli_flow_real_texture_zero_baseline_on_held_out_pairs(tmp_path, capsys):
    from mcjepa.data.real_texture import RealTextureFlowDataset
    from mcjepa.eval.flow_eval import REAL_TEXTURE_SEED_OFFSET

    out = tmp_path / "rt.json"
    argv = ["flow", "--dataset", "real-texture", "--no-model", "--baseline", "zero", "--real-texture-pairs", "4",
            "--real-texture-size", "40", "48", "--seed", "3", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "real-texture" in capsys.readouterr().out
    res = json.loads(out.read_text())["datasets"]["real-texture"]
    assert res["n_pairs"] == 4
    # held out: the bundled photos and dataset seed 10000 + --seed (training sets use small seeds)
    ref = RealTextureFlowDataset(4, (40, 48), seed=REAL_TEXTURE_SEED_OFFSET + 3, photos="bundled")
    mags = torch.stack([ref[i]["flow"].norm(dim=0) for i in range(4)]).double()
    occ = torch.stack([ref[i]["occlusion"][0] for i in range(4)])
    s = res["methods"]["zero"]
    assert s["epe_pooled"] == pytest.approx(float(mags.mean()), rel=1e-5)
    assert s["epe_occ_pooled"] == pytest.approx(float(mags[occ].mean()), rel=1e-5)
    assert s["n_images"] == 4
    ds = open_flow_dataset("real-texture", real_texture_pairs=2, real_texture_size=(40, 48))
    assert ds[1].name == "real-texture/00001" and ds[0].image1.dtype == torch.uint8


def test_cli_without_weights_evaluates_the_bundled_model(tmp_path, capsys):
    """One rule for no weights across the commands: mcjepa-eval with no --weights evaluates the
    trained model bundled with mcjepa (it used to evaluate a random ConvNeXt-T)."""
    frames = random_frames(2, 40, 56, seed=1)
    write_sintel(tmp_path / "data", {"alley": (frames, [random_flow(40, 56, seed=2)])})
    out = tmp_path / "res.json"
    argv = ["flow", "--dataset", "sintel-clean", "--root", str(tmp_path / "data"), "--device", "cpu",
            "--threads", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "model: mcjepa_small_real" in text and "1 CPU thread (--threads)" in text
    res = json.loads(out.read_text())
    assert res["model"]["random_init"] is False
    assert set(res["datasets"]["sintel-clean"]["methods"]) == {"mcjepa"}


def test_cli_variant_without_weights_is_refused(tmp_path, capsys):
    """--variant names the architecture of --weights random; with no weights the bundled model is
    evaluated, so a --variant alone would be silently ignored: refused, as in mcjepa-flow."""
    write_sintel(tmp_path / "data", {"alley": (random_frames(2, 40, 56), [random_flow(40, 56)])})
    argv = ["flow", "--dataset", "sintel-clean", "--root", str(tmp_path / "data"), "--variant", "micro"]
    assert main([*argv, "--device", "cpu", "--no-progress"]) == 2
    assert "--variant micro without --weights" in capsys.readouterr().err

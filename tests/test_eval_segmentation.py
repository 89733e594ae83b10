"""Segmentation evaluation: dataset layouts, label mappings, the frozen / fine-tune contract, mIoU."""

import json

import numpy as np
import pytest
import torch
from fixtures_eval import write_ade20k, write_cityscapes, write_voc

from mcjepa.cli.eval import main
from mcjepa.eval.segmentation import (
    SegmentationModel,
    SegTrainConfig,
    evaluate_segmentation,
    open_segmentation_dataset,
    train_segmentation,
)
from mcjepa.model import build_model


def _voc_items(n, seed, h=40, w=56):
    """Left part black = background (0), right part white = class 15 (person), a 255 border between."""
    rng = np.random.default_rng(seed)
    items = {}
    for i in range(n):
        cut = int(rng.integers(16, 40))
        img = np.zeros((h, w, 3), np.uint8)
        img[:, cut:] = 255
        lab = np.zeros((h, w), np.uint8)
        lab[:, cut:] = 15
        lab[:, cut - 1 : cut + 1] = 255
        items[f"2007_{seed:02d}{i:04d}"] = (img, lab)
    return items


@pytest.fixture
def voc_root(tmp_path):
    write_voc(tmp_path, _voc_items(3, 1), _voc_items(2, 2))
    return tmp_path


def test_voc_layout_and_oracle_scores(voc_root):
    val = open_segmentation_dataset("voc", voc_root, "val")
    img, lab = val[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 40, 56) and lab.dtype == torch.int64
    assert set(lab.unique().tolist()) == {0, 15, 255}
    labels = {i: val[i][1] for i in range(len(val))}
    oracle = iter([labels[i].clamp(max=20) for i in range(len(val))])  # 255 -> anything: ignored
    assert evaluate_segmentation(lambda _: next(oracle), val, 21, progress=False)["miou"] == pytest.approx(1.0)
    # predicting background everywhere: IoU(bg) = bg / all scored pixels, IoU(person) = 0
    bg = sum(int((lab == 0).sum()) for lab in labels.values())
    scored = sum(int((lab != 255).sum()) for lab in labels.values())
    res = evaluate_segmentation(lambda im: torch.zeros(im.shape[-2:], dtype=torch.long), val, 21, progress=False)
    assert res["iou"][0] == pytest.approx(bg / scored)
    assert res["iou"][15] == 0.0
    assert res["miou"] == pytest.approx(bg / scored / 2)  # the 19 absent classes are not counted


def test_frozen_training_leaves_encoder_untouched_and_learns(voc_root):
    enc = build_model("micro", flow_head=False).encoder
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    train = open_segmentation_dataset("voc", voc_root, "train")
    cfg = SegTrainConfig(epochs=40, lr=0.05, batch_size=3, crop_size=32)
    model = train_segmentation(enc, train, 21, cfg, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    assert all(not p.requires_grad for p in model.encoder.parameters())
    val = open_segmentation_dataset("voc", voc_root, "val")
    from mcjepa.eval.segmentation import predictor

    res = evaluate_segmentation(predictor(model), val, 21, progress=False)
    assert res["miou"] > 0.8  # black vs white halves: linearly separable


def test_finetune_updates_encoder(voc_root):
    enc = build_model("micro", flow_head=False).encoder
    before = {k: v.clone() for k, v in enc.state_dict().items() if v.is_floating_point()}
    train = open_segmentation_dataset("voc", voc_root, "train")
    cfg = SegTrainConfig(finetune=True, epochs=1, batch_size=3, crop_size=32)
    model = train_segmentation(enc, train, 21, cfg, progress=False)
    changed = [k for k, v in model.encoder.state_dict().items() if k in before and not torch.equal(before[k], v)]
    assert changed


def test_logits_cover_any_image_size():
    model = SegmentationModel(build_model("micro", flow_head=False).encoder, 5).eval()
    out = model(torch.randint(0, 256, (2, 3, 45, 70), dtype=torch.uint8))
    assert out.shape == (2, 5, 45, 70)


def test_cityscapes_train_ids(tmp_path):
    lab = np.array([[0, 7, 26], [24, 33, 255]], np.uint8).repeat(16, 0).repeat(16, 1)  # 32 x 48
    img = np.zeros(lab.shape + (3,), np.uint8)
    write_cityscapes(tmp_path, "val", {"aachen_000000_000019": (img, lab)})
    _, t = open_segmentation_dataset("cityscapes", tmp_path, "val")[0]
    # unlabeled -> 255, road (7) -> 0, car (26) -> 13, person (24) -> 11, bicycle (33) -> 18
    assert t[::16, ::16].tolist() == [[255, 0, 13], [11, 18, 255]]


def test_ade20k_shift_and_ignore(tmp_path):
    lab = np.array([[0, 1, 150]], np.uint8).repeat(8, 0).repeat(8, 1)
    img = np.zeros(lab.shape + (3,), np.uint8)
    write_ade20k(tmp_path, "val", {"ADE_val_00000001": (img, lab)})
    ds = open_segmentation_dataset("ade20k", tmp_path, "val")  # parent of ADEChallengeData2016 works
    assert ds[0][1][::8, ::8].tolist() == [[255, 0, 149]]
    with pytest.raises(FileNotFoundError, match="no ADE20k images"):
        open_segmentation_dataset("ade20k", tmp_path, "train")


def test_cli_segmentation_voc(voc_root, tmp_path, capsys):
    out = tmp_path / "seg.json"
    argv = [
        "segmentation",
        "--dataset",
        "voc",
        "--root",
        str(voc_root),
        "--weights",
        "random",
        "--variant",
        "micro",
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--crop-size",
        "32",
        "--workers",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "mIoU %" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["mode"] == "frozen" and res["levels"] == [3, 4, 5] and res["n_images"] == 2
    assert 0.0 <= res["miou"] <= 1.0 and len(res["iou"]) == 21


def test_missing_dataset_says_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="VOCdevkit/VOC2012"):
        open_segmentation_dataset("voc", tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val"):
        open_segmentation_dataset("cityscapes", tmp_path, "val")

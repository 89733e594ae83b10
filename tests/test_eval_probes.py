"""k-NN / linear probes: the voting rule by hand, IDX reading, and the ImageFolder path end to end."""

import json

import numpy as np
import pytest
import torch
from fixtures_eval import write_idx, write_imagefolder

from mcjepa.cli.eval import main
from mcjepa.eval.probes import IdxImageDataset, evaluate_probes, knn_classify, linear_probe, read_idx


def test_knn_weighted_vote_by_hand():
    train_x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    train_y = torch.tensor([0, 1, 1])
    test_x = torch.tensor([[2.0, 0.0]])  # cosine similarities 1, 0.8, 0
    scores = knn_classify(train_x, train_y, test_x, k=2, temperature=0.5, num_classes=2)
    assert torch.allclose(scores, torch.tensor([[np.exp(1 / 0.5), np.exp(0.8 / 0.5)]], dtype=torch.float32))
    scores = knn_classify(train_x, train_y, test_x, k=3, temperature=10.0, num_classes=2)
    assert scores.argmax(1).item() == 1  # flat weights: two votes beat one


def test_linear_probe_separates_separable_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    y = (x[:, 3] > 0).long()
    x[:, 3] += 2 * y - 1  # a margin of 2 between the classes
    logits = linear_probe(x[:150], y[:150], x[150:], epochs=300, lr=5e-2)
    assert (logits.argmax(1) == y[150:]).float().mean() == 1.0
    res = evaluate_probes((x[:150], y[:150]), (x[150:], y[150:]), k=5, linear_epochs=300, linear_lr=5e-2)
    assert res["linear_top1"] == 1.0 and res["knn_top5"] == 1.0 and res["num_classes"] == 2


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 3, 9, 1, 3], np.uint8)
    sfx = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", imgs, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", labels, compress)
    assert np.array_equal(read_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}"), imgs)
    ds = IdxImageDataset(tmp_path, "val")
    img, y = ds[2]
    assert y == 9 and img.size == (28, 28) and img.mode == "RGB"
    assert np.array_equal(np.array(img)[..., 0], imgs[2])
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_cli_probe_imagefolder(tmp_path, capsys):
    red, blue = np.zeros((36, 36, 3), np.uint8), np.zeros((36, 36, 3), np.uint8)
    red[..., 0], blue[..., 2] = 220, 220
    for split in ("train", "val"):
        write_imagefolder(tmp_path / "folder", split, {"blue": [blue] * 3, "red": [red] * 3})
    out = tmp_path / "probe.json"
    argv = [
        "probe",
        "--dataset",
        "imagefolder",
        "--root",
        str(tmp_path / "folder"),
        "--weights",
        "random",
        "--variant",
        "micro",
        "--device",
        "cpu",
        "--image-size",
        "32",
        "--k",
        "3",
        "--linear-epochs",
        "20",
        "--workers",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "3-NN top-1 %" in capsys.readouterr().out
    res = json.loads(out.read_text())
    # identical images within a class: their 3 nearest neighbours are exact copies (similarity 1)
    assert res["knn_top1"] == 1.0 and res["n_train"] == 6 and res["dim"] == 48


def test_cli_probe_fashion_mnist_idx(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
    labels = np.arange(8, dtype=np.uint8) % 2
    # the test images are copies of training images 1, 2, 5, 6: each one's nearest neighbour is its copy
    picks = [1, 2, 5, 6]
    for prefix, images, lab in (("train", train, labels), ("t10k", train[picks], labels[picks])):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", lab)
    out = tmp_path / "fm.json"
    argv = [
        "probe",
        "--dataset",
        "fashion-mnist",
        "--root",
        str(tmp_path),
        "--weights",
        "random",
        "--variant",
        "micro",
        "--device",
        "cpu",
        "--image-size",
        "32",
        "--k",
        "1",
        "--linear-epochs",
        "2",
        "--workers",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    assert res["n_train"] == 8 and res["n_val"] == 4 and res["knn_top1"] == 1.0

"""Content stream: VICReg view pipelines over image folders and image datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from mcjepa.data.content import IMAGENET_MEAN, IMAGENET_STD, ContentDataset, TwoViewDataset, vicreg_transforms
from mcjepa.data.synthetic import SyntheticImageDataset

MEAN, STD = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]


def _write_images(folder, n, size=(40, 56), mode="RGB", seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(folder / f"img_{i}.png")


def _find(pipeline, cls):
    out = []
    for t in pipeline.transforms:
        if isinstance(t, v2.RandomApply):
            out += [(t.p, u) for u in t.transforms if isinstance(u, cls)]
        elif isinstance(t, cls):
            out.append((getattr(t, "p", 1.0), t))
    return out


def test_vicreg_pipelines_are_vicregs_asymmetric_pair():
    t1, t2 = vicreg_transforms(size=32)
    for t in (t1, t2):
        ((p, rrc),) = _find(t, v2.RandomResizedCrop)
        assert tuple(rrc.size) == (32, 32) and rrc.scale == (0.08, 1.0)
        ((p, cj),) = _find(t, v2.ColorJitter)
        assert p == 0.8 and cj.brightness == (0.6, 1.4) and cj.saturation == (0.8, 1.2) and cj.hue == (-0.1, 0.1)
        assert _find(t, v2.RandomGrayscale)[0][0] == 0.2
        assert _find(t, v2.RandomHorizontalFlip)[0][0] == 0.5
    assert [p for p, _ in _find(t1, v2.GaussianBlur)] == [1.0] and [p for p, _ in _find(t2, v2.GaussianBlur)] == [0.1]
    assert _find(t1, v2.RandomSolarize)[0][0] == 0.0 and _find(t2, v2.RandomSolarize)[0][0] == 0.2
    assert tuple(_find(vicreg_transforms(224)[0], v2.GaussianBlur)[0][1].kernel_size) == (23, 23)
    with pytest.raises(ValueError, match="scale"):
        vicreg_transforms(32, scale=(0.5, 0.1))


def test_content_dataset_class_folders_and_flat(tmp_path):
    _write_images(tmp_path / "imagenet" / "n01", 2)
    _write_images(tmp_path / "imagenet" / "n02", 1, mode="L", seed=1)  # grayscale files become RGB
    _write_images(tmp_path / "flat", 3, seed=2)
    ds = ContentDataset(tmp_path / "imagenet", size=24)
    assert len(ds) == 3 and len(ContentDataset(tmp_path / "flat", size=24)) == 3
    for i in range(3):
        a, b = ds[i]
        assert a.shape == b.shape == (3, 24, 24) and a.dtype == torch.float32
        for v in (a, b):  # ImageNet-normalised: undoing it lands in [0, 1]
            x = v * STD + MEAN
            assert x.min() >= -1e-5 and x.max() <= 1 + 1e-5
        assert not torch.equal(a, b)


def test_content_dataset_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        ContentDataset(tmp_path / "nope")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no images found under .*empty"):
        ContentDataset(tmp_path / "empty")


def test_two_view_dataset_over_synthetic_images_and_seeding():
    base = SyntheticImageDataset(4, size=(48, 48), seed=0)
    ds = TwoViewDataset(base, size=32, seed=11)
    a1, b1 = ds[2]
    a2, b2 = ds[2]
    assert torch.equal(a1, a2) and torch.equal(b1, b2)  # depends only on (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], a1)
    assert a1.shape == (3, 32, 32)
    # without normalisation the views stay in [0, 1]; labels from (image, label) tuples are ignored
    raw = TwoViewDataset([(torch.rand(3, 40, 40), 5)], transforms=vicreg_transforms(16, normalize=False))
    v1, v2_ = raw[0]
    assert v1.shape == (3, 16, 16) and 0 <= v1.min() and v2_.max() <= 1


def test_two_view_dataset_rejects_bad_images():
    with pytest.raises(ValueError, match=r"shape \(1 or 3, H, W\)"):
        TwoViewDataset([torch.zeros(4, 8, 8)], size=8)[0]
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        TwoViewDataset([torch.full((3, 8, 8), 2.0)], size=8)[0]
    with pytest.raises(TypeError, match="PIL image or an image tensor"):
        TwoViewDataset([np.zeros((8, 8, 3))], size=8)[0]


# ---------------------------------------------------------------------------- Fashion-MNIST content


def _fake_fashion_mnist(root, n_train: int = 12, n_test: int = 6):
    """IDX files of random images in 3 classes; the test images are copies of the first training images."""
    from fixtures_eval import write_idx

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), np.arange(n_train, dtype=np.uint8) % 3
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images[:n])
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels[:n])
    return root


def test_small_image_views_are_two_different_normalised_crops():
    from mcjepa.data.content import small_image_transforms

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)).convert("RGB")
    t1, t2 = small_image_transforms(32)
    torch.manual_seed(0)
    a, b = t1(image), t2(image)
    assert a.shape == b.shape == (3, 32, 32) and a.dtype == torch.float32 and not torch.equal(a, b)
    # the grey image stays grey: no colour jitter or hue change (ImageNet normalisation differs per channel)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    raw = a * std + mean
    torch.testing.assert_close(raw[0], raw[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="scale"):
        small_image_transforms(32, scale=(0.5, 0.1))


def test_fashion_mnist_content_type_reads_the_training_split_only(tmp_path):
    from mcjepa.train.config import load_config
    from mcjepa.train.data import build_content_dataset
    from mcjepa.utils.schema import ConfigError

    root = _fake_fashion_mnist(tmp_path / "fm")
    cfg = load_config("fashion-mnist", [f'data.content.root="{root}"', "data.content.num_images=5"])
    data = build_content_dataset(cfg)
    assert len(data) == 5 and data[4][0].shape == (3, 32, 32)
    assert len(build_content_dataset(load_config("fashion-mnist", [f'data.content.root="{root}"']))) == 12
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        build_content_dataset(load_config("fashion-mnist", [f'data.content.root="{tmp_path / "none"}"']))


def test_content_check_adds_a_linear_probe_beside_its_baselines(tmp_path):
    from mcjepa import build_model
    from mcjepa.train.evaluate import content_knn

    root = _fake_fashion_mnist(tmp_path / "fm", n_train=30, n_test=10)
    enc, rnd = build_model("micro").encoder.eval(), build_model("micro").encoder.eval()
    out = content_knn(enc, rnd, 0, seed=0, fashion_mnist_root=str(root), fashion_mnist_counts=(30, 10),
                      image_size=32, fashion_mnist_linear=(30, 10))  # fmt: skip
    assert {"fmnist_knn", "fmnist_linear", "fmnist_linear_random", "fmnist_linear_pixels"} <= set(out)
    # the test images are copies of training images: a linear probe on raw pixels separates them
    assert out["fmnist_linear_pixels"] == 1.0 and out["fmnist_knn_pixels"] == 1.0
    # off by default
    assert "fmnist_linear" not in content_knn(enc, rnd, 0, seed=0, fashion_mnist_root=str(root),
                                              fashion_mnist_counts=(30, 10), image_size=32)  # fmt: skip

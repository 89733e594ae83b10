"""k-NN and linear probes on the pooled content embedding (the stride-32 map, average-pooled).

Data: any ImageFolder layout (``root/train/<class>/*`` and ``root/val/<class>/*``; the val classes
must be the train classes), or Fashion-MNIST's IDX files (``train-images-idx3-ubyte[.gz]`` etc.,
as Debian's ``dataset-fashion-mnist`` installs them in ``/usr/share/datasets/fashion-mnist``).

* k-NN (DINO's weighted k-NN): cosine similarity between L2-normalised embeddings; the ``k``
  (default 20) nearest training samples vote with weight ``exp(similarity / T)`` (T = 0.07).
* Linear: a linear classifier on standardised (train mean / std) embeddings, trained with AdamW
  and cross-entropy (full-batch epochs over the cached embeddings).
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from mcjepa.encoder import to_encoder_input

__all__ = [
    "IdxImageDataset",
    "read_idx",
    "linear_accuracy",
    "open_probe_dataset",
    "extract_embeddings",
    "knn_classify",
    "linear_probe",
    "evaluate_probes",
    "FASHION_MNIST_ROOT",
    "knn_accuracy",
    "probe_images",
    "embed_images",
]

# where Debian's dataset-fashion-mnist installs its IDX files
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str | Path) -> np.ndarray:
    """Return the array stored in an IDX file (MNIST format, optionally gzip-compressed)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {arr.size} values")
    return arr.reshape(shape)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        for cand in (root / name, root / "raw" / name, root / "FashionMNIST" / "raw" / name):
            if cand.is_file():
                return cand
    raise FileNotFoundError(f"{stem}[.gz] not found under {root}")


class IdxImageDataset(torch.utils.data.Dataset):
    """MNIST-style IDX images + labels (e.g. Fashion-MNIST) as ``(PIL RGB image, label)``."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        prefix = {"train": "train", "val": "t10k", "test": "t10k"}.get(split)
        if prefix is None:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        root = Path(root)
        self.images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
        self.labels = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        if len(self.images) != len(self.labels) or self.images.ndim != 3:
            raise ValueError(f"IDX images {self.images.shape} / labels {self.labels.shape} do not match")
        self.classes = [str(c) for c in range(int(self.labels.max()) + 1)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]).convert("RGB"), int(self.labels[index])


def open_probe_dataset(name: str, root: str | Path, split: str) -> torch.utils.data.Dataset:
    """Return ``(PIL image, class index)`` items: ``name`` "imagefolder" (``root/<split>/<class>/*``)
    or "fashion-mnist" / "idx" (IDX files in ``root``)."""
    if name == "imagefolder":
        from torchvision.datasets import ImageFolder

        folder = Path(root) / split
        if not folder.is_dir():
            raise FileNotFoundError(f"ImageFolder split {folder} not found (expected root/train and root/val)")
        return ImageFolder(str(folder))
    if name in ("fashion-mnist", "idx"):
        return IdxImageDataset(root, split)
    raise ValueError(f"unknown probe dataset {name!r}; choose 'imagefolder', 'fashion-mnist' or 'idx'")


def _transform(image_size: int) -> Callable[[Image.Image], Tensor]:
    from torchvision.transforms import v2

    tf = v2.Compose(
        [v2.PILToTensor(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]  # uint8 (3, s, s)
    )
    return tf


@torch.no_grad()
def extract_embeddings(
    encoder: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    image_size: int = 224,
    batch_size: int = 64,
    workers: int = 0,
    device: str | torch.device = "cpu",
    max_items: int | None = None,
    progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Return ``(embeddings (N, D) float32, labels (N,) int64)``: images resized (shorter side) and
    centre-cropped to ``image_size``, embedded with ``encoder.forward_embedding``."""
    from mcjepa.utils.progress import progress_bar

    tf = _transform(image_size)
    if max_items is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(max_items, len(dataset))))

    def collate(batch: list[tuple[Any, int]]) -> tuple[Tensor, Tensor]:
        return torch.stack([tf(img) for img, _ in batch]), torch.tensor([int(y) for _, y in batch])

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    encoder = encoder.to(device).eval()
    feats, labels = [], []
    for x, y in progress_bar(loader, desc="embeddings", enabled=progress, unit="batch"):
        feats.append(embed_images(encoder, x, batch_size, device))
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def knn_classify(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
) -> Tensor:
    """Return ``(N_test, C)`` class scores of DINO's weighted k-NN (cosine similarity, weights exp(s/T))."""
    c = int(num_classes or int(train_y.max()) + 1)
    tr, te = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    k = min(k, tr.shape[0])
    scores = torch.zeros(te.shape[0], c)
    for s in range(0, te.shape[0], 1024):
        sim = te[s : s + 1024] @ tr.t()
        val, idx = sim.topk(k, dim=1)
        w = (val / temperature).exp()
        onehot = F.one_hot(train_y[idx], c).float()  # (n, k, C)
        scores[s : s + 1024] = (w[..., None] * onehot).sum(1)
    return scores


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    num_classes: int | None = None,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> Tensor:
    """Train a linear classifier on standardised embeddings; return ``(N_test, C)`` logits."""
    c = int(num_classes or int(train_y.max()) + 1)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(xtr.shape[1], c)
    opt = torch.optim.AdamW(lin.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(xtr.shape[0], generator=g)
            for s in range(0, xtr.shape[0], batch_size):
                idx = perm[s : s + batch_size]
                loss = F.cross_entropy(lin(xtr[idx]), train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    with torch.no_grad():
        return lin(xte)


def _accuracy(scores: Tensor, y: Tensor, top: int) -> float:
    top = min(top, scores.shape[1])
    hit = (scores.topk(top, dim=1).indices == y[:, None]).any(1)
    return float(hit.float().mean())


def evaluate_probes(
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    k: int = 20,
    temperature: float = 0.07,
    linear_epochs: int = 100,
    linear_lr: float = 1e-3,
) -> dict[str, Any]:
    """Return ``{"knn_top1", "knn_top5", "linear_top1", "linear_top5", "n_train", "n_val",
    "num_classes", "dim"}`` (accuracies as fractions) from cached embeddings."""
    (xtr, ytr), (xva, yva) = train, val
    c = int(max(ytr.max(), yva.max())) + 1
    knn = knn_classify(xtr, ytr, xva, k=k, temperature=temperature, num_classes=c)
    lin = linear_probe(xtr, ytr, xva, num_classes=c, epochs=linear_epochs, lr=linear_lr)
    return {
        "knn_top1": _accuracy(knn, yva, 1),
        "knn_top5": _accuracy(knn, yva, 5),
        "linear_top1": _accuracy(lin, yva, 1),
        "linear_top5": _accuracy(lin, yva, 5),
        "n_train": int(xtr.shape[0]),
        "n_val": int(xva.shape[0]),
        "num_classes": c,
        "dim": int(xtr.shape[1]),
        "k": k,
        "temperature": temperature,
    }


@torch.no_grad()
def embed_images(
    encoder: torch.nn.Module, images: Tensor, batch_size: int = 256, device: str | torch.device | None = None
) -> Tensor:
    """Pooled content embeddings ``(N, D)`` float32 on the CPU of uint8 (or [0, 1] float)
    ``(N, 3, s, s)`` images, in batches, with ``encoder`` in eval mode (its mode is restored)."""
    device = device if device is not None else next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out = [
        encoder.forward_embedding(to_encoder_input(images[i : i + batch_size].to(device))).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(out)


def probe_images(
    dataset: torch.utils.data.Dataset, image_size: int, max_items: int | None = None
) -> tuple[Tensor, Tensor]:
    """Return ``(images uint8 (N, 3, s, s), labels (N,) int64)``: the first ``max_items`` items of a
    ``(image, label)`` dataset, resized (shorter side) and centre-cropped to ``s = image_size`` as
    :func:`extract_embeddings` does. Flattened and scaled to [0, 1] they are the raw-pixel baseline."""
    tf = _transform(image_size)
    n = len(dataset) if max_items is None else min(max_items, len(dataset))
    images, labels = [], []
    for i in range(n):
        img, y = dataset[i]
        images.append(tf(img))
        labels.append(int(y))
    return torch.stack(images), torch.tensor(labels)


def linear_accuracy(
    train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], epochs: int = 100, seed: int = 0
) -> float:
    """Top-1 accuracy (fraction) of :func:`linear_probe` trained on ``train`` and scored on ``val``
    (cached ``(features, labels)`` pairs)."""
    (xtr, ytr), (xva, yva) = train, val
    c = int(max(ytr.max(), yva.max())) + 1
    return _accuracy(linear_probe(xtr, ytr, xva, num_classes=c, epochs=epochs, seed=seed), yva, 1)


def knn_accuracy(
    train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], k: int = 20, temperature: float = 0.07
) -> float:
    """Top-1 accuracy (fraction) of DINO's weighted k-NN (:func:`knn_classify`) on cached
    ``(embeddings, labels)`` pairs."""
    (xtr, ytr), (xva, yva) = train, val
    c = int(max(ytr.max(), yva.max())) + 1
    return _accuracy(knn_classify(xtr, ytr, xva, k=k, temperature=temperature, num_classes=c), yva, 1)

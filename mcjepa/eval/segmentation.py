"""Semantic segmentation with a linear head on (frozen or fine-tuned) pyramid features, scored by mIoU.

Head (:class:`LinearSegHead`): the pyramid levels ``levels`` (default ``(3, 4, 5)`` = strides 8, 16
and 32; 192 + 384 + 768 = 1344 channels for ConvNeXt-T) are each batch-normalised, bilinearly
upsampled to stride 4 and concatenated, then a single 1x1 convolution maps them to class logits;
logits are bilinearly upsampled to the image. Because upsampling and a 1x1 convolution are both
linear, the code applies one 1x1 conv per level *before* upsampling and sums the results: the same
function at a fraction of the memory.

Frozen mode (default): the encoder stays in eval mode and its features are computed under
``torch.no_grad()``; only the head trains. ``finetune=True`` trains the encoder too (its learning
rate scaled by ``encoder_lr_mult``).

Datasets (``open_segmentation_dataset(name, root, split)``), each yielding
``(image (3, H, W) uint8, label (H, W) int64 with 255 = ignore)``:

* ``voc``: Pascal VOC 2012 in torchvision's ``VOCSegmentation`` layout (``root/VOCdevkit/VOC2012``),
  21 classes, splits train / val.
* ``cityscapes``: torchvision's ``Cityscapes`` layout (``root/leftImg8bit``, ``root/gtFine``),
  ``*_labelIds.png`` mapped to the 19 train ids (others -> 255), splits train / val.
* ``ade20k``: the ADEChallengeData2016 release (``root/images/{training,validation}/*.jpg``,
  ``root/annotations/{training,validation}/*.png``; ``root`` may also be its parent), 150
  classes: label 0 ("other") -> 255, others shifted down by one. Splits train / val.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from mcjepa.encoder import NETWORK_STRIDE, to_encoder_input
from mcjepa.eval.metrics import IGNORE_INDEX, confusion_matrix, miou_from_confusion
from mcjepa.ops import pad_to_multiple
from mcjepa.utils.media import to_rgb

__all__ = [
    "SEG_DATASETS",
    "DEFAULT_LEVELS",
    "ADE20k",
    "LinearSegHead",
    "SegmentationModel",
    "SegTrainConfig",
    "open_segmentation_dataset",
    "evaluate_segmentation",
    "train_segmentation",
]

SEG_DATASETS = {"voc": 21, "cityscapes": 19, "ade20k": 150}
DEFAULT_LEVELS = (3, 4, 5)  # strides 8, 16, 32


def _pil_to_chw(img: Image.Image) -> Tensor:
    return torch.from_numpy(np.array(to_rgb(img))).permute(2, 0, 1).contiguous()


class _Wrapped(torch.utils.data.Dataset):
    """Adapt a (PIL image, PIL label) dataset to (uint8 (3, H, W), int64 (H, W)) with a label LUT."""

    def __init__(self, ds: Any, lut: np.ndarray | None = None) -> None:
        self.ds, self.lut = ds, lut

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        img, target = self.ds[index]
        lab = np.array(target, dtype=np.int64)
        if lab.ndim != 2:
            raise ValueError(f"label of item {index} must be a single-channel image, got shape {lab.shape}")
        if self.lut is not None:
            lab = self.lut[lab]
        return _pil_to_chw(img), torch.from_numpy(lab)


class ADE20k(torch.utils.data.Dataset):
    """ADE20k scene parsing (ADEChallengeData2016): 150 classes, 0 -> ignore (255), k -> k - 1."""

    def __init__(self, root: str | Path, split: str = "val") -> None:
        root = Path(root)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        sub = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}.get(split)
        if sub is None:
            raise ValueError(f"ADE20k split must be 'train' or 'val', got {split!r}")
        img_dir, ann_dir = root / "images" / sub, root / "annotations" / sub
        self.images = sorted(img_dir.glob("*.jpg"))
        if not self.images:
            raise FileNotFoundError(f"no ADE20k images in {img_dir} (expected ADEChallengeData2016/images/{sub}/*.jpg)")
        self.labels = [ann_dir / (p.stem + ".png") for p in self.images]
        missing = [p for p in self.labels if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} ADE20k annotations missing, e.g. {missing[0]}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        lab = np.array(Image.open(self.labels[index]), dtype=np.int64)
        lab = np.where(lab == 0, IGNORE_INDEX, lab - 1)
        return _pil_to_chw(Image.open(self.images[index])), torch.from_numpy(lab)


def _cityscapes_lut() -> np.ndarray:
    from torchvision.datasets import Cityscapes

    lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for c in Cityscapes.classes:
        if 0 <= c.id < 256 and 0 <= c.train_id < 255:
            lut[c.id] = c.train_id
    return lut


def open_segmentation_dataset(name: str, root: str | Path, split: str) -> torch.utils.data.Dataset:
    """Return the ``split`` ("train" / "val") of dataset ``name`` (one of :data:`SEG_DATASETS`) as
    ``(uint8 (3, H, W), int64 (H, W))`` pairs with 255 = ignore."""
    if name == "voc":
        from torchvision.datasets import VOCSegmentation

        if not (Path(root) / "VOCdevkit" / "VOC2012" / "SegmentationClass").is_dir():
            raise FileNotFoundError(f"Pascal VOC 2012 not found: expected {Path(root) / 'VOCdevkit/VOC2012'}")

        return _Wrapped(VOCSegmentation(str(root), year="2012", image_set=split, download=False))
    if name == "cityscapes":
        from torchvision.datasets import Cityscapes

        if not (Path(root) / "leftImg8bit" / split).is_dir() or not (Path(root) / "gtFine" / split).is_dir():
            raise FileNotFoundError(
                f"Cityscapes not found: expected {root}/leftImg8bit/{split} and {root}/gtFine/{split}"
            )
        ds = Cityscapes(str(root), split=split, mode="fine", target_type="semantic")
        return _Wrapped(ds, _cityscapes_lut())
    if name == "ade20k":
        return ADE20k(root, split)
    raise ValueError(f"unknown segmentation dataset {name!r}; choose one of {sorted(SEG_DATASETS)}")


class LinearSegHead(nn.Module):
    """Linear segmentation head: per level BatchNorm + 1x1 conv, upsampled to stride 4 and summed
    (= one 1x1 conv on the concatenation of the levels upsampled to stride 4)."""

    def __init__(self, channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        self.convs = nn.ModuleList(nn.Conv2d(c, num_classes, 1, bias=(i == 0)) for i, c in enumerate(channels))
        for conv in self.convs:
            nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(self.convs[0].bias)

    def forward(self, feats: Sequence[Tensor], stride4_size: tuple[int, int]) -> Tensor:
        """Return ``(B, num_classes, H/4, W/4)`` logits from the selected pyramid maps."""
        out = 0
        for f, norm, conv in zip(feats, self.norms, self.convs):
            y = conv(norm(f))
            if tuple(y.shape[-2:]) != tuple(stride4_size):
                y = F.interpolate(y, size=stride4_size, mode="bilinear", align_corners=False)
            out = out + y
        return out


class SegmentationModel(nn.Module):
    """Encoder + :class:`LinearSegHead`. ``forward(uint8 images)`` returns full-resolution logits."""

    def __init__(self, encoder: nn.Module, num_classes: int, levels: Sequence[int] = DEFAULT_LEVELS) -> None:
        super().__init__()
        channels = [encoder.feature_info[i]["num_chs"] for i in levels]
        self.encoder, self.levels, self.num_classes = encoder, tuple(levels), num_classes
        self.head = LinearSegHead(channels, num_classes)
        self.frozen = True

    def features(self, images: Tensor) -> list[Tensor]:
        """Return the selected pyramid maps of the (stride-padded) images; no grad when frozen."""
        x, _ = pad_to_multiple(to_encoder_input(images), NETWORK_STRIDE)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            feats = self.encoder(x)
        return [feats[i] for i in self.levels]

    def forward(self, images: Tensor) -> Tensor:
        """Return ``(B, num_classes, H, W)`` logits for ``(B, 3, H, W)`` uint8 images (any size)."""
        h, w = images.shape[-2:]
        hp, wp = h + (-h) % NETWORK_STRIDE, w + (-w) % NETWORK_STRIDE
        logits = self.head(self.features(images), (hp // 4, wp // 4))
        logits = F.interpolate(logits, size=(hp, wp), mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


def _train_transform(crop_size: int) -> Callable:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    tf = v2.Compose(
        [
            v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
            v2.RandomHorizontalFlip(),
        ]
    )

    def apply(item: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        img, lab = tf(tv_tensors.Image(item[0]), tv_tensors.Mask(item[1]))
        return img.as_subclass(Tensor), lab.as_subclass(Tensor)

    return apply


class _Transformed(torch.utils.data.Dataset):
    def __init__(self, ds: torch.utils.data.Dataset, tf: Callable) -> None:
        self.ds, self.tf = ds, tf

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.tf(self.ds[index])


@torch.no_grad()
def evaluate_segmentation(
    predict: Callable[[Tensor], Tensor],
    dataset: torch.utils.data.Dataset,
    num_classes: int,
    max_images: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``predict`` (uint8 (3, H, W) image -> int (H, W) label map) on ``dataset``.

    Returns :func:`miou_from_confusion`'s dict (fractions) plus ``n_images``; the confusion matrix
    is pooled over the whole split (the standard mIoU).
    """
    from mcjepa.utils.progress import progress_bar

    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for i in progress_bar(range(n), desc="segmentation eval", enabled=progress, unit="img"):
        img, lab = dataset[i]
        pred = torch.as_tensor(predict(img)).cpu()
        if pred.shape != lab.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} != label {tuple(lab.shape)} for image {i}")
        conf += confusion_matrix(pred, lab, num_classes)
    return {**miou_from_confusion(conf), "n_images": n}


@dataclass(frozen=True)
class SegTrainConfig:
    """How :func:`train_segmentation` trains the head (defaults: ``mcjepa-eval segmentation``'s).

    ``lr`` is the head's AdamW learning rate (cosine decay to 0 over the run); with ``finetune`` the
    encoder trains too at ``lr * encoder_lr_mult``. ``crop_size`` is the square training crop in
    pixels; ``max_steps`` (None = all ``epochs``) caps the optimiser steps; ``workers`` are
    DataLoader processes.
    """

    levels: tuple[int, ...] = DEFAULT_LEVELS
    finetune: bool = False
    epochs: int = 20
    lr: float = 1e-3
    encoder_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    batch_size: int = 16
    crop_size: int = 512
    workers: int = 0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if not self.levels or any(not 0 <= lvl <= 5 for lvl in self.levels):
            raise ValueError(f"levels must be pyramid levels in 0..5, got {self.levels!r}")
        for name in ("epochs", "batch_size", "crop_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or None), got {self.max_steps}")
        if self.lr <= 0 or self.encoder_lr_mult < 0 or self.weight_decay < 0 or self.workers < 0:
            raise ValueError("lr must be > 0; encoder_lr_mult, weight_decay and workers >= 0")


def train_segmentation(
    encoder: nn.Module,
    train_set: torch.utils.data.Dataset,
    num_classes: int,
    config: SegTrainConfig = SegTrainConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> SegmentationModel:
    """Train a linear head (and, with ``config.finetune``, the encoder) with cross-entropy (ignore
    255), AdamW and a cosine schedule on random ``config.crop_size`` crops with horizontal flips;
    return the model in eval mode."""
    from mcjepa.utils.progress import progress_bar

    cfg = config
    finetune = cfg.finetune
    model = SegmentationModel(encoder, num_classes, cfg.levels).to(device)
    model.frozen = not finetune
    for p in model.encoder.parameters():
        p.requires_grad_(finetune)
    groups = [{"params": list(model.head.parameters()), "lr": cfg.lr}]
    if finetune:
        groups.append({"params": list(model.encoder.parameters()), "lr": cfg.lr * cfg.encoder_lr_mult})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    loader = torch.utils.data.DataLoader(
        _Transformed(train_set, _train_transform(cfg.crop_size)),
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=cfg.workers,
        drop_last=len(train_set) >= cfg.batch_size,
    )
    total = cfg.epochs * len(loader)
    if cfg.max_steps is not None:
        total = min(cfg.max_steps, total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    step = 0
    bar = progress_bar(total=total, desc="segmentation train", enabled=progress, unit="step")
    while step < total:
        for img, lab in loader:
            model.head.train()
            model.encoder.train(finetune)
            logits = model(img.to(device))
            loss = F.cross_entropy(logits, lab.to(device), ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step >= total:
                break
    bar.close()
    return model.eval()


def predictor(model: SegmentationModel, device: str | torch.device = "cpu") -> Callable[[Tensor], Tensor]:
    """Return ``image (3, H, W) uint8 -> (H, W) int64 argmax labels`` for :func:`evaluate_segmentation`."""

    def predict(img: Tensor) -> Tensor:
        return model(img[None].to(device))[0].argmax(0).cpu()

    return predict

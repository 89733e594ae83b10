"""Content stream data: two VICReg-augmented views of an image, from any image folder or image dataset.

``vicreg_transforms`` builds VICReg's asymmetric pair of pipelines (Bardes et al. 2022, its
``augmentations.py``) from ``torchvision.transforms.v2``; :class:`TwoViewDataset` applies them to any
dataset yielding images; :class:`ContentDataset` does so for a folder of image files (ImageNet-style
class subfolders, any nesting, or a flat folder; labels are ignored).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from mcjepa.data.samplers import EpochSeeded
from mcjepa.utils.media import IMAGE_EXTENSIONS, is_image_file, read_rgb, to_rgb

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ContentDataset",
    "ImageFiles",
    "TwoViewDataset",
    "small_image_transforms",
    "vicreg_transforms",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _blur_kernel(size: int) -> int:
    k = max(3, int(round(size * 0.1)))  # ~10% of the crop, as BYOL (23 px at 224)
    return k if k % 2 == 1 else k + 1


def vicreg_transforms(
    size: int = 224, scale: tuple[float, float] = (0.08, 1.0), normalize: bool = True
) -> tuple[v2.Compose, v2.Compose]:
    """Return VICReg's two view pipelines; each maps an image (PIL, uint8/float tensor) to float (3, size, size).

    Both: RandomResizedCrop(size, scale, bicubic), horizontal flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1)
    with p=0.8, grayscale p=0.2. View 1: Gaussian blur always, no solarisation; view 2: blur p=0.1,
    solarisation p=0.2. Blur sigma is uniform in [0.1, 2.0] px with a kernel of ~10% of ``size``.
    The output is ImageNet-normalised (``normalize=True``) or in [0, 1].
    """
    if size < 1 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"need size >= 1 and 0 < scale[0] <= scale[1] <= 1, got size={size}, scale={scale}")
    kernel = _blur_kernel(size)

    def pipeline(blur_p: float, solarize_p: float) -> v2.Compose:
        ops = [
            v2.ToImage(),
            v2.ToDtype(torch.uint8, scale=True),
            v2.RandomResizedCrop(size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_p),
            v2.RandomSolarize(threshold=128, p=solarize_p),
            v2.ToDtype(torch.float32, scale=True),
        ]
        if normalize:
            ops.append(v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD))
        return v2.Compose(ops)

    return pipeline(1.0, 0.0), pipeline(0.1, 0.2)


def small_image_transforms(
    size: int = 32, scale: tuple[float, float] = (0.25, 1.0), normalize: bool = True
) -> tuple[v2.Compose, v2.Compose]:
    """Return two view pipelines for small, centred, mostly grayscale images (Fashion-MNIST's 28x28
    garments), each mapping an image to float (3, size, size).

    VICReg's ImageNet views do not suit them: a crop down to 8% of a 28-pixel image keeps a few
    pixels, a 10%-of-size Gaussian blur wipes out the texture that tells a shirt from a pullover,
    and colour jitter and grayscale do nothing to a gray image. Both views here: RandomResizedCrop
    (``scale``, default 25-100% of the area; bicubic), horizontal flip 0.5, brightness and
    contrast jitter 0.4 with p = 0.8; view 2 is also solarised with p = 0.2, keeping VICReg's
    asymmetry. No blur, no hue or saturation change.
    """
    if size < 1 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"need size >= 1 and 0 < scale[0] <= scale[1] <= 1, got size={size}, scale={scale}")

    def pipeline(solarize_p: float) -> v2.Compose:
        ops = [
            v2.ToImage(),
            v2.ToDtype(torch.uint8, scale=True),
            v2.RandomResizedCrop(size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
            v2.RandomSolarize(threshold=128, p=solarize_p),
            v2.ToDtype(torch.float32, scale=True),
        ]
        if normalize:
            ops.append(v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD))
        return v2.Compose(ops)

    return pipeline(0.0), pipeline(0.2)


def _as_rgb(image, where: str):
    """Return ``image`` as an RGB PIL image or a 3-channel tensor; raise a clear error for anything else."""
    if isinstance(image, Image.Image):
        return to_rgb(image, where)
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"{where}: expected an image tensor of shape (1 or 3, H, W), got {tuple(image.shape)}")
        if image.shape[0] == 1:
            image = tv_tensors.Image(image.expand(3, -1, -1))
        if image.is_floating_point() and (image.min() < 0 or image.max() > 1):
            raise ValueError(
                f"{where}: float image tensors must be in [0, 1], got [{image.min():.3g}, {image.max():.3g}]"
            )
        return image
    raise TypeError(f"{where}: expected a PIL image or an image tensor, got {type(image).__name__}")


class TwoViewDataset(EpochSeeded):
    """Wrap a dataset of images; item ``i`` is ``(view1, view2)`` float tensors (3, size, size).

    ``base[i]`` may be an image (PIL or (C, H, W) tensor, uint8 or float in [0, 1]) or a tuple/list
    whose first element is one (labels are ignored). With ``seed`` set, the augmentation of item
    ``i`` depends only on ``(seed, epoch, i)`` (see :meth:`set_epoch`), which makes resume exact;
    with ``seed=None`` it uses torch's ambient RNG.
    """

    def __init__(
        self,
        base: Dataset,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        seed: int | None = None,
        transforms: tuple | None = None,
    ) -> None:
        super().__init__(base, seed)
        self.transforms = transforms if transforms is not None else vicreg_transforms(size, scale)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        item = self.base[index]
        if isinstance(item, (tuple, list)):
            item = item[0]
        image = _as_rgb(item, f"{type(self.base).__name__}[{index}]")
        with self.rng(index):
            return self.transforms[0](image), self.transforms[1](image)


class ImageFiles(Dataset):
    """All image files under ``root`` (any depth, sorted by path; labels ignored); item ``i`` is an RGB PIL image."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"image folder not found: {self.root} (expected a folder of images or of class folders)"
            )
        files = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames.sort()
            files += [os.path.join(dirpath, f) for f in sorted(filenames) if is_image_file(f)]
        if not files:
            raise FileNotFoundError(
                f"no images found under {self.root} (looked for {', '.join(IMAGE_EXTENSIONS)} at any depth)"
            )
        self.files = files

    @classmethod
    def from_files(cls, files: Sequence[str | os.PathLike]) -> ImageFiles:
        """The same dataset over an explicit list of image files (in this order)."""
        if not files:
            raise FileNotFoundError("ImageFiles.from_files: no files given")
        self = cls.__new__(cls)
        self.root = Path(os.path.commonpath([str(f) for f in files]))
        self.files = [str(f) for f in files]
        return self

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Image.Image:
        path = self.files[index]
        try:
            return read_rgb(path)
        except Exception as e:  # corrupt file: say which one
            raise OSError(f"could not read image {path}: {e}") from e


class ContentDataset(TwoViewDataset):
    """Two VICReg views of every image under ``root`` (ImageNet-style class folders or a flat folder)."""

    def __init__(
        self,
        root: str | os.PathLike,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        seed: int | None = None,
    ) -> None:
        super().__init__(ImageFiles(root), size=size, scale=scale, seed=seed)
        self.root = Path(root)

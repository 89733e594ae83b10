"""ConvNeXt encoder with MC-JEPA's 2-conv stem and 6-level feature pyramid (docs/method.md#encoder).

Built from timm's ``ConvNeXtStage`` (blocks, LayerNorm, DropPath) so that the blocks are
exactly timm's; only the stem and the pyramid taps are MC-JEPA's.
"""

from __future__ import annotations

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm, LayerNorm2d, trunc_normal_
from timm.models.convnext import ConvNeXtStage
from torch import Tensor, nn

from mcjepa.architecture import EncoderConfig

__all__ = [
    "ConvNeXtPyramid",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_INPUT_SIZE",
    "NETWORK_STRIDE",
    "imagenet_normalize",
    "to_encoder_input",
]

IMAGENET_MEAN = IMAGENET_DEFAULT_MEAN
IMAGENET_STD = IMAGENET_DEFAULT_STD
NETWORK_STRIDE = 32  # the coarsest pyramid level's stride: inputs are padded to a multiple of it
MIN_INPUT_SIZE = NETWORK_STRIDE  # the coarsest level must hold at least one position


def imagenet_normalize(images: Tensor) -> Tensor:
    """Map ``(B, 3, H, W)`` float images in [0, 1] to ImageNet-normalised encoder input."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def to_encoder_input(images: Tensor) -> Tensor:
    """Map ``(B, 3, H, W)`` (or ``(3, H, W)``) uint8 images, or floats in [0, 1], to ImageNet-normalised float32."""
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return imagenet_normalize(x)


class ConvNeXtPyramid(nn.Module):
    """ConvNeXt encoder returning a 6-level pyramid, fine to coarse.

    Level i has stride ``(2, 4, 4, 8, 16, 32)[i]`` and ``feature_info[i]["num_chs"]`` channels
    ((48, 48, 96, 192, 384, 768) for ConvNeXt-T): the two stem outputs, then the four stages.

    Input: ImageNet-normalised ``(B, 3, H, W)`` float images, H and W >= 32 (any size; levels
    follow the convolutions' floor/ceil arithmetic, e.g. ``H // 2`` at stride 2).
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        cfg = config or EncoderConfig()
        if len(cfg.depths) != 4 or len(cfg.dims) != 4 or len(cfg.stem_dims) != 2:
            raise ValueError("EncoderConfig needs 4 depths, 4 dims and 2 stem_dims")
        self.config = cfg
        s0, s1 = cfg.stem_dims
        self.stem = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(3, s0, kernel_size=4, stride=2, padding=1), LayerNorm2d(s0)),
                nn.Sequential(nn.Conv2d(s0, s1, kernel_size=3, stride=2, padding=1), LayerNorm2d(s1)),
            ]
        )
        ls = cfg.layer_scale_init_value if cfg.layer_scale_init_value > 0 else None
        total = sum(cfg.depths)
        rates = torch.linspace(0, cfg.drop_path_rate, total).tolist() if total else []
        stages = []
        in_chs, start = s1, 0
        for i, (depth, dim) in enumerate(zip(cfg.depths, cfg.dims)):
            stages.append(
                ConvNeXtStage(
                    in_chs,
                    dim,
                    stride=1 if i == 0 else 2,  # the 2-conv stem already reached stride 4
                    depth=depth,
                    drop_path_rates=rates[start : start + depth],
                    ls_init_value=ls,
                    norm_layer=LayerNorm2d,
                    norm_layer_cl=LayerNorm,
                )
            )
            in_chs, start = dim, start + depth
        self.stages = nn.ModuleList(stages)
        self.num_features = cfg.dims[-1]
        self.feature_info = [
            {"num_chs": c, "reduction": r, "module": m}
            for c, r, m in zip(
                cfg.pyramid_channels,
                cfg.pyramid_strides,
                ["stem.0", "stem.1", "stages.0", "stages.1", "stages.2", "stages.3"],
            )
        ]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # timm's ConvNeXt initialisation
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(
                f"expected ImageNet-normalised float images, got dtype {x.dtype}; "
                "use mcjepa.encoder.imagenet_normalize(images.float() / 255)"
            )
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"images must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, got {x.shape[-2]}x{x.shape[-1]}"
            )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the 6 pyramid maps, fine to coarse, each ``(B, C_i, H_i, W_i)``."""
        self._check_input(x)
        feats = []
        for layer in self.stem:
            x = layer(x)
            feats.append(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_embedding(self, x: Tensor) -> Tensor:
        """Return the ``(B, num_features)`` content embedding: the stride-32 map, average-pooled."""
        return self.forward(x)[-1].mean(dim=(2, 3))

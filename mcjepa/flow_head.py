"""PWC-style coarse-to-fine flow estimator with LayerNorm (paper, Sec. 3.1; docs/method.md#flow-head).

At every pyramid level, coarse to fine: upsample the previous flow, backward-warp the second
frame's features with it, build a local 81-channel cost volume against the first frame's
features, and let one decoder shared by all levels predict a residual flow from
``[cost volume, 1x1-reduced first-frame features, upsampled flow]``. An optional dilated
context network refines each level's flow (as in ARFlow's PWC-Lite). Every level's flow is
clipped to ``[-flow_clip, flow_clip]`` pixels of that level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import Tensor, nn

from mcjepa.architecture import FlowHeadConfig
from mcjepa.ops import backward_warp, local_correlation, normalize_feature_pair, upcast_half, upsample_flow

__all__ = ["FlowHead", "FlowHeadOutput"]


@dataclass
class FlowHeadOutput:
    """What :class:`FlowHead` returns.

    Attributes:
        levels: pyramid indices (0 = finest, stride 2) at which a flow was estimated, fine to
            coarse.
        level_flows: the flow at each of ``levels``, ``(B, 2, H_i, W_i)`` in pixels of that
            level, same order.
        flow: the finest level's flow upsampled to the input resolution, ``(B, 2, H, W)`` in
            pixels of the input image.
    """

    levels: tuple[int, ...]
    level_flows: list[Tensor]
    flow: Tensor


def _scale_uv(t: Tensor, su: float, sv: float) -> Tensor:
    """``t`` (B, 2, H, W) with u times ``su`` and v times ``sv``; half precision comes back as
    float32. Python-float factors: no host-to-device copy of a scale tensor."""
    t = upcast_half(t)
    return torch.cat((t[:, :1] * su, t[:, 1:] * sv), dim=1)


def _conv_block(cin: int, cout: int, use_layernorm: bool, slope: float, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)]
    if use_layernorm:
        layers.append(LayerNorm2d(cout))
    layers.append(nn.LeakyReLU(slope, inplace=True))
    return nn.Sequential(*layers)


class DenseDecoder(nn.Module):
    """Densely connected decoder: each conv sees the input and every earlier conv's output.

    Returns ``(features, residual_flow)``; ``features`` (all concatenated activations) feed the
    context network.
    """

    def __init__(self, in_channels: int, widths: list[int], use_layernorm: bool, slope: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        ch = in_channels
        for w in widths:
            self.convs.append(_conv_block(ch, w, use_layernorm, slope))
            ch += w
        self.out_channels = ch
        self.predict_flow = nn.Conv2d(ch, 2, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        for conv in self.convs:
            x = torch.cat((conv(x), x), dim=1)
        return x, self.predict_flow(x)


class ContextNetwork(nn.Module):
    """Dilated convolutions that predict a flow refinement from decoder features and flow."""

    def __init__(
        self,
        in_channels: int,
        widths: list[int],
        dilations: tuple[int, ...],
        use_layernorm: bool,
        slope: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for w, d in zip(widths, dilations):
            layers.append(_conv_block(ch, w, use_layernorm, slope, dilation=d))
            ch = w
        layers.append(nn.Conv2d(ch, 2, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class FlowHead(nn.Module):
    """Coarse-to-fine flow estimator over a feature pyramid.

    Args:
        config: the flow head's :class:`FlowHeadConfig`.
        pyramid_channels: channels of each pyramid level, fine to coarse (the encoder's
            ``feature_info`` ``num_chs``).
    """

    def __init__(self, config: FlowHeadConfig | None, pyramid_channels: tuple[int, ...]) -> None:
        super().__init__()
        cfg = config or FlowHeadConfig()
        n = len(pyramid_channels)
        if not 0 <= cfg.finest_level < n:
            raise ValueError(f"flow_head.finest_level must be in [0, {n - 1}], got {cfg.finest_level}")
        coarsest = n - 1 if cfg.coarsest_level == -1 else cfg.coarsest_level
        if not cfg.finest_level <= coarsest < n:
            raise ValueError(
                f"flow_head.coarsest_level must be -1 (the coarsest) or in [{cfg.finest_level}, {n - 1}] "
                f"(at least finest_level), got {cfg.coarsest_level}"
            )
        if len(cfg.context_widths) != len(cfg.context_dilations):
            raise ValueError("context_widths and context_dilations must have the same length")
        if cfg.output_pixels_per_unit <= 0:
            raise ValueError(f"output_pixels_per_unit must be > 0, got {cfg.output_pixels_per_unit}")
        self.config = cfg
        self.pyramid_channels = tuple(pyramid_channels)
        self._coarsest = coarsest
        reduced = cfg.width(cfg.reduced_channels)
        # one 1x1 reduction per pyramid level so that a single decoder serves every level; the
        # levels above coarsest_level hold an empty Identity (keys stay indexed by pyramid level,
        # and releases made before coarsest_level existed load unchanged)
        self.reducers = nn.ModuleList(
            nn.Conv2d(c, reduced, 1) if i <= coarsest else nn.Identity() for i, c in enumerate(self.pyramid_channels)
        )
        cost_channels = (2 * cfg.max_displacement + 1) ** 2
        self.decoder = DenseDecoder(
            cost_channels + reduced + 2,
            [cfg.width(w) for w in cfg.decoder_widths],
            cfg.use_layernorm,
            cfg.leaky_relu_slope,
        )
        self.context = (
            ContextNetwork(
                self.decoder.out_channels + 2,
                [cfg.width(w) for w in cfg.context_widths],
                cfg.context_dilations,
                cfg.use_layernorm,
                cfg.leaky_relu_slope,
            )
            if cfg.context_network
            else None
        )
        # The final flow convs start at zero, so an untrained head predicts zero flow instead of
        # residuals that compound over six levels (tens of pixels of noise at full resolution).
        final_convs = [self.decoder.predict_flow] + ([self.context.layers[-1]] if self.context is not None else [])
        for conv in final_convs:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def _normalize(self, src: Tensor, tgt: Tensor) -> tuple[Tensor, Tensor]:
        mode = self.config.feature_normalization
        src, tgt = upcast_half(src), upcast_half(tgt)  # statistics and cost volume in float32 (bf16 cancels)
        if mode == "standardize":
            return normalize_feature_pair(src, tgt)
        if mode == "l2":
            return F.normalize(src, dim=1), F.normalize(tgt, dim=1)
        return src, tgt

    @property
    def levels(self) -> tuple[int, ...]:
        """Pyramid indices the head estimates a flow at, fine to coarse."""
        return tuple(range(self.config.finest_level, self._coarsest + 1))

    def _check(self, feats_src: list[Tensor], feats_tgt: list[Tensor]) -> None:
        n = len(self.pyramid_channels)
        if len(feats_src) != n or len(feats_tgt) != n:
            raise ValueError(f"expected two pyramids of {n} levels, got {len(feats_src)} and {len(feats_tgt)}")
        for i, (a, b, c) in enumerate(zip(feats_src, feats_tgt, self.pyramid_channels)):
            if a.shape != b.shape or a.shape[1] != c:
                raise ValueError(
                    f"pyramid level {i}: expected two (B, {c}, H, W) maps of equal shape, "
                    f"got {tuple(a.shape)} and {tuple(b.shape)}"
                )

    def forward(self, feats_src: list[Tensor], feats_tgt: list[Tensor], image_size: tuple[int, int]) -> FlowHeadOutput:
        """Estimate the flow from the source frame to the target frame.

        Args:
            feats_src: source-frame (frame t) pyramid, fine to coarse.
            feats_tgt: target-frame (frame t+1) pyramid, fine to coarse.
            image_size: ``(H, W)`` of the input images, for the full-resolution flow.

        Returns:
            A :class:`FlowHeadOutput`; flows in pixels, u then v.
        """
        self._check(feats_src, feats_tgt)
        cfg = self.config
        flow: Tensor | None = None
        per_level: list[Tensor] = []
        for i in reversed(self.levels):  # coarse to fine
            src, tgt = feats_src[i], feats_tgt[i]
            b, _, h, w = src.shape
            if flow is None:
                flow_up = upcast_half(src.new_zeros(b, 2, h, w))  # flows stay float32 under autocast
                tgt_warped = tgt
            else:
                flow_up = upsample_flow(flow, (h, w))
                tgt_warped = backward_warp(tgt, flow_up)
            a, t = self._normalize(src, tgt_warped)
            cost = F.leaky_relu(local_correlation(a, t, cfg.max_displacement), cfg.leaky_relu_slope)
            x = torch.cat((cost, self.reducers[i](src), flow_up), dim=1)
            feat, residual = self.decoder(x)
            # one output unit = output_pixels_per_unit input pixels, i.e. this many level pixels
            # per axis (the exact size ratio, as upsample_flow uses, so u and v agree at any size)
            unit = cfg.output_pixels_per_unit
            su, sv = unit * w / image_size[1], unit * h / image_size[0]
            flow = flow_up + _scale_uv(residual, su, sv)
            if self.context is not None:
                flow = flow + _scale_uv(self.context(torch.cat((feat, flow.to(feat.dtype)), dim=1)), su, sv)
            flow = flow.clamp(-cfg.flow_clip, cfg.flow_clip)
            per_level.append(flow)
        assert flow is not None
        full = upsample_flow(flow, tuple(image_size))
        return FlowHeadOutput(levels=self.levels, level_flows=per_level[::-1], flow=full)

"""The MC-JEPA composite: one encoder shared by a flow head and a VICReg expander.

State-dict keys (the release format) are the component name, a dot, then the component's own
keys: ``encoder.*`` (:class:`~mcjepa.encoder.ConvNeXtPyramid`), ``flow_head.*``
(:class:`~mcjepa.flow_head.FlowHead`) and ``expander.*`` (:class:`~mcjepa.expander.Expander`).
A release stores each component in its own safetensors file with the prefix removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mcjepa.architecture import ModelConfig, model_config
from mcjepa.encoder import ConvNeXtPyramid
from mcjepa.expander import Expander
from mcjepa.flow_head import FlowHead, FlowHeadOutput

__all__ = ["COMPONENTS", "BidirectionalFlow", "MCJEPA", "build_model"]

COMPONENTS = ("encoder", "flow_head", "expander")


@dataclass
class BidirectionalFlow:
    """Forward (t -> t+1) and backward (t+1 -> t) flow estimates plus both pyramids."""

    forward: FlowHeadOutput
    backward: FlowHeadOutput
    feats1: list[Tensor]
    feats2: list[Tensor]


def _check_same_shape(image1: Tensor, image2: Tensor) -> None:
    if image1.shape != image2.shape:
        raise ValueError(
            f"the two frames must have the same shape, got {tuple(image1.shape)} and {tuple(image2.shape)}"
        )


class MCJEPA(nn.Module):
    """Encoder + flow head (+ expander for training).

    ``model(image1, image2)`` returns the full-resolution flow ``(B, 2, H, W)`` in pixels from
    ImageNet-normalised ``(B, 3, H, W)`` frames, like torchvision's RAFT. For uint8 or [0, 1]
    images, numpy arrays and PIL images use :func:`mcjepa.flow.estimate`.

    Args:
        config: the architecture.
        flow_head: build the flow head.
        expander: build the expander (only needed for training).

    A model returned by :func:`mcjepa.release.load_model` (``mcjepa.flow.load``, the hub entries)
    also says which weights it holds: ``release_name`` (the manifest key or the release's name;
    ``None`` for random or unnamed weights) and ``weights_description`` (one line, also in ``repr``).
    """

    release_name: str | None = None
    weights_description: str | None = None

    def __init__(self, config: ModelConfig | None = None, flow_head: bool = True, expander: bool = False) -> None:
        super().__init__()
        self.config = config or model_config()
        self.encoder = ConvNeXtPyramid(self.config.encoder)
        self.flow_head = FlowHead(self.config.flow_head, self.config.encoder.pyramid_channels) if flow_head else None
        self.expander = Expander(self.config.expander) if expander else None
        if expander and self.config.expander.dims[0] != self.encoder.num_features:
            raise ValueError(
                f"expander input {self.config.expander.dims[0]} != encoder output {self.encoder.num_features}"
            )

    def extra_repr(self) -> str:
        return f"weights: {self.weights_description}" if self.weights_description else ""

    @property
    def components(self) -> tuple[str, ...]:
        """Names of the components this model holds, in release order."""
        return tuple(name for name in COMPONENTS if getattr(self, name) is not None)

    def _require_flow_head(self) -> FlowHead:
        if self.flow_head is None:
            raise RuntimeError("this model was built without a flow head (flow_head=False)")
        return self.flow_head

    def flow_both_ways(self, image1: Tensor, image2: Tensor, detach_features: bool = False) -> BidirectionalFlow:
        """Encode each frame once and estimate forward and backward flow in one batched call.

        With ``detach_features`` the flow head sees the features without gradient to the encoder
        (the returned pyramids keep theirs).
        """
        head = self._require_flow_head()
        _check_same_shape(image1, image2)
        b = image1.shape[0]
        feats = self.encoder(torch.cat((image1, image2), dim=0))
        f1 = [f[:b] for f in feats]
        f2 = [f[b:] for f in feats]
        head_feats = [f.detach() for f in feats] if detach_features else feats
        # sources are [frame 1; frame 2], targets the same batch swapped: one call, both directions
        tgt = [torch.cat((f[b:], f[:b]), dim=0) for f in head_feats]
        out = head(head_feats, tgt, tuple(image1.shape[-2:]))
        fwd = FlowHeadOutput(out.levels, [f[:b] for f in out.level_flows], out.flow[:b])
        bwd = FlowHeadOutput(out.levels, [f[b:] for f in out.level_flows], out.flow[b:])
        return BidirectionalFlow(forward=fwd, backward=bwd, feats1=f1, feats2=f2)

    def estimate_flow(self, image1: Tensor, image2: Tensor) -> FlowHeadOutput:
        """Forward flow only (frame 1 -> frame 2), every level; frames encoded in one batch."""
        head = self._require_flow_head()
        _check_same_shape(image1, image2)
        b = image1.shape[0]
        feats = self.encoder(torch.cat((image1, image2), dim=0))
        return head([f[:b] for f in feats], [f[b:] for f in feats], tuple(image1.shape[-2:]))

    def forward(self, image1: Tensor, image2: Tensor) -> Tensor:
        """Return the ``(B, 2, H, W)`` flow from ``image1`` to ``image2`` in pixels."""
        return self.estimate_flow(image1, image2).flow


def build_model(variant: str | ModelConfig = "convnext_t", flow_head: bool = True, expander: bool = False) -> MCJEPA:
    """Build an untrained :class:`MCJEPA` from a variant name (see
    :data:`mcjepa.architecture.MODEL_VARIANTS`) or a :class:`ModelConfig`."""
    cfg = variant if isinstance(variant, ModelConfig) else model_config(variant)
    return MCJEPA(cfg, flow_head=flow_head, expander=expander)

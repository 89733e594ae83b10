"""Architecture configurations.

Every number here is the paper's (arXiv 2307.12698; each value and its source:
``docs/method.md#hyper-parameters``) unless a comment says otherwise. Variants are small functions
returning a :class:`ModelConfig`, in the style of timm's ``convnext.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from mcjepa.utils.schema import from_dict, to_dict

__all__ = [
    "EncoderConfig",
    "ExpanderConfig",
    "FlowHeadConfig",
    "ModelConfig",
    "MODEL_VARIANTS",
    "model_config",
]


@dataclass(frozen=True)
class EncoderConfig:
    """ConvNeXt encoder with the 2-conv stem and a 6-level pyramid."""

    depths: tuple[int, ...] = (3, 3, 9, 3)  # ConvNeXt-T block counts (paper, implementation details)
    dims: tuple[int, ...] = (96, 192, 384, 768)  # ConvNeXt-T stage widths (paper, implementation details)
    stem_dims: tuple[int, int] = (48, 48)  # 4x4/s2 then 3x3/s2 stem, 3->48->48 (docs/method.md#encoder)
    drop_path_rate: float = 0.1  # stochastic depth (paper, implementation details)
    # The paper's 0.0; in ConvNeXt's code a value <= 0 disables layer scale (docs/method.md#encoder).
    layer_scale_init_value: float = 0.0

    @property
    def pyramid_channels(self) -> tuple[int, ...]:
        return (*self.stem_dims, *self.dims)

    @property
    def pyramid_strides(self) -> tuple[int, ...]:
        return (2, 4, 4, 8, 16, 32)


@dataclass(frozen=True)
class FlowHeadConfig:
    """PWC-style coarse-to-fine flow estimator (paper, Sec. 3.1; docs/method.md#flow-head)."""

    channel_factor: float = 2.0  # C (paper: C = 2, ~8M params; Table 3 ablates C = 1)
    use_layernorm: bool = True  # LayerNorm after every conv but the outputs (paper, Table 3)
    max_displacement: int = 4  # 9x9 = 81-channel local cost volume (not given; PWC-Net's)
    flow_clip: float = 128.0  # clip each level's flow to [-128, 128] px (paper)
    reduced_channels: int = 32  # per-level 1x1 reduction to 32*C channels (PWC-Lite)
    decoder_widths: tuple[int, ...] = (128, 128, 96, 64, 32)  # times C (PWC-Lite)
    context_network: bool = True  # dilated-conv refinement after each level (PWC-Lite)
    context_widths: tuple[int, ...] = (128, 128, 128, 96, 64, 32)  # times C (PWC-Lite)
    context_dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1)  # (PWC-Lite)
    # Feature normalisation before correlating: "standardize" centres and scales each pair by
    # shared statistics (UFlow; not in the paper), "l2" L2-normalises every position (Table 3's
    # "LayerNorm + L2-Norm" ablation, which the paper found harmful), "none" correlates raw.
    feature_normalization: str = "standardize"
    # Speed knob, not in the paper: index (fine-to-coarse) of the finest pyramid level the head
    # runs at. 0 = stride 2 (the paper); 1 = stride 4 as in PWC-Net, ~4x cheaper.
    finest_level: int = 0
    # Index of the coarsest pyramid level the head starts at; -1 = the encoder's coarsest (the
    # paper: all six levels). On small inputs the coarse levels are a few positions wide (a 64x96
    # crop gives 2x3 at stride 32) and their flow carries little information; starting lower
    # leaves them to the content stream (measured, not adopted: docs/scaling.md).
    coarsest_level: int = -1
    leaky_relu_slope: float = 0.1  # (PWC-Net / PWC-Lite)
    # Input-image pixels of flow per unit of the decoder's and context network's outputs, the
    # same at every level (a level of stride s adds ``output * output_pixels_per_unit / s`` of its
    # own pixels), as PWC-Net's 1/20 flow scaling makes one unit 20 px at every level. Not given
    # in the paper; why this value: docs/method.md#where-the-paper-is-silent-or-this-project-departs.
    output_pixels_per_unit: float = 0.5

    def __post_init__(self) -> None:
        if self.feature_normalization not in ("standardize", "l2", "none"):
            raise ValueError(
                f"flow_head.feature_normalization must be 'standardize', 'l2' or 'none', "
                f"got {self.feature_normalization!r}"
            )
        if self.channel_factor <= 0:
            raise ValueError(f"flow_head.channel_factor must be > 0, got {self.channel_factor}")

    def width(self, base: int) -> int:
        """Return ``base`` scaled by the channel factor, at least 2."""
        return max(2, int(round(base * self.channel_factor)))


@dataclass(frozen=True)
class ExpanderConfig:
    """VICReg expander: Linear-BN-ReLU, Linear-BN-ReLU, Linear (docs/method.md#expander)."""

    dims: tuple[int, ...] = (768, 8192, 8192, 8192)


@dataclass(frozen=True)
class ModelConfig:
    """Full MC-JEPA architecture: encoder, flow head and expander."""

    name: str = "mcjepa_convnext_t"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    flow_head: FlowHeadConfig = field(default_factory=FlowHeadConfig)
    expander: ExpanderConfig = field(default_factory=ExpanderConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from :meth:`to_dict` output (missing keys keep their defaults).

        Raises:
            ConfigError: (a ``ValueError``) an unknown key or a value of the wrong type, naming
                the dotted key (``flow_head.channel_factor``); a section's own range checks
                raise ``ValueError``.
        """
        return from_dict(cls, data)


def convnext_t() -> ModelConfig:
    """The paper's model: ConvNeXt-T encoder, C=2 flow head with LayerNorm, 8192-d expander."""
    return ModelConfig(name="mcjepa_convnext_t")


def convnext_t_c1() -> ModelConfig:
    """Table 3's smaller flow head (C=1, ~2M parameters) on the ConvNeXt-T encoder."""
    return ModelConfig(name="mcjepa_convnext_t_c1", flow_head=FlowHeadConfig(channel_factor=1.0))


def micro() -> ModelConfig:
    """A tiny-width variant (same topology, ~1/12 the widths) for tests and CPU demos.

    Not a paper model: it exists so that training and end-to-end tests run in seconds.
    """
    return ModelConfig(
        name="mcjepa_micro",
        encoder=EncoderConfig(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48), stem_dims=(12, 12), drop_path_rate=0.0),
        flow_head=FlowHeadConfig(channel_factor=0.25),
        expander=ExpanderConfig(dims=(48, 256, 256, 256)),
    )


def small() -> ModelConfig:
    """A CPU-sized variant (same topology, ~1/5 of ConvNeXt-T's widths, flow at stride 4): the bundled
    model that ``mcjepa.flow.load()`` uses by default. Not a paper model.

    Sized for a CPU: flow at 256x512 on one thread is faster than torchvision's ``raft_small``,
    and the ``real`` training config fits in under an hour on 2 cores (measured:
    ``docs/real_footage.md``).
    """
    return ModelConfig(
        name="mcjepa_small",
        encoder=EncoderConfig(depths=(1, 1, 3, 1), dims=(24, 32, 48, 64), stem_dims=(16, 16), drop_path_rate=0.0),
        flow_head=FlowHeadConfig(channel_factor=0.375, finest_level=1),
        expander=ExpanderConfig(dims=(64, 512, 512, 512)),
    )


MODEL_VARIANTS = {
    "convnext_t": convnext_t,
    "convnext_t_c1": convnext_t_c1,
    "micro": micro,
    "small": small,
}


def model_config(name: str = "convnext_t", **overrides: Any) -> ModelConfig:
    """Return the named variant's :class:`ModelConfig`.

    ``overrides`` replace whole sections (``encoder=EncoderConfig(...)``) or the name.
    """
    if name not in MODEL_VARIANTS:
        raise ValueError(f"unknown model variant {name!r}; choose one of {sorted(MODEL_VARIANTS)}")
    cfg = MODEL_VARIANTS[name]()
    return replace(cfg, **overrides) if overrides else cfg

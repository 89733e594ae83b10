"""VICReg expander (docs/method.md#expander): maps the 768-d content embedding to 8192-d for the VICReg loss."""

from __future__ import annotations

from torch import Tensor, nn

from mcjepa.architecture import ExpanderConfig

__all__ = ["Expander"]


class Expander(nn.Module):
    """``dims[0] -> dims[1] -> ... -> dims[-1]``: Linear-BN-ReLU for every hidden layer and a
    final bias-free Linear, as in VICReg's projector. Used only for training."""

    def __init__(self, config: ExpanderConfig | None = None) -> None:
        super().__init__()
        cfg = config or ExpanderConfig()
        self.config = cfg
        dims = cfg.dims
        if len(dims) < 2:
            raise ValueError(f"ExpanderConfig.dims needs at least 2 entries, got {dims}")
        layers: list[nn.Module] = []
        for i in range(len(dims) - 2):
            layers += [nn.Linear(dims[i], dims[i + 1]), nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, dims[0])`` embeddings to ``(B, dims[-1])``."""
        if x.dim() != 2 or x.shape[1] != self.config.dims[0]:
            raise ValueError(f"expected (B, {self.config.dims[0]}) embeddings, got {tuple(x.shape)}")
        return self.layers(x)

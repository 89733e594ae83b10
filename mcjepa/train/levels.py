"""Per-level loss weights over the 6-level feature pyramid, and the paper's values.

**One order.** A :class:`LevelWeights` is a tuple in *pyramid order*, fine to coarse: index 0 is
the stride-2 map, index 5 the stride-32 map, the order of the encoder's pyramid and of every
per-level sequence in :mod:`mcjepa.train.losses` (``docs/architecture.md``, "Conventions"). Python code
never holds these weights in any other order.

The only other spelling is in config files: the training keys
``loss.reg_weights_coarse_to_fine``, ``loss.vc_var_weights_coarse_to_fine`` and
``loss.vc_cov_weights_coarse_to_fine`` list the weights coarse to fine, as the paper's tables do,
and say so in their names. :meth:`LevelWeights.from_config` and :meth:`LevelWeights.to_config`
are the one place that order is converted.

Foundation module: imports nothing from ``mcjepa``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "COARSEST",
    "NUM_LEVELS",
    "PAPER_REG_WEIGHTS",
    "PAPER_VC_COV_WEIGHTS",
    "PAPER_VC_VAR_WEIGHTS",
    "LevelWeights",
]

NUM_LEVELS = 6  # strides 2, 4, 4, 8, 16, 32 (mcjepa.encoder)
COARSEST = NUM_LEVELS - 1


class LevelWeights(tuple[float, ...]):
    """Six non-negative, finite weights, one per pyramid level, fine to coarse.

    ``LevelWeights([w_stride2, ..., w_stride32])``; ``weights[level]`` is the weight of pyramid
    index ``level``. Pass it wherever :mod:`mcjepa.train.losses` takes per-level weights.
    """

    def __new__(cls, fine_to_coarse: Iterable[float]) -> LevelWeights:
        values = tuple(fine_to_coarse)
        if len(values) != NUM_LEVELS:
            raise ValueError(f"need {NUM_LEVELS} per-level weights (one per pyramid level), got {len(values)}")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"per-level weight [{i}] (fine to coarse) must be a finite number >= 0, got {v!r}")
        return super().__new__(cls, (float(v) for v in values))

    @classmethod
    def from_coarse_to_fine(cls, values: Iterable[float]) -> LevelWeights:
        """Build from weights listed coarse to fine (stride 32 first), as the paper lists them."""
        return cls(reversed(tuple(values)))

    @property
    def coarse_to_fine(self) -> tuple[float, ...]:
        """The weights coarse to fine (stride 32 first), as the paper and config files list them."""
        return tuple(reversed(self))

    def only_level(self, level: int) -> LevelWeights:
        """These weights with every level but ``level`` set to 0 (``COARSEST``: the stride-32 map,
        Table 11's "last layer only")."""
        if not -NUM_LEVELS <= level < NUM_LEVELS:
            raise ValueError(f"level must index one of the {NUM_LEVELS} pyramid levels, got {level}")
        level %= NUM_LEVELS
        return LevelWeights(w if i == level else 0.0 for i, w in enumerate(self))

    # config files: the coarse-to-fine keys (mcjepa.utils.schema's config-value protocol)
    @classmethod
    def from_config(cls, value: Any, key: str) -> LevelWeights:
        """Read a config key's list, written coarse to fine; a ``ValueError`` names ``key`` and the
        list index (:func:`mcjepa.utils.schema.coerce` reports it as a ``ConfigError``)."""
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list of {NUM_LEVELS} numbers, got {type(value).__name__} {value!r}")
        if len(value) != NUM_LEVELS:
            raise ValueError(f"{key} needs {NUM_LEVELS} values (one per pyramid level, coarse to fine), got {value}")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{key}[{i}]: expected a number, got {type(v).__name__} {v!r}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{key}[{i}] must be a finite number >= 0, got {v}")
        return cls.from_coarse_to_fine(value)

    def to_config(self) -> list[float]:
        """The config-file spelling: a list, coarse to fine."""
        return list(self.coarse_to_fine)

    def __repr__(self) -> str:
        return f"LevelWeights({list(self)})"


# The paper's per-level weights (paper, Table 8; docs/method.md#losses), the only
# place they are written. The paper lists them coarse to fine: L_reg (1, 1, 1, 1, 0.1, 0.01),
# L_vc variance (0.01, 0.01, 0.01, 0.01, 0.001, 0.0001), covariance (0.04, 0.04, 0.001, 0, 0, 0).
PAPER_REG_WEIGHTS = LevelWeights.from_coarse_to_fine((1.0, 1.0, 1.0, 1.0, 0.1, 0.01))
PAPER_VC_VAR_WEIGHTS = LevelWeights.from_coarse_to_fine((0.01, 0.01, 0.01, 0.01, 0.001, 0.0001))
PAPER_VC_COV_WEIGHTS = LevelWeights.from_coarse_to_fine((0.04, 0.04, 0.001, 0.0, 0.0, 0.0))

"""Numeric precision by hardware: autocast dtype, gradient scaling, TF32, memory format, compile.

``run.precision = "auto"`` picks bf16 autocast on GPUs with native bf16 (compute capability 8.0
and up: A100, H100, RTX 30xx and later), fp16 autocast with a gradient scaler on older GPUs (the
V100 of arXiv 2307.12698, whose bf16 torch would emulate, slowly and silently), and fp32 on the
CPU. ``run.tf32`` lets fp32 matmuls and convolutions use TF32 tensor cores where they exist
(torch's default leaves matmuls in full fp32). Each choice is a pure function of the request and
the device's capability, so it is tested without a GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from mcjepa.utils.schema import ConfigError

__all__ = ["Precision", "apply_compile", "apply_tf32", "resolve_precision", "to_memory_format"]

NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere: bf16 tensor cores (and TF32)


@dataclass(frozen=True)
class Precision:
    """The autocast dtype of a run (``"bf16"``, ``"fp16"`` or ``"fp32"``) and why."""

    name: str
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's autocast context (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
        return self.name == "fp16"

    def make_scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device_type) if self.needs_scaler else None


def _capability(device: torch.device) -> tuple[int, int] | None:
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


def resolve_precision(
    requested: str, device: torch.device, capability: tuple[int, int] | None | str = "detect"
) -> Precision:
    """The precision ``run.precision = requested`` gives on ``device``.

    Args:
        capability: the GPU's compute capability (``"detect"``: ask CUDA; None: no GPU).

    Raises:
        ConfigError: bf16 or fp16 asked for on the CPU, or bf16 on a GPU without native bf16
            (naming ``run.precision``).
    """
    cap = _capability(device) if capability == "detect" else capability
    native_bf16 = cap is not None and tuple(cap) >= NATIVE_BF16_CAPABILITY
    if requested == "fp32":
        return Precision("fp32", device.type, "asked for (run.precision = fp32)")
    if cap is None:
        if requested == "auto":
            return Precision("fp32", device.type, "no GPU")
        raise ConfigError(f"run.precision = {requested} needs a CUDA GPU; on the CPU use auto or fp32")
    where = f"compute capability {cap[0]}.{cap[1]}"
    if requested == "bf16" and not native_bf16:
        raise ConfigError(
            f"run.precision = bf16: this GPU ({where}) has no native bf16, torch would emulate it slowly; "
            "use auto (fp16 with a gradient scaler) or fp32"
        )
    if requested in ("bf16", "fp16"):
        return Precision(requested, device.type, f"asked for ({where})")
    if native_bf16:
        return Precision("bf16", device.type, f"native bf16 ({where})")
    return Precision("fp16", device.type, f"no native bf16 ({where}): fp16 with a gradient scaler")


def apply_tf32(enabled: bool, device: torch.device, capability: tuple[int, int] | None | str = "detect") -> bool:
    """Allow (or forbid) TF32 for fp32 matmuls and cuDNN convolutions; return whether TF32 is
    in use (a GPU of compute capability 8.0 or later, and ``enabled``)."""
    cap = _capability(device) if capability == "detect" else capability
    has_tf32 = cap is not None and tuple(cap) >= NATIVE_BF16_CAPABILITY
    if device.type == "cuda":
        set_tf32(enabled, enabled)
    return enabled and has_tf32


def tf32_state() -> tuple[bool, bool]:
    """Whether fp32 ``(matmuls, convolutions)`` may run in TF32 now. Reads torch >= 2.9's
    ``fp32_precision`` settings where they exist (torch refuses the legacy ``allow_tf32`` flags
    once the new ones were set), the legacy flags otherwise."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        conv = torch.backends.cudnn.conv.fp32_precision
        return matmul.fp32_precision == "tf32", conv == "tf32"
    return bool(matmul.allow_tf32), bool(torch.backends.cudnn.allow_tf32)


def set_tf32(matmuls: bool, convolutions: bool) -> None:
    """Allow (True) or forbid TF32 for fp32 matmuls and cuDNN convolutions, through the same API
    that :func:`tf32_state` reads; the one place this package changes them."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9's settings
        matmul.fp32_precision = "tf32" if matmuls else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if convolutions else "ieee"
    else:
        matmul.allow_tf32 = matmuls
        torch.backends.cudnn.allow_tf32 = convolutions


def to_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """``model`` in NHWC memory (``channels_last``) for its convolutions; unchanged otherwise."""
    return model.to(memory_format=torch.channels_last) if channels_last else model


def apply_compile(modules: list[nn.Module], enabled: bool, backend: str = "inductor") -> None:
    """``torch.compile`` each module in place (``nn.Module.compile``: parameter names and
    checkpoints stay the same)."""
    if enabled:
        for m in modules:
            m.compile(backend=backend)

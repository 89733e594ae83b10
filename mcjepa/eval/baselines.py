"""Reference flow "methods" evaluated on the same loop as the model: zero flow, OpenCV DIS, Farnebäck.

Every method is a callable ``(image1, image2) -> flow`` taking two ``(3, H, W)`` uint8 tensors and
returning a ``(2, H, W)`` float32 tensor in pixels (u right, v down), the forward flow from
``image1`` to ``image2``. OpenCV's methods need the optional ``opencv`` extra
(``pip install opencv-python-headless``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["BASELINES", "FlowMethod", "get_baseline", "zero_flow", "dis_flow", "farneback_flow", "have_opencv"]

FlowMethod = Callable[[Tensor, Tensor], Tensor]


def have_opencv() -> bool:
    """Return True when ``cv2`` (opencv-python-headless) can be imported."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the DIS and Farnebäck baselines need OpenCV: pip install opencv-python-headless "
            "(or pip install 'mcjepa[opencv]')"
        ) from e
    return cv2


def _gray(image: Tensor) -> np.ndarray:
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected a (3, H, W) uint8 image, got {image.dtype} {tuple(image.shape)}")
    rgb = image.permute(1, 2, 0).cpu().numpy()
    return _cv2().cvtColor(np.ascontiguousarray(rgb), _cv2().COLOR_RGB2GRAY)


def zero_flow(image1: Tensor, image2: Tensor) -> Tensor:
    """Return an all-zero ``(2, H, W)`` float32 flow (the "no motion" reference)."""
    return torch.zeros((2, *image1.shape[-2:]), dtype=torch.float32)


def dis_flow(image1: Tensor, image2: Tensor, preset: str = "medium") -> Tensor:
    """Return OpenCV's DIS optical flow (Kroeger et al. 2016) on grayscale frames, ``(2, H, W)`` pixels.

    ``preset`` is one of "ultrafast", "fast", "medium" (OpenCV's presets).
    """
    cv2 = _cv2()
    presets = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    if preset not in presets:
        raise ValueError(f"unknown DIS preset {preset!r}; choose one of {sorted(presets)}")
    dis = cv2.DISOpticalFlow_create(presets[preset])
    flow = dis.calc(_gray(image1), _gray(image2), None)
    return torch.from_numpy(flow).permute(2, 0, 1).float().contiguous()


def farneback_flow(image1: Tensor, image2: Tensor) -> Tensor:
    """Return OpenCV's Farnebäck dense flow (pyr_scale 0.5, 5 levels, window 15, 3 iterations, poly_n 5,
    poly_sigma 1.2) on grayscale frames, ``(2, H, W)`` pixels."""
    cv2 = _cv2()
    flow = cv2.calcOpticalFlowFarneback(_gray(image1), _gray(image2), None, 0.5, 5, 15, 3, 5, 1.2, 0)
    return torch.from_numpy(flow).permute(2, 0, 1).float().contiguous()


BASELINES: dict[str, FlowMethod] = {"zero": zero_flow, "dis": dis_flow, "farneback": farneback_flow}


def get_baseline(name: str) -> FlowMethod:
    """Return the baseline called ``name`` ("zero", "dis" or "farneback"); OpenCV ones check for cv2 now."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    if name != "zero":
        _cv2()
    return BASELINES[name]

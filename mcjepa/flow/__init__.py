"""Optical flow in a notebook: ``from mcjepa import flow``.

    >>> from mcjepa import flow
    >>> model = flow.load()                              # the trained small model bundled with mcjepa
    >>> f = flow.estimate(img1, img2, model=model)      # float32 (2, H, W), pixels (u, v)
    >>> rgb = flow.to_image(f)                           # uint8 (3, H, W), Middlebury colour wheel

Images are RGB (arrays from OpenCV are BGR: ``rgb = bgr[..., ::-1]``), uint8 or float [0, 1] tensors, channels first, ``(3, H, W)`` or batched
``(B, 3, H, W)``; numpy arrays, channels last, ``(H, W, 3)`` or ``(B, H, W, 3)``, uint8 or float
[0, 1]; PIL images (converted to RGB); or a list of any of these as a batch. Any size of at least
:data:`MIN_SIZE` pixels works: frames are padded (replicate) to a multiple of
:data:`PAD_MULTIPLE` and the flow is cropped back.

Flow convention: channel 0 = u (+x right), channel 1 = v (+y down), forward flow from frame 1 to
frame 2 on frame 1's grid, so ``warp(image2, flow) ~ image1`` where the pixel is visible
(torchvision's RAFT convention).
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.utils import flow_to_image

from mcjepa.encoder import MIN_INPUT_SIZE, NETWORK_STRIDE, ConvNeXtPyramid, imagenet_normalize
from mcjepa.flow.files import read_flo, read_kitti_flow, write_flo, write_kitti_flow
from mcjepa.flow.inputs import ImageLike, check_colour_pair, check_image_pair, describe_type, prepare_images
from mcjepa.model import MCJEPA
from mcjepa.ops import backward_warp, flow_validity_mask, forward_backward_occlusion, pad_to_multiple

__all__ = [
    "MIN_SIZE",
    "PAD_MULTIPLE",
    "RANDOM_WEIGHTS",
    "estimate",
    "load",
    "occlusion_mask",
    "read_flo",
    "read_kitti_flow",
    "to_image",
    "warp",
    "write_flo",
    "write_kitti_flow",
]

MIN_SIZE = MIN_INPUT_SIZE  # smallest accepted height and width, pixels
PAD_MULTIPLE = NETWORK_STRIDE  # frames are padded to a multiple of the network stride

RANDOM_WEIGHTS = "random"  # flow.load(weights="random"): an untrained model, on request only

_UNTRAINED = (
    "the model is untrained (random weights, as asked with weights='random'): its flow is meaningless. "
    "flow.load() with no weights loads the trained model bundled with mcjepa; flow.load(weights='path/to/release') "
    "loads yours (train one with `mcjepa-train`)."
)
_log = logging.getLogger(__name__)
_default: MCJEPA | None = None


def load(
    weights: str | os.PathLike | None = None,
    *,
    pretrained: bool = False,
    variant: str | None = None,
    device: str | torch.device | None = None,
    sha256: str | None = None,
) -> MCJEPA:
    """Return an encoder + flow head :class:`~mcjepa.model.MCJEPA` in eval mode on ``device``
    (default CPU).

    - ``flow.load()``: the trained ``small`` model bundled with the package
      (:data:`mcjepa.release.DEFAULT_MODEL`, ``"mcjepa_small_real"``), sha256-checked, read from
      the installed package (no network). A :class:`~mcjepa.release.WeightsUnavailableError` says
      so when the installation lacks it.
    - ``flow.load(weights="random")``: a randomly initialised ``variant`` (default
      ``"convnext_t"``), only on request, with a ``UserWarning`` that it is untrained.
    - ``flow.load(weights=...)``: a manifest key, a local release folder or ``.safetensors`` file,
      ``hf://org/repo[@rev]``, an https URL or ``bundled://NAME`` (:func:`mcjepa.release.load_model`).
      ``sha256`` is the expected digest of a bare ``.safetensors`` file (or pass
      ``weights="FILE#sha256=<hex>"``).
    - ``flow.load(pretrained=True)``: the published release of ``variant`` (none is published yet).

    ``variant`` is the architecture of random weights and of a bare file that records none; with no
    weights it is an error (the bundled model has its own). The returned model says which weights
    it holds: ``model.release_name`` (e.g. ``"mcjepa_small_real"``; ``None`` for random weights) and
    ``model.weights_description`` (one line, also in ``repr(model)`` and logged at INFO level).
    """
    from mcjepa.release import BUNDLED_SCHEME, DEFAULT_MODEL, load_model  # lazy: pulls in huggingface_hub

    target = torch.device(device) if device is not None else torch.device("cpu")
    random_init = isinstance(weights, str) and weights == RANDOM_WEIGHTS
    if random_init and pretrained:
        raise ValueError("weights='random' and pretrained=True contradict each other: pass one of them")
    if weights is None and not pretrained:
        if variant is not None:
            raise ValueError(
                f"variant={variant!r} with no weights: flow.load() loads the bundled model {DEFAULT_MODEL!r}, which "
                "has its own architecture. variant= sets the architecture of weights='random' (an untrained model) "
                "and of a bare .safetensors file; drop it, or pass weights='random' or weights=..."
            )
        weights = f"{BUNDLED_SCHEME}{DEFAULT_MODEL}"
    model = load_model(
        None if random_init else weights,
        pretrained=pretrained,
        variant=variant or "convnext_t",
        components=("encoder", "flow_head"),
        map_location=target,
        sha256=sha256,
        warn_untrained=True,
        untrained_message=f"flow.load(): {_UNTRAINED}",
        warn_stacklevel=2,
    )
    _log.info("flow.load(): %s", model.weights_description)
    return model.eval()


def _default_model() -> MCJEPA:
    """The model ``estimate`` uses when given none: :func:`load` (the bundled trained model), loaded once."""
    global _default
    if _default is None:
        _default = load()
    return _default


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------- public API


def estimate(
    image1: ImageLike,
    image2: ImageLike,
    model: nn.Module | None = None,
    *,
    device: str | torch.device | None = None,
    bf16: bool = False,
    check_colour: bool = True,
) -> Tensor:
    """Estimate the optical flow from ``image1`` to ``image2``.

    On the CPU it runs on ``torch.get_num_threads()`` threads, which this function never changes:
    set them with :func:`mcjepa.utils.threads.set_threads` (the commands' ``--threads`` rule: by default
    half the CPUs, so that another busy process does not stall it) or ``torch.set_num_threads``.

    Args:
        image1, image2: the frames, in any form the module docstring lists; same size, at least
            :data:`MIN_SIZE` x :data:`MIN_SIZE`; both single images or both batches of equal size.
        model: from :func:`load`. ``None`` uses the default model, ``load()`` (the bundled trained
            ``small`` model), loaded once and cached.
        device: move the model there first (in place, like ``model.to``); by default the model
            stays where it is and the inputs are moved to it.
        bf16: run under ``torch.autocast("cuda", dtype=torch.bfloat16)``. Only on CUDA: on
            another device this warns and runs in float32.
        check_colour: refuse a pair of a grayscale frame (R = G = B) and a colour frame
            (:func:`mcjepa.flow.inputs.check_colour_pair`). False for consecutive frames of one
            video, where a black-and-white stretch next to a colour one is content, not a mix-up.

    Returns:
        float32 flow in pixels, ``(2, H, W)`` for a single pair or ``(B, 2, H, W)`` for a batch,
        on the input tensors' device (CPU for numpy and PIL inputs).
    """
    x1, batched1, _, out_device = prepare_images(image1, "image1")
    x2, batched2, _, _ = prepare_images(image2, "image2")
    check_image_pair(x1, batched1, x2, batched2)
    if check_colour:
        check_colour_pair(x1, x2)
    if model is None:
        model = _default_model()
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be an MCJEPA from mcjepa.flow.load(), got {describe_type(model)}")
    elif isinstance(model, ConvNeXtPyramid) or (isinstance(model, MCJEPA) and model.flow_head is None):
        what = (
            "a ConvNeXtPyramid, the encoder alone (torch.hub's 'mcjepa_small' or 'mcjepa_convnext_t')"
            if isinstance(model, ConvNeXtPyramid)
            else "an MCJEPA without a flow head (loaded with components=('encoder',))"
        )
        raise TypeError(
            f"flow.estimate needs a model with a flow head, got {what}, which only computes features. "
            "Load encoder + flow head with flow.load(weights=...) or "
            "torch.hub.load(..., 'mcjepa_small_flow') / 'mcjepa_convnext_t_flow', from a release holding flow_head.safetensors."
        )
    if device is not None:
        model.to(device)
    target = _model_device(model)
    use_bf16 = bool(bf16) and target.type == "cuda"
    if bf16 and not use_bf16:
        warnings.warn(
            f"bf16=True needs a CUDA device; the model is on {target}, running in float32", UserWarning, stacklevel=2
        )

    b, (h, w) = x1.shape[0], x1.shape[-2:]
    frames, _ = pad_to_multiple(imagenet_normalize(torch.cat((x1, x2)).to(target)), PAD_MULTIPLE)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast:
            flow = model(frames[:b], frames[b:])
    finally:
        model.train(was_training)
    flow = flow[:, :, :h, :w].to(device=out_device, dtype=torch.float32)
    return flow if batched1 else flow[0]


def _as_flow_tensor(flow: Tensor | np.ndarray, name: str = "flow") -> tuple[Tensor, bool]:
    """``(2, H, W)`` or ``(B, 2, H, W)`` float tensor/array -> float32 ``(B, 2, H, W)``, batched."""
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(flow)
    if not isinstance(flow, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {describe_type(flow)}")
    if flow.dim() not in (3, 4) or flow.shape[-3] != 2:
        raise ValueError(f"{name} must have shape (2, H, W) or (B, 2, H, W), got {tuple(flow.shape)}")
    if not flow.is_floating_point():
        raise ValueError(f"{name} must be floating point (pixels), got dtype {flow.dtype}")
    if not torch.isfinite(flow).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    batched = flow.dim() == 4
    return (flow if batched else flow.unsqueeze(0)).to(torch.float32), batched


def to_image(flow: Tensor | np.ndarray, max_flow: float | None = None) -> Tensor:
    """Colour-code a flow (Middlebury colour wheel, :func:`torchvision.utils.flow_to_image`):
    hue = direction, saturation = speed. Returns uint8 ``(3, H, W)``, or ``(B, 3, H, W)`` for a batch.

    ``max_flow`` (pixels) is the speed shown fully saturated; faster motion is shown at that
    saturation. Give two flows the same ``max_flow`` to compare them side by side on one colour
    scale. Default: the largest magnitude of ``flow`` (of the whole batch for a batch).
    """
    f, batched = _as_flow_tensor(flow)
    if max_flow is not None:
        if not (isinstance(max_flow, (int, float)) and np.isfinite(max_flow) and max_flow > 0):
            raise ValueError(f"max_flow must be a positive number of pixels, got {max_flow!r}")
        f = f / float(max_flow)
        f = f / f.norm(dim=1, keepdim=True).clamp(min=1.0)  # |f| <= 1: faster motion saturates
        # flow_to_image divides by the largest magnitude: one extra column of magnitude exactly 1
        # pins that divisor to 1, so the scale is max_flow; the column is cropped off below
        sentinel = torch.zeros_like(f[..., :1])
        sentinel[:, 0] = 1.0
        rgb = flow_to_image(torch.cat((f, sentinel), dim=-1))[..., :-1]
    else:
        rgb = flow_to_image(f)
    return rgb if batched else rgb[0]


def warp(image: ImageLike, flow: Tensor | np.ndarray) -> Tensor:
    """Backward-warp ``image`` (frame 2) onto frame 1's grid: ``out(p) = image(p + flow(p))``,
    bilinear, black outside the image.

    ``image`` takes the forms :func:`estimate` accepts; ``flow`` is ``(2, H, W)`` (single image)
    or ``(B, 2, H, W)`` (batch) in pixels. Returns uint8 for uint8 (and PIL) inputs, float32 in
    [0, 1] otherwise; ``(3, H, W)`` or ``(B, 3, H, W)``, on the image's device (CPU for numpy and
    PIL inputs).
    """
    x, batched, is_uint8, out_device = prepare_images(image, "image")
    f, flow_batched = _as_flow_tensor(flow)
    if batched != flow_batched or x.shape[0] != f.shape[0] or x.shape[-2:] != f.shape[-2:]:
        wanted = f"(B, 2, H, W) with B = {x.shape[0]}" if batched else "(2, H, W)"
        got = tuple(f.shape) if flow_batched else tuple(f.shape[1:])
        raise ValueError(
            f"flow {got} does not match the image: expected {wanted} with H x W = {x.shape[-2]}x{x.shape[-1]}"
        )
    out = backward_warp(x, f.to(x.device))
    if is_uint8:
        out = (out * 255.0).round().clamp_(0, 255).to(torch.uint8)
    out = out.to(out_device)
    return out if batched else out[0]


def occlusion_mask(
    flow_fwd: Tensor | np.ndarray, flow_bwd: Tensor | np.ndarray, alpha1: float = 0.01, alpha2: float = 0.5
) -> Tensor:
    """Forward-backward consistency check (UnFlow, ARFlow).

    A pixel ``p`` of frame 1 is occluded when ``|f(p) + b(p + f(p))|^2 > alpha1 (|f(p)|^2 +
    |b(p + f(p))|^2) + alpha2``, with ``f`` the forward and ``b`` the backward flow (``b`` sampled
    bilinearly), or when ``p + f(p)`` falls outside the image.

    Returns:
        bool ``(1, H, W)`` (or ``(B, 1, H, W)`` for batched flows), True = occluded.
    """
    f, batched = _as_flow_tensor(flow_fwd, "flow_fwd")
    b, batched_b = _as_flow_tensor(flow_bwd, "flow_bwd")
    if batched != batched_b or f.shape != b.shape:
        raise ValueError(
            f"flow_fwd and flow_bwd must have the same shape, got {tuple(flow_fwd.shape)} and {tuple(flow_bwd.shape)}"
        )
    consistent = forward_backward_occlusion(f, b.to(f.device), alpha1=alpha1, alpha2=alpha2)
    occluded = (consistent < 0.5) | (flow_validity_mask(f) < 0.5)
    return occluded if batched else occluded[0]

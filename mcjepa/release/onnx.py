"""ONNX export of the flow model (encoder + flow head), checked against PyTorch with onnxruntime.

    >>> import mcjepa
    >>> result = mcjepa.export_onnx("flow.onnx", weights="runs/demo/release")   # or model=...
    >>> result.checks   # max |onnxruntime - PyTorch| on a random pair and on the example pair

The graph (:class:`OnnxFlowModel`):

* inputs ``image1``, ``image2``: float32 ``(B, 3, H, W)`` RGB in [0, 1] (uint8 / 255). The
  ImageNet normalisation is inside the graph.
* output ``flow``: float32 ``(B, 2, H, W)`` in pixels, u (+x right) then v (+y down), from
  image1 to image2 (the :mod:`mcjepa.flow` convention).
* dynamic axes: ``batch``, ``height`` and ``width``; any H and W from 32 up. The graph pads the
  frames to a multiple of 32 (the network stride; replicate, right and bottom) and crops the flow
  back, as :func:`mcjepa.flow.estimate` does, so both give the same flow at every size.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` by default (opset
:data:`DEFAULT_OPSET`): it exports this model in seconds. PyTorch marks it deprecated in favour
of the ``torch.export``-based exporter, selectable with ``exporter="dynamo"`` (needs
``onnxscript``): it also exports the model with dynamic batch, height and width (its shape
constraints keep H and W multiples of 32 from 64 up) and onnxruntime matched PyTorch to 6e-6 px, but its symbolic shape analysis of
the flow head's per-level arithmetic took 727 s for the tiny ``micro`` model on this project's
shared 2-core CPU (the TorchScript exporter: 9 s), so it is not the default. Its example input
has a batch of 2: with 1, ``torch.export`` specialises the batch to 1.

Not in the graph: bfloat16 autocast (the export is float32), the input validation of
:func:`mcjepa.flow.estimate`, the expander (training only).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mcjepa.encoder import NETWORK_STRIDE, imagenet_normalize
from mcjepa.ops import pad_to_multiple

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_OPSET",
    "DEFAULT_RTOL",
    "EXPORTERS",
    "ONNX_INSTALL_HINT",
    "OnnxCheckError",
    "OnnxExportResult",
    "OnnxFlowModel",
    "check_onnx",
    "export_onnx",
    "onnxruntime_session",
]

DEFAULT_OPSET = 17  # GridSample (16+) and LayerNormalization (17+) as single ONNX ops
EXPORTERS = ("torchscript", "dynamo")
# |onnxruntime - PyTorch| must stay within DEFAULT_ATOL + DEFAULT_RTOL * max |flow| (pixels)
DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-4
ONNX_INSTALL_HINT = 'pip install "mcjepa[onnx]" (or pip install onnx onnxruntime onnxscript)'
INPUT_NAMES = ("image1", "image2")
OUTPUT_NAME = "flow"


class OnnxCheckError(RuntimeError):
    """onnxruntime's flow differs from PyTorch's by more than the tolerance."""


class OnnxFlowModel(nn.Module):
    """What is exported: ``[0, 1]`` RGB frames -> ImageNet normalisation -> padding to a multiple
    of 32 (replicate, right and bottom, as :func:`mcjepa.flow.estimate`) -> encoder + flow head ->
    ``(B, 2, H, W)`` flow in pixels, cropped back to the input size."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if getattr(model, "flow_head", None) is None:
            raise TypeError("export_onnx needs an MCJEPA model with a flow head (mcjepa.flow.load(...))")
        self.model = model

    def forward(self, image1: Tensor, image2: Tensor) -> Tensor:
        h, w = image1.shape[-2], image1.shape[-1]
        frames, _ = pad_to_multiple(imagenet_normalize(torch.cat((image1, image2))), NETWORK_STRIDE)  # traced: dynamic
        n = image1.shape[0]
        return self.model(frames[:n], frames[n:])[:, :, :h, :w]


@dataclass
class OnnxExportResult:
    """What :func:`export_onnx` did: the file, how it was exported, and the checks.

    ``checks`` holds one dict per comparison: ``name``, ``shape`` (B, 3, H, W), ``max_abs_diff``
    and ``max_abs_flow`` (pixels), ``bound`` (the tolerance it had to meet), ``ok``."""

    path: Path
    exporter: str
    opset: int
    dynamic_axes: dict[str, dict[int, str]]
    export_seconds: float
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _sizes(self) -> str:
        return "any H, W >= 32" if self.exporter == "torchscript" else "H, W multiples of 32"

    def summary(self) -> str:
        lines = [
            f"wrote {self.path} ({self.path.stat().st_size / 2**20:.1f} MiB): exporter {self.exporter}, "
            f"opset {self.opset}, dynamic batch/height/width ({self._sizes()}), {self.export_seconds:.1f} s"
        ]
        for c in self.checks:
            b, _, h, w = c["shape"]
            lines.append(
                f"check {c['name']} ({b}x3x{h}x{w}): max |onnxruntime - PyTorch| = {c['max_abs_diff']:.3g} px "
                f"(bound {c['bound']:.3g} px; max |flow| {c['max_abs_flow']:.3g} px): {'ok' if c['ok'] else 'FAILED'}"
            )
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"the ONNX export needs the {module!r} package: {ONNX_INSTALL_HINT}") from None


def onnxruntime_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU ``InferenceSession`` for ``path`` (``threads``: intra-op threads)."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _resolve_model(model: nn.Module | None, weights: str | os.PathLike | None, variant: str | None) -> nn.Module:
    """``model``, or :func:`mcjepa.flow.load` of ``weights`` (None: the bundled trained model;
    ``"random"``: an untrained ``variant``)."""
    if model is not None and weights is not None:
        raise ValueError("give model= or weights=, not both")
    if model is None:
        from mcjepa import flow

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an untrained model is said in the result's notes
            warnings.filterwarnings("default", message=".* was NOT verified")  # an unhashed weights file shows
            model = flow.load(weights, variant=variant)
    return model


def _is_untrained(model: nn.Module) -> bool:
    """An untrained flow head predicts exactly zero (its output convs start at zero)."""
    head = model.flow_head
    convs = [head.decoder.predict_flow] + ([head.context.layers[-1]] if head.context is not None else [])
    return all(not c.weight.any() and not c.bias.any() for c in convs)


def export_onnx(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    weights: str | os.PathLike | None = None,
    variant: str | None = None,
    exporter: str = "torchscript",
    opset: int | None = None,
    sample_size: tuple[int, int] = (64, 96),
    check: bool = True,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    verbose: bool = True,
) -> OnnxExportResult:
    """Export the flow model (encoder + flow head, normalisation inside) to ONNX and check it.

    Args:
        path: the ``.onnx`` file to write (weights inside it, no external data file).
        model: an :class:`~mcjepa.model.MCJEPA` with a flow head; or give ``weights`` (any
            form :func:`mcjepa.flow.load` takes); with neither, the trained model bundled with
            mcjepa, as ``flow.load()``. ``weights="random"``: an untrained ``variant`` (default
            ``convnext_t``).
        exporter: ``"torchscript"`` (default) or ``"dynamo"`` (see the module docstring).
        opset: ONNX opset, at least 16 (GridSample); default :data:`DEFAULT_OPSET` (17) for
            TorchScript, 18 for dynamo (the lowest it implements). The result gives the file's.
        sample_size: ``(H, W)`` of the tracing input, multiples of 32 (64 or more for dynamo).
        check: run the file in onnxruntime (CPU) on a random batch of two pairs at
            ``sample_size``, on the built-in example pair (96x128) and (TorchScript exporter) on
            a pair of a size that is no multiple of 32, and compare with PyTorch.
        atol, rtol: each check must give ``max |onnxruntime - PyTorch| <= atol + rtol *
            max |flow|`` pixels, else :class:`OnnxCheckError` is raised (the file stays).
        verbose: print the summary.

    Returns:
        An :class:`OnnxExportResult`.

    Raises:
        ImportError: ``onnx`` / ``onnxruntime`` (``onnxscript`` for dynamo) missing, with the
            install command. ValueError: bad arguments. OnnxCheckError: a check failed.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if opset is None:
        opset = DEFAULT_OPSET if exporter == "torchscript" else 18
    if int(opset) != opset or opset < 16:
        raise ValueError(f"opset must be an integer >= 16 (GridSample), got {opset}")
    h, w = (int(s) for s in sample_size)
    minimum = 64 if exporter == "dynamo" else 32
    if h % 32 or w % 32 or min(h, w) < minimum:
        raise ValueError(f"sample_size must be multiples of 32 of at least {minimum}, got {h}x{w}")
    path = Path(path)
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: give a file name in an existing folder")
    _require("onnx")
    if check:
        _require("onnxruntime")
    if exporter == "dynamo":
        _require("onnxscript")

    model = _resolve_model(model, weights, variant)
    wrapper = OnnxFlowModel(model).cpu().eval()
    dyn = {"batch": 0, "height": 2, "width": 3}
    dynamic_axes = {name: {i: n for n, i in dyn.items()} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    gen = torch.Generator().manual_seed(0)
    sample = torch.rand(2, 2, 3, h, w, generator=gen)  # batch 2: a batch of 1 would be baked in by dynamo
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic, the deprecation notice
        if exporter == "torchscript":
            torch.onnx.export(
                wrapper,
                (sample[0], sample[1]),
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                opset_version=int(opset),
                do_constant_folding=True,
                dynamo=False,
            )
        else:
            b_dim = torch.export.Dim("batch", min=1, max=1024)
            h_dim, w_dim = torch.export.Dim("h32", min=2, max=256), torch.export.Dim("w32", min=2, max=256)
            spec = {0: b_dim, 2: 32 * h_dim, 3: 32 * w_dim}
            program = torch.onnx.export(
                wrapper,
                (sample[0], sample[1]),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"image1": spec, "image2": spec},
                opset_version=int(opset),
                dynamo=True,
                external_data=False,
            )
            program.save(str(path), external_data=False)
    seconds = time.perf_counter() - start
    onnx = _require("onnx")
    onnx.checker.check_model(str(path))
    proto = onnx.load(str(path))
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), int(opset))
    result = OnnxExportResult(path, exporter, int(written), dynamic_axes, seconds)
    if _is_untrained(model):
        result.notes.append(
            "the flow head is untrained: its flow is exactly zero, so the checks compare zeros "
            "(export trained weights for a meaningful check)"
        )
    if check:
        extra = None
        if exporter == "torchscript":  # the padding inside the graph, at a size that needs it
            odd = torch.rand(2, 1, 3, h + 6, w + 4, generator=gen)
            extra = {"odd-size pair": (odd[0], odd[1])}
        result.checks = check_onnx(path, model, sample_size=(h, w), atol=atol, rtol=rtol, extra=extra)
    if verbose:
        print(result.summary())
    failed = [c for c in result.checks if not c["ok"]]
    if failed:
        raise OnnxCheckError(
            f"{path}: onnxruntime differs from PyTorch by {failed[0]['max_abs_diff']:.3g} px on {failed[0]['name']} "
            f"(bound {failed[0]['bound']:.3g} px)"
        )
    return result


def check_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    sample_size: tuple[int, int] = (64, 96),
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    extra: dict[str, tuple[Tensor, Tensor]] | None = None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Compare the ONNX file's flow (onnxruntime, CPU) with ``model``'s (PyTorch, CPU, float32)
    on a random batch of two pairs at ``sample_size``, on the built-in example pair (96x128)
    and on any ``extra`` named ``(image1, image2)`` float [0, 1] batches. Returns one dict per
    comparison (see :class:`OnnxExportResult`); raises nothing itself. onnxruntime runs on
    ``threads`` intra-op threads (default: torch's current count, so ``--threads`` governs both)."""
    from mcjepa.data.synthetic import example_pair

    wrapper = OnnxFlowModel(model).cpu().eval()
    session = onnxruntime_session(path, threads=threads or torch.get_num_threads())
    gen = torch.Generator().manual_seed(1)
    h, w = sample_size
    rand = torch.rand(2, 2, 3, h, w, generator=gen)
    pair = example_pair()
    cases = {
        "random pair": (rand[0], rand[1]),
        "example pair": (pair.image1[None].float() / 255, pair.image2[None].float() / 255),
        **(extra or {}),
    }
    out = []
    for name, (a, b) in cases.items():
        with torch.inference_mode():
            expected = wrapper(a, b).numpy()
        got = session.run([OUTPUT_NAME], {"image1": a.numpy(), "image2": b.numpy()})[0]
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        peak = float(np.abs(expected).max())
        bound = atol + rtol * peak
        out.append(
            dict(name=name, shape=tuple(a.shape), max_abs_diff=diff, max_abs_flow=peak, bound=bound, ok=diff <= bound)
        )
    return out

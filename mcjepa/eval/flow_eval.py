"""Optical-flow evaluation: EPE / Fl of the model and of baselines on one loop over a dataset.

Datasets (``open_flow_dataset(name, root)``), each yielding :class:`FlowSample`:

* ``sintel-clean`` / ``sintel-final``: MPI-Sintel training split through torchvision's ``Sintel``
  (``root`` holds ``Sintel/training/...``). Occluded / non-occluded EPE when
  ``Sintel/training/occlusions`` exists (MPI-Sintel-complete ships it).
* ``kitti-2015``: KITTI 2015 flow training split through torchvision's ``KittiFlow`` (``root``
  holds ``KittiFlow/training/{image_2,flow_occ,flow_noc}``; ``flow_occ`` is the ground truth,
  pixels valid in ``flow_occ`` but not in ``flow_noc`` count as occluded).
* ``flying-chairs``: FlyingChairs validation split through torchvision's ``FlyingChairs``.
* ``synthetic``: the embedded procedural set :class:`mcjepa.data.synthetic.SyntheticFlowDataset`
  (no download; ``root`` unused), rendered with dataset seed ``seed``.
* ``real-texture``: photo-textured pairs with exact flow and occlusion,
  :class:`mcjepa.data.real_texture.RealTextureFlowDataset` (no download; ``root`` unused), by
  default textured with the five bundled photos, which training never uses, and rendered with
  dataset seed ``REAL_TEXTURE_SEED_OFFSET + seed`` (10000 + seed), which training never uses
  either (its sets use small seeds; its own end-of-run held-out check uses 10000 + run.seed).
* ``flo-folder``: any folder (searched recursively) of triples ``<name>_img1.<ext>``,
  ``<name>_img2.<ext>``, ``<name>_flow.flo`` (ext: png, jpg, jpeg, ppm, bmp), optionally
  ``<name>_occ.png`` (non-zero = occluded) and ``<name>_valid.png`` (non-zero = has ground truth).

Images are never resized: the model path pads to the network stride with replicate padding and
crops back (:func:`mcjepa.flow.estimate`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mcjepa.eval.baselines import FlowMethod
from mcjepa.eval.metrics import FlowMetricAccumulator
from mcjepa.flow.files import read_flo, read_kitti_flow
from mcjepa.utils.media import IMAGE_EXTENSIONS, to_rgb

__all__ = [
    "FLOW_DATASETS",
    "FlowSample",
    "FloFolder",
    "REAL_TEXTURE_SEED_OFFSET",
    "evaluate_flow",
    "model_method",
    "open_flow_dataset",
    "dump_flow_images",
]

FLOW_DATASETS = (
    "sintel-clean",
    "sintel-final",
    "kitti-2015",
    "flying-chairs",
    "synthetic",
    "real-texture",
    "flo-folder",
)
REAL_TEXTURE_SEED_OFFSET = 10_000  # real-texture pairs use dataset seed 10000 + seed: never a training set's


@dataclass
class FlowSample:
    """One evaluation pair: ``(3, H, W)`` uint8 frames, ``(2, H, W)`` float32 ground-truth flow in
    pixels, ``(H, W)`` bool ``valid`` (None = all) and ``occluded`` (None = unknown) masks."""

    image1: Tensor
    image2: Tensor
    flow: Tensor
    valid: Tensor | None
    occluded: Tensor | None
    name: str


def _to_uint8_chw(img: Any) -> Tensor:
    if isinstance(img, Tensor):
        t = img
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round().to(torch.uint8)
        return t
    arr = np.array(to_rgb(img) if isinstance(img, Image.Image) else img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _load_mask(path: Path) -> Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("L")) > 127)


def _chw_flow(flow: Any) -> Tensor:
    flow = torch.as_tensor(np.asarray(flow, dtype=np.float32))
    if flow.dim() != 3 or flow.shape[0] != 2:
        raise ValueError(f"expected a flow of shape (2, H, W), got {tuple(flow.shape)}")
    return flow.contiguous()


class _TorchvisionFlow(torch.utils.data.Dataset):
    """Wrap a torchvision optical-flow dataset (PIL frames, (2, H, W) numpy flow) into FlowSamples."""

    def __init__(self, ds: Any, occlusion_fn: Callable[[int], Tensor | None] | None = None) -> None:
        self.ds = ds
        self.occlusion_fn = occlusion_fn

    def __len__(self) -> int:
        return len(self.ds)

    def name(self, index: int) -> str:
        p = Path(self.ds._image_list[index][0])
        return f"{p.parent.name}/{p.stem}"

    def __getitem__(self, index: int) -> FlowSample:
        item = self.ds[index]
        img1, img2, flow = item[0], item[1], item[2]
        valid = item[3] if len(item) > 3 else None
        if flow is None:
            raise ValueError("this split has no ground-truth flow (use the training split)")
        return FlowSample(
            image1=_to_uint8_chw(img1),
            image2=_to_uint8_chw(img2),
            flow=_chw_flow(flow),
            valid=None if valid is None else torch.from_numpy(np.asarray(valid, dtype=bool)),
            occluded=self.occlusion_fn(index) if self.occlusion_fn else None,
            name=self.name(index),
        )


def _sintel(root: str | Path, pass_name: str) -> _TorchvisionFlow:
    from torchvision.datasets import Sintel

    ds = Sintel(str(root), split="train", pass_name=pass_name)
    occ_root = Path(root) / "Sintel" / "training" / "occlusions"

    def occlusion(index: int) -> Tensor | None:
        p = Path(ds._image_list[index][0])
        path = occ_root / p.parent.name / p.name
        return _load_mask(path) if path.is_file() else None

    return _TorchvisionFlow(ds, occlusion if occ_root.is_dir() else None)


def _kitti(root: str | Path) -> _TorchvisionFlow:
    from torchvision.datasets import KittiFlow

    ds = KittiFlow(str(root), split="train")
    noc_root = Path(root) / "KittiFlow" / "training" / "flow_noc"

    def occlusion(index: int) -> Tensor | None:
        occ_path = Path(ds._flow_list[index])
        noc_path = noc_root / occ_path.name
        if not noc_path.is_file():
            return None
        _, valid_noc = read_kitti_flow(noc_path)
        return ~valid_noc.bool()  # within flow_occ's valid pixels: not in noc = occluded

    return _TorchvisionFlow(ds, occlusion if noc_root.is_dir() else None)


def _flying_chairs(root: str | Path, split: str) -> _TorchvisionFlow:
    from torchvision.datasets import FlyingChairs

    return _TorchvisionFlow(FlyingChairs(str(root), split=split))


class _Rendered(torch.utils.data.Dataset):
    """FlowSamples from a rendered set (:class:`mcjepa.data.synthetic.SyntheticFlowDataset` items:
    float frames in [0, 1], exact flow and occlusion); pair ``i`` is named ``<prefix>/<i:05d>``."""

    def __init__(self, ds: torch.utils.data.Dataset, prefix: str) -> None:
        self.ds = ds
        self.prefix = prefix

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> FlowSample:
        item = self.ds[index]
        occ = item.get("occlusion")
        return FlowSample(
            image1=_to_uint8_chw(item["image1"]),
            image2=_to_uint8_chw(item["image2"]),
            flow=torch.as_tensor(item["flow"], dtype=torch.float32),
            valid=None,
            occluded=None if occ is None else torch.as_tensor(occ).reshape(occ.shape[-2:]).bool(),
            name=f"{self.prefix}/{index:05d}",
        )


class FloFolder(torch.utils.data.Dataset):
    """Any folder of ``<name>_img1.*``, ``<name>_img2.*``, ``<name>_flow.flo`` triples (recursive),
    with optional ``<name>_occ.png`` and ``<name>_valid.png`` masks (non-zero = occluded / valid)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"flo-folder root {self.root} is not a directory")
        self.items: list[tuple[Path, Path, Path, str]] = []
        for flo in sorted(self.root.rglob("*_flow.flo")):
            prefix = flo.name[: -len("_flow.flo")]
            img1 = self._find(flo.parent, prefix + "_img1")
            img2 = self._find(flo.parent, prefix + "_img2")
            if img1 is None or img2 is None:
                raise FileNotFoundError(f"{flo}: expected {prefix}_img1.<ext> and {prefix}_img2.<ext> beside it")
            self.items.append((img1, img2, flo, str(flo.parent.relative_to(self.root) / prefix)))
        if not self.items:
            raise FileNotFoundError(f"no '<name>_flow.flo' files under {self.root}")

    @staticmethod
    def _find(folder: Path, stem: str) -> Path | None:
        for ext in IMAGE_EXTENSIONS:
            p = folder / (stem + ext)
            if p.is_file():
                return p
        return None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> FlowSample:
        img1, img2, flo, name = self.items[index]
        occ = flo.with_name(flo.name.replace("_flow.flo", "_occ.png"))
        valid = flo.with_name(flo.name.replace("_flow.flo", "_valid.png"))
        return FlowSample(
            image1=_to_uint8_chw(Image.open(img1)),
            image2=_to_uint8_chw(Image.open(img2)),
            flow=_chw_flow(read_flo(flo)),
            valid=_load_mask(valid) if valid.is_file() else None,
            occluded=_load_mask(occ) if occ.is_file() else None,
            name=name,
        )


def open_flow_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "val",
    synthetic_pairs: int = 16,
    synthetic_size: tuple[int, int] = (96, 128),
    seed: int = 0,
    *,
    real_texture_pairs: int = 100,
    real_texture_size: tuple[int, int] = (96, 128),
    real_texture_photos: str | Path = "bundled",
) -> torch.utils.data.Dataset:
    """Return the evaluation dataset ``name`` (one of :data:`FLOW_DATASETS`) as FlowSamples.

    ``split`` only matters for ``flying-chairs`` ("val" by default); Sintel and KITTI use their
    training splits (the ones with ground truth, as in the paper). The rendered sets take their
    number of pairs and ``(H, W)`` size in pixels from ``synthetic_*`` / ``real_texture_*``;
    ``real_texture_photos`` is ``"bundled"``, ``"installed"`` or a folder of photos
    (:func:`mcjepa.data.real_texture.photo_files`).
    """
    if name not in FLOW_DATASETS:
        raise ValueError(f"unknown flow dataset {name!r}; choose one of {FLOW_DATASETS}")
    if name == "synthetic":
        from mcjepa.data.synthetic import SyntheticFlowDataset

        return _Rendered(SyntheticFlowDataset(synthetic_pairs, tuple(synthetic_size), seed), "synthetic")
    if name == "real-texture":
        from mcjepa.data.real_texture import RealTextureFlowDataset

        ds = RealTextureFlowDataset(
            real_texture_pairs,
            tuple(real_texture_size),
            seed=REAL_TEXTURE_SEED_OFFSET + seed,
            photos=real_texture_photos,
        )
        return _Rendered(ds, "real-texture")
    if root is None:
        raise ValueError(f"dataset {name!r} needs --root")
    expected = {
        "sintel-clean": "Sintel/training",
        "sintel-final": "Sintel/training",
        "kitti-2015": "KittiFlow/training",
        "flying-chairs": "FlyingChairs/data",
    }.get(name)
    if expected and not (Path(root) / expected).is_dir():
        raise FileNotFoundError(f"{name}: expected the folder {Path(root) / expected} (see docs/evaluation.md)")
    if name in ("sintel-clean", "sintel-final"):
        return _sintel(root, name.split("-")[1])
    if name == "kitti-2015":
        return _kitti(root)
    if name == "flying-chairs":
        return _flying_chairs(root, split)
    return FloFolder(root)


def model_method(model: torch.nn.Module, device: str | torch.device = "cpu", bf16: bool = False) -> FlowMethod:
    """Wrap a flow model as a method ``(image1, image2) -> (2, H, W)`` through :func:`mcjepa.flow.estimate`
    (uint8 in, replicate padding to the stride, crop back, pixels out)."""
    import mcjepa.flow

    def run(image1: Tensor, image2: Tensor) -> Tensor:
        out = mcjepa.flow.estimate(image1, image2, model=model, device=device, bf16=bf16)
        return torch.as_tensor(out).float().cpu()

    return run


def _check_prediction(pred: Tensor, sample: FlowSample, method: str) -> Tensor:
    pred = torch.as_tensor(pred).float().cpu()
    if pred.dim() == 4 and pred.shape[0] == 1:
        pred = pred[0]
    if pred.shape != sample.flow.shape:
        raise ValueError(
            f"method {method!r} returned flow {tuple(pred.shape)} for pair {sample.name} "
            f"whose ground truth is {tuple(sample.flow.shape)}"
        )
    return pred


def dump_flow_images(out_dir: str | Path, sample: FlowSample, pred: Tensor, method: str, rank: int, epe: float) -> Path:
    """Write ``[frame 1 | GT flow | predicted flow]`` (torchvision ``flow_to_image``, one shared colour
    scale; invalid GT pixels black) as a PNG; return its path."""
    from torchvision.utils import flow_to_image

    gt = sample.flow.clone()
    if sample.valid is not None:
        gt[:, ~sample.valid] = 0
    gt = torch.nan_to_num(gt)
    colours = flow_to_image(torch.stack([gt, pred.float()]))
    strip = torch.cat([sample.image1, colours[0], colours[1]], dim=2)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{method}_worst{rank:02d}_{sample.name}_epe{epe:.2f}")
    path = Path(out_dir) / f"{stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip.permute(1, 2, 0).numpy()).save(path)
    return path


def evaluate_flow(
    dataset: torch.utils.data.Dataset,
    methods: dict[str, FlowMethod],
    max_pairs: int | None = None,
    dump_worst: int = 0,
    dump_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every method on every pair of ``dataset`` and return the metrics.

    Returns ``{"n_pairs", "methods": {name: summary + "seconds_per_pair"}, "worst": {name: [...]},
    "dumps": [paths]}`` where each summary is :meth:`FlowMetricAccumulator.summary` (EPE in pixels,
    pooled over pixels and per image; Fl as a fraction).
    """
    from mcjepa.utils.progress import progress_bar

    if not methods:
        raise ValueError("give at least one method (the model and/or a baseline)")
    n = len(dataset) if max_pairs is None else min(len(dataset), max_pairs)
    if n == 0:
        raise ValueError("the dataset holds no pairs")
    accs = {m: FlowMetricAccumulator() for m in methods}
    secs = dict.fromkeys(methods, 0.0)
    for i in progress_bar(range(n), desc="flow eval", enabled=progress, unit="pair"):
        sample = dataset[i]
        for m, fn in methods.items():
            t0 = time.perf_counter()
            pred = _check_prediction(fn(sample.image1, sample.image2), sample, m)
            secs[m] += time.perf_counter() - t0
            accs[m].update(pred, sample.flow, sample.valid, sample.occluded, name=sample.name)
    results: dict[str, Any] = {"n_pairs": n, "methods": {}, "worst": {}, "dumps": []}
    for m, acc in accs.items():
        results["methods"][m] = {**acc.summary(), "seconds_per_pair": secs[m] / n}
        results["worst"][m] = [{"index": i, "name": nm, "epe": e} for i, nm, e in acc.worst(dump_worst)]
    if dump_worst > 0:
        if dump_dir is None:
            raise ValueError("dump_worst needs dump_dir")
        for m, fn in methods.items():
            for rank, w in enumerate(results["worst"][m]):
                sample = dataset[w["index"]]
                pred = _check_prediction(fn(sample.image1, sample.image2), sample, m)
                results["dumps"].append(str(dump_flow_images(dump_dir, sample, pred, m, rank, w["epe"])))
    return results


FLOW_TABLE_COLUMNS: Sequence[tuple[str, str]] = (
    ("method", "method"),
    ("epe_pooled", "EPE (pooled)"),
    ("epe_per_image", "EPE (per-image)"),
    ("epe_noc_pooled", "EPE noc"),
    ("epe_occ_pooled", "EPE occ"),
    ("fl_all", "Fl-all %"),
    ("seconds_per_pair", "s/pair"),
)


def flow_table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one table row per method (Fl in percent)."""
    rows = []
    for m, s in results["methods"].items():
        row = {"method": m, **s}
        if isinstance(row.get("fl_all"), float):
            row["fl_all"] = 100.0 * row["fl_all"]
        rows.append(row)
    return rows

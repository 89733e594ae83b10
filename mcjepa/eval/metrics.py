"""Evaluation metrics: optical-flow EPE / Fl, segmentation mIoU, DAVIS J and F.

Everything here is a pure function of tensors (or numpy arrays) so that it can be checked by hand.

* Flow: :func:`endpoint_error` (per pixel, pixels), :class:`FlowMetricAccumulator` (pooled over all
  valid pixels of a split *and* the mean of per-image EPEs, plus occluded / non-occluded splits and
  KITTI's Fl-all).
* Segmentation: :func:`confusion_matrix` (ignore index 255) and :func:`miou_from_confusion`.
* DAVIS: :func:`db_region_iou` (J) and :func:`db_boundary_f` (F) following the definitions of the
  DAVIS 2017 toolkit (``davis2017-evaluation``): boundaries from :func:`seg2bmap`, tolerance
  ``ceil(bound_th * image diagonal)`` pixels with ``bound_th = 0.008``, matching by dilation with
  a disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "IGNORE_INDEX",
    "FL_ABS_THRESHOLD",
    "FL_REL_THRESHOLD",
    "FlowMetricAccumulator",
    "endpoint_error",
    "fl_outliers",
    "confusion_matrix",
    "miou_from_confusion",
    "seg2bmap",
    "disk",
    "db_region_iou",
    "db_boundary_f",
]

IGNORE_INDEX = 255
FL_ABS_THRESHOLD = 3.0  # px
FL_REL_THRESHOLD = 0.05  # of the ground-truth magnitude


# --------------------------------------------------------------------------- optical flow


def _check_flow_pair(pred: Tensor, gt: Tensor) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"predicted flow {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    if pred.dim() < 3 or pred.shape[-3] != 2:
        raise ValueError(f"flow must have shape (2, H, W) or (B, 2, H, W), got {tuple(pred.shape)}")


def endpoint_error(pred: Tensor, gt: Tensor) -> Tensor:
    """Return the per-pixel endpoint error ``||pred - gt||_2`` in pixels, shape ``(H, W)`` or ``(B, H, W)``."""
    _check_flow_pair(pred, gt)
    return torch.linalg.vector_norm(pred.float() - gt.float(), dim=-3)


def fl_outliers(epe: Tensor, gt: Tensor) -> Tensor:
    """Return KITTI's Fl outlier map (bool): EPE > 3 px **and** EPE > 5% of the ground-truth magnitude."""
    mag = torch.linalg.vector_norm(gt.float(), dim=-3)
    return (epe > FL_ABS_THRESHOLD) & (epe > FL_REL_THRESHOLD * mag)


@dataclass
class FlowMetricAccumulator:
    """Accumulate flow metrics over a split, one image pair at a time.

    ``summary()`` returns (all EPEs in pixels, Fl as a fraction in [0, 1]):

    * ``epe_pooled``: mean EPE over *all valid pixels of the split* (every pixel weighs the same;
      RAFT's Sintel number).
    * ``epe_per_image``: mean over images of each image's mean EPE (every image weighs the same;
      RAFT's KITTI EPE).
    * ``epe_noc_pooled`` / ``epe_occ_pooled`` (and ``*_per_image``): the same over non-occluded
      and occluded valid pixels, when occlusion information exists.
    * ``fl_all``: share of valid pixels, pooled over the split, with EPE > 3 px and > 5% of |gt|.
      ``fl_noc`` likewise over non-occluded pixels.
    * ``n_images`` and ``n_pixels``.
    """

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    per_image: dict[str, list[float]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    n_images: int = 0

    def _add(self, key: str, epe: Tensor, mask: Tensor) -> float:
        n = int(mask.sum())
        s = float(epe[mask].double().sum()) if n else 0.0
        self.sums[key] = self.sums.get(key, 0.0) + s
        self.counts[key] = self.counts.get(key, 0) + n
        mean = s / n if n else float("nan")
        if n:
            self.per_image.setdefault(key, []).append(mean)
        return mean

    def update(
        self,
        pred: Tensor,
        gt: Tensor,
        valid: Tensor | None = None,
        occluded: Tensor | None = None,
        name: str = "",
    ) -> float:
        """Add one pair; return its mean EPE over valid pixels (pixels).

        Args:
            pred, gt: ``(2, H, W)`` flows in pixels.
            valid: ``(H, W)`` bool, pixels with ground truth (default: all).
            occluded: ``(H, W)`` bool, True where occluded (optional).
            name: an identifier kept for ranking the worst pairs.
        """
        if pred.dim() != 3:
            raise ValueError(f"update() takes one (2, H, W) flow, got {tuple(pred.shape)}")
        epe = endpoint_error(pred, gt)
        hw = tuple(epe.shape)
        valid = torch.ones(hw, dtype=torch.bool) if valid is None else valid.to(torch.bool).reshape(hw)
        valid = valid & torch.isfinite(gt).all(dim=0)
        outl = fl_outliers(epe, gt)
        mean = self._add("epe", epe, valid)
        self._add("fl", outl.double(), valid)
        if occluded is not None:
            occ = occluded.to(torch.bool).reshape(hw)
            self._add("epe_noc", epe, valid & ~occ)
            self._add("epe_occ", epe, valid & occ)
            self._add("fl_noc", outl.double(), valid & ~occ)
        self.names.append(name)
        self.per_image.setdefault("image_epe", []).append(mean)
        self.n_images += 1
        return mean

    def summary(self) -> dict[str, float | int]:
        """Return the split's metrics (see the class docstring)."""

        def ratio(key: str) -> float:
            n = self.counts.get(key, 0)
            return self.sums[key] / n if n else float("nan")

        def per_image(key: str) -> float:
            vals = self.per_image.get(key, [])
            return float(np.mean(vals)) if vals else float("nan")

        out: dict[str, float | int] = {
            "epe_pooled": ratio("epe"),
            "epe_per_image": per_image("epe"),
            "fl_all": ratio("fl"),
        }
        if "epe_noc" in self.counts:
            out.update(
                epe_noc_pooled=ratio("epe_noc"),
                epe_noc_per_image=per_image("epe_noc"),
                epe_occ_pooled=ratio("epe_occ"),
                epe_occ_per_image=per_image("epe_occ"),
                fl_noc=ratio("fl_noc"),
            )
        out["n_images"] = self.n_images
        out["n_pixels"] = self.counts.get("epe", 0)
        return out

    def worst(self, k: int) -> list[tuple[int, str, float]]:
        """Return the ``k`` pairs with the largest mean EPE as (index, name, EPE), worst first."""
        epes = self.per_image.get("image_epe", [])
        order = sorted(range(len(epes)), key=lambda i: -np.nan_to_num(epes[i], nan=-1.0))
        return [(i, self.names[i], epes[i]) for i in order[: max(k, 0)]]


# --------------------------------------------------------------------------- semantic segmentation


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Return the ``(num_classes, num_classes)`` int64 confusion matrix, rows = ground truth, cols = prediction.

    Pixels whose target is ``ignore_index`` (or outside ``[0, num_classes)``) are skipped.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    if ((pred[keep] < 0) | (pred[keep] >= num_classes)).any():
        raise ValueError(f"predicted labels must lie in [0, {num_classes})")
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def miou_from_confusion(conf: Tensor | np.ndarray) -> dict[str, float | list[float]]:
    """Return ``{"miou", "iou" (per class, NaN where the class is in neither GT nor prediction),
    "pixel_acc", "mean_acc"}`` from a confusion matrix (rows = GT). mIoU is the mean over classes
    with a non-empty union (the mmsegmentation convention); values are fractions in [0, 1]."""
    c = torch.as_tensor(conf, dtype=torch.float64)
    if c.dim() != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix must be square, got {tuple(c.shape)}")
    tp = c.diag()
    gt = c.sum(1)
    pr = c.sum(0)
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp_min(1), torch.full_like(tp, float("nan")))
    total = c.sum()
    return {
        "miou": float(np.nanmean(iou.numpy())) if (union > 0).any() else float("nan"),
        "iou": [float(v) for v in iou],
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_acc": float(np.nanmean(acc.numpy())) if (gt > 0).any() else float("nan"),
    }


# --------------------------------------------------------------------------- DAVIS J and F


def _as_bool(mask: Tensor | np.ndarray) -> Tensor:
    t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask)
    if t.dim() != 2:
        raise ValueError(f"expected a 2-D (H, W) mask, got shape {tuple(t.shape)}")
    return t != 0


def db_region_iou(pred: Tensor | np.ndarray, gt: Tensor | np.ndarray, void: Tensor | np.ndarray | None = None) -> float:
    """Return DAVIS's region similarity J = |pred & gt| / |pred | gt| over non-void pixels.

    Both masks empty gives J = 1 (the toolkit's convention).
    """
    p, g = _as_bool(pred), _as_bool(gt)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {tuple(p.shape)} vs {tuple(g.shape)}")
    keep = ~_as_bool(void) if void is not None else torch.ones_like(g)
    inter = int((p & g & keep).sum())
    union = int(((p | g) & keep).sum())
    return 1.0 if union == 0 else inter / union


def seg2bmap(mask: Tensor | np.ndarray) -> Tensor:
    """Return the 1-pixel-wide boundary map (bool ``(H, W)``) of a binary mask.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour
    (pixels beyond the image count as background only on the last row/column's own axis), which
    places the boundary half a pixel towards the origin, as in the Berkeley/DAVIS ``seg2bmap``.
    """
    m = _as_bool(mask)
    east = torch.zeros_like(m)
    south = torch.zeros_like(m)
    south_east = torch.zeros_like(m)
    east[:, :-1] = m[:, 1:]
    south[:-1, :] = m[1:, :]
    south_east[:-1, :-1] = m[1:, 1:]
    b = (m ^ east) | (m ^ south) | (m ^ south_east)
    # last row / column: compare along the axis that stays inside the image only
    b[-1, :] = m[-1, :] ^ east[-1, :]
    b[:, -1] = m[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> Tensor:
    """Return a ``(2r+1, 2r+1)`` bool disk: offsets (dy, dx) with dy^2 + dx^2 <= r^2."""
    r = int(radius)
    y, x = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    return (y * y + x * x) <= r * r


def _dilate(mask: Tensor, radius: int) -> Tensor:
    if radius <= 0:
        return mask.clone()
    k = disk(radius).float()[None, None]
    out = F.conv2d(mask.float()[None, None], k, padding=radius)
    return out[0, 0] > 0.5


def db_boundary_f(
    pred: Tensor | np.ndarray,
    gt: Tensor | np.ndarray,
    void: Tensor | np.ndarray | None = None,
    bound_th: float = 0.008,
) -> float:
    """Return DAVIS's contour accuracy F (boundary F-measure) of a binary prediction.

    Boundaries come from :func:`seg2bmap` (after removing void pixels). A predicted boundary
    pixel is matched when a GT boundary pixel lies within the tolerance (and vice versa), tested
    by dilating with a disk of radius ``ceil(bound_th * sqrt(H^2 + W^2))`` pixels (``bound_th >= 1``
    is a radius in pixels). Precision = matched predicted / predicted boundary pixels, recall =
    matched GT / GT boundary pixels, F = 2PR / (P + R). Empty boundaries follow the toolkit: both
    empty -> F = 1; only one empty -> F = 0.
    """
    p, g = _as_bool(pred), _as_bool(gt)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {tuple(p.shape)} vs {tuple(g.shape)}")
    if void is not None:
        keep = ~_as_bool(void)
        p, g = p & keep, g & keep
    h, w = g.shape
    radius = int(bound_th) if bound_th >= 1 else int(math.ceil(bound_th * math.hypot(h, w)))
    pb, gb = seg2bmap(p), seg2bmap(g)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0  # precision/recall is (1, 0) or (0, 1)
    precision = int((pb & _dilate(gb, radius)).sum()) / n_p
    recall = int((gb & _dilate(pb, radius)).sum()) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)

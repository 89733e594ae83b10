"""DAVIS 2017 semi-supervised video object segmentation by label propagation, scored by J, F and (J&F)m.

Protocol (the DINO / STC "label propagation" evaluation): the first frame's object masks are
propagated through the video by feature affinity. Each frame is encoded once (padded to a multiple
of 32 with replicate padding); features of one pyramid level (default level 3, stride 8) are
L2-normalised per position. For each position of the current frame, its cosine similarity to the
positions of the context frames (the first frame plus the ``n_context`` previous frames) within a
square spatial window of ``radius`` feature cells is computed; the ``topk`` most similar keys are
kept and their (soft) labels averaged with weights ``softmax(similarity / temperature)``. The soft
labels at feature resolution are kept for later frames (as in DINO); for scoring they are
bilinearly upsampled to the image, optionally min-max normalised per object (DINO's ``norm_mask``)
and arg-maxed.

Scores follow the DAVIS 2017 toolkit: for every object, J (region IoU) and F (boundary F-measure,
:func:`mcjepa.eval.metrics.db_boundary_f`) per frame, the first and the last frame excluded, GT
pixels labelled 255 void; J-mean / F-mean per object; ``J_mean`` / ``F_mean`` the means over all
objects of all sequences; ``JF_mean = (J_mean + F_mean) / 2``.

Layout (``root``)::

    JPEGImages/480p/<seq>/00000.jpg ...
    Annotations/480p/<seq>/00000.png ...     (palette PNGs: 0 background, 1..K objects, 255 void)
    ImageSets/2017/val.txt                   (one sequence name per line)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from mcjepa.encoder import NETWORK_STRIDE, to_encoder_input
from mcjepa.eval.metrics import IGNORE_INDEX, db_boundary_f, db_region_iou
from mcjepa.ops import pad_to_multiple
from mcjepa.utils.media import to_rgb

__all__ = [
    "PropagationConfig",
    "LabelPropagator",
    "DavisSequence",
    "list_davis_sequences",
    "load_davis_sequence",
    "propagate_sequence",
    "score_sequence",
    "evaluate_davis",
]


@dataclass(frozen=True)
class PropagationConfig:
    """Label-propagation hyper-parameters (DINO / STC defaults; temperature as in STC)."""

    level: int = 3  # pyramid level (stride 8)
    topk: int = 10
    n_context: int = 7  # previous frames, in addition to the first frame
    radius: int | None = 12  # feature cells; None = no spatial restriction
    temperature: float = 0.07
    normalize_masks: bool = True  # DINO's per-object min-max rescaling before the argmax
    chunk: int = 1024  # query positions per affinity block (memory knob)


class LabelPropagator:
    """Stateful propagation over one video at feature resolution.

    ``start(feat, labels)`` takes the first frame's ``(C, h, w)`` features and ``(K, h, w)`` soft
    labels; each ``step(feat)`` returns the next frame's ``(K, h, w)`` soft labels (rows sum to 1).
    """

    def __init__(self, config: PropagationConfig = PropagationConfig()) -> None:
        if config.topk < 1 or config.n_context < 0 or config.temperature <= 0:
            raise ValueError(f"invalid propagation config {config}")
        self.cfg = config
        self.first: tuple[Tensor, Tensor] | None = None
        self.queue: deque[tuple[Tensor, Tensor]] = deque(maxlen=config.n_context)

    @staticmethod
    def _flat(feat: Tensor) -> Tensor:
        return F.normalize(feat.float().flatten(1), dim=0)  # (C, N), unit columns

    def start(self, feat: Tensor, labels: Tensor) -> None:
        if feat.shape[-2:] != labels.shape[-2:]:
            raise ValueError(f"features {tuple(feat.shape)} and labels {tuple(labels.shape)} grids differ")
        self.shape = tuple(feat.shape[-2:])
        self.first = (self._flat(feat), labels.float().flatten(1))
        self.queue.clear()

    def _neighbourhood(self, q_idx: Tensor, n_ctx: int) -> Tensor | None:
        if self.cfg.radius is None:
            return None
        h, w = self.shape
        qy, qx = q_idx // w, q_idx % w
        k = torch.arange(h * w, device=q_idx.device)
        ky, kx = k // w, k % w
        near = ((qy[:, None] - ky[None]).abs() <= self.cfg.radius) & ((qx[:, None] - kx[None]).abs() <= self.cfg.radius)
        return near.repeat(1, n_ctx)

    def step(self, feat: Tensor) -> Tensor:
        if self.first is None:
            raise RuntimeError("call start() with the first frame before step()")
        if tuple(feat.shape[-2:]) != self.shape:
            raise ValueError(f"frame features {tuple(feat.shape[-2:])} differ from the first frame's {self.shape}")
        ctx = [self.first, *self.queue]
        keys = torch.cat([k for k, _ in ctx], dim=1)  # (C, M*N)
        labs = torch.cat([lab for _, lab in ctx], dim=1).t()  # (M*N, K)
        q = self._flat(feat)
        n = q.shape[1]
        out = torch.empty(labs.shape[1], n, device=q.device)
        k = min(self.cfg.topk, keys.shape[1])
        for s in range(0, n, self.cfg.chunk):
            idx = torch.arange(s, min(s + self.cfg.chunk, n), device=q.device)
            sim = q[:, idx].t() @ keys  # (chunk, M*N) cosine similarities
            near = self._neighbourhood(idx, len(ctx))
            if near is not None:
                sim = sim.masked_fill(~near, float("-inf"))
            val, ind = sim.topk(k, dim=1)
            wts = torch.softmax(val / self.cfg.temperature, dim=1)  # -inf (outside window) -> weight 0
            out[:, idx] = (wts[..., None] * labs[ind]).sum(1).t()
        self.queue.append((q, out))
        return out.reshape(-1, *self.shape)


@dataclass
class DavisSequence:
    """One DAVIS sequence: frame paths, per-frame GT label maps ((H, W) uint8 or None) and palette."""

    name: str
    frames: list[Path]
    annotations: list[Path | None]
    palette: list[int] | None
    num_objects: int


def list_davis_sequences(root: str | Path, split: str = "val", year: str = "2017") -> list[str]:
    """Return the sequence names listed in ``ImageSets/<year>/<split>.txt``."""
    path = Path(root) / "ImageSets" / year / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"DAVIS split file {path} not found (expected the DAVIS 2017 layout)")
    return [s.strip() for s in path.read_text().splitlines() if s.strip()]


def load_davis_sequence(root: str | Path, name: str, resolution: str = "480p") -> DavisSequence:
    """Index one sequence's frames and annotations; the object count comes from the first annotation."""
    root = Path(root)
    frames = sorted((root / "JPEGImages" / resolution / name).glob("*.jpg"))
    if not frames:
        raise FileNotFoundError(f"no frames in {root / 'JPEGImages' / resolution / name}")
    ann_dir = root / "Annotations" / resolution / name
    anns = [ann_dir / (f.stem + ".png") for f in frames]
    if not anns[0].is_file():
        raise FileNotFoundError(f"the first frame's annotation {anns[0]} is missing")
    first = Image.open(anns[0])
    palette = first.getpalette() if first.mode == "P" else None
    lab = np.array(first)
    if lab.ndim != 2:
        raise ValueError(f"{anns[0]}: expected a palette (index) PNG, got an image of shape {lab.shape}")
    num_objects = int(lab[lab != IGNORE_INDEX].max(initial=0))
    return DavisSequence(name, frames, [a if a.is_file() else None for a in anns], palette, num_objects)


def _read_label(path: Path) -> Tensor:
    return torch.from_numpy(np.array(Image.open(path), dtype=np.int64))


def _read_frame(path: Path) -> Tensor:
    return torch.from_numpy(np.array(to_rgb(Image.open(path), str(path)))).permute(2, 0, 1).contiguous()


def _soft_labels(label: Tensor, num_objects: int, stride: int) -> Tensor:
    """Return ``(K+1, H/stride, W/stride)`` area fractions of each label (void counts as background)."""
    lab = label.clone()
    lab[(lab < 0) | (lab > num_objects)] = 0
    onehot = F.one_hot(lab, num_objects + 1).permute(2, 0, 1).float()[None]
    onehot, _ = pad_to_multiple(onehot, NETWORK_STRIDE)
    return F.avg_pool2d(onehot, stride)[0]


def _to_label_map(soft: Tensor, size: tuple[int, int], stride: int, normalize: bool) -> Tensor:
    h, w = soft.shape[-2:]
    up = F.interpolate(soft[None], size=(h * stride, w * stride), mode="bilinear", align_corners=False)[0]
    up = up[:, : size[0], : size[1]]
    if normalize:
        lo = up.flatten(1).min(1).values[:, None, None]
        hi = up.flatten(1).max(1).values[:, None, None]
        up = torch.where(hi > 0, (up - lo) / (hi - lo).clamp_min(1e-12), up)
    return up.argmax(0)


@torch.no_grad()
def propagate_sequence(
    features: Callable[[Tensor], Tensor],
    frames: Sequence[Tensor],
    first_label: Tensor,
    num_objects: int,
    stride: int,
    config: PropagationConfig = PropagationConfig(),
) -> list[Tensor]:
    """Propagate ``first_label`` ((H, W) int, 0 = background) through ``frames`` ((3, H, W) uint8).

    ``features(frame)`` must return the ``(C, Hp/stride, Wp/stride)`` map of the frame padded to a
    multiple of 32. Returns one ``(H, W)`` int64 label map per frame (the first is ``first_label``).
    """
    size = tuple(first_label.shape)
    prop = LabelPropagator(config)
    prop.start(features(frames[0]), _soft_labels(first_label, num_objects, stride))
    out = [first_label.clone()]
    for fr in frames[1:]:
        if tuple(fr.shape[-2:]) != size:
            raise ValueError(f"all frames must be {size}, got {tuple(fr.shape[-2:])}")
        out.append(_to_label_map(prop.step(features(fr)), size, stride, config.normalize_masks))
    return out


def score_sequence(preds: Sequence[Tensor], gts: Sequence[Tensor | None], num_objects: int) -> dict[str, list[float]]:
    """Return per-object ``{"J": [...], "F": [...], "J_recall", "F_recall"}`` over frames 1..T-2 (the
    toolkit skips the first and the last frame; frames without GT are skipped)."""
    js: list[list[float]] = [[] for _ in range(num_objects)]
    fs: list[list[float]] = [[] for _ in range(num_objects)]
    for pred, gt in zip(preds[1:-1], gts[1:-1]):
        if gt is None:
            continue
        void = gt == IGNORE_INDEX
        for o in range(num_objects):
            js[o].append(db_region_iou(pred == o + 1, gt == o + 1, void))
            fs[o].append(db_boundary_f(pred == o + 1, gt == o + 1, void))

    def mean(v: list[float]) -> float:
        return float(np.mean(v)) if v else float("nan")

    def recall(v: list[float]) -> float:
        return float(np.mean(np.asarray(v) > 0.5)) if v else float("nan")

    return {
        "J": [mean(v) for v in js],
        "F": [mean(v) for v in fs],
        "J_recall": [recall(v) for v in js],
        "F_recall": [recall(v) for v in fs],
    }


def _save_masks(out_dir: Path, seq: DavisSequence, preds: Sequence[Tensor]) -> None:
    d = out_dir / seq.name
    d.mkdir(parents=True, exist_ok=True)
    for path, pred in zip(seq.frames, preds):
        img = Image.fromarray(pred.numpy().astype(np.uint8), mode="P")
        if seq.palette:
            img.putpalette(seq.palette)
        img.save(d / (path.stem + ".png"))


def evaluate_davis(
    encoder: torch.nn.Module,
    root: str | Path,
    split: str = "val",
    sequences: Sequence[str] | None = None,
    config: PropagationConfig = PropagationConfig(),
    resolution: str = "480p",
    device: str | torch.device = "cpu",
    save_masks: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run label propagation with ``encoder`` on DAVIS and return the toolkit's summary.

    Returns ``{"JF_mean", "J_mean", "F_mean", "J_recall", "F_recall", "n_sequences", "n_objects",
    "per_object": {"<seq>_<k>": {"J", "F"}}, "config": {...}}`` (fractions in [0, 1]).
    """
    from dataclasses import asdict

    from mcjepa.utils.progress import progress_bar

    names = list(sequences) if sequences else list_davis_sequences(root, split)
    stride = encoder.feature_info[config.level]["reduction"]
    encoder = encoder.to(device).eval()

    def features(frame: Tensor) -> Tensor:
        x, _ = pad_to_multiple(to_encoder_input(frame.to(device)), NETWORK_STRIDE)
        return encoder(x)[config.level][0]

    per_object: dict[str, dict[str, float]] = {}
    jr, fr = [], []
    for name in progress_bar(names, desc="DAVIS", enabled=progress, unit="seq"):
        seq = load_davis_sequence(root, name, resolution)
        frames = [_read_frame(p) for p in seq.frames]
        gts = [_read_label(p) if p is not None else None for p in seq.annotations]
        preds = propagate_sequence(features, frames, gts[0], seq.num_objects, stride, config)
        preds = [p.cpu() for p in preds]
        s = score_sequence(preds, gts, seq.num_objects)
        for o in range(seq.num_objects):
            per_object[f"{name}_{o + 1}"] = {"J": s["J"][o], "F": s["F"][o]}
        jr += s["J_recall"]
        fr += s["F_recall"]
        if save_masks is not None:
            _save_masks(Path(save_masks), seq, preds)
    j = [v["J"] for v in per_object.values()]
    f = [v["F"] for v in per_object.values()]
    j_mean = float(np.nanmean(j)) if j else float("nan")
    f_mean = float(np.nanmean(f)) if f else float("nan")
    return {
        "JF_mean": (j_mean + f_mean) / 2,
        "J_mean": j_mean,
        "F_mean": f_mean,
        "J_recall": float(np.nanmean(jr)) if jr else float("nan"),
        "F_recall": float(np.nanmean(fr)) if fr else float("nan"),
        "n_sequences": len(names),
        "n_objects": len(per_object),
        "per_object": per_object,
        "config": {**asdict(config), "stride": stride, "resolution": resolution},
    }

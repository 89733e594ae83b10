"""Builds the two training streams (content views and frame pairs) from a TrainConfig."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import ConcatDataset

from mcjepa.data.workers import resolve_num_workers
from mcjepa.train.batching import split_batch
from mcjepa.train.config import ConfigError, TrainConfig
from mcjepa.train.distributed import DistInfo
from mcjepa.train.streams import ResumableStream

__all__ = ["build_content_dataset", "build_content_stream", "build_motion_stream", "stream_workers"]

CONTENT_STREAM, MOTION_STREAM = 1, 2


def _per_rank(global_batch: int, dist: DistInfo, key: str) -> int:
    """Each process's share of a global batch (the caps do not matter here: a process loads its
    whole share per step; mcjepa.train.batching splits it into micro-batches)."""
    return split_batch(global_batch, dist.world_size, 0, key, key).per_rank


def stream_workers(budget: int, content: bool, motion: bool) -> tuple[int, int]:
    """DataLoader workers ``(content, motion)`` from one training process's ``budget``: with both
    streams on, content (decoding and augmenting many images) takes the larger half, so the two
    never start more than the budget together; a stream that is off takes none."""
    if content and motion:
        return budget - budget // 2, budget // 2
    return (budget, 0) if content else (0, budget if motion else 0)


def _stream(cfg: TrainConfig, dataset, sampler, batch_size: int | None, stream_id: int) -> ResumableStream:
    """A resumable loader; host memory is pinned only with CUDA (elsewhere it only earns a warning)."""
    budget = resolve_num_workers(cfg.data.num_workers, default=8)
    content, motion = stream_workers(budget, cfg.schedule.content_enabled, cfg.schedule.motion_enabled)
    return ResumableStream(
        dataset,
        sampler,
        batch_size,
        cfg.run.seed,
        stream_id,
        num_workers=content if stream_id == CONTENT_STREAM else motion,
        pin_memory=torch.cuda.is_available(),
    )


def build_content_dataset(cfg: TrainConfig):
    """The content dataset from ``data.content``: two augmented, normalised views per item."""
    from mcjepa.data.content import ContentDataset, TwoViewDataset

    spec = dict(cfg.data.content)
    kind = spec.pop("type", "imagefolder")
    size = int(spec.pop("size", 224))
    if kind == "imagefolder":
        root = spec.pop("root", "")
        if not root or not Path(root).is_dir():
            raise ConfigError(f"data.content.root: folder not found: {root!r}")
        _no_extra(spec, "data.content")
        return ContentDataset(root, size=size)
    if kind == "synthetic":
        from mcjepa.data.synthetic import SyntheticImageDataset

        photos = spec.pop("photos", "")  # "": procedural textures; else collages of photo cut-outs
        textures = None
        if photos:
            from mcjepa.data.real_texture import PhotoTextures, photo_files

            try:
                textures = PhotoTextures(photo_files(photos))
            except FileNotFoundError as exc:
                raise ConfigError(f"data.content.photos: {exc}") from None
        base = SyntheticImageDataset(
            int(spec.pop("num_images", 1024)),
            tuple(spec.pop("image_size", [96, 96])),
            seed=int(spec.pop("seed", 0)),
            textures=textures,
        )
        _no_extra(spec, "data.content")
        return TwoViewDataset(base, size=size)
    if kind == "photos":
        from mcjepa.data.content import ImageFiles
        from mcjepa.data.real_texture import photo_files

        photos = spec.pop("photos", "installed")
        _no_extra(spec, "data.content")
        try:
            files = photo_files(photos)
        except FileNotFoundError as exc:
            raise ConfigError(f"data.content.photos: {exc}") from None
        return TwoViewDataset(ImageFiles.from_files(files), size=size)
    if kind == "fashion-mnist":
        from mcjepa.data.content import small_image_transforms
        from mcjepa.eval.probes import open_probe_dataset

        root = spec.pop("root", "/usr/share/datasets/fashion-mnist")
        scale = tuple(spec.pop("scale", [0.25, 1.0]))
        num_images = int(spec.pop("num_images", 0))  # 0: all 60,000; else the first N
        _no_extra(spec, "data.content")
        try:  # the training split only: the test split stays held out for the probes
            base = open_probe_dataset("fashion-mnist", root, "train")
        except FileNotFoundError as exc:
            raise ConfigError(
                f"data.content.root: {exc} (Debian / Ubuntu: apt-get install dataset-fashion-mnist)"
            ) from None
        if num_images < 0:
            raise ConfigError(f"data.content.num_images must be >= 0, got {num_images}")
        if num_images:
            base = torch.utils.data.Subset(base, range(min(num_images, len(base))))
        return TwoViewDataset(base, transforms=small_image_transforms(size, scale))
    raise ConfigError(
        f"data.content.type must be 'imagefolder', 'synthetic', 'photos' or 'fashion-mnist', got {kind!r}"
    )


def _no_extra(spec: dict, key: str) -> None:
    if spec:
        raise ConfigError(f"unknown key(s) {sorted(f'{key}.{k}' for k in spec)}")


def build_content_stream(cfg: TrainConfig, dist: DistInfo) -> tuple[ResumableStream, int]:
    """Return the content stream and the content dataset's length."""
    from mcjepa.data.samplers import ResumableDistributedSampler

    dataset = build_content_dataset(cfg)
    batch = _per_rank(cfg.data.content_batch_size, dist, "data.content_batch_size")
    if len(dataset) < cfg.data.content_batch_size:
        raise ConfigError(
            f"data.content holds {len(dataset)} images, fewer than one global batch ({cfg.data.content_batch_size})"
        )
    sampler = ResumableDistributedSampler(
        len(dataset), shuffle=True, seed=cfg.run.seed, rank=dist.rank, world_size=dist.world_size, drop_last=True
    )
    return _stream(cfg, dataset, sampler, batch, CONTENT_STREAM), len(dataset)


def build_motion_stream(cfg: TrainConfig, dist: DistInfo) -> tuple[ResumableStream, int]:
    """Return the frame-pair stream (each batch from one dataset) and its batches per epoch."""
    from mcjepa.data.motion import build_motion_datasets
    from mcjepa.data.samplers import GroupedBatchSampler

    try:
        datasets = build_motion_datasets([dict(s) for s in cfg.data.motion])
    except (ValueError, FileNotFoundError, TypeError, KeyError) as exc:
        raise ConfigError(f"data.motion: {exc}") from None
    repeats = [d.repeat for d in datasets]
    batch = _per_rank(cfg.data.motion_batch_size, dist, "data.motion_batch_size")
    sampler = GroupedBatchSampler(
        [len(d) for d in datasets], repeats, batch, seed=cfg.run.seed, rank=dist.rank, world_size=dist.world_size
    )
    return _stream(cfg, ConcatDataset(datasets), sampler, None, MOTION_STREAM), len(sampler)

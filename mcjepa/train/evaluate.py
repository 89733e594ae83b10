"""The end-of-run evaluation: held-out synthetic EPE (the demo's learning check) and the content
k-NN check, each configured by ``data.eval_*`` keys (:func:`run_synthetic_epe`,
:func:`run_content_knn`), and the functions that measure them."""

from __future__ import annotations

import torch

from mcjepa.architecture import ModelConfig
from mcjepa.encoder import imagenet_normalize
from mcjepa.model import MCJEPA
from mcjepa.train.config import TrainConfig

__all__ = ["content_knn", "run_content_knn", "run_synthetic_epe", "synthetic_epe"]


def run_synthetic_epe(model: MCJEPA, cfg: TrainConfig) -> dict[str, float]:
    """:func:`synthetic_epe` on ``data.eval_synthetic_pairs`` held-out pairs (seed
    ``10_000 + run.seed``); ``{}`` when that is 0."""
    d = cfg.data
    if d.eval_synthetic_pairs <= 0:
        return {}
    return synthetic_epe(
        model,
        d.eval_synthetic_pairs,
        (d.eval_synthetic_size[0], d.eval_synthetic_size[1]),
        seed=10_000 + cfg.run.seed,
        motion=d.eval_synthetic_motion,
        photos=d.eval_synthetic_photos or None,
    )


def run_content_knn(
    model: MCJEPA, model_config: ModelConfig, cfg: TrainConfig, device: torch.device
) -> dict[str, float]:
    """:func:`content_knn` of ``model``'s encoder against the same variant randomly initialised
    with the run's seed (on one process exactly this run's starting encoder: a before / after
    comparison); ``{}`` when ``data.eval_content_images`` is 0 and no Fashion-MNIST root is set.
    The global RNG is left as it was."""
    d = cfg.data
    if d.eval_content_images <= 0 and not d.eval_fashion_mnist_root:
        return {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        random_encoder = MCJEPA(model_config, flow_head=False).encoder.to(device)
    return content_knn(
        model.encoder,
        random_encoder,
        d.eval_content_images,
        seed=cfg.run.seed,
        fashion_mnist_root=d.eval_fashion_mnist_root,
        fashion_mnist_linear=tuple(d.eval_fashion_mnist_linear),
        image_size=d.eval_content_size,
    )


@torch.no_grad()
def synthetic_epe(
    model: MCJEPA,
    num_pairs: int,
    size: tuple[int, int],
    seed: int,
    batch_size: int = 8,
    motion: str = "rich",
    photos: str | None = None,
) -> dict[str, float]:
    """Mean endpoint error (pixels, pooled over all pixels of all pairs) of ``model`` and of zero
    flow on ``num_pairs`` embedded synthetic pairs drawn with ``seed`` (never used in training),
    with the ``motion`` preset (:func:`mcjepa.data.synthetic.scene_motion`); with ``photos`` set,
    the real-texture pairs of :mod:`mcjepa.data.real_texture` instead.

    Returns ``{"epe": ..., "zero_flow_epe": ..., "epe_noc": ...}`` (``epe_noc``: non-occluded
    pixels only).
    """
    from mcjepa.data.synthetic import SyntheticFlowDataset

    if photos:
        from mcjepa.data.real_texture import RealTextureFlowDataset

        data = RealTextureFlowDataset(num_pairs, size, seed=seed, motion=motion, photos=photos)
    else:
        data = SyntheticFlowDataset(num_pairs, size, seed=seed, motion=motion)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    err_sum = zero_sum = noc_sum = 0.0
    count = noc_count = 0
    for start in range(0, num_pairs, batch_size):
        items = [data[i] for i in range(start, min(num_pairs, start + batch_size))]
        im1 = torch.stack([it["image1"] for it in items]).to(device)
        im2 = torch.stack([it["image2"] for it in items]).to(device)
        gt = torch.stack([it["flow"] for it in items]).to(device)
        noc = ~torch.stack([it["occlusion"] for it in items]).to(device)
        pred = model.estimate_flow(imagenet_normalize(im1), imagenet_normalize(im2)).flow.float()
        err = (pred - gt).norm(dim=1, keepdim=True)
        err_sum += err.sum().item()
        zero_sum += gt.norm(dim=1).sum().item()
        noc_sum += err[noc].sum().item()
        count += err.numel()
        noc_count += int(noc.sum().item())
    model.train(was_training)
    return {
        "epe": err_sum / count,
        "zero_flow_epe": zero_sum / count,
        "epe_noc": noc_sum / max(1, noc_count),
    }


def content_knn(
    encoder: torch.nn.Module,
    random_encoder: torch.nn.Module,
    synthetic_images: int,
    seed: int,
    fashion_mnist_root: str = "",
    fashion_mnist_counts: tuple[int, int] = (5000, 2000),
    image_size: int = 64,
    k: int = 20,
    fashion_mnist_linear: tuple[int, int] = (0, 0),
) -> dict[str, float]:
    """Weighted k-NN top-1 accuracy (fraction) of the pooled content embedding, next to its baselines.

    * ``shapes_*``: :class:`~mcjepa.data.synthetic.SyntheticShapeDataset` (6 silhouette classes),
      ``synthetic_images`` training and ``synthetic_images // 2`` held-out images drawn with
      seeds training never uses (0 skips it).
    * ``fmnist_*``: Fashion-MNIST (Debian's ``dataset-fashion-mnist``), the first
      ``fashion_mnist_counts`` train / test images, when ``fashion_mnist_root`` holds its IDX files
      (skipped otherwise).

    * ``fmnist_linear*``: with ``fashion_mnist_linear = (N, M)`` both positive, a linear probe
      (:func:`mcjepa.eval.probes.linear_accuracy`, 100 epochs) trained on the first N training
      images and scored on the first M test images, for the encoder, the random one and raw pixels.

    Each reports ``*_knn`` (``encoder``), ``*_knn_random`` (``random_encoder``: the same variant,
    randomly initialised) and ``*_knn_pixels`` (cosine k-NN on raw pixels), all at
    ``image_size`` pixels, k = ``k``, T = 0.07 (DINO's protocol, :func:`mcjepa.eval.probes.knn_classify`).
    """
    from pathlib import Path

    from mcjepa.data.synthetic import SyntheticShapeDataset
    from mcjepa.eval.probes import embed_images, knn_accuracy, linear_accuracy, open_probe_dataset, probe_images

    sets: dict[str, tuple[torch.utils.data.Dataset, torch.utils.data.Dataset, int, int]] = {}
    if synthetic_images > 0:
        n_val = max(1, synthetic_images // 2)
        train = SyntheticShapeDataset(synthetic_images, (image_size, image_size), seed=20_000 + seed)
        val = SyntheticShapeDataset(n_val, (image_size, image_size), seed=30_000 + seed)
        sets["shapes"] = (train, val, synthetic_images, n_val)
    root = Path(fashion_mnist_root) if fashion_mnist_root else None
    if root is not None and root.is_dir() and any(root.glob("train-images-idx3-ubyte*")):
        train = open_probe_dataset("fashion-mnist", root, "train")
        val = open_probe_dataset("fashion-mnist", root, "val")
        sets["fmnist"] = (train, val, *fashion_mnist_counts)
    out: dict[str, float] = {}
    for name, (train, val, n_train, n_val) in sets.items():
        images_tr, y_tr = probe_images(train, image_size, n_train)
        images_va, y_va = probe_images(val, image_size, n_val)
        for suffix, enc in (("", encoder), ("_random", random_encoder)):
            tr, va = embed_images(enc, images_tr), embed_images(enc, images_va)
            out[f"{name}_knn{suffix}"] = knn_accuracy((tr, y_tr), (va, y_va), k=k)
        pixels_tr, pixels_va = images_tr.flatten(1).float() / 255.0, images_va.flatten(1).float() / 255.0
        out[f"{name}_knn_pixels"] = knn_accuracy((pixels_tr, y_tr), (pixels_va, y_va), k=k)
    if "fmnist" in sets and min(fashion_mnist_linear) > 0:
        train, val, _, _ = sets["fmnist"]
        images_tr, y_tr = probe_images(train, image_size, fashion_mnist_linear[0])
        images_va, y_va = probe_images(val, image_size, fashion_mnist_linear[1])
        for suffix, enc in (("", encoder), ("_random", random_encoder)):
            tr, va = embed_images(enc, images_tr), embed_images(enc, images_va)
            out[f"fmnist_linear{suffix}"] = linear_accuracy((tr, y_tr), (va, y_va), seed=seed)
        pixels_tr, pixels_va = images_tr.flatten(1).float() / 255.0, images_va.flatten(1).float() / 255.0
        out["fmnist_linear_pixels"] = linear_accuracy((pixels_tr, y_tr), (pixels_va, y_va), seed=seed)
    return out

"""The release written at the end of a run: the trained encoder and flow head as a safetensors
release folder (:func:`mcjepa.release.save_release`), carrying the run's held-out metrics."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from mcjepa.model import MCJEPA
from mcjepa.train.config import TrainConfig

__all__ = ["RELEASE_DIR", "release_metrics", "write_release"]

RELEASE_DIR = "release"
_NOT_METRICS = ("wall_time_s",)


def release_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The metrics a release carries: every number of the run summary that measures the model
    (held-out EPE, k-NN accuracy and their baselines), i.e. its float entries but the wall time;
    ``release.json``'s ``metrics`` equal these entries of ``summary.json``."""
    return {k: v for k, v in summary.items() if isinstance(v, float) and k not in _NOT_METRICS}


def write_release(
    model: MCJEPA, run_dir: Path, cfg: TrainConfig, step: int, metrics: dict[str, float], distributed: bool
) -> Path:
    """Write the encoder and flow head of ``model`` to ``run_dir/release`` and return the folder.

    ``metrics`` (see :func:`release_metrics`) go to the release entry's ``metrics``; the training
    config and step count to its metadata. Under DDP, SyncBatchNorm layers are turned back into
    BatchNorm on a CPU copy (the model being trained is left alone).
    """
    from mcjepa.release import save_release  # imported when a release is written (safetensors)

    out = run_dir / RELEASE_DIR
    metadata = {"trained_on": cfg.name, "steps": step, "train_config": cfg.to_dict(), "metrics": dict(metrics)}
    copy_ = copy.deepcopy(model).cpu()
    if distributed:
        copy_ = _revert_sync_bn(copy_)
    save_release(copy_, out, components=("encoder", "flow_head"), metadata=metadata)
    return out


def _revert_sync_bn(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            bn = nn.BatchNorm1d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            bn.load_state_dict(child.state_dict())
            setattr(module, name, bn)
        else:
            _revert_sync_bn(child)
    return module

"""The MC-JEPA training objective as one module, so that DDP sees a single ``forward``.

``MCJEPAObjective(content_views, frames, plan, micro)`` returns every loss component of the step:
``alpha * (L_reg + L_rec + L_smooth + L_cycle + L_vc) + L_ssl`` (arXiv 2307.12698, Sec. 3;
docs/method.md#total-objective). Its batch statistics (the expander's BatchNorm, VICReg's variance
and covariance, L_vc) cover the global batch: every process's, and with gradient accumulation every
micro-batch's (:class:`MicroBatch`, :mod:`mcjepa.train.global_stats`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mcjepa.encoder import imagenet_normalize
from mcjepa.model import MCJEPA
from mcjepa.ops import backward_warp, range_map_visibility
from mcjepa.train import losses as L
from mcjepa.train.config import LossSection
from mcjepa.train.diagnostics import feature_collapse_stats, flow_consistency_stats
from mcjepa.train.global_stats import distributed_world, straight_through, vc_from_statistics, vc_statistics
from mcjepa.train.levels import COARSEST, LevelWeights
from mcjepa.train.schedule import StepPlan

__all__ = ["CONTENT_TERMS", "MCJEPAObjective", "MicroBatch"]

CONTENT_TERMS = ("ssl", "ssl_inv", "ssl_var", "ssl_cov")  # the content stream's loss components

# one level's L_vc sufficient statistics: (count, moments), see global_stats.vc_statistics
VCStats = list[tuple[Tensor, Tensor] | None]


@dataclass
class MicroBatch:
    """What one micro-batch of an accumulated step needs beyond its own samples.

    ``content_embeddings``: the detached embeddings of both views of this process's whole content
    batch (computed without gradient first), with this micro-batch's rows ``content_rows``; the
    expander and VICReg then see the whole batch. ``vc_global``: L_vc's statistics summed over
    every micro-batch and process. ``content_weight`` / ``motion_weight``: each stream's share of
    the step (1 / its micro-batches); the ``*_scale`` values make the accumulated gradient the
    global term's (:func:`~mcjepa.train.global_stats.straight_through`).
    """

    content_weight: float = 1.0
    motion_weight: float = 1.0
    content_embeddings: tuple[Tensor, Tensor] | None = None
    content_rows: tuple[int, int] = (0, 0)
    content_scale: float = 1.0
    vc_global: VCStats | None = None
    vc_scale: float = 1.0


class MCJEPAObjective(nn.Module):
    """Wraps an :class:`MCJEPA` (with expander) and computes the step's losses."""

    def __init__(self, model: MCJEPA, loss_cfg: LossSection) -> None:
        super().__init__()
        if model.flow_head is None or model.expander is None:
            raise ValueError("training needs a model with a flow head and an expander")
        self.model = model
        self.cfg = loss_cfg
        # per-level weights, fine to coarse like the pyramid (LevelWeights): no reordering here
        self.reg_weights: LevelWeights = loss_cfg.reg_weights
        var_w, cov_w = loss_cfg.vc_var_weights, loss_cfg.vc_cov_weights
        if loss_cfg.vc_mode == "last":  # Table 11 "last layer only": the stride-32 level alone
            var_w, cov_w = var_w.only_level(COARSEST), cov_w.only_level(COARSEST)
        self.vc_var_weights, self.vc_cov_weights = var_w, cov_w
        # under DDP without find_unused_parameters: a step's unused component joins the graph
        # with a zero term, so every parameter is used in every pass (mcjepa.train.build)
        self.touch_unused = False

    def idle_parameters(self) -> list[nn.Parameter]:
        """Parameters no step uses: the flow head's feature reducers of the levels below
        ``model.flow_head.finest_level``."""
        head = self.model.flow_head
        return [p for i, r in enumerate(head.reducers) if i not in head.levels for p in r.parameters()]

    def content_embeddings(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        """The encoder's pooled embeddings of both views (one batched call)."""
        b = view1.shape[0]
        emb = self.model.encoder.forward_embedding(torch.cat((view1, view2), dim=0))
        return emb[:b], emb[b:]

    def content_losses(self, view1: Tensor, view2: Tensor, micro: MicroBatch | None = None) -> dict[str, Tensor]:
        """VICReg on the expander outputs of two augmented views (normalised images); with
        ``micro.content_embeddings``, on the whole process batch, gradient through these rows."""
        e1, e2 = self.content_embeddings(view1, view2)
        if micro is not None and micro.content_embeddings is not None:
            (a, b), scale = micro.content_rows, micro.content_scale
            e1, e2 = (
                torch.cat((full[:a], straight_through(full[a:b], part, scale), full[b:]))
                for full, part in zip(micro.content_embeddings, (e1, e2))
            )
        # the expander sees each view separately, as in VICReg (BatchNorm statistics per view)
        z1, z2 = self.model.expander(e1), self.model.expander(e2)
        # vicreg_loss gathers across ranks itself for the variance/covariance terms (VICReg's code)
        out = L.vicreg_loss(
            z1, z2, inv_weight=self.cfg.vicreg_inv, var_weight=self.cfg.vicreg_var, cov_weight=self.cfg.vicreg_cov
        )
        return {"ssl": out["total"], "ssl_inv": out["inv"], "ssl_var": out["var"], "ssl_cov": out["cov"]}

    def vc_levels(self) -> list[tuple[int, bool]]:
        """``(level, with_cov)`` of the pyramid levels L_vc computes (a non-zero weight)."""
        return [
            (i, wc != 0.0)
            for i, (wv, wc) in enumerate(zip(self.vc_var_weights, self.vc_cov_weights))
            if wv != 0.0 or wc != 0.0
        ]

    def vc_statistics(self, feats1: list[Tensor]) -> VCStats:
        """Frame t's L_vc statistics per level (None where L_vc is off), this batch only."""
        out: VCStats = [None] * len(feats1)
        for i, with_cov in self.vc_levels():
            out[i] = vc_statistics(feats1[i], with_cov, self.cfg.vc_max_samples)
        return out

    def frame_statistics(self, frame1: Tensor, frame2: Tensor) -> VCStats:
        """:meth:`vc_statistics` of a frame pair, encoded exactly as :meth:`motion_losses` encodes
        it (one batched call, so drop path draws the same masks when the RNG is replayed)."""
        b = frame1.shape[0]
        feats = self.model.encoder(torch.cat((imagenet_normalize(frame1), imagenet_normalize(frame2)), dim=0))
        return self.vc_statistics([f[:b] for f in feats])

    def _vc_loss(self, feats1: list[Tensor], micro: MicroBatch | None) -> Tensor:
        """L_vc of frame t's pyramid over the global batch (``loss.vc_pooling = "batch"``), or per
        image (``"image"``, no batch statistic)."""
        cfg = self.cfg
        if cfg.vc_pooling == "image":
            return L.pyramid_vc_loss(
                feats1,
                self.vc_var_weights,
                self.vc_cov_weights,
                max_samples=cfg.vc_max_samples or None,
                pooling="image",
            )
        local = self.vc_statistics(feats1)
        if micro is not None and micro.vc_global is not None:
            glob, scale = micro.vc_global, micro.vc_scale
        else:
            glob, scale = all_reduce_statistics(local), float(distributed_world())
        total = feats1[0].new_zeros((), dtype=torch.float32)
        for i, with_cov in self.vc_levels():
            (count, moments), (_, mine) = glob[i], local[i]  # type: ignore[misc]
            var, cov = vc_from_statistics(count, straight_through(moments, mine, scale), feats1[i].shape[1], with_cov)
            total = total + self.vc_var_weights[i] * var
            if cov is not None:
                total = total + self.vc_cov_weights[i] * cov
        return total

    def motion_losses(
        self, frame1: Tensor, frame2: Tensor, plan: StepPlan, micro: MicroBatch | None = None
    ) -> dict[str, Tensor]:
        """Self-supervised flow losses on a frame pair in [0, 1]."""
        cfg = self.cfg
        both = self.model.flow_both_ways(
            imagenet_normalize(frame1), imagenet_normalize(frame2), detach_features=plan.detach_encoder_for_motion
        )
        fwd, bwd = both.forward, both.backward
        feats1, feats2 = both.feats1, both.feats2
        if plan.detach_encoder_for_motion:
            feats1 = [f.detach() for f in feats1]
            feats2 = [f.detach() for f in feats2]
        if plan.occlusion:  # L_rec and L_cycle skip the pixels the occlusion estimate marks occluded
            visible = self._visibility
            occ_fwd = visible(fwd.flow, bwd.flow)
            occ_bwd = visible(bwd.flow, fwd.flow) if cfg.pixel_losses_both_directions else None
            level_masks = [visible(f, b) for f, b in zip(fwd.level_flows, bwd.level_flows)]
        else:  # explicit all-ones masks: cycle_consistency_loss would compute its own from None
            occ_fwd = occ_bwd = None
            level_masks = [torch.ones_like(f[:, :1]) for f in fwd.level_flows]
        rec, smooth = self._pixel_losses(frame1, frame2, fwd.flow, occ_fwd)
        if cfg.pixel_losses_both_directions:  # average of t -> t+1 and t+1 -> t (UnFlow / ARFlow / UFlow)
            rec_b, smooth_b = self._pixel_losses(frame2, frame1, bwd.flow, occ_bwd)
            rec, smooth = 0.5 * (rec + rec_b), 0.5 * (smooth + smooth_b)
        reg = self._feature_regression(feats1, feats2, fwd.level_flows, fwd.levels)
        if cfg.reg_both_directions:  # frame t's features predicted from frame t+1's by the backward flow
            reg = 0.5 * (reg + self._feature_regression(feats2, feats1, bwd.level_flows, bwd.levels))
        out = {
            "reg": reg,
            "rec": rec,
            "smooth": smooth,
            "cycle": L.cycle_consistency_loss(
                feats1,
                fwd.level_flows,
                bwd.level_flows,
                fwd.levels,
                level_masks,
                weight=cfg.cycle_weight,
                feature_norm=cfg.feature_loss_norm,
                flow_grad=cfg.cycle_flow_grad,
                masked_mean=cfg.masked_mean,
            ),
        }
        if plan.vc:
            out["vc"] = self._vc_loss(feats1, micro)
        out["motion"] = sum(out.values())
        out.update(feature_collapse_stats(feats1, feats2))  # logged, not part of any loss
        out.update(flow_consistency_stats(fwd.flow, bwd.flow, occ_fwd))
        return out

    def _visibility(self, flow: Tensor, other: Tensor) -> Tensor:
        """``(B, 1, H, W)`` visibility on ``flow``'s source grid (1 = use the pixel), from ``flow`` and
        the flow of the opposite direction ``other`` (``loss.occlusion_estimate``), no gradient."""
        if self.cfg.occlusion_estimate == "range_map":
            return range_map_visibility(other)
        return L.forward_backward_occlusion(flow, other)

    def _feature_regression(
        self, source: list[Tensor], target: list[Tensor], level_flows: list[Tensor], levels: tuple[int, ...]
    ) -> Tensor:
        """L_reg of one direction: ``target``'s pyramid warped back onto ``source``'s grid by the
        per-level flows (source -> target), compared with ``source``'s."""
        cfg = self.cfg
        return L.feature_regression_loss(
            source,
            target,
            level_flows,
            levels,
            self.reg_weights,
            mask_out_of_image=cfg.reg_mask_out_of_image,
            feature_norm=cfg.feature_loss_norm,
            flow_grad=cfg.reg_gradient != "features",
            feature_grad=cfg.reg_gradient != "flow",
            masked_mean=cfg.masked_mean,
        )

    def _pixel_losses(
        self, source: Tensor, target: Tensor, flow: Tensor, occlusion: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``(L_rec, weighted L_smooth)`` of one direction: ``target`` warped back onto ``source``'s
        grid by ``flow`` (source -> target), masked by out-of-image samples and ``occlusion``."""
        cfg = self.cfg
        warped, inside = backward_warp(target, flow, return_mask=True)
        mask = inside if occlusion is None else inside * occlusion
        rec = L.photometric_loss(
            source,
            warped,
            mask,
            l1=cfg.photo_l1,
            l2=cfg.photo_l2,
            ssim=cfg.photo_ssim,
            census=cfg.photo_census,
            masked_mean=cfg.masked_mean,
        )
        smooth = cfg.smooth_weight * L.smoothness_loss(flow, source, edge_factor=cfg.smooth_edge_factor)
        return rec, smooth

    def forward(
        self,
        content_views: tuple[Tensor, Tensor] | None,
        frames: tuple[Tensor, Tensor] | None,
        plan: StepPlan,
        micro: MicroBatch | None = None,
    ) -> dict[str, Tensor]:
        """Return the loss components and ``total`` for one step (or one micro-batch of it:
        ``total`` then weighs each stream by its share, ``micro.*_weight``); missing streams are
        skipped."""
        out: dict[str, Tensor] = {}
        parts = []
        wc, wm = (micro.content_weight, micro.motion_weight) if micro is not None else (1.0, 1.0)
        if plan.content and content_views is not None:
            out.update(self.content_losses(*content_views, micro))
            parts.append(out["ssl"] if wc == 1.0 else wc * out["ssl"])
        if plan.motion and frames is not None:
            motion = self.motion_losses(*frames, plan, micro)
            out.update(motion)
            parts.append((self.cfg.alpha * wm) * motion["motion"])
        if not parts:
            raise RuntimeError("the step plan enables no stream with data")
        total = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        if self.touch_unused:
            unused = list(self.idle_parameters())
            unused += list(self.model.expander.parameters()) if "ssl" not in out else []
            unused += list(self.model.flow_head.parameters()) if "motion" not in out else []
            if unused:
                total = total + sum(p.view(-1)[0] for p in unused) * 0.0
        out["total"] = total
        return out


def all_reduce_statistics(local: VCStats) -> VCStats:
    """``local`` (detached) summed over every process: one all-reduce for all levels; ``local``
    itself (detached) in one process."""
    present = [(i, s) for i, s in enumerate(local) if s is not None]
    if distributed_world() == 1 or not present:
        return [None if s is None else (s[0].detach(), s[1].detach()) for s in local]
    flat = torch.cat([torch.cat((c, m)).detach() for _, (c, m) in present])
    dist.all_reduce(flat)
    out: VCStats = [None] * len(local)
    offset = 0
    for i, (_, m) in present:
        n = 1 + m.numel()
        out[i] = (flat[offset : offset + 1], flat[offset + 1 : offset + n])
        offset += n
    return out

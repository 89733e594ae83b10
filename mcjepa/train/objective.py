"""The MC-JEPA training objective as one module, so that DDP sees a single ``forward``.

``MCJEPAObjective(content_views, frames, plan)`` returns every loss component of the step:
``alpha * (L_reg + L_rec + L_smooth + L_cycle + L_vc) + L_ssl`` (seed §4.5.7).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import losses as L
from ..encoder import imagenet_normalize
from ..levels import COARSEST, LevelWeights
from ..model import MCJEPA
from ..ops import backward_warp, range_map_visibility
from .config import LossSection
from .diagnostics import feature_collapse_stats, flow_consistency_stats
from .schedule import StepPlan

__all__ = ["MCJEPAObjective"]


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

    def content_losses(self, view1: Tensor, view2: Tensor) -> dict[str, Tensor]:
        """VICReg on the expander outputs of two augmented views (normalised images)."""
        b = view1.shape[0]
        emb = self.model.encoder.forward_embedding(torch.cat((view1, view2), dim=0))
        # the expander sees each view separately, as in VICReg (BatchNorm statistics per view)
        z1, z2 = self.model.expander(emb[:b]), self.model.expander(emb[b:])
        # vicreg_loss gathers across ranks itself for the variance/covariance terms (VICReg's code)
        out = L.vicreg_loss(
            z1, z2, inv_weight=self.cfg.vicreg_inv, var_weight=self.cfg.vicreg_var, cov_weight=self.cfg.vicreg_cov
        )
        return {"ssl": out["total"], "ssl_inv": out["inv"], "ssl_var": out["var"], "ssl_cov": out["cov"]}

    def motion_losses(self, frame1: Tensor, frame2: Tensor, plan: StepPlan) -> dict[str, Tensor]:
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
            ),
        }
        if plan.vc:
            out["vc"] = L.pyramid_vc_loss(
                feats1, self.vc_var_weights, self.vc_cov_weights, max_samples=cfg.vc_max_samples, pooling=cfg.vc_pooling
            )
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
            source, warped, mask, l1=cfg.photo_l1, l2=cfg.photo_l2, ssim=cfg.photo_ssim, census=cfg.photo_census
        )
        smooth = cfg.smooth_weight * L.smoothness_loss(flow, source, edge_factor=cfg.smooth_edge_factor)
        return rec, smooth

    def forward(
        self, content_views: tuple[Tensor, Tensor] | None, frames: tuple[Tensor, Tensor] | None, plan: StepPlan
    ) -> dict[str, Tensor]:
        """Return the loss components and ``total`` for one step; missing streams are skipped."""
        out: dict[str, Tensor] = {}
        total = None
        if plan.content and content_views is not None:
            out.update(self.content_losses(*content_views))
            total = out["ssl"]
        if plan.motion and frames is not None:
            motion = self.motion_losses(*frames, plan)
            out.update(motion)
            weighted = self.cfg.alpha * motion["motion"]
            total = weighted if total is None else total + weighted
        if total is None:
            raise RuntimeError("the step plan enables no stream with data")
        out["total"] = total
        return out

"""Training: config loading and errors, LR schedule and phase switches, exact resume, torchrun."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from mcjepa.encoder import imagenet_normalize as imagenet
from mcjepa.train.config import ConfigError, TrainConfig, available_configs, load_config
from mcjepa.train.engine import Trainer
from mcjepa.train.schedule import Schedule

# a tiny, fast version of the demo for tests: 12 steps, motion from step 4, L_vc from step 8
TINY = [
    "schedule.epochs=3",
    "schedule.steps_per_epoch=4",
    "schedule.motion_start_epoch=1",
    "schedule.vc_start_epoch=2",
    "optim.warmup_epochs=1",
    "data.content_batch_size=8",
    "data.motion_batch_size=2",
    "data.eval_synthetic_pairs=0",
    "data.eval_content_images=0",
    'data.eval_fashion_mnist_root=""',
    'data.content={type = "synthetic", num_images = 64, image_size = [48, 48], size = 32}',
    'data.motion=[{name = "synthetic", num_pairs = 64, size = [32, 48], seed = 1}]',
    "run.checkpoint_every=4",
    "run.log_every=1",
    "run.threads=1",
    "run.export_release=false",
]


def test_shipped_configs_load_and_paper_values_are_the_seeds():
    assert {"paper", "paper-measured", "demo", "video-demo"} <= set(available_configs())
    paper = load_config("paper")
    assert paper.optim.lr_encoder == 3e-4 and paper.optim.lr_flow_head == 1e-4
    assert paper.optim.end_lr == 3e-8 and paper.optim.weight_decay == 1e-6
    assert paper.schedule.epochs == 100 and paper.schedule.motion_start_epoch == 10
    assert paper.schedule.vc_start_epoch == 11 and paper.loss.alpha == 0.1
    assert paper.data.content_batch_size == 384 and paper.data.motion_batch_size == 8
    assert paper.loss.reg_weights.coarse_to_fine == (1.0, 1.0, 1.0, 1.0, 0.1, 0.01)
    assert paper.loss.vc_var_weights.coarse_to_fine == (0.01, 0.01, 0.01, 0.01, 0.001, 0.0001)
    assert paper.loss.vc_cov_weights.coarse_to_fine == (0.04, 0.04, 0.001, 0.0, 0.0, 0.0)
    assert (paper.loss.vicreg_inv, paper.loss.vicreg_var, paper.loss.vicreg_cov) == (1.0, 25.0, 1.0)
    assert paper.loss.smooth_edge_factor == 75.0 and paper.loss.cycle_weight == 0.2
    # the dataclass defaults are the paper's numbers too, except the loss forms this project
    # measured (the paper-measured config's keys) and the two that make the objective the same on
    # any number of processes (paper: every position in L_vc, per-image masked means)
    defaults = TrainConfig()
    assert defaults.optim == paper.optim
    measured = load_config("paper-measured")
    differ = {f for f in vars(defaults.loss) if getattr(defaults.loss, f) != getattr(paper.loss, f)}
    assert differ == {
        "pixel_losses_both_directions",
        "reg_both_directions",
        "feature_loss_norm",
        "vc_max_samples",
        "masked_mean",
    }
    assert {f for f in differ if getattr(measured.loss, f) == getattr(defaults.loss, f)} == {
        "pixel_losses_both_directions",
        "reg_both_directions",
        "feature_loss_norm",
    }
    assert (paper.loss.vc_max_samples, paper.loss.masked_mean) == (0, "image")
    assert paper.schedule.occlusion_start_epoch == measured.schedule.occlusion_start_epoch == 11


def test_bad_configs_fail_at_start_with_the_key(tmp_path):
    with pytest.raises(ConfigError, match="optim.bogus"):
        load_config("demo", ["optim.bogus=1"])
    with pytest.raises(ConfigError, match="optim.lr_encoder: expected a number"):
        load_config("demo", ['optim.lr_encoder="fast"'])
    with pytest.raises(ConfigError, match="schedule.sampling"):
        load_config("demo", ['schedule.sampling="sometimes"'])
    with pytest.raises(ConfigError, match="run.checkpoint_every: expected an integer"):
        load_config("demo", ["run.checkpoint_every=1.5"])
    with pytest.raises(ConfigError, match="unknown config"):
        load_config("no-such-config")
    with pytest.raises(ConfigError, match="set schedule.motion_start_epoch = 0"):  # M-JEPA with a phase 1
        load_config("demo", ["schedule.content_enabled=false"])
    missing = tmp_path / "nope"
    cfg = load_config("demo", [f'data.content={{type = "imagefolder", root = "{missing}"}}'])
    with pytest.raises(ConfigError, match="data.content.root: folder not found"):
        Trainer(cfg, tmp_path / "run")
    cfg = load_config("demo", [f'data.motion=[{{name = "sintel", root = "{missing}", crop = [32, 32]}}]'])
    with pytest.raises(ConfigError, match=r"data.motion.*\[0\].*root"):
        Trainer(cfg, tmp_path / "run2")


def test_lr_schedule_warmup_then_cosine_to_end_lr():
    cfg = load_config("paper", ["schedule.steps_per_epoch=10"])
    s = Schedule(cfg, 10)
    assert s.total_steps == 1000 and s.warmup_steps == 100
    assert s.lr(3e-4, 0) == pytest.approx(3e-6)
    assert s.lr(3e-4, 49) == pytest.approx(1.5e-4)
    assert s.lr(3e-4, 99) == pytest.approx(3e-4)
    assert s.lr(3e-4, 100) == pytest.approx(3e-4)
    for k in (100, 550, 900):
        expected = 3e-8 + (3e-4 - 3e-8) * 0.5 * (1 + math.cos(math.pi * (k - 100) / 899))
        assert s.lr(3e-4, k) == pytest.approx(expected, rel=1e-9)
    assert s.lr(3e-4, 550) == pytest.approx((3e-4 + 3e-8) / 2, rel=2e-3)  # half-way down the cosine
    assert s.lr(3e-4, 999) == pytest.approx(3e-8)
    assert all(s.lr(1e-4, k) >= s.lr(1e-4, k + 1) for k in range(100, 999))


def test_flow_head_warmup_ramps_its_rate_from_the_start_of_motion():
    cfg = load_config("demo", ["optim.flow_head_warmup_epochs=2", "schedule.motion_start_epoch=1"])
    s = Schedule(cfg, 10)
    assert s.lr(1e-3, 5, "flow_head") == 0.0  # before motion: the head is unused
    assert s.lr(1e-3, 10, "flow_head") == pytest.approx(s.lr(1e-3, 10) / 20)  # first motion step
    assert s.lr(1e-3, 19, "flow_head") == pytest.approx(s.lr(1e-3, 19) * 10 / 20)
    assert s.lr(1e-3, 30, "flow_head") == pytest.approx(s.lr(1e-3, 30))  # ramp over: the shared cosine
    assert s.lr(1e-3, 10, "encoder") == s.lr(1e-3, 10)  # other groups are unaffected
    assert Schedule(load_config("demo"), 10).lr(1e-3, 10, "flow_head") == s.lr(1e-3, 10)  # default: off
    with pytest.raises(ConfigError, match="flow_head_warmup_epochs"):
        load_config("demo", ["optim.flow_head_warmup_epochs=-1"])


def test_phase_switches_at_the_right_steps():
    cfg = load_config("paper", ["schedule.steps_per_epoch=10"])
    s = Schedule(cfg, 10)
    assert not s.plan(99).motion and s.plan(99).content  # epochs 0-9: VICReg only
    assert s.plan(100).motion and s.plan(100).content and not s.plan(100).vc  # epoch 10: + motion
    assert not s.plan(109).vc and s.plan(110).vc  # epoch 11: + L_vc
    alt = Schedule(load_config("paper", ['schedule.sampling="batch_alternation"']), 10)
    assert [alt.plan(k).motion for k in range(100, 104)] == [True, False, True, False]
    assert [alt.plan(k).content for k in range(100, 104)] == [False, True, False, True]
    ep = Schedule(load_config("paper", ['schedule.sampling="epoch_alternation"']), 10)
    assert ep.plan(105).motion and not ep.plan(105).content
    assert ep.plan(115).content and not ep.plan(115).motion
    off = Schedule(load_config("paper", ['loss.vc_mode="off"']), 10)
    assert not off.plan(500).vc
    frozen = Schedule(load_config("paper", ['schedule.sampling="frozen_encoder_flow"']), 10)
    assert frozen.plan(500).detach_encoder_for_motion
    # the occlusion mask: in the paper config from epoch 11 (with L_vc), never before motion
    assert not s.plan(100).occlusion and not s.plan(109).occlusion and s.plan(110).occlusion
    early = Schedule(load_config("paper", ["schedule.occlusion_start_epoch=0"]), 10)
    assert early.plan(100).occlusion and not early.plan(99).occlusion
    late = Schedule(load_config("paper", ["schedule.occlusion_start_epoch=12"]), 10)
    assert late.plan(110).motion and not late.plan(119).occlusion and late.plan(120).occlusion
    never = Schedule(load_config("paper", ["loss.occlusion_masking=false"]), 10)
    assert not never.plan(500).occlusion


def test_occlusion_switch_masks_rec_and_cycle_only_when_on(monkeypatch):
    """With plan.occlusion the forward-backward check masks L_rec and L_cycle; without it neither
    is masked (a check that marks every pixel occluded zeroes both only when the switch is on)."""
    from mcjepa.model import build_model
    from mcjepa.train import losses
    from mcjepa.train.objective import MCJEPAObjective
    from mcjepa.train.schedule import StepPlan

    torch.manual_seed(0)
    objective = MCJEPAObjective(build_model("micro", expander=True), load_config("demo").loss)
    with torch.no_grad():  # non-zero flows, so that the cycle term has something to measure
        objective.model.flow_head.decoder.predict_flow.bias.fill_(1.0)
    frames = (torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    monkeypatch.setattr(losses, "forward_backward_occlusion", lambda f, b, *a, **k: torch.zeros_like(f[:, :1]))
    plans = {
        on: StepPlan(content=False, motion=True, vc=False, occlusion=on, detach_encoder_for_motion=False)
        for on in (True, False)
    }
    with torch.no_grad():
        masked = objective.motion_losses(*frames, plans[True])
        unmasked = objective.motion_losses(*frames, plans[False])
    assert masked["rec"] == 0 and masked["cycle"] == 0
    assert unmasked["rec"] > 0 and unmasked["cycle"] > 0


@pytest.mark.parametrize("both", [True, False])
def test_pixel_losses_train_the_backward_flow_only_when_both_directions_are_on(both):
    """With loss.pixel_losses_both_directions the photometric and smoothness terms are the mean of
    the two directions (frame 2 warped onto frame 1 by the forward flow, and frame 1 onto frame 2
    by the backward flow), so the backward flow gets a pixel-loss gradient; the paper's form has
    only the forward one."""
    from mcjepa.model import build_model
    from mcjepa.ops import backward_warp
    from mcjepa.train import losses
    from mcjepa.train.objective import MCJEPAObjective
    from mcjepa.train.schedule import StepPlan

    torch.manual_seed(0)
    cfg = load_config("demo", [f"loss.pixel_losses_both_directions={str(both).lower()}"]).loss
    objective = MCJEPAObjective(build_model("micro", expander=True), cfg)
    with torch.no_grad():  # non-zero, non-opposite flows
        objective.model.flow_head.decoder.predict_flow.bias.fill_(1.0)
    frames = (torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    plan = StepPlan(content=False, motion=True, vc=False, occlusion=False, detach_encoder_for_motion=False)
    with torch.no_grad():
        out = objective.motion_losses(*frames, plan)
        flows = objective.model.flow_both_ways(*(imagenet(f) for f in frames))

        def rec(src, tgt, flow):
            warped, inside = backward_warp(tgt, flow, return_mask=True)
            return losses.photometric_loss(src, warped, inside, l1=cfg.photo_l1, l2=cfg.photo_l2, ssim=cfg.photo_ssim)

        forward = rec(frames[0], frames[1], flows.forward.flow)
        backward = rec(frames[1], frames[0], flows.backward.flow)
    expected = 0.5 * (forward + backward) if both else forward
    torch.testing.assert_close(out["rec"], expected)
    assert not torch.isclose(forward, backward)  # the two directions really differ


@pytest.mark.parametrize("both", [True, False])
def test_feature_regression_covers_the_backward_flow_only_when_both_directions_are_on(both):
    """With loss.reg_both_directions L_reg is the mean of frame t+1's features predicted from
    frame t's by the forward flow and frame t's predicted from frame t+1's by the backward flow;
    the paper's form (false) is the forward one alone. Checked against losses.feature_regression_loss
    called by hand, and by which flow receives L_reg's gradient."""
    from mcjepa.model import build_model
    from mcjepa.train import losses
    from mcjepa.train.objective import MCJEPAObjective
    from mcjepa.train.schedule import StepPlan

    torch.manual_seed(0)
    cfg = load_config("demo", [f"loss.reg_both_directions={str(both).lower()}"]).loss
    objective = MCJEPAObjective(build_model("micro", expander=True), cfg)
    with torch.no_grad():  # non-zero flows
        objective.model.flow_head.decoder.predict_flow.bias.fill_(1.0)
    frames = (torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    plan = StepPlan(content=False, motion=True, vc=False, occlusion=False, detach_encoder_for_motion=False)
    captured = {}
    original = objective.model.flow_both_ways

    def capture(*args, **kwargs):
        captured["flows"] = out = original(*args, **kwargs)
        for f in out.forward.level_flows + out.backward.level_flows:
            f.retain_grad()
        return out

    objective.model.flow_both_ways = capture
    out = objective.motion_losses(*frames, plan)
    flows = captured["flows"]
    weights = objective.reg_weights

    def reg(src, tgt, head_out):
        kwargs = dict(mask_out_of_image=cfg.reg_mask_out_of_image, feature_norm=cfg.feature_loss_norm)
        return losses.feature_regression_loss(src, tgt, head_out.level_flows, head_out.levels, weights, **kwargs)

    with torch.no_grad():
        forward = reg(flows.feats1, flows.feats2, flows.forward)
        backward = reg(flows.feats2, flows.feats1, flows.backward)
    torch.testing.assert_close(out["reg"].detach(), 0.5 * (forward + backward) if both else forward)
    assert not torch.isclose(forward, backward)
    out["reg"].backward()
    backward_grad = sum(f.grad.abs().sum() for f in flows.backward.level_flows if f.grad is not None)
    assert (backward_grad > 0) == both


def test_short_run_learns_flow_on_held_out_synthetic_pairs(tmp_path):
    """The pixel-loss learning test: 80 self-supervised steps of `flow-demo` (about 40 s on 2 CPU
    cores) take the held-out EPE from the untrained model's (zero flow: the output convs start at
    zero) to well below it. Pairs for evaluation come from a seed that training never sees.
    The whole objective's learning test is tests/test_learning.py."""
    overrides = [
        "schedule.epochs=2",
        "data.eval_synthetic_pairs=16",
        "run.checkpoint_every=1000",
        "run.export_release=false",
    ]
    trainer = Trainer(load_config("flow-demo", overrides), tmp_path / "learn")
    summary = trainer.fit()
    assert summary["steps"] == 80 and summary["nonfinite_skipped"] == 0
    untrained, trained = summary["untrained_epe"], summary["trained_epe"]
    assert untrained == pytest.approx(summary["untrained_zero_flow_epe"])  # zero-initialised head
    assert untrained > 3.0  # the rich preset's motion: there is something to learn
    # measured 3.17 vs 4.98 px (0.64x; 120 steps: 0.52x); a head that does not learn stays at 1.0x
    assert trained < 0.75 * untrained, (trained, untrained)
    records = [json.loads(line) for line in (tmp_path / "learn" / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0]["rec"], sum(r["rec"] for r in records[-5:]) / 5
    assert last < 0.8 * first, (first, last)  # the photometric loss itself goes down (measured 0.64x)


def test_release_carries_the_metrics_of_the_summary(tmp_path):
    """The release written at the end of a run carries the trained model's metrics: release.json's
    ``metrics`` are exactly summary.json's measurements (held-out EPE, content k-NN and their
    baselines), read back from both files."""
    evaluation = ["data.eval_synthetic_pairs=4", "data.eval_synthetic_size=[32, 48]", "data.eval_content_images=40"]
    run = tmp_path / "run"
    summary = Trainer(load_config("demo", [*TINY, "run.export_release=true", *evaluation]), run).fit()
    on_disk = json.loads((run / "summary.json").read_text())
    entry = json.loads((run / "release" / "release.json").read_text())
    assert on_disk == json.loads(json.dumps(summary)) and on_disk["release"] == str(run / "release")
    not_metrics = {"steps", "wall_time_s", "nonfinite_skipped", "last_losses", "release"}
    measured = {k: v for k, v in on_disk.items() if k not in not_metrics}
    assert {"untrained_epe", "trained_epe", "trained_zero_flow_epe", "shapes_knn", "shapes_knn_random"} <= set(measured)
    assert entry["metrics"] == measured
    assert entry["trained_on"] == "demo" and entry["metadata"]["steps"] == on_disk["steps"] == 12


def _params(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_interrupt_and_resume_reaches_the_same_parameters(tmp_path):
    # drop path on: the RNG streams must continue exactly, not only the data position
    cfg = load_config("demo", [*TINY, "model.encoder.drop_path_rate=0.2"])
    full = Trainer(cfg, tmp_path / "full")
    full.fit()
    assert full.step == 12
    reference = _params(full)
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert "ssl" in records[0] and "motion" not in records[0]  # phase 1: content only
    assert "motion" in records[5] and "vc" not in records[5]  # phase 2 before L_vc
    assert "vc" in records[-1]  # after the VC warm-up

    first = Trainer(cfg, tmp_path / "split")
    first.fit(max_steps=6)
    del first
    # simulate a crash after step 6: only the periodic checkpoint of step 4 survives
    (tmp_path / "split" / "checkpoints" / "ckpt_000000006.pt").unlink()
    resumed = Trainer(cfg, tmp_path / "split", resume=True)
    assert resumed.step == 4  # at most the checkpoint interval is lost
    resumed.fit()
    assert resumed.step == 12
    for key, value in _params(resumed).items():
        assert torch.equal(value, reference[key]), key
    # checkpoints are pruned to keep_last and no temporary file is left behind
    ckpts = sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir())
    assert ckpts == ["ckpt_000000008.pt", "ckpt_000000012.pt"]


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    cfg = load_config("demo", TINY)
    Trainer(cfg, tmp_path / "run").fit(max_steps=4)
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(cfg, tmp_path / "run")


def test_nonfinite_losses_are_skipped_then_diagnosed(tmp_path):
    from mcjepa.train.engine import TrainingDiverged

    cfg = load_config("demo", [*TINY, "run.max_nonfinite_in_row=3"])
    trainer = Trainer(cfg, tmp_path / "nan")
    with torch.no_grad():
        trainer.model.expander.layers[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="3 non-finite losses or gradients in a row"):
        trainer.fit()
    assert trainer.nonfinite_total == 3


def _torchrun(out, *extra: str, port: int, resume: bool = False) -> subprocess.CompletedProcess:
    sets = [a for s in TINY for a in ("--set", s)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    cmd += ["-m", "mcjepa.cli.train", "--config", "demo", "--out", str(out), *sets, *(["--resume"] if resume else [])]
    # 8 steps; drop path on, so that every rank's own RNG stream shapes the result
    for s in ("schedule.epochs=2", "data.content_batch_size=8", "model.encoder.drop_path_rate=0.2", *extra):
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_nonfinite_gradients_skip_the_step(tmp_path):
    """A finite loss whose backward produces NaN gradients (as a bf16 overflow would) must not
    reach AdamW: the step is skipped and every parameter is left as it was."""
    cfg = load_config("demo", TINY)
    trainer = Trainer(cfg, tmp_path / "nangrad")
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.model.expander.layers[0].weight.register_hook(lambda g: g * float("nan"))
    trainer.fit(max_steps=2)
    assert trainer.nonfinite_total == 2
    for key, value in trainer.model.named_parameters():  # (BatchNorm statistics move in forward)
        assert torch.equal(value, before[key]), key


def test_torchrun_two_processes_keep_identical_parameters_and_resume_exactly(tmp_path):
    full = tmp_path / "ddp"
    _torchrun(full, "run.checkpoint_every=8", port=29731)
    state = torch.load(full / "checkpoints" / "ckpt_000000008.pt", weights_only=True)
    assert state["step"] == 8 and len(state["rank_rng"]) == 2  # each rank's RNG streams
    # each rank saved a parameter hash; the ranks must agree
    hashes = json.loads((full / "rank_param_hashes.json").read_text())
    assert len(hashes) == 2 and hashes["0"] == hashes["1"]

    # interrupted after step 4, resumed by a new torchrun: the same parameters, bit for bit
    split = tmp_path / "split"
    _torchrun(split, "run.checkpoint_every=4", "run.max_steps=4", port=29732)
    assert latest_step(split) == 4
    _torchrun(split, "run.checkpoint_every=4", port=29733, resume=True)
    resumed = torch.load(split / "checkpoints" / "ckpt_000000008.pt", weights_only=True)
    for key, value in state["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert json.loads((split / "rank_param_hashes.json").read_text()) == hashes


def latest_step(run_dir) -> int:
    from mcjepa.train.checkpoint import latest_checkpoint

    return int(torch.load(latest_checkpoint(run_dir), weights_only=True)["step"])


def test_flow_consistency_stats_tell_opposite_flows_from_a_shared_drift():
    """diag_fwd_bwd_cos is -1 for a backward flow that undoes the forward one, +1 when both drift
    the same way (the state in which the occlusion check rejects every pixel); diag_visible is the
    mask's mean, or 1 without a mask."""
    from mcjepa.train.diagnostics import flow_consistency_stats

    fwd = torch.randn(2, 2, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :2] = 1.0  # a quarter of the pixels kept
    opposite = flow_consistency_stats(fwd, -fwd, mask)
    assert opposite["diag_fwd_bwd_cos"].item() == pytest.approx(-1.0)
    assert opposite["diag_visible"].item() == pytest.approx(0.25)
    same = flow_consistency_stats(fwd, fwd.clone(), None)
    assert same["diag_fwd_bwd_cos"].item() == pytest.approx(1.0) and same["diag_visible"].item() == 1.0

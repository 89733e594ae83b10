"""The paper recipe before a GPU run: --preflight on fake layouts of all seven datasets, dataset
roots given as the folder or its parent, config bases, precision by hardware, channels_last and
compile, the loaders' worker budget and one loader per run."""

import math

import numpy as np
import pytest
import torch
from fixtures_flow import (
    random_flow,
    random_frames,
    write_flying_chairs,
    write_flying_things3d,
    write_hd1k,
    write_kitti2015,
    write_sintel,
)
from PIL import Image

from mcjepa.cli.train import main
from mcjepa.train.config import ConfigError, load_config
from mcjepa.train.precision import apply_tf32, resolve_precision

H, W = 40, 56


def _fake_datasets(root):
    """ImageNet-style folder, FlyingThings3D, FlyingChairs, KITTI 2015, KITTI raw frames, Sintel
    (train and test) and HD1K, each with a few tiny images; returns the roots to give."""
    rng = np.random.default_rng(0)
    for c in ("n01", "n02"):
        (root / "imagenet/train" / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / f"imagenet/train/{c}/{i}.png")
    fr = random_frames(4, H, W, seed=1)
    flows = [random_flow(H, W, seed=s) for s in range(3)]
    write_flying_things3d(root, {"A/0000": (fr[:3], flows[:2], flows[:2])}, passes=("clean", "final"))
    write_flying_chairs(root, [(fr[0], fr[1], flows[0]), (fr[2], fr[3], flows[1])])
    ones = np.ones((H, W), dtype=bool)
    write_kitti2015(root, [(fr[0], fr[1], flows[0], ones, ones), (fr[1], fr[2], flows[1], ones, ones)])
    for seq in ("drive_a", "drive_b"):
        (root / "kitti_raw" / seq).mkdir(parents=True)
        for i, f in enumerate(fr[:3]):
            Image.fromarray(f).save(root / "kitti_raw" / seq / f"{i:010d}.png")
    write_sintel(root, {"alley": (fr[:3], flows[:2])})
    write_sintel(root, {"market": (fr[:3], None)}, split="test")
    write_hd1k(root, [(fr[:4], flows[:3], None)])
    return {
        "data.content.root": root / "imagenet/train",
        "data.motion[0].root": root / "FlyingThings3D",  # the dataset folder itself ...
        "data.motion[1].root": root,  # ... or the folder that holds it
        "data.motion[2].root": root / "KittiFlow",
        "data.motion[3].root": root / "kitti_raw",
        "data.motion[4].root": root / "Sintel",
        "data.motion[5].root": root,
        "data.motion[6].root": root / "hd1k",
    }


SMALL = ["data.content_batch_size=16", "data.motion_batch_size=8"]


def test_preflight_on_all_seven_datasets_prints_the_plan_and_passes(tmp_path, capsys):
    roots = _fake_datasets(tmp_path)
    sets = [a for k, v in roots.items() for a in ("--set", f'{k}="{v}"')] + [a for s in SMALL for a in ("--set", s)]
    assert main(["--config", "paper", "--preflight", "--world-size", "8", *sets]) == 0
    out = capsys.readouterr().out
    assert "content: 16 images" in out
    assert "data.motion[2] kitti2015" in out and "2 pairs x 100 = 200 per epoch" in out
    assert f"(read as {tmp_path})" in out  # data/Sintel given, torchvision reads data/
    for name in ("flyingthings3d", "flyingchairs", "frames", "sintel", "hd1k"):
        assert f" {name} " in out
    # 16 images / 16 a step: one step an epoch; the paper's marks in steps
    assert "1 steps per epoch, 100 steps in all" in out
    assert "warm-up ends at step 10 (epoch 10)" in out
    assert "motion from step 10 (epoch 10), L_vc from step 11 (epoch 11)" in out
    assert "occlusion mask from step 11" in out
    assert "content 16 = 8 process(es) x 1 micro-batch(es) x 2 sample(s)" in out
    assert "motion  8 = 8 process(es) x 1 micro-batch(es) x 1 sample(s)" in out
    assert "V100 32 GB: fp16 with a gradient scaler" in out and "H100 80 GB: bf16" in out
    assert "176.8M parameters" in out and "checkpoint: about 2.0 GiB each" in out
    assert "preflight: all checks passed" in out


def test_preflight_names_the_folder_it_expected_and_the_key(tmp_path, capsys):
    roots = _fake_datasets(tmp_path)
    roots["data.motion[4].root"] = tmp_path / "elsewhere"
    (tmp_path / "elsewhere").mkdir()
    sets = [a for k, v in roots.items() for a in ("--set", f'{k}="{v}"')] + [a for s in SMALL for a in ("--set", s)]
    assert main(["--config", "paper", "--preflight", *sets]) == 2
    out = capsys.readouterr().out
    problem = next(line for line in out.splitlines() if line.startswith("PROBLEM: data.motion[4]"))
    assert "ROOT/Sintel/training/{clean,final}" in problem and "Sintel folder itself" in problem
    assert "preflight: 1 problem(s)" in out


def test_preflight_on_16_processes_names_the_motion_batch_key(tmp_path, capsys):
    roots = _fake_datasets(tmp_path)
    sets = [a for k, v in roots.items() for a in ("--set", f'{k}="{v}"')] + ["--set", "data.content_batch_size=16"]
    assert main(["--config", "paper", "--preflight", "--world-size", "16", *sets]) == 2
    assert "PROBLEM: data.motion_batch_size = 8 cannot be shared by 16 processes" in capsys.readouterr().out


def test_a_config_file_may_name_a_base(tmp_path):
    child = tmp_path / "mine.toml"
    child.write_text('base = "paper"\n[loss]\nalpha = 0.5\n[data]\nmotion_batch_size = 16\n')
    cfg, paper = load_config(child), load_config("paper")
    assert cfg.name == "mine" and cfg.loss.alpha == 0.5 and cfg.data.motion_batch_size == 16
    assert cfg.loss.vicreg_var == paper.loss.vicreg_var and cfg.data.motion == paper.data.motion
    loop = tmp_path / "loop.toml"
    loop.write_text('base = "loop.toml"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_config(loop)


@pytest.mark.parametrize(
    ("requested", "capability", "expected"),
    [
        ("auto", (7, 0), "fp16"),  # V100: no native bf16
        ("auto", (8, 0), "bf16"),
        ("auto", (9, 0), "bf16"),
        ("auto", None, "fp32"),  # CPU
        ("fp32", (9, 0), "fp32"),
        ("fp16", (9, 0), "fp16"),
    ],
)
def test_precision_follows_the_hardware(requested, capability, expected):
    device = torch.device("cuda" if capability else "cpu")
    p = resolve_precision(requested, device, capability=capability)
    assert p.name == expected
    assert p.needs_scaler == (expected == "fp16")


def test_precision_refuses_emulated_bf16_and_half_on_the_cpu():
    with pytest.raises(ConfigError, match="run.precision = bf16: this GPU .*7.0.* no native bf16"):
        resolve_precision("bf16", torch.device("cuda"), capability=(7, 0))
    with pytest.raises(ConfigError, match="run.precision = fp16 needs a CUDA GPU"):
        resolve_precision("fp16", torch.device("cpu"), capability=None)
    with pytest.raises(ConfigError, match="run.precision must be one of"):
        load_config("demo", ['run.precision="fp8"'])


def test_tf32_is_used_only_where_it_exists():
    from mcjepa.train.precision import set_tf32, tf32_state

    saved = tf32_state()
    try:
        assert apply_tf32(True, torch.device("cpu"), capability=None) is False
        assert apply_tf32(True, torch.device("cuda"), capability=(7, 0)) is False
        assert apply_tf32(True, torch.device("cuda"), capability=(8, 0)) is True
        assert tf32_state() == (True, True)
        assert apply_tf32(False, torch.device("cuda"), capability=(9, 0)) is False
        assert tf32_state() == (False, False)
    finally:
        set_tf32(*saved)


def _micro_pair():
    """A fresh randomised micro model (the tests below change it in place) and two frames."""
    from conftest import randomised_micro

    g = torch.Generator().manual_seed(1)
    return randomised_micro(), torch.rand(1, 3, 64, 96, generator=g), torch.rand(1, 3, 64, 96, generator=g)


def test_channels_last_gives_the_same_flow():
    from mcjepa.train.precision import to_memory_format

    model, a, b = _micro_pair()
    with torch.no_grad():
        ref = model(a, b)
        nhwc = to_memory_format(model, True)
        out = nhwc(a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last))
    assert model.encoder.stem[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_compile_gives_the_same_flow_and_keeps_parameter_names():
    from mcjepa.train.precision import apply_compile

    model, a, b = _micro_pair()
    names = list(model.state_dict())
    try:
        with torch.no_grad():
            ref = model(a, b)
            apply_compile([model.encoder, model.flow_head], True, backend="aot_eager")
            out = model(a, b)
    finally:
        torch._dynamo.reset()  # compiled code and guards must not leak into later tests
    assert list(model.state_dict()) == names  # checkpoints and releases unchanged
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_the_streams_share_one_worker_budget():
    from mcjepa.train.data import stream_workers

    assert stream_workers(8, True, True) == (4, 4)
    assert stream_workers(5, True, True) == (3, 2)
    assert stream_workers(1, True, True) == (1, 0)
    assert stream_workers(6, False, True) == (0, 6)
    assert stream_workers(6, True, False) == (6, 0)


def test_a_stream_keeps_one_loader_across_epochs(monkeypatch):
    from mcjepa.data.samplers import ResumableDistributedSampler
    from mcjepa.train import streams

    made = []
    real = streams.DataLoader
    monkeypatch.setattr(streams, "DataLoader", lambda *a, **k: made.append(k) or real(*a, **k))
    data = torch.arange(10)
    stream = streams.ResumableStream(data, ResumableDistributedSampler(10, seed=0), 4, 0, 1)
    batches = [next(stream) for _ in range(7)]  # 2 batches an epoch (2 left over): 3.5 epochs
    assert len(made) == 1 and stream.state_dict() == {"epoch": 3, "consumed": 1}
    assert all(len(b) == 4 and len(set(b.tolist())) == 4 for b in batches)
    again = streams.ResumableStream(data, ResumableDistributedSampler(10, seed=0), 4, 0, 1)
    again.load_state_dict({"epoch": 2, "consumed": 1})
    assert [next(again).tolist() for _ in range(2)] == [b.tolist() for b in batches[5:7]]


def test_fp16_steps_go_through_the_gradient_scaler():
    """fp16 autocast (the V100 path; CPU autocast here): an overflowing step is skipped by the
    scaler, which halves its scale, without counting as a non-finite step; a later step trains."""
    from world_size_step import build_runner

    from mcjepa.train.precision import Precision

    runner, model, _ = build_runner(0, 0, Precision("fp16", "cpu", "test"))
    assert runner.scaler is not None
    before = {k: v.clone() for k, v in model.named_parameters()}
    scales, applied = [], None
    for step in range(20):
        losses = runner.run(step)
        scales.append(runner.scaler.get_scale())
        if losses is not None and math.isfinite(losses["grad_norm"]):
            applied = step
            break
    assert runner.nonfinite_total == 0  # overflows are the scaler's business
    assert applied is not None and scales[0] < 65536.0  # the first step overflowed at 2^16 and the scale fell
    assert any(not torch.equal(v, before[k]) for k, v in model.named_parameters())

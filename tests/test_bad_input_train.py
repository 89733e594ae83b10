"""Bad input and faults around training, flow files and frames. Each input below is
refused with a message naming the key, path or cause (no traceback from deep inside), or handled
as shown.

==========================================================  ==================================================================
input                                                       expected
==========================================================  ==================================================================
--set optim.lr_encoder=nan (any lr, weight decay, loss      ConfigError at load: "optim.lr_encoder must be a finite number
weight, epoch mark; negative or inf too)                    >= 0, got nan" (the key named)
run.checkpoint_every=-1, run.log_every=0, run.keep_last=-1  ConfigError naming the key and its minimum (checkpoint_every 0
run.max_nonfinite_in_row=0, run.max_steps=-5, ...           and keep_last 0 are documented: off / keep all)
--max-steps -5                                              exit 2: "--max-steps must be >= 1, got -5"
data.motion[0].crop = [8, 8] (also .size, data.content      ConfigError: "data.motion[0].crop = [8, 8]: height and width must
.size, data.eval_synthetic_size)                            be at least 32 pixels" (not an error about images at step 1)
--config notes.txt (not TOML; binary; a folder)             exit 2: "--config notes.txt: not a valid TOML file: ... (at line
                                                            1, column ...)"
--out an existing file / an unwritable folder               ConfigError: "--out F: is an existing file" / "cannot write the
                                                            run folder there (...)"
run.device=cuda without a GPU; cuda:7 with one GPU; "gpu"   ConfigError: "CUDA is not available on this machine; available
                                                            devices: cpu" / "no such GPU" / "expected auto, cpu, cuda..."
parameters (a BatchNorm statistic) go NaN mid-run           TrainingDiverged "parameters went non-finite by step 8 ... no
                                                            checkpoint written"; the last good checkpoint stays newest
losses NaN for run.max_nonfinite_in_row steps (lr 1e30)     exit 3: "training diverged: 3 non-finite losses or gradients in
                                                            a row at step 4 (steps 2-4 skipped; non-finite terms: [...])"
--resume with a changed model / data / schedule / loss /    ConfigError listing the keys; every "key: old -> new" printed;
optim / seed                                                --allow-config-change continues, with the new values in force
--resume with only run.* / num_workers / eval keys changed  resumes; the changes are printed
--resume, newest checkpoint truncated                       "falling back to ckpt_4", the bad file moved to *.corrupt; the
                                                            run still ends bit-identical to an uninterrupted one
--resume, every checkpoint unreadable                       ConfigError: "none of the checkpoints ... loads"
--resume after a crash past the checkpoint                  metrics.jsonl holds every step once; summary wall time counts
                                                            the time before the checkpoint too (stored in it)
stderr redirected to a file                                 plain "mcjepa-train: step k/N" lines every run.log_every steps,
                                                            no carriage return
DataLoader workers left at their default                    min(default, CPUs available) (eval --workers, data.num_workers)
16-bit grayscale PNG as a frame or image                    scaled from [0, 65535] (Pillow's convert clips it to white);
                                                            a float (mode F) image is refused
write_flo / write_kitti_flow with NaN or inf flow           ValueError "refusing to write non-finite flow"; no file written
mcjepa-flow -o DIR, -o x.xyz, a folder as FRAME, NaN flow   exit 2 before the model runs: "... is a folder", "unknown image
                                                            extension", "is a folder, not an image file", "non-finite flow"
==========================================================  ==================================================================
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import TINY, _params
from torch import nn

from mcjepa.train.checkpoint import latest_checkpoint
from mcjepa.train.config import ConfigError, load_config
from mcjepa.train.engine import Trainer, TrainingDiverged

CKPT = "ckpt_{:09d}.pt"


# ------------------------------------------------------------------------------ config values


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.lr_encoder=nan", "optim.lr_encoder"),
        ("optim.lr_flow_head=-1e-4", "optim.lr_flow_head"),
        ("optim.lr_expander=inf", "optim.lr_expander"),
        ("optim.end_lr=-inf", "optim.end_lr"),
        ("optim.weight_decay=nan", "optim.weight_decay"),
        ("optim.weight_decay=-1e-6", "optim.weight_decay"),
        ("optim.grad_clip=nan", "optim.grad_clip"),
        ("optim.betas=[0.9, 1.5]", "optim.betas[1]"),
        ("loss.alpha=nan", "loss.alpha"),
        ("loss.vicreg_var=-25", "loss.vicreg_var"),
        ("loss.cycle_weight=inf", "loss.cycle_weight"),
        ("loss.reg_weights_coarse_to_fine=[1.0, 1.0, 1.0, nan, 0.1, 0.01]", "loss.reg_weights_coarse_to_fine[3]"),
        ("schedule.epochs=nan", "schedule.epochs"),
        ("schedule.motion_start_epoch=-1", "schedule.motion_start_epoch"),
    ],
)
def test_nonfinite_or_negative_rates_and_weights_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config("demo", [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("run.checkpoint_every=-1", "run.checkpoint_every must be >= 0 (0: no checkpoints), got -1"),
        ("run.log_every=0", "run.log_every must be >= 1, got 0"),
        ("run.keep_last=-1", "run.keep_last must be >= 0 (0: keep all), got -1"),
        ("run.max_nonfinite_in_row=0", "run.max_nonfinite_in_row must be >= 1"),
        ("run.max_steps=-5", "run.max_steps must be >= 0"),
        ("run.threads=-2", "run.threads must be >= 0"),
        ("data.num_workers=-2", "data.num_workers must be >= -1"),
        ("schedule.steps_per_epoch=-3", "schedule.steps_per_epoch must be >= 0"),
    ],
)
def test_counts_out_of_range_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("demo", [override])


def test_checkpoint_every_zero_is_documented_as_off(tmp_path):
    cfg = load_config("demo", [*TINY, "run.checkpoint_every=0"])
    Trainer(cfg, tmp_path / "run").fit(max_steps=2)
    assert latest_checkpoint(tmp_path / "run") is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ('data.motion=[{name = "synthetic", num_pairs = 8, size = [8, 8]}]', "data.motion[0].size = [8, 8]"),
        (
            'data.motion=[{name = "synthetic", num_pairs = 8, size = [64, 64]}, '
            '{name = "sintel", root = "/nowhere", crop = [8, 8]}]',
            "data.motion[1].crop = [8, 8]",
        ),
        ('data.content={type = "synthetic", size = 8}', "data.content.size = 8"),
        ("data.eval_synthetic_size=[16, 64]", "data.eval_synthetic_size = [16, 64]"),
    ],
)
def test_crops_smaller_than_the_model_minimum_name_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(key) + ".*at least 32 pixels"):
        load_config("demo", [override])


# ------------------------------------------------------------------------------ CLI arguments


def _cli(argv):
    from mcjepa.cli.train import main

    return main(argv)


def _sets(*extra):
    return [a for s in (*TINY, *extra) for a in ("--set", s)]


def test_negative_max_steps_is_refused(tmp_path, capsys):
    assert _cli(["--config", "demo", *_sets(), "--out", str(tmp_path / "r"), "--max-steps", "-5"]) == 2
    assert "--max-steps must be >= 1, got -5" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name: demo\nepochs: 3\n", r"notes\.txt: not a valid TOML file: .*line 1, column"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", r"notes\.txt: not a TOML file \(not UTF-8 text"),
        (None, r"notes\.txt: is a folder, not a TOML file"),
    ],
)
def test_a_config_that_is_not_toml_is_named_with_the_parse_problem(tmp_path, capsys, content, message):
    path = tmp_path / "notes.txt"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    assert _cli(["--config", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err


@pytest.fixture
def unwritable_dir(tmp_path):
    """A run folder that cannot be created: under a read-only folder, or (as root, who ignores
    permissions) under /sys, which refuses new entries."""
    if getattr(os, "geteuid", lambda: 1)() != 0:
        parent = tmp_path / "read-only"
        parent.mkdir()
        parent.chmod(0o500)
        yield parent / "run"
        parent.chmod(0o700)
        return
    target = Path("/sys/mcjepa-test-run")
    try:
        target.mkdir()
    except OSError:
        yield target
        return
    target.rmdir()
    pytest.skip("running as root and /sys accepts new folders here, so no folder refuses writes to test against")


def test_out_pointing_at_a_file_or_an_unwritable_folder(tmp_path, unwritable_dir):
    cfg = load_config("demo", TINY)
    file = tmp_path / "notes.txt"
    file.write_text("x")
    with pytest.raises(ConfigError, match=re.escape(f"--out {file}: is an existing file, not a folder")):
        Trainer(cfg, file)
    with pytest.raises(ConfigError, match=re.escape(f"--out {unwritable_dir}: cannot write the run folder there")):
        Trainer(cfg, unwritable_dir)


@pytest.mark.parametrize(
    ("device", "gpus", "message"),
    [
        ('"cuda"', 0, "run.device='cuda' but CUDA is not available on this machine; available devices: cpu"),
        ('"cuda:7"', 1, "run.device='cuda:7': no such GPU; available devices: cpu, cuda:0"),
        ('"gpu"', 0, "run.device='gpu': expected auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_a_device_the_machine_lacks_lists_the_available_ones(tmp_path, monkeypatch, device, gpus, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    cfg = load_config("demo", [*TINY, f"run.device={device}"])
    with pytest.raises(ConfigError, match=re.escape(message)):
        Trainer(cfg, tmp_path / "run")


# ------------------------------------------------------------------------------ non-finite training


def test_nonfinite_parameters_stop_the_run_without_writing_a_checkpoint(tmp_path):
    """A NaN BatchNorm statistic leaves the training loss finite (batch statistics are used in
    training), so only a look at the parameters catches it: the checkpoint of step 8 is not
    written and step 4's stays the newest."""
    cfg = load_config("demo", [*TINY, "run.log_every=1000"])  # no periodic check: the save itself refuses
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit(max_steps=4)
    bn = next(m for m in trainer.model.expander.modules() if isinstance(m, nn.BatchNorm1d))
    with torch.no_grad():
        bn.running_mean.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"non-finite by step 8: .*running_mean.*no checkpoint written"):
        trainer.fit()
    assert latest_checkpoint(tmp_path / "run").name == CKPT.format(4)
    state = torch.load(tmp_path / "run" / "checkpoints" / CKPT.format(4), weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_periodic_check_stops_at_the_next_log_step(tmp_path):
    trainer = Trainer(load_config("demo", [*TINY, "run.log_every=3"]), tmp_path / "run")
    trainer.fit(max_steps=1)
    bn = next(m for m in trainer.model.expander.modules() if isinstance(m, nn.BatchNorm1d))
    with torch.no_grad():
        bn.running_var.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match=r"non-finite by step 3: .*running_var.*training stopped"):
        trainer.fit()
    assert latest_checkpoint(tmp_path / "run").name == CKPT.format(1)  # the end-of-fit save of step 1


def test_diverging_losses_exit_3_with_the_steps_and_terms(tmp_path, capsys):
    out = tmp_path / "run"
    rc = _cli(
        [
            "--config",
            "demo",
            *_sets("optim.lr_encoder=1e30", "optim.lr_expander=1e30", "run.max_nonfinite_in_row=3"),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "mcjepa-train: training diverged: 3 non-finite losses or gradients in a row at step" in err
    assert re.search(r"steps \d+-\d+ skipped; non-finite terms: \[.*'total'", err)
    assert "Traceback" not in err
    assert latest_checkpoint(out) is None  # diverged before the first checkpoint: none written


# ------------------------------------------------------------------------------ resume


def _first_run(tmp_path, steps=4, *extra):
    out = tmp_path / "run"
    Trainer(load_config("demo", [*TINY, *extra]), out).fit(max_steps=steps)
    return out


@pytest.mark.parametrize(
    ("override", "old", "new"),
    [
        ("model.encoder.drop_path_rate=0.1", "<unset>", "0.1"),
        ("data.motion_batch_size=4", "2", "4"),
        ('data.content={type = "synthetic", num_images = 64, image_size = [48, 48], size = 48}', "32", "48"),
        ("schedule.epochs=4", "3.0", "4.0"),
        ("optim.lr_encoder=0.002", "0.001", "0.002"),
        ("loss.alpha=0.5", "1.0", "0.5"),
        ("run.seed=1", "0", "1"),
    ],
)
def test_resume_refuses_a_changed_config_unless_allowed(tmp_path, capsys, override, old, new):
    out = _first_run(tmp_path)
    key = override.split("=")[0]
    cfg = load_config("demo", [*TINY, override])
    with pytest.raises(ConfigError, match="--allow-config-change"):
        Trainer(cfg, out, resume=True)
    printed = capsys.readouterr().out
    assert re.search(re.escape(key) + r"[.\w]*: " + re.escape(old) + " -> " + re.escape(new), printed), printed
    resumed = Trainer(cfg, out, resume=True, allow_config_change=True)
    assert resumed.step == 4
    assert "continuing with the changed config" in capsys.readouterr().out
    if key == "optim.lr_encoder":  # the new value is in force, not the checkpoint's
        assert resumed.optimizer.param_groups[0]["base_lr"] == 0.002


def test_resume_accepts_run_settings_and_prints_them(tmp_path, capsys):
    out = _first_run(tmp_path)
    cfg = load_config("demo", [*TINY, "run.log_every=2", "data.num_workers=1", "data.eval_synthetic_pairs=4"])
    resumed = Trainer(cfg, out, resume=True)
    assert resumed.step == 4
    printed = capsys.readouterr().out
    assert "run.log_every: 1 -> 2" in printed and "data.num_workers: 0 -> 1" in printed
    assert "[changes the run]" not in printed


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_newest_checkpoint_falls_back_and_still_resumes_exactly(tmp_path, capsys):
    cfg = load_config("demo", [*TINY, "model.encoder.drop_path_rate=0.2"])
    full = Trainer(cfg, tmp_path / "full")
    full.fit()
    reference = _params(full)

    out = tmp_path / "split"
    Trainer(cfg, out).fit(max_steps=8)  # checkpoints 4 and 8
    _truncate(out / "checkpoints" / CKPT.format(8))  # e.g. a full disk while copying the run
    capsys.readouterr()
    resumed = Trainer(cfg, out, resume=True)
    printed = capsys.readouterr().out
    assert resumed.step == 4
    assert f"could not load checkpoint {out / 'checkpoints' / CKPT.format(8)}" in printed
    assert f"falling back to {out / 'checkpoints' / CKPT.format(4)}, the newest intact checkpoint" in printed
    assert (out / "checkpoints" / (CKPT.format(8) + ".corrupt")).is_file()
    resumed.fit()
    for key, value in _params(resumed).items():
        assert torch.equal(value, reference[key]), key


def test_resume_with_no_readable_checkpoint_says_so(tmp_path):
    out = _first_run(tmp_path)
    _truncate(out / "checkpoints" / CKPT.format(4))
    with pytest.raises(ConfigError, match="none of the checkpoints .* loads"):
        Trainer(load_config("demo", TINY), out, resume=True)


def test_resume_truncates_the_metrics_and_carries_the_wall_time(tmp_path):
    """Crash after step 6 with the checkpoint of step 4: the records of steps 5 and 6 must not
    appear twice, and the summary's wall time includes the 4 steps before the checkpoint."""
    out = _first_run(tmp_path, 6)
    (out / "checkpoints" / CKPT.format(6)).unlink()
    ckpt = out / "checkpoints" / CKPT.format(4)
    state = torch.load(ckpt, weights_only=True)
    assert 0 < state["elapsed_s"] < 60
    state["elapsed_s"] = 1000.0  # a long first session, to tell the sums apart
    torch.save(state, ckpt)
    summary = Trainer(load_config("demo", TINY), out, resume=True).fit(max_steps=8)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    assert 1000.0 < summary["wall_time_s"] < 1100.0


# ------------------------------------------------------------------------------ progress in logs


def test_progress_is_plain_lines_when_stderr_is_a_file(tmp_path):
    log = tmp_path / "stderr.log"
    cmd = [sys.executable, "-m", "mcjepa.cli.train", "--config", "demo", "--out", str(tmp_path / "run")]
    cmd += _sets("run.log_every=3")  # 12 steps: lines at 3, 6, 9, 12
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as fh:
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, timeout=300, env=env)
    err = log.read_text()
    assert result.returncode == 0, err[-3000:]
    assert "\r" not in err
    lines = err.splitlines()
    progress = [line for line in lines if line.startswith("mcjepa-train: step ")]
    assert [line.split()[2] for line in progress] == ["3/12", "6/12", "9/12", "12/12"]
    assert len(lines) <= len(progress) + 2, lines  # nothing else floods it
    assert "total" in progress[-1] and "steps/s" in progress[-1]


# ------------------------------------------------------------------------------ DataLoader workers


def test_default_worker_counts_follow_the_cpus(monkeypatch):
    from mcjepa.cli.eval import build_parser
    from mcjepa.data import workers
    from mcjepa.train.data import build_content_stream
    from mcjepa.train.distributed import DistInfo

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert workers.available_cpus() == 2
    assert workers.resolve_num_workers(None) == 2  # not 4: PyTorch's "suggested max is 2"
    assert workers.resolve_num_workers(workers.AUTO, default=8) == 2
    assert workers.resolve_num_workers(None, processes=4) == 1
    assert workers.resolve_num_workers(0) == 0 and workers.resolve_num_workers(6) == 6  # explicit: as given
    parser = build_parser()
    assert parser.parse_args(["probe", "--dataset", "idx"]).workers is None
    assert parser.parse_args(["segmentation", "--dataset", "voc", "--root", "x"]).workers is None
    cfg = load_config("demo", [*TINY, "data.num_workers=-1"])
    assert load_config("paper").data.num_workers == workers.AUTO
    stream, _ = build_content_stream(cfg, DistInfo(rank=0, world_size=1, local_rank=0))
    assert stream.num_workers == 1  # the 2 CPUs are one budget, shared with the motion stream
    motion_off = load_config("demo", [*TINY, "data.num_workers=-1", "schedule.motion_enabled=false"])
    stream, _ = build_content_stream(motion_off, DistInfo(rank=0, world_size=1, local_rank=0))
    assert stream.num_workers == 2


# ------------------------------------------------------------------------------ images and flow files


def _png16(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # Pillow's 16-bit grayscale
    return path


def _readers():
    from mcjepa.cli.flow import _read_image
    from mcjepa.data.content import ImageFiles
    from mcjepa.data.motion import _to_float_image
    from mcjepa.flow.inputs import _single_to_tensor

    return {
        "mcjepa-flow frame": lambda p: np.asarray(_read_image(str(p))),
        "flow.estimate PIL input": lambda p: _single_to_tensor(Image.open(p), "image1").permute(1, 2, 0).numpy(),
        "motion frame": lambda p: (_to_float_image(Image.open(p), "x") * 255).round().byte().permute(1, 2, 0).numpy(),
        "content image folder": lambda p: np.asarray(ImageFiles(p.parent)[0]),
    }


@pytest.mark.parametrize(
    "reader", ["mcjepa-flow frame", "flow.estimate PIL input", "motion frame", "content image folder"]
)
def test_16bit_png_is_scaled_not_clipped(tmp_path, reader):
    ramp = np.linspace(0, 65535, 48 * 40).reshape(40, 48)
    path = _png16(tmp_path / "frame.png", ramp)
    rgb = _readers()[reader](path)
    assert rgb.shape == (40, 48, 3) and rgb.dtype == np.uint8
    expected = np.round(ramp / 257).astype(np.int64)
    assert np.abs(rgb[..., 0].astype(np.int64) - expected).max() <= 1
    assert (rgb == 255).mean() < 0.01  # Pillow's convert("RGB") makes ~99% of them white


def test_float_images_are_refused_as_frames():
    from mcjepa.utils.media import to_rgb

    with pytest.raises(ValueError, match="floating-point image"):
        to_rgb(Image.fromarray(np.full((8, 8), 0.5, np.float32)), "f.tif")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_flow_writers_refuse_nonfinite_flow(tmp_path, bad):
    from mcjepa.flow.files import write_flo, write_kitti_flow

    flow = torch.zeros(2, 4, 5)
    flow[1, 2, 3] = bad
    for writer, name in ((write_flo, "f.flo"), (write_kitti_flow, "f.png")):
        with pytest.raises(ValueError, match=r"refusing to write non-finite flow .*1 of 20 pixels.*row 2, column 3"):
            writer(tmp_path / name, flow)
        assert not (tmp_path / name).exists()
    valid = torch.ones(4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="non-finite"):
        write_kitti_flow(tmp_path / "f.png", flow, valid)
    valid[2, 3] = False  # marked invalid: stored as invalid, as the format allows
    write_kitti_flow(tmp_path / "f.png", flow, valid)


@pytest.fixture
def flow_cli(model, monkeypatch):
    from mcjepa import flow

    calls = []

    def fake_load(weights=None, **kwargs):
        calls.append(weights)
        return model

    monkeypatch.setattr(flow, "load", fake_load)
    return calls


def _flow_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("mcjepa-flow: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_flow_cli_output_folder_and_folder_frames_are_refused_before_the_model_runs(tmp_path, capsys, flow_cli):
    from mcjepa.cli.flow import main

    assert main(["-o", str(tmp_path)]) == 2
    assert f"-o {tmp_path} is a folder; give a file name" in _flow_error(capsys)
    assert main(["--save-flo", str(tmp_path)]) == 2
    assert f"--save-flo {tmp_path} is a folder" in _flow_error(capsys)
    assert main(["-o", str(tmp_path / "flow.xyz")]) == 2
    assert "unknown image extension '.xyz'" in _flow_error(capsys)
    assert flow_cli == []  # no model was loaded for any of them
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    (tmp_path / "frames").mkdir()
    assert main([str(tmp_path / "frames"), str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png")]) == 2
    assert "frames: is a folder, not an image file" in _flow_error(capsys)


def test_flow_cli_refuses_to_write_nonfinite_flow(tmp_path, capsys, flow_cli, monkeypatch):
    from mcjepa import flow
    from mcjepa.cli.flow import main

    monkeypatch.setattr(flow, "estimate", lambda a, b, m, bf16=False: torch.full((2, 96, 128), float("nan")))
    out, flo = tmp_path / "o.png", tmp_path / "o.flo"
    assert main(["-o", str(out), "--save-flo", str(flo)]) == 2
    assert "non-finite flow (24576 of 24576 values" in _flow_error(capsys)
    assert not out.exists() and not flo.exists()

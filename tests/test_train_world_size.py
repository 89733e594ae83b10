"""Global batches on any number of processes: the batch arithmetic of the README's commands, and
one step on 1 process against 2 (torchrun, Gloo) and against gradient accumulation."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from world_size_step import one_step

from mcjepa.train.batching import split_batch
from mcjepa.train.build import step_split
from mcjepa.train.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_split_divides_the_global_batch_with_the_fewest_micro_batches():
    s = split_batch(384, 1, 96, "data.content_batch_size", "data.content_max_per_device")
    assert (s.per_rank, s.micro, s.accumulation) == (384, 96, 4)
    s = split_batch(384, 8, 96, "data.content_batch_size", "data.content_max_per_device")
    assert (s.per_rank, s.micro, s.accumulation) == (48, 48, 1)
    s = split_batch(384, 1, 100, "k", "cap")  # 384 / 4 = 96 <= 100
    assert (s.micro, s.accumulation) == (96, 4)
    s = split_batch(8, 1, 3, "k", "cap")  # ceil(8 / 3) = 3 does not divide 8: 4 micro-batches of 2
    assert (s.micro, s.accumulation) == (2, 4)
    s = split_batch(384, 16, 0, "k", "cap")  # no cap: one pass
    assert (s.per_rank, s.micro, s.accumulation) == (24, 24, 1)
    assert s.world_size * s.accumulation * s.micro == s.global_batch


def test_a_world_size_that_cannot_give_the_batch_names_the_key():
    with pytest.raises(
        ConfigError, match=r"data.motion_batch_size = 8 cannot be shared by 16 processes.*multiple of 16"
    ):
        step_split(load_config("paper"), 16)
    with pytest.raises(ConfigError, match="data.content_max_per_device must be >= 0"):
        split_batch(8, 1, -1, "data.content_batch_size", "data.content_max_per_device")


def _readme_command(marker: str) -> list[str]:
    """The ``--set`` values of the README command that follows ``marker``."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(marker) :].split("```")[1]
    words = block.replace("\\\n", " ").split()
    return [words[i + 1].strip("'\"") for i, w in enumerate(words) if w == "--set"]


@pytest.mark.parametrize(
    ("marker", "world", "expected"),
    [
        ("<!-- command: paper-1gpu -->", 1, ((384, 96, 4), (8, 2, 4))),
        ("<!-- command: paper-8gpu -->", 8, ((48, 48, 1), (1, 1, 1))),
        ("<!-- command: paper-2node -->", 16, ((24, 24, 1), (1, 1, 1))),
    ],
)
def test_the_readme_commands_pass_the_batch_arithmetic(marker, world, expected):
    """The README's one-GPU, 8-GPU and 2-node (16-process) commands: the config they give is
    valid and shares each global batch as stated there."""
    sets = [s for s in _readme_command(marker) if not s.startswith(("data.content.root", "data.motion["))]
    cfg = load_config("paper", sets)
    split = step_split(cfg, world)
    got = tuple((s.per_rank, s.micro, s.accumulation) for s in (split.content, split.motion))
    assert got == expected
    assert split.content.global_batch == 384  # the paper's content batch on every world size


def _close(a: dict, b: dict, what: str, rtol: float, atol: float) -> None:
    assert set(a) == set(b), f"{what}: {sorted(set(a) ^ set(b))}"
    for key, value in a.items():
        other = b[key]
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(other, value, rtol=rtol, atol=atol, msg=lambda m, k=key: f"{what} {k}: {m}")
        else:
            assert other == pytest.approx(value, rel=rtol, abs=atol), f"{what} {key}"


def _same_step(ref: tuple[dict, dict], other: tuple[dict, dict]) -> None:
    """The same losses, gradients (as AdamW received them), parameters and BatchNorm statistics
    after the step, to float64 rounding (the runs are in float64)."""
    (ref_losses, ref_state), (losses, state) = ref, other
    # (the logged losses are float32)
    _close({k: ref_losses[k] for k in LOSS_KEYS}, {k: losses[k] for k in LOSS_KEYS}, "loss", 1e-6, 1e-9)
    grads = {k for k in ref_state if k.startswith("grad/")}
    assert len(grads) > 50  # every trained parameter
    _close({k: ref_state[k] for k in grads}, {k: state[k] for k in grads}, "gradient", 1e-9, 1e-12)
    rest = set(ref_state) - grads
    _close({k: ref_state[k] for k in rest}, {k: state[k] for k in rest}, "state", 1e-9, 1e-12)


LOSS_KEYS = ("ssl", "ssl_inv", "ssl_var", "ssl_cov", "reg", "rec", "smooth", "cycle", "vc", "motion", "total")


def test_gradient_accumulation_trains_the_same_step():
    """One process: the whole batch in one pass against 4 content and 2 motion micro-batches (the
    expander's BatchNorm, VICReg and L_vc still see the whole batch)."""
    ref = one_step(0, 0)
    _same_step(ref, one_step(2, 2))
    ref_state = ref[1]
    # the step moved the parameters (the comparison is not between two untouched models)
    assert any(not torch.equal(v, one_step_untrained()[k]) for k, v in ref_state.items() if "weight" in k)


_UNTRAINED: dict = {}


def one_step_untrained() -> dict:
    """The model's state before the step (same construction as :func:`one_step`)."""
    if not _UNTRAINED:
        from world_size_step import SETTINGS

        from mcjepa.train.build import build_model
        from mcjepa.train.distributed import DistInfo

        cfg = load_config("demo", SETTINGS)
        torch.manual_seed(0)
        model = build_model(cfg.model.resolve(), DistInfo(0, 1, 0), torch.device("cpu"))
        with torch.no_grad():
            for p in model.flow_head.parameters():
                if not p.any():
                    p.normal_(0.0, 0.05)
        _UNTRAINED.update({k: v.clone() for k, v in model.state_dict().items()})
    return _UNTRAINED


@pytest.mark.parametrize(("content_cap", "motion_cap", "port"), [(0, 0, 29741), (2, 1, 29742)])
def test_two_processes_train_the_same_step_as_one(tmp_path, content_cap, motion_cap, port):
    """torchrun with 2 processes (Gloo), each with half the global batch (and, in the second case,
    2 content and 2 motion micro-batches each), against one process with the whole batch: the
    same losses and the same parameters and BatchNorm statistics after the step."""
    out = tmp_path / "rank0.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    cmd += ["-m", "tests.world_size_step", str(out), str(content_cap), str(motion_cap)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Grad strides do not match" not in result.stderr  # DDP's buckets fit every gradient
    two = torch.load(out, weights_only=True)
    _same_step(one_step(0, 0), (two["losses"], two["state"]))


def test_per_image_masked_means_do_not_depend_on_the_other_images():
    """loss.masked_mean = "image": a batch's L_rec is the mean of its halves' (any split gives the
    same objective); "batch" weighs images by their kept pixels, so a split changes it."""
    from mcjepa.train.losses import photometric_loss

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 3, 16, 16, generator=g), torch.rand(4, 3, 16, 16, generator=g)
    keep = torch.tensor([0.1, 0.5, 0.9, 0.3]).view(4, 1, 1, 1)
    mask = (torch.rand(4, 1, 16, 16, generator=g) > keep).float()
    for per, same in (("image", True), ("batch", False)):
        whole = photometric_loss(a, b, mask, masked_mean=per)
        halves = torch.stack(
            [photometric_loss(a[i : i + 2], b[i : i + 2], mask[i : i + 2], masked_mean=per) for i in (0, 2)]
        )
        assert torch.allclose(whole, halves.mean()) == same, per

"""The thread rule every command shares (mcjepa.utils.threads) and progress that suits a pipe
(mcjepa.utils.progress): lines, no carriage returns, a bounded number of them."""

from __future__ import annotations

import io
import json

import pytest
import torch

from mcjepa.utils import progress as progress_module
from mcjepa.utils import threads
from mcjepa.utils.progress import progress_bar


def test_thread_rule_explicit_then_env_then_half_the_cpus(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.resolve_threads() == (4, "default: half of 8 CPUs")
    assert threads.resolve_threads(0) == (4, "default: half of 8 CPUs")  # run.threads = 0
    monkeypatch.setattr(threads, "available_cpus", lambda: 1)
    assert threads.resolve_threads()[0] == 1  # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.resolve_threads() == (3, "OMP_NUM_THREADS")
    assert threads.resolve_threads(2) == (2, "--threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='many': expected a positive integer"):
        threads.resolve_threads()
    with pytest.raises(ValueError, match="positive integer"):
        threads.resolve_threads(-1)
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == (1, "--threads") and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_pipe_progress_is_one_line_per_ten_percent():
    out = io.StringIO()
    for _ in progress_bar(range(1000), desc="job", unit="pair", file=out):
        pass
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 10
    assert lines[0].startswith("job: 100/1000 pair (10%)") and lines[-1].startswith("job: 1000/1000 pair (100%)")


def test_pipe_progress_without_a_total_is_timed_and_closes_with_a_line(monkeypatch):
    out = io.StringIO()
    bar = progress_bar(desc="dl", unit="B", file=out)
    bar.update(5)
    bar.update(5)
    assert out.getvalue() == ""  # less than LINE_SECONDS: no line yet
    monkeypatch.setattr(progress_module, "LINE_SECONDS", 0.0)
    bar.update(5)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dl: 15B") and "\r" not in out.getvalue()
    quiet = io.StringIO()
    bar = progress_bar(total=3, file=quiet, enabled=False)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""


def test_train_threads_option_sets_run_threads(capsys):
    from mcjepa.cli.train import main

    assert main(["--config", "demo", "--threads", "3", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["threads"] == 3
    assert main(["--config", "demo", "--threads", "0", "--print-config"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_eval_progress_in_a_pipe_has_no_carriage_returns(tmp_path, capsys, monkeypatch):
    from fixtures_flow import random_flow, random_frames, write_sintel

    from mcjepa.cli.eval import main

    write_sintel(
        tmp_path / "data", {"alley": (random_frames(3, 40, 56), [random_flow(40, 56, seed=s) for s in (1, 2)])}
    )
    argv = ["flow", "--dataset", "sintel-clean", "--root", str(tmp_path / "data"), "--device", "cpu",
            "--weights", "random", "--variant", "micro", "--threads", "1"]  # fmt: skip
    before = torch.get_num_threads()
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert "\r" not in err and "flow eval: 2/2 pair (100%)" in err

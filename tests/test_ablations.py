"""benchmarks.ablations: the grid's overrides load, --quick runs end to end, reruns resume."""

from __future__ import annotations

import json

import pytest

from benchmarks import ablations
from mcjepa.train.config import load_config


@pytest.mark.parametrize("cell", ablations.CELLS, ids=lambda c: c.name)
def test_every_cell_config_loads(cell):
    for quick in (False, True):
        cfg = load_config("demo", ablations.cell_config_overrides(cell, seed=1, quick=quick))
        assert cfg.run.seed == 1
    assert cell.paper and cell.row and cell.table


def test_grid_is_consistent():
    names = [c.name for c in ablations.CELLS]
    assert len(names) == len(set(names))
    assert "baseline" in names
    for c in ablations.CELLS:
        assert c.table in ablations.TABLE_ORDER
        assert set(c.expect) <= {ablations.EPE, ablations.KNN}
        assert set(c.expect.values()) <= {"worse", "better", "similar", "crash"}
    # the Table 11 warm-ups 0 / 1 / 2 paper epochs, scaled by 10/100 after motion starts at 1
    starts = {c.name: load_config("demo", list(c.overrides)).schedule.vc_start_epoch for c in ablations.CELLS}
    assert (starts["vc_all_warmup0"], starts["baseline"], starts["vc_all_warmup2"]) == (1.0, 1.1, 1.2)


EXPECTED_COLUMNS = (
    "| cell | paper row | seeds | diverged | EPE (zero flow) | real-texture EPE (zero flow) | k-NN (random) "
    "| nonfinite steps | l5 frame_diff / within | wall s | paper | verdict EPE | verdict real-texture EPE "
    "| verdict k-NN |"
)


def test_quick_runs_and_resumes(tmp_path, capsys):
    assert (
        ablations.main(["--out-dir", str(tmp_path), "--seeds", "0", "--quick", "--cells", "baseline", "--jobs", "1"])
        == 0
    )
    first = ablations.result_path(tmp_path, "baseline", 0)
    before = (first.stat().st_mtime_ns, first.read_bytes())
    rec = json.loads(before[1])
    assert rec["diverged"] is False and rec["error"] is None
    keys = ("trained_epe", "trained_zero_flow_epe", "real_texture_epe", "real_texture_zero_flow_epe")
    for key in (*keys, "shapes_knn", "shapes_knn_random", "wall_time_s"):
        assert isinstance(rec[key], float), key
    assert rec["nonfinite_skipped"] == 0
    assert set(rec["collapse"]) == {f"diag_l{i}_{m}" for i in (3, 4, 5) for m in ("frame_diff", "within")}

    args = ["--out-dir", str(tmp_path), "--seeds", "0", "--quick", "--cells", "baseline", "featnorm_l2", "--jobs", "1"]
    assert ablations.main(args) == 0
    out = capsys.readouterr().out
    assert "1 done, 1 to run" in out and "about" in out and "elapsed" in out
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before  # not rewritten
    assert ablations.result_path(tmp_path, "featnorm_l2", 0).exists()

    md = (tmp_path / "ablations.md").read_text()
    assert EXPECTED_COLUMNS in md
    assert "**Rule.**" in md and "## Table 3 (flow estimator)" in md
    assert "`baseline`" in md and "`featnorm_l2`" in md
    assert "Table 3: KITTI 6.21, ISeg 53.2, VSeg 47.9" in md
    data = json.loads((tmp_path / "ablations.json").read_text())
    assert set(data["cells"]) == {"baseline", "featnorm_l2"}
    # one seed: no spread, so no directional verdict
    assert data["cells"]["featnorm_l2"]["verdict"] == {
        "epe": "inconclusive (one seed)",
        "rt_epe": "inconclusive (one seed)",
        "knn": "inconclusive (one seed)",
    }


def test_parallel_jobs_match_serial(tmp_path):
    """--jobs 2 trains cells in two processes; each cell's result is the one a serial run gives
    (one fixed thread count per run)."""
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    common = ["--seeds", "0", "--quick", "--cells", "baseline", "featnorm_l2", "--set", "run.threads=1"]
    assert ablations.main(["--out-dir", str(serial), *common, "--jobs", "1"]) == 0
    assert ablations.main(["--out-dir", str(parallel), *common, "--jobs", "2"]) == 0
    for cell in ("baseline", "featnorm_l2"):
        a = json.loads(ablations.result_path(serial, cell, 0).read_text())
        b = json.loads(ablations.result_path(parallel, cell, 0).read_text())
        for key in ("trained_epe", "real_texture_epe", "shapes_knn"):
            assert a[key] == b[key], (cell, key)


def test_earlier_results_get_the_real_texture_epe(tmp_path, capsys):
    """A result written before the real-texture measure existed gets it from its run's checkpoint
    on the next run, and the value is the one a fresh cell records."""
    args = ["--out-dir", str(tmp_path), "--seeds", "0", "--quick", "--cells", "baseline", "--jobs", "1"]
    assert ablations.main(args) == 0
    path = ablations.result_path(tmp_path, "baseline", 0)
    fresh = json.loads(path.read_text())
    old = {k: v for k, v in fresh.items() if not k.startswith("real_texture")}
    path.write_text(json.dumps(old))
    capsys.readouterr()
    assert ablations.main(args) == 0
    assert "added the real-texture EPE to 1 earlier result" in capsys.readouterr().out
    again = json.loads(path.read_text())
    assert again["real_texture_epe"] == fresh["real_texture_epe"]
    assert again["trained_epe"] == fresh["trained_epe"]


def test_bad_jobs_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ablations.main(["--out-dir", str(tmp_path), "--quick", "--jobs", "0"])
    assert "--jobs must be 1 or more" in capsys.readouterr().err


def test_killed_cell_restarts(tmp_path):
    """A run folder without a result (a killed cell) is resumed or restarted, not skipped."""
    run_dir = tmp_path / "runs" / "baseline__seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "junk.txt").write_text("left by a killed run")
    assert ablations.main(["--out-dir", str(tmp_path), "--seeds", "0", "--quick", "--cells", "baseline"]) == 0
    assert json.loads(ablations.result_path(tmp_path, "baseline", 0).read_text())["diverged"] is False


def test_cell_without_result_resumes_from_checkpoint(tmp_path):
    """A finished run whose result JSON is missing (killed between the two) resumes from its
    checkpoint instead of training again."""
    args = ["--out-dir", str(tmp_path), "--seeds", "0", "--quick", "--cells", "baseline"]
    assert ablations.main(args) == 0
    path = ablations.result_path(tmp_path, "baseline", 0)
    first = json.loads(path.read_text())
    path.unlink()
    assert ablations.main(args) == 0
    again = json.loads(path.read_text())
    assert again.get("resumed") is True and again["diverged"] is False
    assert again["trained_epe"] == first["trained_epe"]


def test_unloadable_checkpoints_start_again(tmp_path):
    args = ["--out-dir", str(tmp_path), "--seeds", "0", "--quick", "--cells", "baseline"]
    assert ablations.main(args) == 0
    path = ablations.result_path(tmp_path, "baseline", 0)
    path.unlink()
    for ckpt in (tmp_path / "runs" / "baseline__seed0" / "checkpoints").iterdir():
        ckpt.write_bytes(b"truncated by a kill")
    assert ablations.main(args) == 0
    again = json.loads(path.read_text())
    assert "resumed" not in again and again["diverged"] is False


def _rec(cell, seed, epe, knn, diverged=False, rt=None):
    rec = {"cell": cell, "seed": seed, "trained_epe": epe, "shapes_knn": knn, "diverged": diverged}
    return rec if rt is None else {**rec, "real_texture_epe": rt}


def test_verdicts():
    records = [
        _rec("baseline", 0, 2.0, 0.50, rt=5.0),
        _rec("baseline", 1, 2.1, 0.52, rt=5.1),
        _rec("featnorm_l2", 0, 3.0, 0.40, rt=4.0),  # worse on both, beyond the spread: agrees
        _rec("featnorm_l2", 1, 3.2, 0.41, rt=4.05),  # but better on real texture: disagrees
        _rec("channel_c1", 0, 2.05, 0.51),  # similar: within the spread
        _rec("channel_c1", 1, 2.08, 0.515),
        _rec("vc_off", 0, 2.0, 0.60),  # better content, paper says worse: disagrees
        _rec("vc_off", 1, 2.0, 0.61),
        _rec("sampling_epoch_alternation", 0, 2.5, 0.50),  # seeds disagree in sign: inconclusive
        _rec("sampling_epoch_alternation", 1, 1.6, 0.52),
        _rec("layernorm_off", 0, None, None, diverged=True),
        _rec("layernorm_off", 1, None, None, diverged=True),
    ]
    _, data = ablations.build_table(records)
    v = {n: c["verdict"] for n, c in data["cells"].items()}
    assert v["featnorm_l2"] == {"epe": "agrees", "rt_epe": "disagrees", "knn": "agrees"}
    assert data["cells"]["featnorm_l2"]["paired_diff"]["rt_epe"] == pytest.approx([-1.0, -1.05])
    assert v["channel_c1"] == {
        "epe": "agrees (within spread)",
        "rt_epe": "not measured",
        "knn": "agrees (within spread)",
    }
    assert v["vc_off"]["epe"] == "no paper claim" and v["vc_off"]["knn"] == "disagrees"
    assert v["sampling_epoch_alternation"]["epe"] == "inconclusive"
    assert v["layernorm_off"]["epe"] == v["layernorm_off"]["rt_epe"] == "agrees (diverged)"


def test_grid_measures_the_papers_balance_whatever_the_demo_ships():
    """The grid pins alpha = 0.1 and L_reg on features and flows (the paper's), before each cell's
    own keys: `alpha_1` still gets alpha = 1, and a change of the demo's balance leaves the grid's
    published results reproducible."""
    cells = {c.name: c for c in ablations.CELLS}
    base = load_config("demo", ablations.cell_config_overrides(cells["baseline"], seed=0, quick=False))
    assert (base.loss.alpha, base.loss.reg_gradient) == (0.1, "both")
    alpha = load_config("demo", ablations.cell_config_overrides(cells["alpha_1"], seed=0, quick=False))
    assert (alpha.loss.alpha, alpha.loss.reg_gradient) == (1.0, "both")

"""DAVIS label propagation: the propagation rule on hand-made features, and the full path on a tiny
DAVIS 2017 tree where identical frames must propagate the masks perfectly (J = F = 1)."""

import json

import numpy as np
import pytest
import torch
from fixtures_eval import write_davis

from mcjepa.cli.eval import main
from mcjepa.eval.davis import LabelPropagator, PropagationConfig, evaluate_davis, propagate_sequence, score_sequence
from mcjepa.model import build_model


def _position_features(h, w, shift):
    """One-hot position codes of the content: cell (y, x) of frame t shows content at column x - shift."""
    feats = torch.zeros(h * w, h, w)
    for y in range(h):
        for x in range(w):
            feats[y * w + (x - shift) % w, y, x] = 1.0
    return feats


def test_labels_follow_matching_features():
    h, w = 4, 6
    labels = torch.zeros(2, h, w)
    labels[0] = 1
    labels[:, :, 1] = torch.tensor([0.0, 1.0])[:, None]  # column 1 holds the object
    prop = LabelPropagator(PropagationConfig(topk=1, n_context=2, radius=None))
    prop.start(_position_features(h, w, 0), labels)
    for t in (1, 2, 3):  # the content moves one column right per frame
        out = prop.step(_position_features(h, w, t))
        assert torch.allclose(out, torch.roll(labels, t, dims=2))


def test_radius_limits_the_search_window():
    h, w = 1, 8
    labels = torch.zeros(2, h, w)
    labels[0] = 1
    labels[:, :, 0] = torch.tensor([0.0, 1.0])[:, None]
    # the match for column 6 lies 6 cells away: outside a radius of 2 the best in-window key wins
    prop = LabelPropagator(PropagationConfig(topk=1, n_context=0, radius=2))
    prop.start(_position_features(h, w, 0), labels)
    out = prop.step(_position_features(h, w, 6))
    assert out[1, 0, 6] == 0  # could not reach column 0 of the first frame
    prop = LabelPropagator(PropagationConfig(topk=1, n_context=0, radius=None))
    prop.start(_position_features(h, w, 0), labels)
    assert prop.step(_position_features(h, w, 6))[1, 0, 6] == 1


def test_topk_weights_are_a_temperature_softmax():
    # two keys with similarity 1 and 0.6 -> weights softmax([1, 0.6] / T)
    keys = torch.tensor([[1.0, 0.6], [0.0, 0.8]]).reshape(2, 1, 2)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 2)
    query = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).reshape(2, 1, 2)
    prop = LabelPropagator(PropagationConfig(topk=2, n_context=0, radius=None, temperature=0.1))
    prop.start(keys, labels)
    out = prop.step(query)
    w = torch.softmax(torch.tensor([1.0, 0.6]) / 0.1, 0)
    assert torch.allclose(out[:, 0, 0], w, atol=1e-6)


def test_score_sequence_skips_first_and_last_frame():
    gt = torch.zeros(8, 8, dtype=torch.long)
    gt[2:6, 2:6] = 1
    wrong = torch.zeros_like(gt)
    preds = [gt, gt, wrong, gt, wrong]  # the last frame is wrong but not scored
    s = score_sequence(preds, [gt] * 5, 1)
    assert s["J"] == [pytest.approx(2 / 3)] and s["F"] == [pytest.approx(2 / 3)]


def _davis_tree(root):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    lab = np.zeros((64, 96), np.uint8)
    # full-width bands with edges on the stride-8 grid: bilinear upsampling + argmax then restores
    # them exactly (a convex corner would be rounded off by the interpolation)
    lab[8:32] = 1
    lab[40:56] = 2
    write_davis(root, {"identical": ([frame] * 5, [lab] * 5)})
    return lab


def test_identical_frames_propagate_perfectly(tmp_path):
    _davis_tree(tmp_path)
    enc = build_model("micro", flow_head=False).encoder
    cfg = PropagationConfig(topk=1)
    res = evaluate_davis(enc, tmp_path, config=cfg, progress=False, save_masks=tmp_path / "out")
    assert res["n_objects"] == 2
    assert res["J_mean"] == 1.0 and res["F_mean"] == 1.0 and res["JF_mean"] == 1.0
    saved = sorted((tmp_path / "out" / "identical").glob("*.png"))
    assert len(saved) == 5


def test_propagate_sequence_checks_frame_sizes():
    first = torch.zeros(32, 32, dtype=torch.long)
    frames = [torch.zeros(3, 32, 32, dtype=torch.uint8), torch.zeros(3, 40, 32, dtype=torch.uint8)]
    with pytest.raises(ValueError, match="all frames must be"):
        propagate_sequence(lambda f: torch.ones(4, 4, 4), frames, first, 1, 8)


def test_cli_davis_default_protocol(tmp_path, capsys):
    _davis_tree(tmp_path / "DAVIS")
    out = tmp_path / "davis.json"
    argv = [
        "davis",
        "--root",
        str(tmp_path / "DAVIS"),
        "--weights",
        "random",
        "--variant",
        "micro",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "(J&F)m" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["config"]["topk"] == 10 and res["config"]["radius"] == 12 and res["config"]["stride"] == 8
    assert set(res["per_object"]) == {"identical_1", "identical_2"}
    assert res["JF_mean"] == pytest.approx((res["J_mean"] + res["F_mean"]) / 2)
    assert res["J_mean"] > 0.8  # identical frames: even top-10 averaging keeps most of each mask

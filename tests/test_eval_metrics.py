"""Metric functions against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from mcjepa.eval.metrics import (
    FlowMetricAccumulator,
    confusion_matrix,
    db_boundary_f,
    db_region_iou,
    disk,
    endpoint_error,
    fl_outliers,
    miou_from_confusion,
    seg2bmap,
)


def _flow(vectors, h, w):
    return torch.tensor(vectors, dtype=torch.float32).reshape(h, w, 2).permute(2, 0, 1)


def test_epe_pooled_per_image_occ_and_fl():
    # image A (2x2): errors 5, 0, 10, 1 (prediction 0); image B (1x2): errors 2, 2
    gt_a = _flow([[3, 4], [0, 0], [6, 8], [0, 1]], 2, 2)
    gt_b = _flow([[2, 0], [0, 2]], 1, 2)
    assert endpoint_error(torch.zeros_like(gt_a), gt_a).tolist() == [[5, 0], [10, 1]]
    acc = FlowMetricAccumulator()
    occ_a = torch.tensor([[False, True], [False, True]])
    assert acc.update(torch.zeros_like(gt_a), gt_a, occluded=occ_a, name="a") == pytest.approx(4.0)
    acc.update(torch.zeros_like(gt_b), gt_b, occluded=torch.zeros(1, 2, dtype=torch.bool), name="b")
    s = acc.summary()
    assert s["epe_pooled"] == pytest.approx(20 / 6)  # (16 + 4) / 6 pixels
    assert s["epe_per_image"] == pytest.approx(3.0)  # (4 + 2) / 2 images
    assert s["epe_noc_pooled"] == pytest.approx((5 + 10 + 2 + 2) / 4)
    assert s["epe_occ_pooled"] == pytest.approx(0.5)
    assert s["fl_all"] == pytest.approx(2 / 6)  # errors 5 and 10 are outliers, 2 and 1 are not (<= 3 px)
    assert s["n_images"] == 2 and s["n_pixels"] == 6
    assert acc.worst(1) == [(0, "a", pytest.approx(4.0))]


def test_fl_needs_both_absolute_and_relative_error():
    gt = _flow([[100, 0], [3.5, 0], [0, 0]], 1, 3)
    pred = _flow([[96, 0], [0, 0], [0, 2.9]], 1, 3)
    epe = endpoint_error(pred, gt)  # 4 (4% of 100), 3.5 (100% of 3.5), 2.9
    assert fl_outliers(epe, gt).tolist() == [[False, True, False]]


def test_invalid_pixels_are_excluded():
    gt = _flow([[3, 4], [30, 40]], 1, 2)
    acc = FlowMetricAccumulator()
    acc.update(torch.zeros_like(gt), gt, valid=torch.tensor([[True, False]]))
    assert acc.summary()["epe_pooled"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="differ in shape"):
        endpoint_error(torch.zeros(2, 3, 3), gt)


def test_miou_from_known_confusion():
    conf = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])  # class 2 absent from GT and prediction
    r = miou_from_confusion(conf)
    assert r["iou"][0] == pytest.approx(3 / 6) and r["iou"][1] == pytest.approx(4 / 7)
    assert math.isnan(r["iou"][2])
    assert r["miou"] == pytest.approx((0.5 + 4 / 7) / 2)
    assert r["pixel_acc"] == pytest.approx(7 / 10)


def test_confusion_matrix_skips_ignore_index():
    target = torch.tensor([[0, 0, 1], [1, 255, 1]])
    pred = torch.tensor([[0, 1, 1], [0, 0, 1]])
    conf = confusion_matrix(pred, target, 2)
    assert conf.tolist() == [[1, 1], [1, 2]]
    with pytest.raises(ValueError, match="must lie in"):
        confusion_matrix(torch.full((2, 3), 5), target, 2)


def test_seg2bmap_of_a_single_pixel():
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    b = seg2bmap(m)
    # boundary offset half a pixel towards the origin: the 2x2 block rows 1-2, cols 1-2
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    assert np.array_equal(b.numpy(), expected)


def test_disk_matches_definition():
    d = disk(2)
    assert d.shape == (5, 5) and int(d.sum()) == 13  # 1 + 4 + 4 + 4 lattice points within radius 2


def _stepped_masks():
    gt = np.zeros((40, 40), bool)
    gt[:, :20] = True  # left half: boundary = column 19 (40 px)
    pred = np.zeros((40, 40), bool)
    pred[:20, :20] = True
    pred[20:, :23] = True  # boundary: col 19 rows 0-19, row 19 cols 20-22, col 22 rows 20-39 (43 px)
    return gt, pred


def test_region_j_hand_computed():
    gt, pred = _stepped_masks()
    assert db_region_iou(pred, gt) == pytest.approx(800 / 860)
    assert db_region_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    void = np.zeros((40, 40), bool)
    void[20:, 20:] = True  # hides the extra 60 px
    assert db_region_iou(pred, gt, void) == pytest.approx(1.0)


def test_boundary_f_hand_computed():
    gt, pred = _stepped_masks()
    # tolerance ceil(0.008 * sqrt(40^2 + 40^2)) = 1 px; matched: precision 21/43, recall 21/40
    assert db_boundary_f(pred, gt) == pytest.approx(42 / 83)
    assert db_boundary_f(gt, gt) == 1.0
    assert db_boundary_f(np.zeros((8, 8)), np.zeros((8, 8))) == 1.0
    assert db_boundary_f(np.zeros((40, 40)), gt) == 0.0
    # a 3 px tolerance matches everything
    assert db_boundary_f(pred, gt, bound_th=3) == pytest.approx(1.0)

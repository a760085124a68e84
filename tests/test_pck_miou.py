"""PCK and mIoU against hand-computed small cases and brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.metrics import miou, pck

# -- PCK ---------------------------------------------------------------------------------------
# One frame, three joints. GT: (0, 0), (3, 0), (0, 4) → box diagonal 5, normaliser 0.6 * 5 = 3.
GT = np.array([[[0.0], [3.0], [0.0]], [[0.0], [0.0], [4.0]]])
# joint 0 is 0.75 px off (x), joint 1 exact, joint 2 has no prediction.
PRED = np.array([[[0.75], [3.0], [-1.0]], [[0.0], [0.0], [-1.0]]])


def test_visibility_from_predictions_drops_missing_joint_and_shrinks_the_box() -> None:
    evaluated = pck.prediction_visible(PRED)
    assert evaluated[:, 0].tolist() == [True, True, False]
    # box of the visible joints (0,0)-(3,0): diagonal 3 → normaliser 1.8
    assert pck.normalisers(GT, evaluated)[0] == pytest.approx(1.8)
    dist = pck.normalised_distances(PRED, GT, evaluated)
    assert dist[0, 0] == pytest.approx(0.75 / 1.8)
    assert dist[1, 0] == 0.0
    assert math.isnan(dist[2, 0])
    hits, totals = pck.pck_counts(dist)
    assert totals.tolist() == [1, 1, 0]
    # joint 0 (0.4167) is correct only at 0.5; joint 1 always; joint 2 is not scored at all
    assert hits[:, 0].tolist() == [0, 0, 0, 0, 1]
    assert hits[:, 1].tolist() == [1, 1, 1, 1, 1]
    assert pck.pck_from_counts(hits, totals).tolist() == [0.5, 0.5, 0.5, 0.5, 1.0]


def test_ground_truth_visibility_counts_a_missing_prediction_as_a_miss() -> None:
    evaluated = pck.inside_frame(GT, height=10, width=10)
    assert evaluated.all()
    dist = pck.normalised_distances(PRED, GT, evaluated)
    assert dist[0, 0] == pytest.approx(0.25)  # 0.75 / 3
    assert dist[2, 0] == math.inf
    hits, totals = pck.pck_counts(dist)
    assert totals.tolist() == [1, 1, 1]
    expected = [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3]  # joint 0 correct from 0.3 on
    assert pck.pck_from_counts(hits, totals) == pytest.approx(expected)


def test_inside_frame_excludes_joints_outside() -> None:
    gt = np.array([[[5.0], [-0.5], [10.0]], [[5.0], [5.0], [9.9]]])
    assert pck.inside_frame(gt, height=10, width=10)[:, 0].tolist() == [True, False, False]


def test_pck_is_per_joint_then_mean_over_joints_not_pooled() -> None:
    # joint 0 scored in 2 frames (1 hit), joint 1 in 1 frame (1 hit): mean(0.5, 1) = 0.75, pooled = 2/3
    dist = np.array([[0.05, 0.9], [0.05, np.nan]])
    hits, totals = pck.pck_counts(dist, thresholds=(0.1,))
    assert pck.pck_from_counts(hits, totals).tolist() == [0.75]


def test_threshold_is_inclusive_and_degenerate_box_misses() -> None:
    hits, _ = pck.pck_counts(np.array([[0.1], [0.2]]), thresholds=(0.1,))
    assert hits.tolist() == [[1, 0]]
    # a single visible joint spans a box of diagonal 0: the original divides by zero → never correct
    gt = np.array([[[2.0], [0.0]], [[2.0], [0.0]]])
    pred = np.array([[[2.0], [-1.0]], [[2.0], [-1.0]]])
    dist = pck.normalised_distances(pred, gt, pck.prediction_visible(pred))
    assert dist[0, 0] == math.inf and math.isnan(dist[1, 0])


def test_no_scored_joint_gives_nan() -> None:
    hits, totals = pck.pck_counts(np.full((2, 3), np.nan))
    assert np.isnan(pck.pck_from_counts(hits, totals)).all()


def test_pck_matches_a_loop_reference_on_random_data() -> None:
    rng = np.random.default_rng(0)
    J, T = 15, 12
    gt = rng.uniform(0, 200, (2, J, T))
    pred = gt + rng.normal(0, 15, (2, J, T))
    pred[:, rng.random((J, T)) < 0.2] = -1
    dist = pck.normalised_distances(pred, gt, pck.prediction_visible(pred))
    per_joint: dict[int, list[float]] = {j: [] for j in range(J)}
    for t in range(T):
        vis = [j for j in range(J) if pred[0, j, t] >= 0]
        xs, ys = [gt[0, j, t] for j in vis], [gt[1, j, t] for j in vis]
        norm = 0.6 * math.hypot(max(xs) - min(xs), max(ys) - min(ys))
        for j in vis:
            per_joint[j].append(math.hypot(pred[0, j, t] - gt[0, j, t], pred[1, j, t] - gt[1, j, t]) / norm)
    for a, value in zip(pck.THRESHOLDS, pck.pck_from_counts(*pck.pck_counts(dist)), strict=True):
        reference = np.mean([np.mean(np.asarray(d) <= a) for d in per_joint.values() if d])
        assert value == pytest.approx(reference, abs=1e-12)


# -- mIoU --------------------------------------------------------------------------------------
def test_confusion_ignores_255_and_ids_at_or_above_num_classes() -> None:
    gt = np.array([[0, 0, 1], [1, 255, 3]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    confusion = miou.confusion_matrix(gt, pred, num_classes=3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    iou = miou.class_iou(confusion)
    assert iou[0] == pytest.approx(0.5)  # TP 1 / (GT 2 + Pred 1 - 1)
    assert iou[1] == pytest.approx(2 / 3)  # 2 / (2 + 3 - 2)
    assert math.isnan(iou[2])  # absent from GT and (valid) prediction: left out of the mean
    assert miou.mean_iou(confusion) == pytest.approx((0.5 + 2 / 3) / 2)
    assert miou.pixel_accuracy(confusion) == pytest.approx(3 / 4)


def test_class_absent_from_gt_but_predicted_counts_as_zero() -> None:
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 2], [1, 1]])
    iou = miou.class_iou(miou.confusion_matrix(gt, pred, num_classes=3))
    assert iou.tolist() == [0.5, 1.0, 0.0]
    assert miou.mean_iou(miou.confusion_matrix(gt, pred, 3)) == pytest.approx(0.5)


def test_prediction_outside_the_classes_is_an_error() -> None:
    with pytest.raises(ValueError, match="class ids"):
        miou.confusion_matrix(np.array([0, 1]), np.array([0, 3]), num_classes=3)
    # ...but not where the ground truth is ignored
    assert miou.confusion_matrix(np.array([0, 255]), np.array([0, 7]), 3).sum() == 1


def test_empty_confusion_gives_nan() -> None:
    empty = np.zeros((3, 3), dtype=np.int64)
    assert math.isnan(miou.mean_iou(empty)) and math.isnan(miou.pixel_accuracy(empty))


def test_confusion_matches_a_loop_reference() -> None:
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 23, (17, 13))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 20, (17, 13))
    reference = np.zeros((20, 20), dtype=np.int64)
    for g, p in zip(gt.ravel(), pred.ravel(), strict=True):
        if g < 20:
            reference[g, p] += 1
    np.testing.assert_array_equal(miou.confusion_matrix(gt, pred, 20), reference)

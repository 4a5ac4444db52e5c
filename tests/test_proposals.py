"""Tests of utils/proposals.py against the release's golden values and hand computations (spec "Inference")."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from utils.proposals import (THRESHOLDS, find_runs, generate_proposals, hard_nms, localize,
                             outer_inner_scores, select_classes, soft_nms, temporal_iou, upsample)

GOLDEN = json.loads((Path(__file__).parent / "data" / "release_golden.json").read_text())["proposals"]["cases"]


def runs_of(props):
    """(start, end) pairs of proposal rows, in row order."""
    return [(float(s), float(e)) for s, e in props[:, 2:4]]


# --- golden cases ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("soft", [True, False], ids=["soft_nms", "hard_nms"])
@pytest.mark.parametrize("case", range(len(GOLDEN)))
def test_golden_release_outputs(case, soft):
    c = GOLDEN[case]
    out = localize(np.array(c["curves_T_by_C"]), np.array(c["class_probs"]), c["kept_classes"], c["T_v"],
                   soft=soft)
    expected = np.array(c["soft_nms" if soft else "hard_nms"])
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-9)


# --- class selection --------------------------------------------------------------------------------------

def test_select_classes_threshold_is_inclusive():
    assert select_classes(np.array([0.1, 0.25, 0.3, 0.2, 0.35])).tolist() == [1, 2, 4]


def test_select_classes_falls_back_to_argmax():
    assert select_classes(np.array([0.1, 0.2, 0.15, 0.05])).tolist() == [1]
    assert select_classes(np.array([0.1, 0.2, 0.6]), class_th=0.7).tolist() == [2]


# --- upsampling -----------------------------------------------------------------------------------------

def test_upsample_interpolates_and_extrapolates_by_hand():
    up = upsample(np.array([0.0, 1.0, 0.5]), scale=4)
    expected = [0.0, 0.25, 0.5, 0.75,          # segment 0..1
                1.0, 0.875, 0.75, 0.625,       # segment 1..2
                0.5, 0.375, 0.25, 0.125]       # past T-1: slope of the last two points (-0.5)
    np.testing.assert_array_equal(up, expected)


def test_upsample_default_scale_length_and_last_value():
    curve = np.array([[0.2, 0.9], [0.6, 0.3], [0.5, 0.7]])    # [T=3, C=2]
    up = upsample(curve)
    assert up.shape == (3 * 24, 2)
    np.testing.assert_allclose(up[48], curve[2], atol=1e-15)  # grid point 2 lands on the last sample
    np.testing.assert_allclose(up[-1], curve[2] + (curve[2] - curve[1]) * 23 / 24, atol=1e-15)
    np.testing.assert_allclose(up[13], curve[0] + (curve[1] - curve[0]) * 13 / 24, atol=1e-15)


def test_upsample_single_snippet_is_constant():
    np.testing.assert_array_equal(upsample(np.array([[0.4, 0.7]]), scale=24), np.tile([0.4, 0.7], (24, 1)))


# --- grouping into runs -----------------------------------------------------------------------------------

def test_find_runs_boundaries_single_position_and_order():
    masks = np.array([[1, 1, 0, 1, 0, 0, 1, 1],
                      [0, 0, 0, 0, 0, 0, 0, 0],
                      [1, 1, 1, 1, 1, 1, 1, 1]], dtype=bool)
    (row,), a, b = find_runs(masks)
    assert row.tolist() == [0, 0, 0, 2]
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (3, 3), (6, 7), (0, 7)]


def test_grouping_through_generate_proposals():
    # scale 1 keeps the curve itself (dyadic values, exact); threshold 0.5 is met with equality at 1 and 6.
    curve = np.array([0.75, 0.5, 0.25, 0.75, 0.25, 0.25, 0.5, 0.75])[:, None]
    (props,) = generate_proposals(curve, [1.0], [0], T_v=8, scale=1, thresholds=[0.5], timing=(16, 16))
    assert runs_of(props) == [(0.0, 2.0), (3.0, 4.0), (6.0, 8.0)]    # t_factor = 16*8/(1*8*16) = 1


def test_nothing_above_threshold_gives_no_proposal():
    (props,) = generate_proposals(np.full((4, 1), 0.05), [1.0], [0], T_v=4)
    assert props.shape == (0, 4)
    assert localize(np.full((4, 1), 0.05), [1.0], [0], T_v=4).shape == (0, 4)


def test_zero_values_never_join_a_run():
    curve = np.array([0.0, 0.25, 0.0, 0.0])[:, None]
    (props,) = generate_proposals(curve, [1.0], [0], T_v=4, scale=1, thresholds=[0.0], timing=(16, 16))
    assert runs_of(props) == [(1.0, 2.0)]                             # t_factor = 16*4/(1*4*16) = 1


@pytest.mark.parametrize("value, n_thresholds_met", [(0.3, 2), (0.4, 4), (0.5, 5), (0.7, 6)])
def test_release_float_thresholds(value, n_thresholds_met):
    # THRESHOLDS = np.arange(0.1, 1.0, 0.1): 0.4 and 0.5 are met with equality, while the third and seventh
    # values are 0.30000000000000004 and 0.7000000000000001, which 0.3 and 0.7 do not reach.
    (props,) = generate_proposals(np.full((2, 1), value), [0.0], [0], T_v=2)
    assert len(props) == n_thresholds_met
    assert runs_of(props) == [(0.0, 16 * 2 / 25)] * n_thresholds_met
    assert THRESHOLDS[2] > 0.3 and THRESHOLDS[6] > 0.7


# --- outer-inner contrast score ---------------------------------------------------------------------------

def test_outer_inner_scores_by_hand():
    curve = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.0])   # N = 10
    cumsum = np.concatenate([[0.0], np.cumsum(curve)])[None, :]          # [1, N+1]
    a = np.array([3, 0, 5, 0, 0])
    b = np.array([7, 4, 9, 2, 9])
    scores = outer_inner_scores(cumsum, np.zeros(5, dtype=int), a, b, inflation=0.2)
    expected = [
        np.mean(curve[3:8]) - np.mean(curve[[2, 8]]),     # len 5: outer 2 and 8
        np.mean(curve[0:5]) - curve[5],                   # outer_s = max(0, int(-1.0)): left side empty
        np.mean(curve[5:10]) - curve[4],                  # outer_e = min(9, int(10.0)): right side clipped
        np.mean(curve[0:3]),                              # len 3: int(-0.6) = 0, int(2.6) = 2: outer empty = 0
        np.mean(curve),                                   # the whole curve: outer empty
    ]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-15)


def test_proposal_score_adds_weighted_class_probability():
    curve = np.zeros((5, 3))
    curve[1:3, 2] = 0.5                                   # class 2: one run 1..2 at thresholds 0.1..0.5
    class_probs = np.array([0.1, 0.2, 0.7])
    (props,) = generate_proposals(curve, class_probs, [2], T_v=10, scale=1, thresholds=[0.3])
    # inner 0.5; len 2: outer = 0..0 and 3..3, both 0; + 0.2 * 0.7
    np.testing.assert_allclose(props, [[2.0, 0.5 + 0.2 * 0.7, 1 * 16 * 10 / 125, 3 * 16 * 10 / 125]],
                               rtol=0, atol=1e-15)


# --- seconds conversion -----------------------------------------------------------------------------------

def test_seconds_conversion():
    T, T_v = 5, 7
    curve = np.full((T, 1), 0.05)
    curve[2, 0] = 0.95                                    # upsampled: one run around position 48 at 0.9
    (props,) = generate_proposals(curve, [1.0], [0], T_v=T_v, thresholds=[0.9])
    up = upsample(curve)[:, 0]
    a, b = np.flatnonzero(up >= 0.9)[[0, -1]]
    t_factor = 16 * T_v / (24 * T * 25)
    np.testing.assert_allclose(props[:, 2:], [[a * t_factor, (b + 1) * t_factor]], rtol=0, atol=1e-12)
    (full,) = generate_proposals(np.full((T, 1), 0.5), [1.0], [0], T_v=T_v, thresholds=[0.5])
    np.testing.assert_allclose(full[0, 2:], [0.0, 16 * T_v / 25], rtol=0, atol=1e-12)  # whole video


# --- IoU and NMS ----------------------------------------------------------------------------------------

def test_temporal_iou_plus_one_convention():
    best = np.array([0.0, 0.9, 0.0, 10.0])
    others = np.array([[0, 0.1, 10.5, 14.0],     # touches only through the +1: inter 0.5, areas 11 and 4.5
                       [0, 0.1, 0.0, 10.0],      # identical
                       [0, 0.1, 11.5, 14.0],     # a gap of 1.5 s: no overlap
                       [0, 0.1, 1.0, 9.0]])      # inside: inter 9, areas 11 and 9
    np.testing.assert_allclose(temporal_iou(best, others), [0.5 / 15, 1.0, 0.0, 9 / 11], rtol=0, atol=1e-15)


NMS_INPUT = np.array([
    [0, 0.6, 25.0, 33.0],    # P3: IoU with P2 = 6/14 (5/13 < 0.4 without the +1)
    [0, 0.9, 0.0, 10.0],     # P0
    [0, 0.5, 10.5, 14.0],    # P4: IoU with P0 = 0.5/15, kept
    [0, 0.7, 20.0, 30.0],    # P2
    [0, 0.85, 0.5, 10.0],    # P5: IoU with P0 = 10.5/11
    [0, 0.8, 1.0, 9.0],      # P1: IoU with P0 = 9/11
])


def test_soft_nms_by_hand():
    out = soft_nms(NMS_INPUT, iou_thresh=0.4, alpha=0.35)
    expected = np.array([
        [0, 0.9, 0.0, 10.0],                                       # step 1: P0 kept; P5, P1 set aside
        [0, 0.7, 20.0, 30.0],                                      # step 2: P2 kept; P3 set aside
        [0, 0.5, 10.5, 14.0],                                      # step 3: P4 kept
        [0, 0.85 * math.exp(-(10.5 / 11) ** 2 / 0.35), 0.5, 10.0],  # set aside, by original score, not re-sorted
        [0, 0.8 * math.exp(-(9 / 11) ** 2 / 0.35), 1.0, 9.0],
        [0, 0.6 * math.exp(-(6 / 14) ** 2 / 0.35), 25.0, 33.0],
    ])
    assert expected[3, 1] < expected[4, 1]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)


def test_hard_nms_by_hand():
    out = hard_nms(NMS_INPUT, iou_thresh=0.4)
    np.testing.assert_array_equal(out, [[0, 0.9, 0.0, 10.0], [0, 0.7, 20.0, 30.0], [0, 0.5, 10.5, 14.0]])


def test_nms_tie_takes_later_row_first():
    props = np.array([[0, 0.5, 0.0, 1.0], [0, 0.5, 10.0, 11.0], [0, 0.7, 20.0, 21.0]])
    assert runs_of(hard_nms(props)) == [(20.0, 21.0), (10.0, 11.0), (0.0, 1.0)]


def test_nms_of_nothing():
    assert soft_nms(np.empty((0, 4))).shape == (0, 4)
    assert hard_nms(np.empty((0, 4))).shape == (0, 4)


# --- localize ---------------------------------------------------------------------------------------------

def test_localize_concatenates_classes_in_kept_order_and_skips_empty_ones():
    rng = np.random.default_rng(0)
    curves = rng.uniform(0.0, 1.0, size=(6, 4))
    curves[:, 1] = 0.05                                   # class 1 has no proposal
    class_probs = np.array([0.1, 0.3, 0.2, 0.4])
    out = localize(curves, class_probs, [3, 1, 0], T_v=6)
    per_class = generate_proposals(curves, class_probs, [3, 1, 0], T_v=6)
    np.testing.assert_array_equal(out, np.concatenate([soft_nms(per_class[0]), soft_nms(per_class[2])]))
    assert out[0, 0] == 3 and out[-1, 0] == 0 and 1 not in out[:, 0]


def test_upsample_matches_the_release_scipy_interpolation_bitwise():
    interpolate = pytest.importorskip("scipy.interpolate")
    curve = np.random.default_rng(1).uniform(size=(50, 3)) ** 3    # wide range: (y1 - y0) + y0 != y1 at times
    release = interpolate.interp1d(np.arange(50), curve, kind="linear", axis=0,
                                   fill_value="extrapolate")(np.arange(0, 50, 1 / 24))
    np.testing.assert_array_equal(upsample(curve), release)

"""Tests of losses.py: the release's golden values and hand computations of each term (spec "Losses")."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import losses
import model

GOLDEN = json.loads((Path(__file__).parent / "data" / "release_golden.json").read_text())["losses"]


def f64(x):
    return torch.tensor(x, dtype=torch.float64)


# --- golden values of the release -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden_out():
    g = {k: torch.tensor(v) for k, v in GOLDEN["inputs"].items()}
    T = g["cas"].shape[1]
    heads = {k: g[k] for k in ("cas", "A_R", "A_F", "E", "E_R", "E_F")}
    out = model.derive_outputs(heads, gamma=1 / 3, k_mil=T // 8, k_mine=T // 20)
    return out, g["labels"]


@pytest.mark.parametrize("golden_key, our_key", [
    ("L_a", "L_a"), ("L_ca", "L_ca"), ("L_mc", "L_mc"), ("L_ac", "L_ac"), ("L_c_E", "L_c_E"),
    ("L_c_ER", "L_c_E_R"), ("L_c_EF", "L_c_E_F"), ("L_c", "L_c"), ("total", "total")])
def test_golden_loss_values(golden_out, golden_key, our_key):
    out, labels = golden_out
    _, terms = losses.total_loss(out, labels)
    assert terms[our_key].item() == pytest.approx(GOLDEN["values"][golden_key], rel=1e-5)


def test_golden_intermediates(golden_out):
    out, labels = golden_out
    g = GOLDEN["intermediate"]
    np.testing.assert_allclose(out["A"].numpy(), g["A"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["A_ca"].numpy(), g["A_ca"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out["A_bin"].numpy(), g["A_bin"])
    np.testing.assert_array_equal(out["A_ca_bin"].numpy(), g["A_ca_bin"])
    np.testing.assert_allclose(out["p"].detach().numpy(), g["video_logits_p"], rtol=1e-5, atol=1e-6)
    y = losses.pseudo_labels(out["topk_idx"], labels, out["A"].shape[1])
    np.testing.assert_array_equal(y.numpy(), g["pseudo_labels"])


def test_golden_topk_indices_as_sets(golden_out):
    out, _ = golden_out
    expected = np.array(GOLDEN["intermediate"]["topk_indices_T_by_8"])       # [B, k, C]
    ours = out["topk_idx"].numpy()
    assert ours.shape == expected.shape == (3, 5, 20)
    for b in range(expected.shape[0]):
        for c in range(expected.shape[2]):
            assert set(ours[b, :, c]) == set(expected[b, :, c]), (b, c)


# --- L_a -------------------------------------------------------------------------------------------------

def test_mil_loss_by_hand():
    p = f64([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = f64([[0, 1, 1], [1, 0, 0]])
    log_z = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    logp0 = [1 - log_z, 2 - log_z, 3 - log_z]
    target0 = [1e-10, 0.5 + 1e-10, 0.5 + 1e-10]
    loss0 = -sum(t * l for t, l in zip(target0, logp0))
    loss1 = (1 + 3e-10) * math.log(3)        # target [1 + eps, eps, eps], log_softmax = -log 3 everywhere
    assert losses.mil_loss(p, labels).item() == pytest.approx((loss0 + loss1) / 2, rel=1e-12)


def test_mil_loss_epsilon_is_added_after_normalising():
    # log_softmax = [-log 2, -1000 - log 2, -log 2]; the zero label's 1e-10 weight adds ~1e-7.
    p = f64([[0.0, -1000.0, 0.0]])
    labels = f64([[1, 0, 1]])
    log2 = math.log(2)
    after = 2 * (0.5 + 1e-10) * log2 + 1e-10 * (1000 + log2)            # y / sum y + 1e-10
    without = log2                                                       # y / sum y
    before = 2 * (1 + 1e-10) / (2 + 3e-10) * log2 + 1e-10 / (2 + 3e-10) * (1000 + log2)   # (y + eps) / sum
    value = losses.mil_loss(p, labels).item()
    assert value == pytest.approx(after, rel=1e-12)
    assert value != pytest.approx(without, rel=1e-9)
    assert value != pytest.approx(before, rel=1e-9)


# --- pseudo-labels and L_ca ------------------------------------------------------------------------------

def test_pseudo_labels_union_of_ground_truth_classes_only():
    # T = 6, k = 2, C = 3: classes 0 and 1 are ground truth and share snippet 3; class 2 is not.
    topk_idx = torch.tensor([[[1, 3, 0],
                              [3, 4, 5]]])                               # [B=1, k=2, C=3]
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    y = losses.pseudo_labels(topk_idx, labels, T=6)
    assert y.tolist() == [[0.0, 1.0, 0.0, 1.0, 1.0, 0.0]]


def gce_by_hand(P, y, q=0.7):
    """The spec's formula for one video (lists), returning (action part, background part)."""
    pos = sum(yt * (1 - (pt + 1e-7) ** q) / q for pt, yt in zip(P, y)) / (sum(y) + 1e-7)
    neg = sum((1 - yt) * (1 - (1 - pt + 1e-7) ** q) / q for pt, yt in zip(P, y)) / (sum(1 - yt for yt in y) + 1e-7)
    return pos, neg


def test_gce_loss_by_hand_with_an_all_background_video():
    P = [[0.9, 0.0, 0.2, 1.0], [0.3, 0.6, 0.1, 0.8]]
    y = [[1, 1, 0, 0], [0, 0, 0, 0]]
    # video 0: action part (1 - 0.9000001^0.7 + 1 - 1e-7^0.7) / 0.7 / (2 + 1e-7), background part
    # (1 - 0.8000001^0.7 + 1 - 1e-7^0.7) / 0.7 / (2 + 1e-7); video 1: action part 0 / 1e-7 = 0,
    # background part over all 4 snippets / (4 + 1e-7).
    pos0 = ((1 - 0.9000001 ** 0.7) + (1 - 1e-7 ** 0.7)) / 0.7 / (2 + 1e-7)
    neg0 = ((1 - 0.8000001 ** 0.7) + (1 - 1e-7 ** 0.7)) / 0.7 / (2 + 1e-7)
    neg1 = sum(1 - (1 - p + 1e-7) ** 0.7 for p in P[1]) / 0.7 / (4 + 1e-7)
    expected = (pos0 + 0.0) / 2 + (neg0 + neg1) / 2
    assert (pos0, neg0) == pytest.approx(gce_by_hand(P[0], y[0]), rel=1e-12)
    assert losses.gce_loss(f64(P), f64(y)).item() == pytest.approx(expected, rel=1e-12)


def test_gce_loss_normalises_by_count_plus_1e7():
    # T = 3, one action snippet: the action part is divided by 1 + 1e-7, the background by 2 + 1e-7.
    P, y = [0.5, 0.5, 0.5], [1, 0, 0]
    part = (1 - 0.5000001 ** 0.7) / 0.7
    expected = part / (1 + 1e-7) + 2 * part / (2 + 1e-7)
    assert losses.gce_loss(f64([P]), f64([y])).item() == pytest.approx(expected, rel=1e-12)
    assert losses.gce_loss(f64([P]), f64([y])).item() != pytest.approx(2 * part, rel=1e-9)


def test_class_agnostic_loss_sums_both_modalities():
    A_R, A_F, y = [0.7, 0.2, 0.4], [0.1, 0.9, 0.5], [0, 1, 1]
    expected = sum(gce_by_hand(A_R, y)) + sum(gce_by_hand(A_F, y))
    assert losses.class_agnostic_loss(f64([A_R]), f64([A_F]), f64([y])).item() == pytest.approx(expected, rel=1e-12)


# --- L_mc and L_ac ---------------------------------------------------------------------------------------

A_VALS = [[0.2, 0.6, 0.9], [0.5, 0.0, 1.0]]
B_VALS = [[0.4, 0.1, 0.9], [0.25, 0.5, 0.5]]
MSE = (0.04 + 0.25 + 0.0 + 0.0625 + 0.25 + 0.25) / 6   # mean of squared differences over B * T = 6


@pytest.mark.parametrize("fn", [losses.symmetric_mse, losses.multimodal_consistency_loss,
                                losses.action_consistency_loss])
@pytest.mark.parametrize("stop_gradient", [False, True])
def test_consistency_value_by_hand(fn, stop_gradient):
    assert fn(f64(A_VALS), f64(B_VALS), stop_gradient).item() == pytest.approx(MSE, rel=1e-12)


@pytest.mark.parametrize("fn", [losses.symmetric_mse, losses.multimodal_consistency_loss,
                                losses.action_consistency_loss])
@pytest.mark.parametrize("stop_gradient, factor", [(False, 2.0), (True, 1.0)])
def test_consistency_gradient(fn, stop_gradient, factor):
    # One-sided 0.5 mse(a, sg(b)) has d/da = (a - b) / n; the release (both ways, no stop-gradient)
    # doubles it to 2 (a - b) / n, the paper's stop-gradient keeps (a - b) / n. Same for b.
    a, b = f64(A_VALS).requires_grad_(), f64(B_VALS).requires_grad_()
    fn(a, b, stop_gradient).backward()
    n = 6
    diff = np.array(A_VALS) - np.array(B_VALS)
    np.testing.assert_allclose(a.grad.numpy(), factor * diff / n, rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), -factor * diff / n, rtol=1e-12)


# --- L_c -------------------------------------------------------------------------------------------------

def test_nce_by_hand_positive_first():
    # q -> (0.6, 0.8), k -> (0, 1), negative -> (0.8, -0.6): logits [0.8, 0] / 0.1 = [8, 0].
    q, k, n = f64([[3.0, 4.0]]), f64([[0.0, 2.0]]), f64([[[4.0, -3.0]]])
    assert losses.nce(q, k, n).item() == pytest.approx(math.log(1 + math.exp(-8)), rel=1e-10)
    # Positive and negative swapped: logits [0, 8].
    assert losses.nce(q, n[:, 0], k[:, None]).item() == pytest.approx(math.log(1 + math.exp(8)), rel=1e-10)


def test_nce_two_negatives_batch_mean_and_scale_invariance():
    # Video 0: q (0.6, 0.8), k (0, 1), negatives (0.8, -0.6), (-1, 0): logits [8, 0, -6].
    # Video 1: q (1, 0), k (0.6, 0.8), negatives (0, 1), (-0.6, 0.8): logits [6, 0, -6].
    q = f64([[3.0, 4.0], [1.0, 0.0]])
    k = f64([[0.0, 2.0], [3.0, 4.0]])
    n = f64([[[4.0, -3.0], [-1.0, 0.0]], [[0.0, 1.0], [-3.0, 4.0]]])
    l0 = math.log(math.exp(8) + math.exp(0) + math.exp(-6)) - 8
    l1 = math.log(math.exp(6) + math.exp(0) + math.exp(-6)) - 6
    assert losses.nce(q, k, n).item() == pytest.approx((l0 + l1) / 2, rel=1e-10)
    # q, k and each negative are normalised on their own: any positive rescaling leaves the loss unchanged.
    scaled = losses.nce(q * f64([[7.0], [0.2]]), k * f64([[0.3], [11.0]]), n * f64([[[5.0], [0.01]], [[0.5], [40.0]]]))
    assert scaled.item() == pytest.approx((l0 + l1) / 2, rel=1e-10)


def unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def mean_vec(vs):
    return [sum(c) / len(vs) for c in zip(*vs)]


def nce_by_hand(query, positive, negatives, tau=0.1):
    """-log softmax(logits)[0], logits = [q.k, q.n_1, ...] / tau with q, k means of their sets, normalised."""
    q, k = unit(mean_vec(query)), unit(mean_vec(positive))
    logits = [dot(q, k) / tau] + [dot(q, unit(n)) / tau for n in negatives]
    return math.log(sum(math.exp(x) for x in logits)) - logits[0]


# T = 4, D = 2, sets of one snippet: CA = {0}, CB = {1}, IA = {2}, IB = {3}.
E_HAND = [[2.0, 0.0], [0.0, 0.5], [3.0, 4.0], [8.0, -6.0]]        # directions (1,0), (0,1), (.6,.8), (.8,-.6)
SETS_HAND = dict(CA=[[0]], CB=[[1]], IA=[[2]], IB=[[3]])
L_CON_HAND = (math.log(1 + math.exp(2))       # NCE(IA; CA; CB): logits [6, 8]
              + math.log(1 + math.exp(14))    # NCE(IB; CB; CA): logits [-6, 8]
              + math.log(1 + math.exp(-6))    # NCE(CA; IA; CB): logits [6, 0]
              + math.log(1 + math.exp(6)))    # NCE(CB; IB; CA): logits [-6, 0]


def test_contrastive_loss_space_single_snippet_sets():
    sets = {name: torch.tensor(v) for name, v in SETS_HAND.items()}
    assert losses.contrastive_loss_space(f64([E_HAND]), sets).item() == pytest.approx(L_CON_HAND, rel=1e-10)


def test_contrastive_loss_space_means_sets_and_keeps_negatives_apart():
    # T = 8, sets of two: query and positive sets are averaged (then normalised), each negative
    # snippet of the other set stays a separate logit.
    E = [[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-1.0, 2.0], [1.0, 3.0], [0.5, -1.0], [-2.0, -1.0], [3.0, 1.0]]
    CA, CB, IA, IB = [7, 0], [2, 3], [1, 4], [5, 6]

    def rows(idx):
        return [E[i] for i in idx]

    expected = (nce_by_hand(rows(IA), rows(CA), rows(CB)) + nce_by_hand(rows(IB), rows(CB), rows(CA))
                + nce_by_hand(rows(CA), rows(IA), rows(CB)) + nce_by_hand(rows(CB), rows(IB), rows(CA)))
    sets = dict(CA=torch.tensor([CA]), CB=torch.tensor([CB]), IA=torch.tensor([IA]), IB=torch.tensor([IB]))
    assert losses.contrastive_loss_space(f64([E]), sets).item() == pytest.approx(expected, rel=1e-10)


def test_contrastive_loss_sums_the_chosen_spaces():
    # L_con is scale invariant, so E_R = 3 E and E_F = 0.5 E each give the hand value too.
    E = f64([E_HAND])
    out = dict(E=E, E_R=3 * E, E_F=0.5 * E, **{name: torch.tensor(v) for name, v in SETS_HAND.items()})
    L_c, per_space = losses.contrastive_loss(out)
    assert set(per_space) == {"E", "E_R", "E_F"}
    assert L_c.item() == pytest.approx(3 * L_CON_HAND, rel=1e-10)
    L_c_paper, per_space = losses.contrastive_loss(out, spaces=("E_R", "E_F"))
    assert set(per_space) == {"E_R", "E_F"}
    assert L_c_paper.item() == pytest.approx(2 * L_CON_HAND, rel=1e-10)


# --- total -----------------------------------------------------------------------------------------------

def test_total_loss_release_weights(golden_out):
    out, labels = golden_out
    L, t = losses.total_loss(out, labels)
    expected = t["L_a"] + t["L_ca"] + 5 * t["L_mc"] + 0.01 * t["L_c"] + 0.1 * t["L_ac"]
    assert L.item() == pytest.approx(expected.item(), rel=1e-6)
    assert t["total"].item() == L.item()
    assert t["L_c"].item() == pytest.approx((t["L_c_E"] + t["L_c_E_R"] + t["L_c_E_F"]).item(), rel=1e-6)


def test_total_loss_custom_weights(golden_out):
    out, labels = golden_out
    _, t = losses.total_loss(out, labels)
    weights = dict(a=0.0, ca=2.0, mc=0.0, c=1.0, ac=3.0)
    L, _ = losses.total_loss(out, labels, weights=weights)
    assert L.item() == pytest.approx((2 * t["L_ca"] + t["L_c"] + 3 * t["L_ac"]).item(), rel=1e-6)


def test_total_loss_backpropagates_and_logs_detached_terms():
    g = {k: torch.tensor(v) for k, v in GOLDEN["inputs"].items()}
    cas = g["cas"].clone().requires_grad_()
    heads = dict({k: g[k] for k in ("A_R", "A_F", "E", "E_R", "E_F")}, cas=cas)
    out = model.derive_outputs(heads, gamma=1 / 3, k_mil=5, k_mine=2)
    L, terms = losses.total_loss(out, g["labels"])
    assert not any(v.requires_grad for v in terms.values())
    L.backward()
    assert cas.grad is not None and torch.isfinite(cas.grad).all() and cas.grad.abs().sum() > 0

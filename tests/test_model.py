"""Tests of model.py: top-k with the later-first tie rule, segment mining, A_score, the network and its
checkpoints (spec "Network", "Segment mining", "Losses: Top-k MIL")."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import model
from model import AICL


def as_sets(idx):
    """[B, k] indices -> list of sets per video."""
    return [set(row) for row in idx.tolist()]


# --- top-k ----------------------------------------------------------------------------------------------

def test_topk_indices_ties_go_to_the_later_snippet():
    assert set(model.topk_indices(torch.tensor([[1.0, 1.0, 0.5, 1.0]]), 2)[0].tolist()) == {1, 3}
    assert set(model.topk_indices(torch.tensor([[1.0, 1.0, 0.5, 1.0]]), 3)[0].tolist()) == {0, 1, 3}
    # [B, T, C]: per class, along time
    score = torch.tensor([[[0.0, 2.0], [0.0, 2.0], [1.0, 2.0], [0.0, 1.0]]])   # T = 4, C = 2
    idx = model.topk_indices(score, 2)
    assert idx.shape == (1, 2, 2)
    assert set(idx[0, :, 0].tolist()) == {2, 3}
    assert set(idx[0, :, 1].tolist()) == {1, 2}


def test_topk_indices_without_ties_matches_torch_topk():
    g = torch.Generator().manual_seed(0)
    score = torch.stack([torch.randperm(50, generator=g).float() for _ in range(3)])   # distinct values
    for k in (1, 6, 50):
        assert as_sets(model.topk_indices(score, k)) == as_sets(torch.topk(score, k, dim=1).indices)


# --- segment mining -------------------------------------------------------------------------------------

# T = 8. sorted A: .05 .1 .2 .3 .6 .7 .8 .9, lower middle .3 (numpy's median .45): A^bin = {0, 1, 4, 6}.
# sorted A_ca: .1 .15 .2 .3 .6 .7 .8 .9, lower middle .3: A_ca^bin = {0, 2, 4, 7}.
# x = [2, 1, 1, 0, 2, 0, 1, 1]: x==2 {0, 4}, x==0 {3, 5}, x==1 {1, 2, 6, 7}.
# max A - A = [0, .1, .8, .7, .2, .6, .3, .85].
A_HAND = [0.9, 0.8, 0.1, 0.2, 0.7, 0.3, 0.6, 0.05]
A_CA_HAND = [0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.15, 0.6]


def test_mine_segments_masks_by_hand():
    out = model.mine_segments(torch.tensor([A_HAND]), torch.tensor([A_CA_HAND]), 2)
    assert out["A_bin"].tolist() == [[1, 1, 0, 0, 1, 0, 1, 0]]
    assert out["A_ca_bin"].tolist() == [[1, 0, 1, 0, 1, 0, 0, 1]]
    x = (out["A_bin"] + out["A_ca_bin"])[0].tolist()
    assert [t for t in range(8) if x[t] == 2] == [0, 4]
    assert [t for t in range(8) if x[t] == 0] == [3, 5]
    assert [t for t in range(8) if x[t] == 1] == [1, 2, 6, 7]


def test_median_binarisation_agrees_with_numpy_mean_of_middles():
    # torch's median of an even T is the lower middle, numpy's the mean of the two middles; with a
    # strict ">" both select the same snippets (those at or above the upper middle).
    g = torch.Generator().manual_seed(1)
    A = torch.rand(4, 10, generator=g)
    A[3] = torch.tensor([0.1, 0.5, 0.5, 0.5, 0.2, 0.9, 0.5, 0.3, 0.5, 0.7])   # tied middles
    out = model.mine_segments(A, A.flip(1), 2)
    a = A.numpy()
    np.testing.assert_array_equal(out["A_bin"].numpy(), (a > np.median(a, axis=1, keepdims=True)).astype(np.float32))
    np.testing.assert_array_equal(out["A_ca_bin"].numpy(),
                                  (a[:, ::-1] > np.median(a, axis=1, keepdims=True)).astype(np.float32))
    assert out["A_bin"][3].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]


def test_mine_segments_sets_by_hand():
    out = model.mine_segments(torch.tensor([A_HAND]), torch.tensor([A_CA_HAND]), 2)
    assert as_sets(out["CA"]) == [{0, 4}]      # A on x==2: .9, .7
    assert as_sets(out["CB"]) == [{3, 5}]      # max A - A on x==0: .7, .6
    assert as_sets(out["IA"]) == [{1, 6}]      # A on x==1: .8 (1), .6 (6) > .1 (2), .05 (7)
    assert as_sets(out["IB"]) == [{7, 2}]      # max A - A on x==1: .85 (7), .8 (2) > .3 (6), .1 (1)
    out = model.mine_segments(torch.tensor([A_HAND]), torch.tensor([A_CA_HAND]), 3)
    assert as_sets(out["IA"]) == [{1, 6, 2}]
    assert as_sets(out["IB"]) == [{7, 2, 6}]


def test_mine_segments_fills_short_masks_with_zero_score_snippets_latest_first():
    # k = 3 > |x==2| = |x==0| = 2: the third snippet is a zero-score one (outside the mask); under the
    # later-first tie rule that is the last such snippet, 7. k = 5 > |x==1| = 4: the fifth is the
    # latest snippet outside x==1, i.e. 5 (of 0, 3, 4, 5).
    out = model.mine_segments(torch.tensor([A_HAND]), torch.tensor([A_CA_HAND]), 3)
    assert as_sets(out["CA"]) == [{0, 4, 7}]
    assert as_sets(out["CB"]) == [{3, 5, 7}]
    out = model.mine_segments(torch.tensor([A_HAND]), torch.tensor([A_CA_HAND]), 5)
    assert as_sets(out["IA"]) == [{1, 2, 6, 7, 5}]
    assert as_sets(out["IB"]) == [{1, 2, 6, 7, 5}]


def test_mine_segments_member_with_zero_score_ties_with_the_fillers():
    # Video 0: A = [.95, .8, .1, .2, .7, .3, .6, .05], A^bin = {0, 1, 4, 6};
    # A_ca = [.1, .2, .8, .15, .7, .3, .9, .6], A_ca^bin = {2, 4, 6, 7}; x==1: {0, 1, 2, 7}.
    # max A - A (max of this video, .95) = [0, .15, .85, .75, .25, .65, .35, .9]: snippet 0, in the mask,
    # scores 0 like the snippets outside it, so with k = 4 the fourth IB snippet is the latest zero-score
    # one, 6. Video 1 has a larger maximum (.99), which must not leak into video 0.
    A = torch.tensor([[0.95, 0.8, 0.1, 0.2, 0.7, 0.3, 0.6, 0.05], [0.99] + A_HAND[1:]])
    A_ca = torch.tensor([[0.1, 0.2, 0.8, 0.15, 0.7, 0.3, 0.9, 0.6], A_CA_HAND])
    out = model.mine_segments(A, A_ca, 4)
    assert as_sets(out["IB"])[0] == {7, 2, 1, 6}
    assert as_sets(out["IA"])[0] == {0, 1, 2, 7}


def test_mine_segments_is_per_video():
    # Video 1 is video 0 reversed in time and squeezed into other ranges (0.5 + 0.5 A, 0.5 A_ca):
    # per-video medians and maxima give the mirrored sets t -> 7 - t.
    A = torch.tensor([A_HAND, [0.5 + 0.5 * a for a in reversed(A_HAND)]])
    A_ca = torch.tensor([A_CA_HAND, [0.5 * a for a in reversed(A_CA_HAND)]])
    out = model.mine_segments(A, A_ca, 2)
    assert out["CA"].shape == (2, 2)
    for name, expected in dict(CA={0, 4}, CB={3, 5}, IA={1, 6}, IB={7, 2}).items():
        assert as_sets(out[name]) == [expected, {7 - t for t in expected}], name


# --- A_score and top-k pooling ---------------------------------------------------------------------------

def test_actionness_score_release_form():
    cas = [[[1.0, 0.0, -1.0], [2.0, 2.0, 0.5]]]           # B 1, T 2, C 3
    A_R, A_F = [[0.2, 0.9]], [[0.6, 0.3]]
    A_ca = torch.tensor([[(r + f) / 2 for r, f in zip(A_R[0], A_F[0])]])
    got = model.actionness_score(torch.tensor(cas), A_ca, 1 / 3)
    for t in range(2):
        z = sum(math.exp(v) for v in cas[0][t])
        for c in range(3):
            expected = (math.exp(cas[0][t][c]) / z + A_R[0][t] + A_F[0][t]) / 3
            assert got[0, t, c].item() == pytest.approx(expected, rel=1e-6)


def test_topk_pool_by_hand_and_no_gradient_through_the_pick():
    cas = torch.tensor([[[1.0, -1.0], [2.0, 0.0], [3.0, 5.0], [4.0, 2.0]]], requires_grad=True)   # T 4, C 2
    A_score = torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]]], requires_grad=True)
    p, idx = model.topk_pool(cas, A_score, 2)
    # class 0: A_score picks snippets 0, 2 -> (1 + 3) / 2; class 1: snippets 1, 3 -> (0 + 2) / 2
    assert [set(idx[0, :, c].tolist()) for c in range(2)] == [{0, 2}, {1, 3}]
    assert p.tolist() == [[2.0, 1.0]]
    p.sum().backward()
    assert A_score.grad is None
    assert cas.grad[0].tolist() == [[0.5, 0.0], [0.0, 0.5], [0.5, 0.0], [0.0, 0.5]]


# --- the network ----------------------------------------------------------------------------------------

def reference_heads(net, x):
    """The spec's layers written with F.conv1d on the module's own parameters: cas, A_R, A_F, E, E_R, E_F."""
    s = net.state_dict()
    p = "actionness_module."
    xt = x.transpose(1, 2)
    E = F.relu(F.conv1d(xt, s[p + "base_module.0.weight"], s[p + "base_module.0.bias"], padding=1))
    cas = F.conv1d(E, s[p + "cls.0.weight"], s[p + "cls.0.bias"])
    rgb, flow = xt[:, :1024], xt[:, 1024:]
    E_R = F.relu(F.conv1d(rgb, s[p + "action_module_rgb.0.weight"], s[p + "action_module_rgb.0.bias"], padding=1))
    E_F = F.relu(F.conv1d(flow, s[p + "action_module_flow.0.weight"], s[p + "action_module_flow.0.bias"], padding=1))
    A_R = torch.sigmoid(F.conv1d(E_R, s[p + "cls_rgb.weight"], s[p + "cls_rgb.bias"]))[:, 0]
    A_F = torch.sigmoid(F.conv1d(E_F, s[p + "cls_flow.weight"], s[p + "cls_flow.bias"]))[:, 0]
    return cas.transpose(1, 2), A_R, A_F, E.transpose(1, 2), E_R.transpose(1, 2), E_F.transpose(1, 2)


@pytest.mark.parametrize("embed_dim", [512, 8])
def test_forward_shapes_and_definitions(embed_dim):
    torch.manual_seed(0)
    net = AICL(20, embed_dim=embed_dim)
    x = torch.randn(2, 40, 2048)
    with torch.no_grad():
        out = net(x)
    B, T, C, D = 2, 40, 20, embed_dim
    shapes = dict(cas=(B, T, C), A=(B, T), A_R=(B, T), A_F=(B, T), A_ca=(B, T), A_score=(B, T, C), p=(B, C),
                  topk_idx=(B, T // 8, C), E=(B, T, D), E_R=(B, T, D), E_F=(B, T, D), A_bin=(B, T), A_ca_bin=(B, T),
                  CA=(B, T // 20), CB=(B, T // 20), IA=(B, T // 20), IB=(B, T // 20))
    assert {k: tuple(out[k].shape) for k in shapes} == shapes
    cas, A_R, A_F, E, E_R, E_F = reference_heads(net, x)
    for name, ref in dict(cas=cas, A_R=A_R, A_F=A_F, E=E, E_R=E_R, E_F=E_F).items():
        torch.testing.assert_close(out[name], ref, rtol=1e-5, atol=1e-5, msg=name)
    torch.testing.assert_close(out["A"], torch.sigmoid(out["cas"].sum(dim=2)))
    torch.testing.assert_close(out["A_ca"], (out["A_R"] + out["A_F"]) / 2)


def test_channel_major_input_gives_the_same_outputs():
    # dataset.collate's batches ([B, T, 2048] views of [B, 2048, T] memory) and plain [B, T, 2048] tensors
    torch.manual_seed(0)
    net = AICL(20, embed_dim=16)
    x = torch.randn(2, 40, 2048)
    x_cm = x.transpose(1, 2).contiguous().transpose(1, 2)
    with torch.no_grad():
        out, out_cm = net(x), net(x_cm)
    for k in ("cas", "A_R", "A_F", "E", "E_R", "E_F", "p", "CA", "CB", "IA", "IB"):
        assert torch.equal(out[k], out_cm[k]), k


def test_streams_feed_their_own_branch():
    # channels 0..1023 are rgb (A_R), 1024..2047 flow (A_F)
    torch.manual_seed(0)
    net = AICL(20, embed_dim=8)
    x = torch.randn(1, 10, 2048)
    x_rgb_changed, x_flow_changed = x.clone(), x.clone()
    x_rgb_changed[..., :1024] += 1.0
    x_flow_changed[..., 1024:] += 1.0
    with torch.no_grad():
        out, out_rgb, out_flow = net(x), net(x_rgb_changed), net(x_flow_changed)
    assert torch.equal(out["A_F"], out_rgb["A_F"]) and not torch.equal(out["A_R"], out_rgb["A_R"])
    assert torch.equal(out["A_R"], out_flow["A_R"]) and not torch.equal(out["A_F"], out_flow["A_F"])


def test_no_dropout_train_and_eval_agree():
    torch.manual_seed(0)
    net = AICL(20, embed_dim=16)
    assert not any(isinstance(m, torch.nn.Dropout) for m in net.modules())
    x = torch.randn(2, 40, 2048)
    with torch.no_grad():
        train_out = net.train()(x)
        eval_out = net.eval()(x)
    for k in ("cas", "A_R", "A_F", "E", "E_R", "E_F", "p"):
        assert torch.equal(train_out[k], eval_out[k]), k


def test_parameter_names_and_shapes_are_the_release_ones():
    net = AICL(20, embed_dim=512)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    p = "actionness_module."
    assert shapes == {
        p + "base_module.0.weight": (512, 2048, 3), p + "base_module.0.bias": (512,),
        p + "cls.0.weight": (20, 512, 1), p + "cls.0.bias": (20,),
        p + "action_module_rgb.0.weight": (512, 1024, 3), p + "action_module_rgb.0.bias": (512,),
        p + "cls_rgb.weight": (1, 512, 1), p + "cls_rgb.bias": (1,),
        p + "action_module_flow.0.weight": (512, 1024, 3), p + "action_module_flow.0.bias": (512,),
        p + "cls_flow.weight": (1, 512, 1), p + "cls_flow.bias": (1,),
    }


# --- checkpoints ----------------------------------------------------------------------------------------

@pytest.fixture
def trained_and_fresh():
    torch.manual_seed(0)
    src = AICL(20, embed_dim=8)
    torch.manual_seed(1)
    dst = AICL(20, embed_dim=8)
    return src, dst, torch.randn(1, 24, 2048)


def test_release_plain_state_dict_loads(tmp_path, trained_and_fresh):
    src, dst, x = trained_and_fresh
    path = tmp_path / "CAS_Only.pkl"
    torch.save(src.state_dict(), path)
    with torch.no_grad():
        assert not torch.equal(src(x)["cas"], dst(x)["cas"])
        model.load_weights(dst, torch.load(path), source=str(path))
        a, b = src(x), dst(x)
    for k in ("cas", "A_R", "A_F", "E", "E_R", "E_F"):
        assert torch.equal(a[k], b[k]), k


def test_wrapped_checkpoint_loads(tmp_path, trained_and_fresh):
    src, dst, x = trained_and_fresh
    path = tmp_path / "best.pkl"
    torch.save({"model": src.state_dict(), "step": 50}, path)
    model.load_weights(dst, torch.load(path), source=str(path))
    with torch.no_grad():
        assert torch.equal(src(x)["cas"], dst(x)["cas"])


def mutated(state, kind):
    state = dict(state)
    if kind == "missing":
        del state["actionness_module.cls_flow.bias"]
        return state, "actionness_module.cls_flow.bias"
    state["actionness_module.extra.weight"] = torch.zeros(3)
    return state, "actionness_module.extra.weight"


@pytest.mark.parametrize("kind", ["missing", "unexpected"])
def test_mismatched_names_raise_naming_source_and_parameter(trained_and_fresh, kind):
    src, dst, _ = trained_and_fresh
    state, offending = mutated(src.state_dict(), kind)
    with pytest.raises(ValueError) as err:
        model.load_weights(dst, state, source="ckpt/some_run.pkl")
    assert "ckpt/some_run.pkl" in str(err.value) and offending in str(err.value)


def test_wrong_number_of_classes_raises_naming_source_and_parameter():
    state = AICL(100, embed_dim=8).state_dict()
    with pytest.raises(ValueError) as err:
        model.load_weights(AICL(20, embed_dim=8), {"model": state}, source="anet_CAS_Only.pkl")
    assert "anet_CAS_Only.pkl" in str(err.value) and "actionness_module.cls.0.weight" in str(err.value)


# --- devices --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))])
def test_runs_on_an_explicit_device(device):
    device = torch.device(device)
    torch.manual_seed(0)
    net = AICL(20, embed_dim=8).to(device)
    with torch.no_grad():
        out = net(torch.randn(2, 40, 2048, device=device))
    for k in ("cas", "A", "p", "topk_idx", "CA", "IB"):
        assert out[k].device.type == device.type, k

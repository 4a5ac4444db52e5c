"""AICL losses. Each term is a function of the model's outputs (see model.derive_outputs).

Total (release weights): L = L_a + L_ca + 5 L_mc + 0.01 L_c + 0.1 L_ac.
Shapes: B batch, T snippets, C classes, D embedding width, k snippets per set.
"""
import torch
import torch.nn.functional as F

RELEASE_WEIGHTS = dict(a=1.0, ca=1.0, mc=5.0, c=0.01, ac=0.1)


def mil_loss(p, labels):
    """L_a, the top-k MIL loss (Eq. 3): cross-entropy of softmax(p) against the normalised label.

    p [B, C] video logits; labels [B, C] multi-hot. Target = y / sum_c y + 1e-10 (epsilon after the
    normalisation, on every entry, as the release does).
    """
    target = labels / labels.sum(dim=1, keepdim=True) + 1e-10
    return -(target * F.log_softmax(p, dim=1)).sum(dim=1).mean()


def pseudo_labels(topk_idx, labels, T):
    """Snippet pseudo-labels for the class-agnostic branch: 1 where a snippet is among the top-k
    indices of any ground-truth class of its video, else 0.

    topk_idx [B, k, C]; labels [B, C] -> [B, T].
    """
    B, _, C = topk_idx.shape
    hit = torch.zeros(B, T, C, device=topk_idx.device).scatter_(1, topk_idx, 1.0)   # [B, T, C]
    return (hit * labels.unsqueeze(1)).amax(dim=2)


def gce_loss(P, y, q=0.7):
    """Generalized cross-entropy (Eq. 6) of one actionness sequence P [B, T] against pseudo-labels
    y [B, T], the action and background parts each normalised by their snippet count.
    """
    pos = (y * (1 - (P + 1e-7) ** q) / q).sum(dim=1) / (y.sum(dim=1) + 1e-7)
    neg = ((1 - y) * (1 - (1 - P + 1e-7) ** q) / q).sum(dim=1) / ((1 - y).sum(dim=1) + 1e-7)
    return pos.mean() + neg.mean()


def class_agnostic_loss(A_R, A_F, y, q=0.7):
    """L_ca: GCE of both modalities' actionness against the same pseudo-labels, summed."""
    return gce_loss(A_R, y, q) + gce_loss(A_F, y, q)


def symmetric_mse(a, b, stop_gradient=False):
    """0.5 mse(a, b) + 0.5 mse(b, a). The release back-propagates into both sides (twice the
    gradient of one MSE); the paper's phi stops the gradient of the target side instead.
    """
    if stop_gradient:
        return 0.5 * F.mse_loss(a, b.detach()) + 0.5 * F.mse_loss(b, a.detach())
    return 0.5 * F.mse_loss(a, b) + 0.5 * F.mse_loss(b, a)


def multimodal_consistency_loss(A_R, A_F, stop_gradient=False):
    """L_mc (Eq. 7): RGB and flow class-agnostic actionness agree."""
    return symmetric_mse(A_F, A_R, stop_gradient)


def action_consistency_loss(A, A_ca, stop_gradient=False):
    """L_ac (Eq. 8): class-aware and class-agnostic actionness agree."""
    return symmetric_mse(A, A_ca, stop_gradient)


def nce(q, k, negatives, tau=0.1):
    """InfoNCE (Eq. 9): cross-entropy over [q.k, q.n_1, ..., q.n_M] / tau with the positive at index 0.

    q, k [B, D] (normalised here); negatives [B, M, D] (each normalised on its own). Mean over B.
    """
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)                     # [B, 1]
    # q.n / |n|: dividing the [B, M] products costs less than normalising the [B, M, D] negatives
    # (the same value to float32 rounding; |n| clamped at 1e-12 as F.normalize does)
    l_neg = torch.bmm(negatives, q.unsqueeze(2)).squeeze(2) / negatives.norm(dim=2).clamp_min(1e-12)   # [B, M]
    logits = torch.cat([l_pos, l_neg], dim=1) / tau              # [B, 1 + M]
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def _gather(E, idx):
    """Embeddings of the selected snippets: E [B, T, D], idx [B, k] -> [B, k, D].

    Picked along T of E^T [B, D, T]: the model's E is a view of [B, D, T] memory, so the gradient of the
    pick is laid out as the heads' gradient of E is, and the two add up in one plain pass (picking rows
    of the [B, T, D] view gave a gradient in the other layout: a strided pass of the full size)."""
    E_t = E.transpose(1, 2)                                                          # [B, D, T]
    picked = torch.gather(E_t, 2, idx.unsqueeze(1).expand(-1, E_t.shape[1], -1))    # [B, D, k]
    return picked.transpose(1, 2).contiguous()                                       # [B, k, D]


def contrastive_loss_space(E, sets):
    """L_con in one embedding space E [B, T, D] (Eq. 10-11) with the mined index sets CA/CB/IA/IB:
    NCE(IA; CA; CB) + NCE(IB; CB; CA) + NCE(CA; IA; CB) + NCE(CB; IB; CA).
    """
    names = ("IA", "IB", "CA", "CB")
    picked = _gather(E, torch.cat([sets[n] for n in names], dim=1))            # one gather: [B, 4k, D]
    IA, IB, CA, CB = picked.split([sets[n].shape[1] for n in names], dim=1)    # [B, k, D] each
    mIA, mIB, mCA, mCB = IA.mean(1), IB.mean(1), CA.mean(1), CB.mean(1)        # [B, D] each
    return nce(mIA, mCA, CB) + nce(mIB, mCB, CA) + nce(mCA, mIA, CB) + nce(mCB, mIB, CA)


def contrastive_loss(out, spaces=("E", "E_R", "E_F")):
    """L_c: L_con summed over the embedding spaces (release: E, E_R, E_F; paper: E_R, E_F).
    Returns (L_c, {space: L_con}).
    """
    per_space = {s: contrastive_loss_space(out[s], out) for s in spaces}
    return sum(per_space.values()), per_space


def total_loss(out, labels, q=0.7, weights=RELEASE_WEIGHTS, stop_gradient=False, spaces=("E", "E_R", "E_F")):
    """Weighted sum of the five terms. ``out`` is the dict of model.AICL / model.derive_outputs.

    Returns (L, terms) where terms maps names (L_a, L_ca, L_mc, L_ac, L_c, L_c_<space>, total) to
    detached scalar tensors for logging.
    """
    y = pseudo_labels(out["topk_idx"], labels, out["A"].shape[1])
    L_c, per_space = contrastive_loss(out, spaces)
    terms = dict(
        L_a=mil_loss(out["p"], labels),
        L_ca=class_agnostic_loss(out["A_R"], out["A_F"], y, q),
        L_mc=multimodal_consistency_loss(out["A_R"], out["A_F"], stop_gradient),
        L_ac=action_consistency_loss(out["A"], out["A_ca"], stop_gradient),
        L_c=L_c,
    )
    L = sum(weights[name[2:]] * value for name, value in terms.items())
    terms.update({f"L_c_{s}": v for s, v in per_space.items()})
    terms["total"] = L
    return L, {name: v.detach() for name, v in terms.items()}

"""AICL network: class-aware and class-agnostic branches plus consistency-guided segment mining.

Shapes: B batch, T snippets, C classes, D embedding width (512 THUMOS14 / ANet1.2, 1024 ANet1.3).
Input features x [B, T, 2048] are concat(rgb, flow) along channels (rgb first).

The parameter names (``actionness_module.base_module.0.weight`` ...) are those of the authors'
release, so its checkpoint ``CAS_Only.pkl`` (a plain state_dict) loads into this module unchanged.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURE_DIM = 1024  # per stream (I3D rgb, I3D flow)


def _embedding(in_channels, embed_dim):
    """E = ReLU(conv_k3(x)): [B, in_channels, T] -> [B, embed_dim, T]."""
    # in place: the convolution's backward needs its input and weight, not its output
    return nn.Sequential(nn.Conv1d(in_channels, embed_dim, 3, padding=1), nn.ReLU(inplace=True))


def early_fusion_conv(conv, rgb, flow):
    """A Conv1d 2048->D on rgb ++ flow ([B, 1024, T] each -> [B, D, T]) as the sum of its rgb half on rgb
    and its flow half on flow: the same FLOPs, without a channels-first copy of the concatenation (the sum
    reorders the float32 reduction over input channels)."""
    w_rgb, w_flow = conv.weight.split(FEATURE_DIM, dim=1)              # [D, 1024, 3] each
    return F.conv1d(rgb, w_rgb, conv.bias, padding=1) + F.conv1d(flow, w_flow, padding=1)


def _early_embedding(embedding, rgb, flow):
    """E = ReLU(conv_k3(rgb ++ flow)) through early_fusion_conv: [B, 1024, T] each -> [B, D, T]."""
    conv, relu = embedding
    return relu(early_fusion_conv(conv, rgb, flow))


class _Branches(nn.Module):
    """The convolutional layers. With the paper's fusion (class-aware early, class-agnostic late) the
    parameter names are the release's (``actionness_module.*``); the other fusions of Table 6 add theirs.

    Class-aware, early: E = emb(rgb ++ flow), CAS = conv1(E).  Late: one embedding and classifier per
    modality, CAS = the mean of the two, E = their embeddings concatenated ([B, 2D, T]).
    Class-agnostic, late: E_R = emb(rgb), A_R = sigmoid(conv1(E_R)), the same for flow.  Early: one
    embedding of rgb ++ flow and one head, used as both modalities (so L_mc is 0).
    """

    def __init__(self, num_classes, embed_dim, aware_fusion="early", agnostic_fusion="late"):
        super().__init__()
        for name, value in (("aware_fusion", aware_fusion), ("agnostic_fusion", agnostic_fusion)):
            if value not in ("early", "late"):
                raise ValueError(f"{name} must be 'early' or 'late', got {value!r}")
        self.aware_fusion, self.agnostic_fusion = aware_fusion, agnostic_fusion
        if aware_fusion == "early":
            self.base_module = _embedding(2 * FEATURE_DIM, embed_dim)
            self.cls = nn.Sequential(nn.Conv1d(embed_dim, num_classes, 1))
        else:
            self.base_module_rgb = _embedding(FEATURE_DIM, embed_dim)
            self.base_module_flow = _embedding(FEATURE_DIM, embed_dim)
            self.cls_aware_rgb = nn.Conv1d(embed_dim, num_classes, 1)
            self.cls_aware_flow = nn.Conv1d(embed_dim, num_classes, 1)
        if agnostic_fusion == "late":
            self.action_module_rgb = _embedding(FEATURE_DIM, embed_dim)
            self.cls_rgb = nn.Conv1d(embed_dim, 1, 1)
            self.action_module_flow = _embedding(FEATURE_DIM, embed_dim)
            self.cls_flow = nn.Conv1d(embed_dim, 1, 1)
        else:
            self.action_module = _embedding(2 * FEATURE_DIM, embed_dim)
            self.cls_action = nn.Conv1d(embed_dim, 1, 1)

    def class_aware(self, rgb, flow):
        """-> E [B, D or 2D, T], CAS [B, C, T]."""
        if self.aware_fusion == "early":
            E = _early_embedding(self.base_module, rgb, flow)
            return E, self.cls(E)
        E_rgb, E_flow = self.base_module_rgb(rgb), self.base_module_flow(flow)
        return torch.cat([E_rgb, E_flow], dim=1), (self.cls_aware_rgb(E_rgb) + self.cls_aware_flow(E_flow)) / 2

    def class_agnostic(self, rgb, flow):
        """-> E_R, E_F [B, D, T], A_R, A_F [B, T]."""
        if self.agnostic_fusion == "late":
            E_R, E_F = self.action_module_rgb(rgb), self.action_module_flow(flow)
            # the logits go to float32 before the sigmoid (a bf16 sigmoid saturates to 1 from 0.996 on)
            A_R, A_F = torch.sigmoid(self.cls_rgb(E_R).float()), torch.sigmoid(self.cls_flow(E_F).float())
            return E_R, E_F, A_R.squeeze(1), A_F.squeeze(1)
        E_ca = _early_embedding(self.action_module, rgb, flow)
        A = torch.sigmoid(self.cls_action(E_ca).float()).squeeze(1)
        return E_ca, E_ca, A, A


class AICL(nn.Module):
    """Both branches of AICL in one module.

    gamma:      weight of Softmax(CAS) in A_score = gamma Softmax(CAS) + (1 - gamma) A_ca (release 1/3).
    topk_ratio: the MIL pooling takes k = T // topk_ratio snippets per class (THUMOS14 8, ActivityNet 2).
    mine_ratio: the contrastive sets take K = T // mine_ratio snippets each (release 20).
    aware_fusion, agnostic_fusion: how each branch fuses RGB and flow (paper: "early", "late"; Table 6).
    """

    def __init__(self, num_classes, embed_dim=512, gamma=1 / 3, topk_ratio=8, mine_ratio=20,
                 aware_fusion="early", agnostic_fusion="late"):
        super().__init__()
        self.num_classes = num_classes
        self.gamma = gamma
        self.topk_ratio = topk_ratio
        self.mine_ratio = mine_ratio
        self.actionness_module = _Branches(num_classes, embed_dim, aware_fusion, agnostic_fusion)

    def forward(self, x):
        """x [B, T, 2048] -> dict of every quantity the losses and the post-processing use."""
        m = self.actionness_module
        # the streams channels-first: views of a channel-major x (dataset.collate's batches), else one
        # copy per stream made here (a strided view would be copied again for the backward pass); the
        # early-fusion embeddings take them in halves
        rgb = x[..., :FEATURE_DIM].transpose(1, 2).contiguous()    # [B, 1024, T]
        flow = x[..., FEATURE_DIM:].transpose(1, 2).contiguous()   # [B, 1024, T]
        E, cas = m.class_aware(rgb, flow)                          # [B, D, T], [B, C, T]
        E_R, E_F, A_R, A_F = m.class_agnostic(rgb, flow)           # [B, D, T] x2, [B, T] x2
        T = x.shape[1]
        # Under bf16 autocast only the convolutions above run in bf16; from the heads on (actionness,
        # top-k, mining, and the losses computed from these outputs) everything is float32.
        with torch.autocast(x.device.type, enabled=False):
            heads = dict(cas=cas.float().transpose(1, 2), A_R=A_R.float(), A_F=A_F.float(),
                         E=E.float().transpose(1, 2), E_R=E_R.float().transpose(1, 2), E_F=E_F.float().transpose(1, 2))
            return derive_outputs(heads, gamma=self.gamma, k_mil=max(1, T // self.topk_ratio),
                                  k_mine=max(1, T // self.mine_ratio))


def derive_outputs(heads, gamma, k_mil, k_mine):
    """Everything computed from the heads: actionness, A_score, top-k pooling and mining.

    heads: {"cas": [B, T, C], "A_R", "A_F": [B, T], "E", "E_R", "E_F": [B, T, D]}. Separate from ``forward``
    so that the losses can be checked on given head outputs (the golden values of the release).
    """
    cas, A_R, A_F, E, E_R, E_F = (heads[k] for k in ("cas", "A_R", "A_F", "E", "E_R", "E_F"))
    A = torch.sigmoid(cas.sum(dim=2))                            # [B, T]  class-aware actionness
    A_ca = (A_R + A_F) / 2                                       # [B, T]  class-agnostic actionness
    A_score = actionness_score(cas, A_ca, gamma)                 # [B, T, C]
    p, topk_idx = topk_pool(cas, A_score, k_mil)                 # [B, C], [B, k, C]
    out = dict(cas=cas, A=A, A_R=A_R, A_F=A_F, A_ca=A_ca, A_score=A_score, p=p, topk_idx=topk_idx,
               E=E, E_R=E_R, E_F=E_F)
    out.update(mine_segments(A, A_ca, k_mine))
    return out


def actionness_score(cas, A_ca, gamma):
    """Eq. 4 as the release computes it: gamma Softmax_c(CAS) + (1 - gamma) A_ca, [B, T, C].

    With gamma = 1/3 this is the release's (Softmax(CAS) + A_R + A_F) / 3 (the paper's Eq. 4 lacks the /2).
    """
    return gamma * F.softmax(cas, dim=2) + (1 - gamma) * A_ca.unsqueeze(2)


def topk_indices(score, k):
    """Indices of the k largest entries along dim 1 (time), ties going to the LATER snippet.

    Sigmoids saturate to exactly 1.0 in float32, so ties are common; torch.topk leaves their order
    to the backend. The release's GPU runs pick the later snippets (seen in its golden values), and
    a stable sort of the time-reversed scores makes that rule hold on every device.
    """
    T = score.shape[1]
    order = torch.sort(score.flip(1), dim=1, descending=True, stable=True).indices[:, :k]
    return T - 1 - order


def topk_pool(cas, A_score, k):
    """Top-k MIL pooling (Eq. 3): for each class, mean CAS over the k snippets with the highest A_score.

    The indices are picked without gradient. Returns video logits p [B, C] and indices [B, k, C].
    """
    with torch.no_grad():
        idx = topk_indices(A_score, k)                           # [B, k, C]
    p = torch.gather(cas, 1, idx).mean(dim=1)                    # [B, C]
    return p, idx


def mine_segments(A, A_ca, k):
    """Actionness-inconsistency segment mining (Sec. 3.3), per video, without gradient.

    A^bin = A > median_t A, A_ca^bin = A_ca > median_t A_ca, x = A^bin + A_ca^bin.
    CA: top-k of A on x == 2; CB: top-k of (max_t A - A) on x == 0;
    IA: top-k of A on x == 1; IB: top-k of (max_t A - A) on x == 1. Each [B, k] snippet indices.
    Snippets outside a mask score 0, so a mask with fewer than k members is filled by them (release).
    """
    with torch.no_grad():
        A_bin = (A > A.median(dim=1, keepdim=True).values).float()          # [B, T]
        A_ca_bin = (A_ca > A_ca.median(dim=1, keepdim=True).values).float()
        x = A_bin + A_ca_bin
        consistent_action, consistent_background, inconsistent = (x == 2).float(), (x == 0).float(), (x == 1).float()
        A_rev = A.max(dim=1, keepdim=True).values - A                       # [B, T]
        sets = dict(
            CA=topk_indices(A * consistent_action, k),
            CB=topk_indices(A_rev * consistent_background, k),
            IA=topk_indices(A * inconsistent, k),
            IB=topk_indices(A_rev * inconsistent, k),
        )
    return dict(A_bin=A_bin, A_ca_bin=A_ca_bin, **sets)


def load_weights(model, state, source="checkpoint"):
    """Load a plain state_dict (the release's CAS_Only.pkl) or one of our checkpoints into ``model``.

    Raises ValueError naming ``source`` and the offending parameters when names or shapes do not fit.
    """
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{source}: not a state_dict or an AICL checkpoint")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: {tuple(state[k].shape)} in file, {tuple(own[k].shape)} in model"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        lines = [f"{source} does not fit this model (num_classes={model.num_classes})"]
        if missing:
            lines.append("missing parameters: " + ", ".join(missing))
        if unexpected:
            lines.append("unexpected parameters: " + ", ".join(unexpected))
        if wrong:
            lines.append("shape mismatch: " + "; ".join(wrong))
        raise ValueError("\n  ".join(lines))
    model.load_state_dict(state)

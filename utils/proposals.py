"""Inference post-processing of AICL (spec section "Inference"): from A_score curves to scored segments.

Pipeline per video: select_classes -> generate_proposals (upsample x24, threshold 0.1..0.9, group runs,
outer-inner contrast score, seconds) -> soft/hard NMS per class -> concatenation (localize).
Everything is vectorised over thresholds, classes and runs; only the NMS "take the best remaining" loop is
sequential.
"""
import numpy as np

# The release iterates over np.arange(0.1, 1.0, 0.1): 0.30000000000000004 and 0.7000000000000001 are part of
# its behaviour at ">=" comparisons, so the same float values are used here.
THRESHOLDS = np.arange(0.1, 1.0, 0.1)


def select_classes(class_probs, class_th=0.25):
    """Classes kept for localisation: s_c >= class_th, or the argmax class alone if none passes."""
    class_probs = np.asarray(class_probs)
    kept = np.flatnonzero(class_probs >= class_th)
    if kept.size == 0:
        kept = np.array([int(np.argmax(class_probs))])
    return kept


def upsample(curve, scale=24):
    """Linear interpolation of `curve` [T, ...] on the grid i * (1/scale), i < T*scale -> [T*scale, ...].

    Reproduces the release (scipy interp1d, kind="linear", fill_value="extrapolate", on
    np.arange(0, T, 1/scale)) to the last bit: the grid is i * (1/scale) as np.arange builds it, a grid point
    x uses the segment [ceil(x) - 1, ceil(x)] (searchsorted "left", so an integer x is reached from the left),
    clipped to the first and last segments (values past T-1 extrapolate the last two points), and the value
    is (y_hi - y_lo) * (x - x_lo) + y_lo. T = 1 gives a constant curve.
    """
    curve = np.asarray(curve, dtype=np.float64)
    T = curve.shape[0]
    if T == 1:
        return np.repeat(curve, scale, axis=0)
    grid = np.arange(T * scale) * (1.0 / scale)                                  # [T*scale]
    lo = np.clip(np.ceil(grid).astype(np.int64) - 1, 0, T - 2)                   # [T*scale]
    frac = (grid - lo).reshape((-1,) + (1,) * (curve.ndim - 1))                  # [T*scale, 1, ...]
    return (curve[lo + 1] - curve[lo]) * frac + curve[lo]                         # [T*scale, ...]


def find_runs(masks):
    """Maximal runs of True along the last axis of `masks` [..., N].

    Returns (index tuple of the leading axes, a, b) with a, b the inclusive ends; runs come in C order of the
    leading axes, then by position.
    """
    padded = np.zeros(masks.shape[:-1] + (masks.shape[-1] + 2,), dtype=np.int8)  # [..., N+2]
    padded[..., 1:-1] = masks
    edges = np.flatnonzero(np.diff(padded, axis=-1))                             # rises and falls alternate
    *lead, a = np.unravel_index(edges[0::2], masks.shape[:-1] + (masks.shape[-1] + 1,))
    return tuple(lead), a, edges[1::2] - edges[0::2] + a - 1


def outer_inner_scores(cumsum, rows, a, b, inflation=0.2):
    """Outer-inner contrast mean(curve[a..b]) - mean(outer) of runs, from the curves' cumulative sums.

    cumsum [K, N+1] holds prefix sums of K curves (cumsum[:, 0] = 0); rows, a, b [R]: each run's curve and
    inclusive ends. outer = outer_s..a-1 and b+1..outer_e with outer_s = max(0, int(a - inflation*len)),
    outer_e = min(N-1, int(b + inflation*len)); an empty outer counts as mean 0.
    """
    n = cumsum.shape[1] - 1
    length = b - a + 1
    outer_s = np.maximum(0, np.trunc(a - inflation * length).astype(np.int64))
    outer_e = np.minimum(n - 1, np.trunc(b + inflation * length).astype(np.int64))
    inner = (cumsum[rows, b + 1] - cumsum[rows, a]) / length
    outer_sum = (cumsum[rows, a] - cumsum[rows, outer_s]) + (cumsum[rows, outer_e + 1] - cumsum[rows, b + 1])
    outer_len = (a - outer_s) + (outer_e - b)
    outer = np.divide(outer_sum, outer_len, out=np.zeros(len(a)), where=outer_len > 0)
    return inner - outer


def generate_proposals(curves, class_probs, kept_classes, T_v, scale=24, thresholds=THRESHOLDS, score=(0.2, 0.2),
                       timing=(16, 25)):
    """Proposals of each kept class, all thresholds pooled (spec "Inference", before NMS).

    curves [T, C] is A_score; T_v the video's original snippet count. Returns a list aligned with
    kept_classes of arrays [N_k, 4] of rows (class, score, start_s, end_s), ordered by threshold then
    position (the release's pooling order). A position joins a run at threshold theta if its upsampled value
    is >= theta and > 0. Score = outer-inner contrast + class_weight * s_c, where ``score`` is (inflation of
    the outer region, class_weight); seconds = index * t_factor with
    t_factor = frames_per_snippet T_v / (scale T fps), end = (b + 1) t_factor, where ``timing`` is the
    features' (frames_per_snippet, fps).
    """
    curves = np.asarray(curves, dtype=np.float64)
    kept = np.asarray(kept_classes, dtype=np.int64)
    T = curves.shape[0]
    up = upsample(curves[:, kept], scale).T                                      # [K, N]
    thresholds = np.asarray(thresholds, dtype=np.float64)
    masks = (up[:, None, :] >= thresholds[None, :, None]) & (up[:, None, :] > 0)  # [K, n_th, N]
    (k, _), a, b = find_runs(masks)                                              # runs [R]
    cumsum = np.concatenate([np.zeros((len(kept), 1)), np.cumsum(up, axis=1)], axis=1)  # [K, N+1]
    class_probs = np.asarray(class_probs, dtype=np.float64)
    inflation, class_weight = score
    scores = outer_inner_scores(cumsum, k, a, b, inflation) + class_weight * class_probs[kept[k]]
    frames_per_snippet, fps = timing
    t_factor = (frames_per_snippet * T_v) / (scale * T * fps)
    props = np.stack([kept[k].astype(np.float64), scores, a * t_factor, (b + 1) * t_factor], axis=1)  # [R, 4]
    return [props[k == i] for i in range(len(kept))]


def temporal_iou(best, others):
    """IoU of one row (class, score, start, end) with rows [M, 4] -> [M], release's "+1" convention in seconds:
    inter = max(0, min_end - max_start + 1), area = end - start + 1."""
    inter = np.maximum(0.0, np.minimum(best[3], others[:, 3]) - np.maximum(best[2], others[:, 2]) + 1)
    return inter / ((best[3] - best[2] + 1) + (others[:, 3] - others[:, 2] + 1) - inter)


def _nms(props, iou_thresh, alpha):
    """Greedy NMS of [N, 4] rows; alpha None drops overlapping proposals (hard), else decays them (soft).

    Order as the release (np.argsort(scores)[::-1], sorted once on the original scores): descending score.
    Equal scores (none in the golden cases; identical rows from two thresholds are the usual source) are taken
    later input row first, which is what the release's reversed argsort gives where its sort is stable
    (numpy's small arrays); a stable sort makes this fixed here. Each step keeps the best remaining; the
    remaining ones with IoU >= iou_thresh to it leave the queue: soft NMS multiplies their score by
    exp(-IoU^2 / alpha) and sets them aside in queue order, hard NMS drops them. Output: kept rows in
    selection order, then (soft) the set-aside rows.
    """
    props = np.asarray(props, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(props[:, 1], kind="stable")[::-1]
    kept, aside = [], []
    while order.size:
        best, rest = props[order[0]], props[order[1:]]
        iou = temporal_iou(best, rest)
        kept.append(best)
        suppressed = iou >= iou_thresh
        if alpha is not None:
            decayed = rest[suppressed]                                            # a copy: props is untouched
            decayed[:, 1] *= np.exp(-np.square(iou[suppressed]) / alpha)
            aside.append(decayed)
        order = order[1:][~suppressed]
    return np.concatenate([np.reshape(kept, (-1, 4))] + aside, axis=0)


def soft_nms(props, iou_thresh=0.4, alpha=0.35):
    """Release soft-NMS of one class's proposals [N, 4] -> [N, 4] (see _nms for the order)."""
    return _nms(props, iou_thresh, alpha)


def hard_nms(props, iou_thresh=0.4):
    """Hard NMS of one class's proposals [N, 4] -> [M, 4]: overlapping proposals are dropped."""
    return _nms(props, iou_thresh, None)


def localize(curves, class_probs, kept_classes, T_v, *, soft=True, nms_thresh=0.4, alpha=0.35,
             **proposal_kwargs):
    """Detections of one video [N, 4] (class, score, start_s, end_s): proposals and NMS per kept class,
    concatenated in kept_classes order."""
    per_class = generate_proposals(curves, class_probs, kept_classes, T_v, **proposal_kwargs)
    nms = [soft_nms(p, nms_thresh, alpha) if soft else hard_nms(p, nms_thresh) for p in per_class]
    return np.concatenate([np.empty((0, 4))] + nms, axis=0)

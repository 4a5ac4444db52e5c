"""Temporal action detection mAP under the ActivityNet protocol (AICL_SPEC.md, "Detection mAP").

Per class, predictions are ranked by score (descending; ties keep input order) and each one is matched, at
every tIoU threshold independently, to the unmatched ground truth of its video and class with the highest
tIoU >= threshold (exact ties: the later ground truth in gt.json order). AP is the interpolated area of the
official evaluator (activitynet/ActivityNet, Evaluation/eval_detection.py); mAP averages AP over the classes
present in the ground truth of the subset. THUMOS14's "Ambiguous" marker (IGNORED_LABELS) is not a class: its
segments are dropped from the ground truth and predictions carrying it are dropped, as the official THUMOS14
evaluation does; the result counts them under "ignored" (see ignored_note).

The greedy matching is sequential only inside one (video, class) group, so all groups advance together:
step r processes the r-th best prediction of every group at once, with arrays [groups, max_gt, n_tiou].
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from utils.io import read_json

THUMOS_TIOU = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
IGNORED_LABELS = frozenset({"Ambiguous"})  # THUMOS14 marks unclear stretches so; they are not a class


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth instances of one subset, in gt.json order.

    classes: sorted class names present in the subset; other_classes: labels found only in other subsets;
    ignored: {IGNORED_LABELS label: annotations of the subset dropped}, only labels that occur;
    video_ids: every video of the subset (gt.json order);
    video [n] int index into video_ids; label [n] int index into classes; segment [n, 2] (start, end) seconds.
    """

    subset: str
    classes: list[str]
    other_classes: frozenset
    ignored: dict
    video_ids: list[str]
    video: np.ndarray
    label: np.ndarray
    segment: np.ndarray


@dataclass(frozen=True)
class _Detections:
    """Predictions kept for evaluation, in input order (results dict order, then list order).

    video [m] int index into GroundTruth.video_ids (-1: not a video of the subset); label [m] int index into
    GroundTruth.classes; score [m]; segment [m, 2] (start, end) seconds.
    """

    video: np.ndarray
    label: np.ndarray
    score: np.ndarray
    segment: np.ndarray


# ----------------------------------------------------------------------------------------------- reading


def _is_finite_number(x) -> bool:
    """True for a JSON number (not a bool) that is finite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _record_problem(record, score_keys: tuple[str, ...]) -> str | None:
    """What is wrong with one annotation / prediction record, or None.

    score_keys: the record must hold one of these (a finite number); () for ground truth.
    """
    if not isinstance(record, dict):
        return f"expected an object, got {type(record).__name__}"
    missing = [key for key in ("label", "segment") if key not in record]
    if score_keys and not any(key in record for key in score_keys):
        missing.append(" or ".join(score_keys))
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    if not isinstance(record["label"], str):
        return f"label {record['label']!r} is not a string"
    if score_keys:
        score = next(record[key] for key in score_keys if key in record)
        if not _is_finite_number(score):
            return f"score {score!r} is not a finite number"
    segment = record["segment"]
    if not (isinstance(segment, (list, tuple)) and len(segment) == 2 and all(map(_is_finite_number, segment))):
        return f"segment {segment!r} is not a pair of finite numbers"
    if segment[1] < segment[0]:
        return f"segment {segment!r} ends before it starts"
    return None


SUBSET_ALIASES = {"validation": "val"}  # SAL's ActivityNet gt.json names the validation subset "val"


def scored_subset(gt: dict, subset: str) -> str:
    """``subset``, or its alias in SUBSET_ALIASES when no video of gt.json is in ``subset`` and some are in
    the alias: the name of the subset that is scored."""
    database = gt.get("database") if isinstance(gt, dict) else None
    alias = SUBSET_ALIASES.get(subset)
    if alias is None or not isinstance(database, dict):
        return subset
    names = {entry.get("subset") for entry in database.values() if isinstance(entry, dict)}
    return alias if subset not in names and alias in names else subset


def load_ground_truth(gt: dict, subset: str) -> GroundTruth:
    """Ground truth of one subset from a gt.json dict {"database": {vid: {"subset", "annotations": [...]}}}.

    Raises ValueError naming the video for a malformed entry, or when the subset has no annotated instance.
    """
    database = gt.get("database") if isinstance(gt, dict) else None
    if not isinstance(database, dict):
        raise ValueError('ground truth: expected an object with a "database" object')
    video_ids, rows, elsewhere, ignored = [], [], set(), {}  # rows: (video index, label, start, end)
    for vid, entry in database.items():
        if not isinstance(entry, dict) or "subset" not in entry:
            raise ValueError(f'ground truth video {vid!r}: expected an object with a "subset"')
        if entry["subset"] != subset:
            annotations = entry.get("annotations")
            if isinstance(annotations, list):
                elsewhere.update(a["label"] for a in annotations
                                 if isinstance(a, dict) and isinstance(a.get("label"), str))
            continue
        annotations = entry.get("annotations")
        if not isinstance(annotations, list):
            raise ValueError(f'ground truth video {vid!r}: "annotations" is not a list')
        for k, annotation in enumerate(annotations):
            problem = _record_problem(annotation, score_keys=())
            if problem:
                raise ValueError(f"ground truth video {vid!r}, annotation {k}: {problem}")
            if annotation["label"] in IGNORED_LABELS:
                ignored[annotation["label"]] = ignored.get(annotation["label"], 0) + 1
                continue
            rows.append((len(video_ids), annotation["label"], *map(float, annotation["segment"])))
        video_ids.append(vid)
    if not rows:
        raise ValueError(f"ground truth: no annotated instance in subset {subset!r}")
    video, labels, start, end = zip(*rows)
    classes = sorted(set(labels))
    index = {name: i for i, name in enumerate(classes)}
    return GroundTruth(
        subset=subset,
        classes=classes,
        other_classes=frozenset(elsewhere - set(classes) - IGNORED_LABELS),
        ignored=ignored,
        video_ids=video_ids,
        video=np.array(video, dtype=np.int64),
        label=np.array([index[name] for name in labels], dtype=np.int64),
        segment=np.column_stack([start, end]),
    )


def _prediction_lists(results: dict) -> dict:
    """The {vid: [prediction, ...]} mapping of a result dict (or the mapping itself)."""
    if not isinstance(results, dict):
        raise ValueError(f"predictions: expected an object, got {type(results).__name__}")
    mapping = results["results"] if "results" in results else results
    if not isinstance(mapping, dict):
        raise ValueError('predictions: "results" is not an object')
    for vid, predictions in mapping.items():
        if not isinstance(predictions, list):
            raise ValueError(f"predictions for video {vid!r}: expected a list, got {type(predictions).__name__}")
    return mapping


def _fast_arrays(flat: list) -> tuple[list, np.ndarray, np.ndarray] | None:
    """(labels, score [m], segment [m, 2]) when every record is well formed, else None (cheap checks only)."""
    try:
        labels = [p["label"] for p in flat]
        score = np.array([p["score"] if "score" in p else p["score300"] for p in flat], dtype=float)
        segment = np.array([p["segment"] for p in flat], dtype=float).reshape(-1, 2)
    except (KeyError, TypeError, ValueError):
        return None
    ok = (
        len(segment) == len(flat)
        and np.isfinite(score).all()
        and np.isfinite(segment).all()
        and (segment[:, 1] >= segment[:, 0]).all()
        and all(isinstance(label, str) for label in labels)
    )
    return (labels, score, segment) if ok else None


def _first_problem(flat: list, video_ids: list[str], owner: np.ndarray) -> ValueError:
    """ValueError naming the video of the first malformed prediction record (owner [m]: its video_ids index)."""
    for i, record in enumerate(flat):
        problem = _record_problem(record, score_keys=("score", "score300"))
        if problem:
            return ValueError(f"prediction for video {video_ids[owner[i]]!r}: {problem}")
    return ValueError("predictions: malformed record")


def _load_detections(results: dict, gt: GroundTruth) -> _Detections:
    """Index the predictions against the ground truth.

    A label that no video of gt.json carries is an error naming the video; a label of gt.json without
    instances in the subset cannot change the mAP and is ignored (ActivityNet protocol), and so is a label of
    IGNORED_LABELS; predictions for videos outside the subset are false positives, with one warning.
    """
    mapping = _prediction_lists(results)
    flat = [p for predictions in mapping.values() for p in predictions]
    owner = np.repeat(np.arange(len(mapping)), [len(predictions) for predictions in mapping.values()])  # [m]
    arrays = _fast_arrays(flat)
    if arrays is None:
        raise _first_problem(flat, list(mapping), owner)
    labels, score, segment = arrays
    class_index = {name: i for i, name in enumerate(gt.classes)}
    video_index = {vid: i for i, vid in enumerate(gt.video_ids)}
    label = np.array([class_index.get(name, -1) for name in labels], dtype=np.int64)  # [m]
    video = np.array([video_index.get(vid, -1) for vid in mapping], dtype=np.int64)[owner]  # [m]
    known = label >= 0
    for i in np.flatnonzero(~known):
        if labels[i] not in gt.other_classes and labels[i] not in IGNORED_LABELS:
            raise ValueError(f"prediction for video {list(mapping)[owner[i]]!r}: label {labels[i]!r} is not a class "
                             f"of the ground truth ({len(gt.classes)} classes in {gt.subset!r})")
    stray = known & (video < 0)
    if stray.any():
        n_videos = len(np.unique(owner[stray]))
        warnings.warn(
            f"{np.count_nonzero(stray)} predictions for {n_videos} videos outside the {gt.subset!r} ground truth "
            "are counted as false positives",
            stacklevel=3,
        )
    return _Detections(video[known], label[known], score[known], segment[known])


def _thresholds(tiou_thresholds) -> np.ndarray:
    """tIoU thresholds as a float array [n_tiou], each in (0, 1]."""
    tiou = np.array(tiou_thresholds, dtype=float).reshape(-1)
    if tiou.size == 0 or not ((tiou > 0) & (tiou <= 1)).all():
        raise ValueError(f"tIoU thresholds must be a non-empty list of numbers in (0, 1], got {tiou_thresholds!r}")
    return tiou


# ---------------------------------------------------------------------------------------------- matching


def _ground_truth_groups(gt: GroundTruth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth gathered by (video, class) group.

    Returns keys [G] (video * n_classes + label, ascending), segments [G, K, 2] in gt.json order within a
    group (padding: NaN), and padding [G, K] bool, True for the slots past a group's instances.
    """
    key = gt.video * len(gt.classes) + gt.label  # [n]
    order = np.argsort(key, kind="stable")
    keys, first, count = np.unique(key[order], return_index=True, return_counts=True)
    slot = np.arange(len(order)) - np.repeat(first, count)  # position inside the group
    segments = np.full((len(keys), count.max(), 2), np.nan)
    segments[np.repeat(np.arange(len(keys)), count), slot] = gt.segment[order]
    return keys, segments, np.arange(count.max()) >= count[:, None]


def _tiou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """tIoU [a, K] of predictions [a, 2] with ground truth [a, K, 2], in the official evaluator's arithmetic.

    Two zero-length segments (union 0) have tIoU 0.
    """
    start, end = pred[:, :1], pred[:, 1:]  # [a, 1]
    intersection = np.clip(np.minimum(end, gt[..., 1]) - np.maximum(start, gt[..., 0]), 0, None)
    union = (gt[..., 1] - gt[..., 0]) + (end - start) - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union != 0)


def _best_unlocked(tiou: np.ndarray, locked: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction and threshold: the unlocked ground truth of highest tIoU, and whether it reaches the threshold.

    tiou [a, K]; locked [a, K, T]. Returns hit [a, T] bool and slot [a, T]; exact tIoU ties go to the later
    slot (argmax over the reversed axis returns the last maximum).
    """
    candidate = np.where(locked, -np.inf, tiou[:, :, None])  # [a, K, T]
    last = np.argmax(candidate[:, ::-1], axis=1)  # [a, T], counted from the end
    best = np.take_along_axis(candidate[:, ::-1], last[:, None], axis=1)[:, 0]  # [a, T]
    return best >= thresholds, candidate.shape[1] - 1 - last


def _true_positives(gt: GroundTruth, det: _Detections, thresholds: np.ndarray) -> np.ndarray:
    """tp [m, T] bool for the detections (input order); a detection without a ground-truth group is an FP."""
    keys, gt_segments, padding = _ground_truth_groups(gt)  # [G], [G, K, 2], [G, K]
    key = det.video * len(gt.classes) + det.label  # [m]
    group = np.minimum(np.searchsorted(keys, key), len(keys) - 1)  # [m]
    group = np.where((det.video >= 0) & (keys[group] == key), group, -1)

    matched = np.flatnonzero(group >= 0)
    order = matched[np.lexsort((-det.score[matched], group[matched]))]  # by group, best score first (stable)
    rank = np.arange(len(order)) - np.searchsorted(group[order], group[order])  # position inside the group
    order = order[np.argsort(rank, kind="stable")]  # processing order: rank 0 of every group, then rank 1, ...
    segments, groups = det.segment[order], group[order]  # [m', 2], [m']
    hits = np.empty((len(order), len(thresholds)), dtype=bool)  # [m', T]
    locked = np.repeat(padding[:, :, None], len(thresholds), axis=2)  # [G, K, T], padding never matches
    edges = [0, *np.cumsum(np.bincount(rank)).tolist()]
    for lo, hi in zip(edges[:-1], edges[1:]):  # one rank: at most one prediction per group
        g = groups[lo:hi]
        hit, slot = _best_unlocked(_tiou(segments[lo:hi], gt_segments[g]), locked[g], thresholds)  # [a, T]
        hits[lo:hi] = hit
        row, t = np.nonzero(hit)
        locked[g[row], slot[row, t], t] = True

    tp = np.zeros((len(key), len(thresholds)), dtype=bool)  # [m, T]
    tp[order] = hits
    return tp


# ------------------------------------------------------------------------------------------------ scoring


def _interpolated_prec_rec(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-style interpolated AP, as `interpolated_prec_rec` of the official evaluator."""
    mprec = np.concatenate(([0.0], precision, [0.0]))
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]  # monotone from the right
    step = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[step] - mrec[step - 1]) * mprec[step]))


def _average_precision(tp: np.ndarray, n_positive: int) -> np.ndarray:
    """AP [T] of one class from tp [n, T] of its ranked predictions; 0 without predictions."""
    tp_cum = np.cumsum(tp, axis=0, dtype=float)  # [n, T]
    fp_cum = np.cumsum(~tp, axis=0, dtype=float)
    recall = tp_cum / n_positive
    precision = tp_cum / (tp_cum + fp_cum)
    return np.array([_interpolated_prec_rec(precision[:, t], recall[:, t]) for t in range(tp.shape[1])])


def _evaluate(gt: GroundTruth, det: _Detections, thresholds: np.ndarray) -> dict:
    """mAP [T], average_mAP, ap_per_class {class: [T]}, tiou [T] and the subset scored."""
    tp = _true_positives(gt, det, thresholds)  # [m, T]
    n_classes = len(gt.classes)
    ranked = np.lexsort((-det.score, det.label))  # by class, best score first, ties in input order
    bounds = np.searchsorted(det.label[ranked], np.arange(n_classes + 1))
    n_positive = np.bincount(gt.label, minlength=n_classes)
    ap = np.stack(  # [T, C]
        [_average_precision(tp[ranked[bounds[c] : bounds[c + 1]]], n_positive[c]) for c in range(n_classes)],
        axis=1,
    )
    mean_ap = ap.mean(axis=1)
    return {
        "mAP": mean_ap,
        "average_mAP": float(mean_ap.mean()),
        "ap_per_class": {name: ap[:, c].copy() for c, name in enumerate(gt.classes)},
        "tiou": thresholds,
        "ignored": dict(gt.ignored),
        "subset": gt.subset,
    }


# ------------------------------------------------------------------------------------------------ public


def evaluate_detection(gt: dict, results: dict, subset: str = "test", tiou_thresholds=THUMOS_TIOU) -> dict:
    """Detection mAP of ActivityNet-format results against gt.json-format ground truth.

    gt: {"database": {vid: {"subset", "annotations": [{"label", "segment"}]}}}.
    results: {"version", "results": {vid: [{"label", "score" (or "score300"), "segment"}]}, "external_data"},
    or the inner {vid: [...]} mapping; "score" wins when both keys are present.
    Returns {"mAP": [T], "average_mAP": float, "ap_per_class": {class: [T]}, "tiou": [T]} (fractions) and
    "ignored": {label: n} for the ground-truth segments of IGNORED_LABELS dropped (empty when none), and
    "subset", the one scored: ``subset`` or its alias (scored_subset: "val" for "validation").
    Predictions for videos outside the subset count as false positives, those with labels outside its classes
    are ignored; each case warns once. Malformed input raises ValueError naming the video.
    """
    thresholds = _thresholds(tiou_thresholds)
    ground_truth = load_ground_truth(gt, scored_subset(gt, subset))
    return _evaluate(ground_truth, _load_detections(results, ground_truth), thresholds)


def ignored_note(ignored: dict, subset: str) -> str | None:
    """One line saying which ground-truth segments were not scored ("ignored" of a result), or None."""
    if not ignored:
        return None
    what = ", ".join(f"{n} {label!r}" for label, n in sorted(ignored.items()))
    return f"note: {what} segment(s) of subset {subset!r} not scored (not a class, as in the THUMOS14 protocol)"


def _parse_file(path, parse):
    """parse(JSON of path), with the file named in any ValueError."""
    data = read_json(path)
    try:
        return parse(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def evaluate_files(gt_path, pred_path, subset: str = "test", tiou_thresholds=THUMOS_TIOU) -> dict:
    """evaluate_detection on a gt.json file and a result file; errors name the file at fault."""
    thresholds = _thresholds(tiou_thresholds)
    ground_truth = _parse_file(gt_path, lambda data: load_ground_truth(data, scored_subset(data, subset)))
    detections = _parse_file(pred_path, lambda data: _load_detections(data, ground_truth))
    return _evaluate(ground_truth, detections, thresholds)

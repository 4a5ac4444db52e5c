"""False-positive breakdown of temporal action detections, after DETAD (Alwassel et al., ECCV 2018).

Per class c with N_c ground-truth instances in the subset, only the top-G predictions by score are analysed,
G = floor(top_factor * N_c) (DETAD's "top-G"; ties keep input order). Each of them is matched exactly as the
mAP evaluator matches (eval/detection.py: ranked by score, greedy, to the unmatched ground truth of its video and
class with the highest tIoU >= tiou); a matched prediction is a true positive. Every other prediction gets the
FIRST type of this list whose condition holds, tIoU being taken with the ground truth of its own video:

    1. double_detection  tIoU >= tiou with a ground truth of the same class (all such instances are already
                         matched by better predictions, or this one would have matched);
    2. wrong_label       tIoU >= tiou with a ground truth of another class;
    3. localization      tIoU >= 0.1 with a ground truth of the same class (below tiou, else rule 1);
    4. confusion         tIoU >= 0.1 with a ground truth of another class (below tiou, else rule 2);
    5. background        tIoU < 0.1 with every ground truth of the video (or a video outside the subset).

Segments of IGNORED_LABELS (THUMOS14's "Ambiguous") are not ground truth here either (see detection.py), so a
false positive on such a stretch alone is background.

DETAD itself picks between rules 1/2 and 3/4 by the label of the single ground truth of highest tIoU; here a
same-class overlap wins over a stronger other-class one. With tiou <= 0.1 rules 3 and 4 never apply.

prediction_codes gives the type of every single prediction (the report page colours detections by it).

Cost: the matching reuses detection.py (one numpy step per rank inside a (video, class) group); the typing is
one vectorised pass over the (false positive, instance of its video) pairs: O(sum over the kept false
positives of the number of instances in their video) time and memory, no Python loop over predictions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from utils.cli import run as run_cli

from .detection import (
    GroundTruth,
    _Detections,
    _load_detections,
    _parse_file,
    _thresholds,
    _tiou,
    _true_positives,
    ignored_note,
    load_ground_truth,
)

FP_TYPES = ("double_detection", "wrong_label", "localization", "confusion", "background")
MIN_TIOU = 0.1  # below it (with every ground truth) a false positive is background


def _check_options(tiou: float, top_factor: float) -> tuple[float, float]:
    """(tiou, top_factor) as floats; ValueError for a threshold outside (0, 1] or a non-positive top_factor."""
    factor = float(top_factor) if isinstance(top_factor, (int, float, np.number)) else math.nan
    if isinstance(top_factor, bool) or not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"top_factor must be a positive number, got {top_factor!r}")
    return float(_thresholds([tiou])[0]), factor


def _top_g_index(gt: GroundTruth, det: _Detections, top_factor: float) -> np.ndarray:
    """Indices into det (ascending) of the top floor(top_factor * N_c) predictions by score of every class c."""
    ranked = np.lexsort((-det.score, det.label))  # by class, best score first, ties in input order
    rank = np.arange(len(ranked)) - np.searchsorted(det.label[ranked], det.label[ranked])  # position in class
    budget = np.floor(top_factor * np.bincount(gt.label, minlength=len(gt.classes)))  # [C]
    return np.sort(ranked[rank < budget[det.label[ranked]]])


def _top_g(gt: GroundTruth, det: _Detections, top_factor: float) -> _Detections:
    """The top floor(top_factor * N_c) predictions by score of every class c, kept in input order."""
    keep = _top_g_index(gt, det, top_factor)
    return _Detections(det.video[keep], det.label[keep], det.score[keep], det.segment[keep])


def _video_pairs(gt: GroundTruth, video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (prediction, ground truth of its video) pair, for predictions on video [f] (-1: none).

    Returns owner [p] (index into video, ascending) and instance [p] (index into the ground truth), with
    p = the summed number of instances of the predictions' videos.
    """
    count = np.bincount(gt.video, minlength=len(gt.video_ids))  # [V]
    by_video = np.argsort(gt.video, kind="stable")  # [n] instances grouped by video
    n_pairs = np.where(video >= 0, count[video], 0)  # [f]
    owner = np.repeat(np.arange(len(video)), n_pairs)  # [p]
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)  # [p] rank in the video
    return owner, by_video[(np.cumsum(count) - count)[video[owner]] + offset]


def _fp_types(gt: GroundTruth, det: _Detections, fp: np.ndarray, tiou: float) -> np.ndarray:
    """Index into FP_TYPES [f] of the false positives fp [f] (indices into det), by the module's precedence.

    Each (false positive, instance of its video) pair gets the first rule it satisfies (background when none);
    the type of a false positive is the smallest rule index over its pairs.
    """
    owner, instance = _video_pairs(gt, det.video[fp])  # [p], [p]
    overlap = _tiou(det.segment[fp[owner]], gt.segment[instance, None])[:, 0]  # [p]
    same = gt.label[instance] == det.label[fp[owner]]  # [p]
    high, low = overlap >= tiou, overlap >= MIN_TIOU
    rule = np.select([high & same, high & ~same, low & same, low & ~same], [0, 1, 2, 3], default=4)  # [p]
    kind = np.full(len(fp), FP_TYPES.index("background"))  # [f], kept by a false positive without pairs
    start = np.flatnonzero(np.diff(owner, prepend=-1))  # first pair of each false positive that has pairs
    kind[owner[start]] = np.minimum.reduceat(rule, start)
    return kind


def _type_counts(codes: np.ndarray, label: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [C, 6] per class of codes [k] (0: true positive, 1 + FP_TYPES index) of predictions of label [k]."""
    n_codes = 1 + len(FP_TYPES)
    return np.bincount(label * n_codes + codes, minlength=n_classes * n_codes).reshape(n_classes, n_codes)


def _codes(gt: GroundTruth, det: _Detections, tiou: float) -> np.ndarray:
    """Code [m] of every prediction of det (all analysed): 0 true positive, else 1 + FP_TYPES index."""
    tp = _true_positives(gt, det, np.array([tiou]))[:, 0]  # [m]
    codes = np.zeros(len(tp), dtype=np.int64)
    fp = np.flatnonzero(~tp)
    codes[fp] = 1 + _fp_types(gt, det, fp, tiou)
    return codes


def prediction_codes(gt: GroundTruth, det: _Detections, tiou: float = 0.5, top_factor: float = 1) -> np.ndarray:
    """Per prediction of loaded detections (detection._load_detections, input order) what the breakdown made of
    it: -1 not analysed (outside the top-G of its class), 0 true positive, else 1 + FP_TYPES index.

    The analysed ones are exactly those false_positive_breakdown counts, with the same types.
    """
    tiou, top_factor = _check_options(tiou, top_factor)
    keep = _top_g_index(gt, det, top_factor)
    codes = np.full(len(det.score), -1, dtype=np.int64)
    codes[keep] = _codes(gt, _top_g(gt, det, top_factor), tiou)
    return codes


def _breakdown(gt: GroundTruth, det: _Detections, tiou: float, top_factor: float) -> dict:
    """The result of false_positive_breakdown from loaded ground truth and detections."""
    det = _top_g(gt, det, top_factor)
    codes = _codes(gt, det, tiou)  # [m] 0: true positive, else 1 + FP_TYPES index
    n_fp = int(np.count_nonzero(codes))
    per_class = _type_counts(codes, det.label, len(gt.classes))  # [C, 6]
    totals = per_class.sum(axis=0).tolist()  # [6]
    names = ("true_positive", *FP_TYPES)
    n_gt = np.bincount(gt.label, minlength=len(gt.classes))
    return {
        "subset": gt.subset,
        "ignored": dict(gt.ignored),
        "tiou": tiou,
        "top_factor": top_factor,
        "predictions": len(codes),
        "true_positive": totals[0],
        "false_positive": n_fp,
        "counts": dict(zip(FP_TYPES, totals[1:])),
        "fractions": {name: n / n_fp if n_fp else 0.0 for name, n in zip(FP_TYPES, totals[1:])},
        "per_class": {
            name: {"ground_truth": int(n_gt[c]), "predictions": int(per_class[c].sum()),
                   **dict(zip(names, per_class[c].tolist()))}
            for c, name in enumerate(gt.classes)
        },
    }


def false_positive_breakdown(gt: dict, results: dict, subset: str = "test", tiou: float = 0.5,
                             top_factor: float = 1) -> dict:
    """DETAD false-positive breakdown of ActivityNet-format results (see the module docstring for the rules).

    gt, results: as for eval.detection.evaluate_detection (same reading rules, errors and warnings).
    Returns {"subset", "ignored" (as evaluate_detection's), "tiou", "top_factor",
             "predictions": analysed (top-G) predictions, "true_positive": n, "false_positive": n,
             "counts": {FP type: n}, "fractions": {FP type: n / false_positive (0.0 without false positives)},
             "per_class": {class: {"ground_truth", "predictions", "true_positive", FP type...: n}}},
    FP types in FP_TYPES order; plain ints and floats, so json.dumps takes it as is.
    """
    tiou, top_factor = _check_options(tiou, top_factor)
    ground_truth = load_ground_truth(gt, subset)
    return _breakdown(ground_truth, _load_detections(results, ground_truth), tiou, top_factor)


def false_positive_breakdown_files(gt_path, pred_path, subset: str = "test", tiou: float = 0.5,
                                   top_factor: float = 1) -> dict:
    """false_positive_breakdown on a gt.json file and a result file; errors name the file at fault."""
    tiou, top_factor = _check_options(tiou, top_factor)
    ground_truth = _parse_file(gt_path, lambda data: load_ground_truth(data, subset))
    detections = _parse_file(pred_path, lambda data: _load_detections(data, ground_truth))
    return _breakdown(ground_truth, detections, tiou, top_factor)


# ------------------------------------------------------------------------------------------ command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.fp_analysis", description="DETAD false-positive breakdown of detection results."
    )
    parser.add_argument("--gt", required=True, help="ground truth in gt.json form")
    parser.add_argument("--pred", required=True, help="result file in ActivityNet detection form")
    parser.add_argument("--subset", default="test", help="ground-truth subset (default: test)")
    parser.add_argument("--tiou", type=float, default=0.5, help="tIoU threshold of a true positive (default: 0.5)")
    parser.add_argument("--top_factor", type=float, default=1.0,
                        help="analyse the top top_factor x N_c predictions of each class (default: 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser.parse_args(argv)


def _table(result: dict) -> str:
    """Readable table: one row per false-positive type with its count and its share of the false positives."""
    lines = [
        f"subset {result['subset']}, tIoU {result['tiou']:g}, top-{result['top_factor']:g}G: "
        f"{result['predictions']} predictions, {result['true_positive']} true positives",
        f"{'type':<18} {'count':>7} {'% of FPs':>9}",
    ]
    lines += [f"{name:<18} {result['counts'][name]:>7} {100 * result['fractions'][name]:>9.2f}" for name in FP_TYPES]
    lines.append(f"{'false positives':<18} {result['false_positive']:>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Analyse and print; a missing or malformed input is a ValueError/FileNotFoundError naming it."""
    args = _parse_args(argv)
    result = false_positive_breakdown_files(args.gt, args.pred, args.subset, args.tiou, args.top_factor)
    note = ignored_note(result["ignored"], args.subset)
    if note:
        print(note, file=sys.stderr)
    print(json.dumps(result) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

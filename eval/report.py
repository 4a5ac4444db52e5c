"""report.html: one self-contained page showing what a localization run did (issue #20).

The page (data, script and styles inline; nothing fetched, opens from file://) has
  * an overview: the mAP table (every tIoU and the averages), the AP of every class, and, with ground truth, the
    DETAD false-positive breakdown of eval/fp_analysis.py as a chart; the run's settings in a collapsed block;
  * a table of the videos: length, detections, per-video AP at tIoU 0.5 and the most frequent false-positive
    type, sortable and filterable by class;
  * one video at a time: a timeline per class with the ground truth and the detections (opacity by score, colour
    by what the breakdown made of them), the subset's segments of IGNORED_LABELS (THUMOS14's "Ambiguous") hatched
    on a row of their own, the activation curves of the run under it, and the video itself when the predictions
    were made on video files. report.html#VIDEO_ID opens that video; opening one puts its link in the address.

The video table draws a window of its rows (report.js), so that sorting and filtering 4,926 ActivityNet videos
takes one sort and a few hundred rows. In the page the detections' labels, times and codes are typed arrays in
base64 (packed); above EXACT_DETECTIONS detections their times and scores are float32.

Per-video AP (VIDEO_TIOU): for each class annotated in the video, the AP of that video's detections of the
class against that video's instances of it alone, matched exactly as eval/detection.py matches (greedy inside a
(video, class) group, so the match flags are those of the whole-subset evaluation); the video's AP is the mean
over its annotated classes. Detections of classes not annotated in the video do not enter it (they are false
positives of the subset's mAP all the same). A video without annotated instances has no AP.

Predictions whose label is no class of the scored subset (another subset's class, THUMOS14's "Ambiguous", or a
class the ground truth does not know) are drawn but not scored, so the page's mAP is the evaluator's for every
file `python -m eval` accepts.

Curves file (save_curves / load_curves): curves.npz next to predictions.json, {video id: {"seconds_per_sample":
float, "curves": {name: 1-D float array}}}, stored as an "index" entry (JSON text: [[video id, seconds per
sample, [names]], ...]) and one array "c<k>_<j>" per curve (k: position in the index, j: position in names).

Command line: python -m eval.report --pred P.json [--gt gt.json] [--subset test] [--tiou ...] [--out report.html]
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import sys
import urllib.request
import zipfile
from dataclasses import dataclass, field

import numpy as np

from utils.cli import run as run_cli
from utils.io import save_text, write_atomic

from .detection import (
    IGNORED_LABELS,
    THUMOS_TIOU,
    GroundTruth,
    _average_precision,
    _Detections,
    _evaluate,
    _fast_arrays,
    _first_problem,
    _parse_file,
    _prediction_lists,
    _thresholds,
    _true_positives,
    load_ground_truth,
    scored_subset,
)
from .fp_analysis import FP_TYPES, _breakdown, prediction_codes

VIDEO_TIOU = 0.5  # tIoU of the per-video AP and of the false-positive types
CURVES_FILE = "curves.npz"
ASSETS = os.path.dirname(os.path.abspath(__file__))
TYPED_ARRAYS = {"uint8": "Uint8Array", "uint16": "Uint16Array", "uint32": "Uint32Array", "int8": "Int8Array",
                "float32": "Float32Array", "float64": "Float64Array"}
# a page with more detections holds their times and scores in float32 (7 significant digits, not all 16): an
# ActivityNet v1.3 validation page (4,926 videos x 100 detections) then stays under 20 MB with its curves
EXACT_DETECTIONS = 200_000


@dataclass(frozen=True)
class RunInfo:
    """What the page shows besides predictions and ground truth.

    settings: the run's settings shown as they are (checkpoint, dataset, options: plain JSON-able values);
    curves: activation curves in load_curves form (empty: none); durations: {video id: seconds}, used where
    gt.json has no "duration"; media: {video id: path of the source video file} for predictions on videos.
    """

    settings: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    durations: dict = field(default_factory=dict)
    media: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Flat:
    """Every prediction in input order: video ids (results order), owner [m] index into them, labels, score [m],
    segment [m, 2]."""

    video_ids: list
    owner: np.ndarray
    labels: list
    score: np.ndarray
    segment: np.ndarray


# -------------------------------------------------------------------------------------------- curves file


def save_curves(path, curves: dict) -> None:
    """Write curves {video id: {"seconds_per_sample": float, "curves": {name: 1-D array}}} to path (.npz),
    atomically; float32 samples."""
    index, arrays = [], {}
    for k, (vid, entry) in enumerate(curves.items()):
        names = list(entry["curves"])
        index.append([vid, float(entry["seconds_per_sample"]), names])
        for j, name in enumerate(names):
            arrays[f"c{k}_{j}"] = np.asarray(entry["curves"][name], dtype=np.float32).reshape(-1)
    arrays["index"] = np.array(json.dumps(index))
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def load_curves(path) -> dict:
    """Curves written by save_curves; FileNotFoundError / ValueError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            index = json.loads(str(npz["index"]))
            return {vid: {"seconds_per_sample": float(seconds),
                          "curves": {name: npz[f"c{k}_{j}"].astype(float) for j, name in enumerate(names)}}
                    for k, (vid, seconds, names) in enumerate(index)}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a curves file ({err})") from err


# ------------------------------------------------------------------------------------------------- reading


def _flat_predictions(results) -> _Flat:
    """Every prediction of a result dict (as eval.detection reads it); ValueError naming the video at fault."""
    mapping = _prediction_lists(results)
    flat = [p for predictions in mapping.values() for p in predictions]
    owner = np.repeat(np.arange(len(mapping), dtype=np.int64), [len(p) for p in mapping.values()])  # [m]
    arrays = _fast_arrays(flat)
    if arrays is None:
        raise _first_problem(flat, list(mapping), owner)
    return _Flat(list(mapping), owner, *arrays)


def _truth(gt: dict, subset: str) -> tuple[dict, GroundTruth]:
    """(gt.json dict, its scored subset loaded)."""
    return gt, load_ground_truth(gt, scored_subset(gt, subset))


def _scored(flat: _Flat, gt: GroundTruth) -> tuple[np.ndarray, _Detections]:
    """known [m] (label a class of the subset) and the known predictions as the evaluator holds them
    (video -1: outside the subset, a false positive)."""
    class_index = {name: c for c, name in enumerate(gt.classes)}
    video_index = {vid: v for v, vid in enumerate(gt.video_ids)}
    label = np.array([class_index.get(name, -1) for name in flat.labels], dtype=np.int64)  # [m]
    video = np.array([video_index.get(vid, -1) for vid in flat.video_ids], dtype=np.int64)[flat.owner]  # [m]
    known = label >= 0
    return known, _Detections(video[known], label[known], flat.score[known], flat.segment[known])


# ----------------------------------------------------------------------------------------------- analysis


def _group_ap(gt: GroundTruth, det: _Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP at VIDEO_TIOU of every (video, class) group of the ground truth, on the group's detections alone.

    Returns video [G] (GroundTruth.video_ids index), label [G] (class index) and ap [G].
    """
    n_classes = len(gt.classes)
    tp = _true_positives(gt, det, np.array([VIDEO_TIOU]))  # [m, 1], matching is per group already
    keys, n_positive = np.unique(gt.video * n_classes + gt.label, return_counts=True)  # [G]
    det_key = np.where(det.video >= 0, det.video * n_classes + det.label, -1)  # [m]
    ranked = np.lexsort((-det.score, det_key))  # by group, best score first, ties in input order
    lo, hi = np.searchsorted(det_key[ranked], keys), np.searchsorted(det_key[ranked], keys, side="right")
    ap = np.array([_average_precision(tp[ranked[a:b]], n)[0] for a, b, n in zip(lo, hi, n_positive)])
    return keys // n_classes, keys % n_classes, ap


def _worst_types(codes: np.ndarray, video: np.ndarray, n_videos: int) -> np.ndarray:
    """Per video [V] the FP_TYPES index most frequent among its false positives (ties: the earlier type), -1
    without false positives. codes [m]: 1 + FP_TYPES index for a false positive; video [m]: page index."""
    fp = codes >= 1
    counts = np.bincount(video[fp] * len(FP_TYPES) + codes[fp] - 1, minlength=n_videos * len(FP_TYPES))
    counts = counts.reshape(n_videos, len(FP_TYPES))
    return np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), -1)


def _averages(tiou: np.ndarray, mean_ap: np.ndarray) -> list:
    """[[name, value]] of the mAP averages: THUMOS14's AVG(0.1:0.5) and AVG(0.1:0.7), else one AVG."""
    if tuple(tiou.tolist()) == THUMOS_TIOU:
        return [["AVG(0.1:0.5)", float(mean_ap[:5].mean())], ["AVG(0.1:0.7)", float(mean_ap.mean())]]
    return [["AVG", float(mean_ap.mean())]]


def _nullable(values) -> list:
    """Floats with NaN as None (JSON null)."""
    return [None if math.isnan(x) else float(x) for x in np.asarray(values, dtype=float).tolist()]


def _truth_data(flat: _Flat, gt: GroundTruth, thresholds: np.ndarray, page: dict) -> dict:
    """The page's entries that need ground truth: metrics, fp, groups, per-video ap and worst, det codes.

    page: {"videos": page video ids, "video_index": {id: page index}, "class_index": {class: page index},
           "video": page video [m] of each prediction}.
    Codes: -2 not scored (label no class of the subset), else prediction_codes' (-1 outside the top-G).
    """
    known, det = _scored(flat, gt)
    result = _evaluate(gt, det, thresholds)
    codes = np.full(len(flat.score), -2, dtype=np.int64)
    codes[known] = prediction_codes(gt, det, VIDEO_TIOU)
    g_video, g_label, g_ap = _group_ap(gt, det)
    to_page = np.array([page["video_index"][vid] for vid in gt.video_ids], dtype=np.int64)  # [V_gt]
    to_class = np.array([page["class_index"][name] for name in gt.classes], dtype=np.int64)
    n_videos = len(page["videos"])
    count = np.bincount(to_page[g_video], minlength=n_videos)
    video_ap = np.bincount(to_page[g_video], weights=g_ap, minlength=n_videos) / np.where(count, count, np.nan)
    return {
        "metrics": {"subset": gt.subset, "tiou": thresholds.tolist(), "mAP": result["mAP"].tolist(),
                    "averages": _averages(thresholds, result["mAP"]), "ignored": result["ignored"],
                    "ap_per_class": {name: ap.tolist() for name, ap in result["ap_per_class"].items()}},
        "fp": _breakdown(gt, det, VIDEO_TIOU, 1.0),
        "groups": {"video": to_page[g_video].tolist(), "label": to_class[g_label].tolist(), "ap": g_ap.tolist()},
        "video_ap": _nullable(video_ap),
        "worst": _worst_types(codes, page["video"], n_videos).tolist(),
        "codes": codes,
    }


# ------------------------------------------------------------------------------------------------ page data


def _duration(vid: str, gt: dict | None, run: RunInfo, last_end: float) -> float:
    """Length of a video in seconds: gt.json "duration", else run.durations, else the curves' extent, else
    last_end (the end of its last detection or ground-truth instance)."""
    entry = (gt or {}).get("database", {}).get(vid)
    for value in ((entry or {}).get("duration") if isinstance(entry, dict) else None, run.durations.get(vid)):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
    curves = run.curves.get(vid)
    if curves and curves["curves"]:
        return float(curves["seconds_per_sample"] * max(len(c) for c in curves["curves"].values()))
    return float(last_end)


def _quantised(curve) -> tuple[float, float, bytes]:
    """(min, max, uint8 samples over min..max) of a curve; non-finite samples become the minimum."""
    curve = np.asarray(curve, dtype=float).reshape(-1)
    finite = curve[np.isfinite(curve)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scaled = (np.where(np.isfinite(curve), curve, lo) - lo) / (hi - lo if hi > lo else 1.0)
    return lo, hi, np.round(scaled * 255).astype(np.uint8).tobytes()


def _encode_curves(curves: dict, video_index: dict) -> dict:
    """{page video index: {"seconds_per_sample", "names", "lo", "hi", "length", "data": base64 uint8}} of the
    curves of the page's videos (each curve quantised over its own min..max)."""
    encoded = {}
    for vid, entry in curves.items():
        if vid not in video_index:
            continue
        parts = [_quantised(curve) for curve in entry["curves"].values()]
        encoded[str(video_index[vid])] = {
            "seconds_per_sample": float(entry["seconds_per_sample"]), "names": list(entry["curves"]),
            "lo": [p[0] for p in parts], "hi": [p[1] for p in parts], "length": [len(p[2]) for p in parts],
            "data": base64.b64encode(b"".join(p[2] for p in parts)).decode("ascii"),
        }
    return encoded


def _media_url(path, folder: str) -> str:
    """URL of a video file relative to the report's folder (absolute file: URL across drives)."""
    try:
        return urllib.request.pathname2url(os.path.relpath(os.path.abspath(path), folder))
    except ValueError:
        return "file:" + urllib.request.pathname2url(os.path.abspath(path))


def _video_rows(videos: list, truth: tuple | None, run: RunInfo, last_end: np.ndarray, folder: str) -> dict:
    """The page's per-video columns that need no scoring: id, duration, media URL (None without a file)."""
    gt = truth[0] if truth else None
    return {
        "id": videos,
        "duration": [_duration(vid, gt, run, end) for vid, end in zip(videos, last_end.tolist())],
        "media": [_media_url(run.media[vid], folder) if vid in run.media else None for vid in videos],
    }


def _ignored_columns(truth: tuple | None, video_index: dict) -> dict:
    """The subset's segments of IGNORED_LABELS (THUMOS14's "Ambiguous"; not scored) as page columns: names (the
    labels that occur, sorted), video (page index), label (index into names), start, end; in gt.json order."""
    rows = []
    if truth is not None:
        database = truth[0]["database"]
        rows = [(video_index[vid], a["label"], *map(float, a["segment"])) for vid in truth[1].video_ids
                for a in database[vid]["annotations"] if a["label"] in IGNORED_LABELS]
    names = sorted({row[1] for row in rows})
    return {"names": names, "video": [r[0] for r in rows], "label": [names.index(r[1]) for r in rows],
            "start": [r[2] for r in rows], "end": [r[3] for r in rows]}


def _ground_truth_columns(gt: GroundTruth | None, video_index: dict, class_index: dict) -> dict:
    """Ground-truth instances as page columns: video, label (page indices), start, end."""
    if gt is None:
        return {"video": [], "label": [], "start": [], "end": []}
    return {
        "video": [video_index[gt.video_ids[v]] for v in gt.video.tolist()],
        "label": [class_index[gt.classes[c]] for c in gt.label.tolist()],
        "start": gt.segment[:, 0].tolist(),
        "end": gt.segment[:, 1].tolist(),
    }


def _page_data(flat: _Flat, truth: tuple | None, thresholds: np.ndarray, run: RunInfo, folder: str) -> dict:
    """Everything the page shows, as JSON-able columns (see report.js for the reading side).

    truth: (gt.json dict, GroundTruth of the scored subset) or None; folder: where the page is written.
    Detections are grouped by page video (det.offset [V + 1]), in input order inside a video.
    """
    gt = truth[1] if truth else None
    videos = list(dict.fromkeys([*(gt.video_ids if gt else []), *flat.video_ids]))
    video_index = {vid: v for v, vid in enumerate(videos)}
    classes = sorted(set(gt.classes if gt else ()) | set(flat.labels))
    class_index = {name: c for c, name in enumerate(classes)}
    page_video = np.array([video_index[vid] for vid in flat.video_ids], dtype=np.int64)[flat.owner]  # [m]
    gt_columns = _ground_truth_columns(gt, video_index, class_index)
    last_end = np.zeros(len(videos))
    np.maximum.at(last_end, page_video, flat.segment[:, 1])
    np.maximum.at(last_end, np.array(gt_columns["video"], dtype=np.int64), np.array(gt_columns["end"]))
    scored = None
    if gt is not None:
        page = {"videos": videos, "video_index": video_index, "class_index": class_index, "video": page_video}
        scored = _truth_data(flat, gt, thresholds, page)
    order = np.argsort(page_video, kind="stable")
    offset = np.searchsorted(page_video[order], np.arange(len(videos) + 1))
    label = np.array([class_index[name] for name in flat.labels], dtype=np.int64)
    rows = _video_rows(videos, truth, run, last_end, folder)
    rows.update(n_det=np.diff(offset).tolist(), ap=scored["video_ap"] if scored else None,
                worst=scored["worst"] if scored else None)
    return {
        "settings": run.settings, "classes": classes, "fp_types": list(FP_TYPES), "video_tiou": VIDEO_TIOU,
        "metrics": scored["metrics"] if scored else None, "fp": scored["fp"] if scored else None,
        "groups": scored["groups"] if scored else None, "videos": rows, "gt": gt_columns,
        "ignored": _ignored_columns(truth, video_index),
        "det": {"offset": offset.tolist(), "label": label[order].tolist(), "score": flat.score[order].tolist(),
                "start": flat.segment[order, 0].tolist(), "end": flat.segment[order, 1].tolist(),
                "code": scored["codes"][order].tolist() if scored else None},
        "curves": _encode_curves(run.curves, video_index),
    }


# ------------------------------------------------------------------------------------------------ the page


def _typed(values, dtype: str) -> dict:
    """A column the page reads as a JavaScript typed array (report.js's column()): {"type": its name, "data":
    base64 of the little-endian values}."""
    array = np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"type": TYPED_ARRAYS[dtype], "data": base64.b64encode(array.tobytes()).decode("ascii")}


def _float32_numbers(values) -> list:
    """Floats rounded to float32, as the shortest decimals that give them back (JSON numbers half as long)."""
    return [float(text) for text in np.asarray(values, dtype=np.float32).astype(str).tolist()]


def packed(data: dict, exact: bool) -> dict:
    """The form of report_data's dict embedded in the page: the detections' label, start, end and code as typed
    arrays (labels in the smallest unsigned type that holds them, codes in int8), everything else as it is. exact:
    times in float64; else (a large page) times in float32, and the scores and the curves' ranges JSON numbers at
    float32 precision (the shortest decimals that give the float32 back)."""
    det = data["det"]
    n_classes = len(data["classes"])
    label_type = "uint8" if n_classes <= 1 << 8 else "uint16" if n_classes <= 1 << 16 else "uint32"
    time_type, numbers = ("float64", list) if exact else ("float32", _float32_numbers)
    packed_det = {"offset": det["offset"], "label": _typed(det["label"], label_type), "score": numbers(det["score"]),
                  "start": _typed(det["start"], time_type), "end": _typed(det["end"], time_type),
                  "code": None if det["code"] is None else _typed(det["code"], "int8")}
    curves = {v: {**entry, "lo": numbers(entry["lo"]), "hi": numbers(entry["hi"])}
              for v, entry in data["curves"].items()}
    return {**data, "det": packed_det, "curves": curves}


def render_html(data: dict, title: str) -> str:
    """The self-contained page: data (packed, exact up to EXACT_DETECTIONS detections; JSON, '<' escaped),
    report.css and report.js inline."""
    with open(os.path.join(ASSETS, "report.css"), encoding="utf-8") as file:
        css = file.read()
    with open(os.path.join(ASSETS, "report.js"), encoding="utf-8") as file:
        script = file.read()
    exact = len(data["det"]["score"]) <= EXACT_DETECTIONS
    payload = json.dumps(packed(data, exact), separators=(",", ":"), allow_nan=False, default=str)
    payload = payload.replace("<", "\\u003c")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>\n{css}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            f'<script type="application/json" id="report-data">{payload}</script>\n'
            f"<script>\n{script}</script>\n</body>\n</html>\n")


def report_data(predictions: dict, gt: dict | None = None, subset: str = "test", tiou=THUMOS_TIOU,
                run: RunInfo | None = None, folder: str = ".") -> dict:
    """The data embedded in the page (what write_report shows), for a result dict and optional gt.json dict.

    Malformed input raises ValueError naming the video (as eval.detection.evaluate_detection).
    """
    truth = _truth(gt, subset) if gt is not None else None
    return _page_data(_flat_predictions(predictions), truth, _thresholds(tiou), run or RunInfo(), folder)


def write_report(path, predictions: dict, gt: dict | None = None, subset: str = "test", tiou=THUMOS_TIOU,
                 run: RunInfo | None = None) -> str:
    """Write report.html at path (atomically, replacing an earlier one) and return path as a string.

    predictions: the result dict of predictions.json; gt: the gt.json dict (None: predictions without ground
    truth, no scores); subset, tiou: as for eval.detection.evaluate_detection; run: settings, curves,
    durations and video files of the run (RunInfo). Malformed input raises ValueError naming the video.
    """
    folder = os.path.dirname(os.path.abspath(path))
    data = report_data(predictions, gt, subset, tiou, run, folder)
    save_text(render_html(data, _title(path)), path)
    return os.fspath(path)


def _title(path) -> str:
    """Page title: the name of the run's folder."""
    return f"{os.path.basename(os.path.dirname(os.path.abspath(path))) or 'run'}: detections report"


# ------------------------------------------------------------------------------------------ command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.report",
        description=f"Write report.html for a result file; {CURVES_FILE} next to it is shown when present.",
    )
    parser.add_argument("--pred", required=True, help="result file in ActivityNet detection form")
    parser.add_argument("--gt", help="ground truth in gt.json form (without it: no scores)")
    parser.add_argument("--out", help="page to write (default: report.html next to --pred)")
    parser.add_argument("--subset", default="test",
                        help="ground-truth subset to score (default: test); 'validation' scores 'val' when "
                             "gt.json has only that (SAL's name)")
    parser.add_argument(
        "--tiou", type=float, nargs="+", default=list(THUMOS_TIOU), help="tIoU thresholds (default: 0.1 ... 0.7)"
    )
    return parser.parse_args(argv)


def _run_from_files(args: argparse.Namespace) -> RunInfo:
    """Settings shown for a page made on the command line, and the curves file next to --pred if any."""
    curves_path = os.path.join(os.path.dirname(os.path.abspath(args.pred)), CURVES_FILE)
    has_curves = os.path.exists(curves_path)
    settings = {"predictions": os.path.abspath(args.pred), "ground truth": args.gt and os.path.abspath(args.gt),
                "subset": args.subset if args.gt else None, "curves": curves_path if has_curves else None}
    return RunInfo(settings=settings, curves=load_curves(curves_path) if has_curves else {})


def main(argv: list[str] | None = None) -> int:
    """Write the page; a missing or malformed input is a ValueError/FileNotFoundError naming the file."""
    args = _parse_args(argv)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.pred)), "report.html")
    thresholds = _thresholds(args.tiou)
    flat = _parse_file(args.pred, _flat_predictions)
    truth = _parse_file(args.gt, lambda data: _truth(data, args.subset)) if args.gt else None
    data = _page_data(flat, truth, thresholds, _run_from_files(args), os.path.dirname(os.path.abspath(out)))
    save_text(render_html(data, _title(out)), out)
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

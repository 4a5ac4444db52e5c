"""Tests of eval/: detection mAP (ActivityNet protocol) and its command line."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from eval import THUMOS_TIOU, evaluate_detection, evaluate_files, load_ground_truth
from helpers import make_gt, make_results

REPO = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((REPO / "tests" / "data" / "release_golden.json").read_text())["evaluator"]


def ap_of(gt: dict, results: dict, label: str = "A", tiou=(0.5,)) -> np.ndarray:
    """AP [n_tiou] of one class."""
    return evaluate_detection(gt, results, tiou_thresholds=tiou)["ap_per_class"][label]


# ------------------------------------------------------------------------------------------- golden values


def test_golden_with_score():
    result = evaluate_detection(GOLDEN["ground_truth"], GOLDEN["results"], "test", GOLDEN["tiou"])
    np.testing.assert_allclose(result["mAP"], GOLDEN["mAP"], rtol=0, atol=1e-12)
    assert abs(result["average_mAP"] - GOLDEN["average_mAP"]) < 1e-12
    np.testing.assert_array_equal(result["tiou"], GOLDEN["tiou"])


def test_golden_with_score300_only():
    results = {
        vid: [{k: v for k, v in p.items() if k != "score"} for p in preds]
        for vid, preds in GOLDEN["results"]["results"].items()
    }
    assert all("score" not in p and "score300" in p for preds in results.values() for p in preds)
    result = evaluate_detection(GOLDEN["ground_truth"], results, "test", GOLDEN["tiou"])  # inner mapping form
    np.testing.assert_allclose(result["mAP"], GOLDEN["mAP"], rtol=0, atol=1e-12)
    assert abs(result["average_mAP"] - GOLDEN["average_mAP"]) < 1e-12


def test_score_wins_over_score300():
    gt = make_gt({"v": [("A", 0, 10)]})
    # By "score" the true positive ranks first (AP 1); by "score300" the false positive would (AP 1/2).
    preds = [
        {"label": "A", "score": 0.1, "score300": 0.9, "segment": [50, 60]},
        {"label": "A", "score": 0.8, "score300": 0.2, "segment": [0, 10]},
    ]
    assert ap_of(gt, {"v": preds})[0] == 1.0
    only300 = [{k: v for k, v in p.items() if k != "score"} for p in preds]
    assert ap_of(gt, {"v": only300})[0] == 0.5


# ------------------------------------------------------------------------------------- hand-computed cases

GT2 = make_gt({"v1": [("A", 0, 10), ("A", 20, 30)]})


def test_perfect_predictions():
    gt = make_gt({"v1": [("A", 0, 10), ("B", 5, 8)], "v2": [("A", 3, 4)]})
    results = make_results({"v1": [("A", 0.9, 0, 10), ("B", 0.8, 5, 8)], "v2": [("A", 0.7, 3, 4)]})
    result = evaluate_detection(gt, results)
    np.testing.assert_array_equal(result["mAP"], np.ones(7))
    assert result["average_mAP"] == 1.0
    assert sorted(result["ap_per_class"]) == ["A", "B"]


def test_false_positive_ranked_first():
    # tp = [0, 1, 1]: precision [0, 1/2, 2/3], recall [0, 1/2, 1]; made monotone from the right every step
    # has precision 2/3, so AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3.
    results = make_results({"v1": [("A", 0.9, 40, 50), ("A", 0.8, 0, 10), ("A", 0.7, 20, 30)]})
    assert ap_of(GT2, results)[0] == pytest.approx(2 / 3, abs=1e-15)


def test_false_positive_ranked_last():
    # tp = [1, 1, 0]: recall reaches 1 at precision 1 before the false positive: AP = 1.
    results = make_results({"v1": [("A", 0.9, 0, 10), ("A", 0.8, 20, 30), ("A", 0.7, 40, 50)]})
    assert ap_of(GT2, results)[0] == 1.0


def test_duplicate_detection_is_a_false_positive():
    # The second detection of the first instance is an FP: tp = [1, 0, 1], precision [1, 1/2, 2/3],
    # recall [1/2, 1/2, 1]; AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    results = make_results({"v1": [("A", 0.9, 0, 10), ("A", 0.8, 0.5, 10), ("A", 0.7, 20, 30)]})
    assert ap_of(GT2, results)[0] == pytest.approx(5 / 6, abs=1e-15)


def test_class_without_predictions_has_ap_zero():
    gt = make_gt({"v1": [("A", 0, 10), ("B", 20, 30)]})
    result = evaluate_detection(gt, make_results({"v1": [("A", 0.9, 0, 10)]}))
    np.testing.assert_array_equal(result["ap_per_class"]["A"], np.ones(7))
    np.testing.assert_array_equal(result["ap_per_class"]["B"], np.zeros(7))
    np.testing.assert_array_equal(result["mAP"], np.full(7, 0.5))


def test_classes_come_from_the_subset_only():
    gt = make_gt({"v1": [("A", 0, 10)]})
    gt["database"]["w"] = {"subset": "validation", "annotations": [{"label": "Z", "segment": [0, 1]}]}
    assert load_ground_truth(gt, "test").classes == ["A"]
    assert load_ground_truth(gt, "validation").classes == ["Z"]
    assert list(evaluate_detection(gt, make_results({"v1": [("A", 0.9, 0, 10)]}))["ap_per_class"]) == ["A"]


def test_tiou_tie_goes_to_the_later_ground_truth():
    # p1 = [1, 5] has tIoU exactly 1/5 with both [0, 2] and [4, 6] (intersection 1, union 5). If it takes the
    # later one ([4, 6]), p2 = [4, 6] finds its instance locked: tp = [1, 0], AP = 1/2 * 1 = 1/2. If it took
    # the earlier one, p2 would be a TP and AP 1.
    results = make_results({"v1": [("A", 0.9, 1, 5), ("A", 0.8, 4, 6)]})
    assert ap_of(make_gt({"v1": [("A", 0, 2), ("A", 4, 6)]}), results, tiou=(0.2,))[0] == 0.5
    # Same instances listed the other way round: p1 now takes [0, 2] and p2 matches [4, 6].
    assert ap_of(make_gt({"v1": [("A", 4, 6), ("A", 0, 2)]}), results, tiou=(0.2,))[0] == 1.0


def test_thresholds_are_independent():
    # p1 = [0, 6] has tIoU 0.6 with [0, 10]: TP at 0.5, FP at 0.7, where p2 = [0, 9.5] (tIoU 0.95) takes the
    # instance. At 0.5, p2 is a duplicate: tp = [1, 0], AP 1. At 0.7, tp = [0, 1]: AP = 1 * 1/2 = 1/2.
    gt = make_gt({"v1": [("A", 0, 10)]})
    results = make_results({"v1": [("A", 0.9, 0, 6), ("A", 0.8, 0, 9.5)]})
    np.testing.assert_array_equal(ap_of(gt, results, tiou=(0.5, 0.7)), [1.0, 0.5])


def test_equal_scores_keep_input_order():
    # Equal scores: the FP listed first ranks first (tp = [0, 1], AP 1/2); listed second, AP 1.
    gt = make_gt({"v1": [("A", 0, 10)]})
    assert ap_of(gt, make_results({"v1": [("A", 0.5, 40, 50), ("A", 0.5, 0, 10)]}))[0] == 0.5
    assert ap_of(gt, make_results({"v1": [("A", 0.5, 0, 10), ("A", 0.5, 40, 50)]}))[0] == 1.0
    # Across videos: dict order decides.
    gt = make_gt({"v0": [], "v1": [("A", 0, 10)]})
    assert ap_of(gt, make_results({"v0": [("A", 0.5, 0, 10)], "v1": [("A", 0.5, 0, 10)]}))[0] == 0.5


def test_unknown_video_is_a_false_positive_with_one_warning():
    # The stray prediction ranks first: tp = [0, 1], precision [0, 1/2], recall [0, 1]: AP = 1/2.
    gt = make_gt({"v1": [("A", 0, 10)]})
    results = make_results({"ghost": [("A", 0.9, 0, 10), ("A", 0.1, 50, 60)], "v1": [("A", 0.5, 0, 10)]})
    with pytest.warns(UserWarning, match="2 predictions for 1 videos") as record:
        assert ap_of(gt, results)[0] == 0.5
    assert len(record) == 1


def test_label_foreign_to_the_ground_truth_is_an_error_naming_the_video():
    gt = make_gt({"v1": [("A", 0, 10)]})
    results = make_results({"v1": [("A", 0.5, 0, 10)], "v2": [("Z", 0.9, 0, 10)]})
    with pytest.raises(ValueError, match="'v2'.*label 'Z' is not a class"):
        evaluate_detection(gt, results)


def test_label_of_another_subset_only_is_ignored_silently():
    # "B" is a class of gt.json but has no instance in "test": it cannot change the mAP.
    gt = make_gt({"v1": [("A", 0, 10)]})
    gt["database"]["w"] = {"subset": "validation", "annotations": [{"label": "B", "segment": [0, 1]}]}
    results = make_results({"v1": [("B", 0.9, 0, 10), ("A", 0.5, 0, 10)]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_detection(gt, results)
    assert list(result["ap_per_class"]) == ["A"]
    np.testing.assert_array_equal(result["mAP"], np.ones(7))


def test_no_warning_for_clean_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_detection(GOLDEN["ground_truth"], GOLDEN["results"])


# -------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "pred, problem",
    [
        ({"label": "A", "segment": [0, 1]}, "missing key"),
        ({"label": "A", "score": 0.5}, "missing key"),
        ({"label": "A", "score": float("nan"), "segment": [0, 1]}, "score"),
        ({"label": "A", "score": "high", "segment": [0, 1]}, "score"),
        ({"label": "A", "score": 0.5, "segment": [2, 1]}, "ends before it starts"),
        ({"label": "A", "score": 0.5, "segment": [0, 1, 2]}, "pair"),
        ({"label": 3, "score": 0.5, "segment": [0, 1]}, "label"),
    ],
)
def test_malformed_prediction_names_the_video(pred, problem):
    gt = make_gt({"v1": [("A", 0, 10)]})
    results = {"v1": [{"label": "A", "score": 0.9, "segment": [0, 10]}], "bad_video": [pred]}
    with pytest.raises(ValueError, match=f"'bad_video'.*{problem}"):
        evaluate_detection(gt, results)


def test_malformed_ground_truth_names_the_video():
    gt = make_gt({"v1": [("A", 0, 10)], "v2": [("A", 5, 1)]})
    with pytest.raises(ValueError, match="'v2'.*ends before it starts"):
        load_ground_truth(gt, "test")
    with pytest.raises(ValueError, match="database"):
        load_ground_truth({"videos": {}}, "test")
    with pytest.raises(ValueError, match="no annotated instance in subset 'validation'"):
        load_ground_truth(make_gt({"v1": [("A", 0, 10)]}), "validation")


def test_bad_thresholds():
    with pytest.raises(ValueError, match="tIoU"):
        evaluate_detection(GOLDEN["ground_truth"], GOLDEN["results"], tiou_thresholds=(0.0, 0.5))


def write(path: Path, data) -> Path:
    """Write data (JSON-encoded unless it is a str) to path."""
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_evaluate_files_matches_golden(tmp_path):
    gt = write(tmp_path / "gt.json", GOLDEN["ground_truth"])
    pred = write(tmp_path / "result.json", GOLDEN["results"])
    result = evaluate_files(gt, pred, "test", GOLDEN["tiou"])
    np.testing.assert_allclose(result["mAP"], GOLDEN["mAP"], rtol=0, atol=1e-12)


def test_file_errors_name_the_file(tmp_path):
    gt = write(tmp_path / "gt.json", GOLDEN["ground_truth"])
    pred = write(tmp_path / "result.json", GOLDEN["results"])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        evaluate_files(tmp_path / "missing.json", pred)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        evaluate_files(gt, tmp_path / "missing.json")
    with pytest.raises(ValueError, match="broken.json.*JSON"):
        evaluate_files(gt, write(tmp_path / "broken.json", '{"results": {'))
    with pytest.raises(ValueError, match="nodb.json.*database"):
        evaluate_files(write(tmp_path / "nodb.json", {"videos": {}}), pred)
    bad = {"results": {"vid00": [{"label": "A", "segment": [0, 1]}]}}
    with pytest.raises(ValueError, match="bad.json.*'vid00'.*missing key"):
        evaluate_files(gt, write(tmp_path / "bad.json", bad))


# ----------------------------------------------------------------------------------------- command line


def run_cli(*args) -> subprocess.CompletedProcess:
    """python -m eval with args, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "eval", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_cli_json_matches_the_function(tmp_path):
    gt = write(tmp_path / "gt.json", GOLDEN["ground_truth"])
    pred = write(tmp_path / "result.json", GOLDEN["results"])
    proc = run_cli("--gt", gt, "--pred", pred, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = evaluate_files(gt, pred)
    assert out["tiou"] == list(THUMOS_TIOU)
    np.testing.assert_array_equal(out["mAP"], expected["mAP"])
    assert out["average_mAP"] == expected["average_mAP"]
    assert out["ap_per_class"].keys() == expected["ap_per_class"].keys()
    for name, ap in expected["ap_per_class"].items():
        np.testing.assert_array_equal(out["ap_per_class"][name], ap)


def test_cli_table_and_options(tmp_path):
    gt = write(tmp_path / "gt.json", GOLDEN["ground_truth"])
    pred = write(tmp_path / "result.json", GOLDEN["results"])
    proc = run_cli("--gt", gt, "--pred", pred, "--subset", "test", "--tiou", "0.3", "0.5", "--per_class")
    assert proc.returncode == 0, proc.stderr
    expected = evaluate_files(gt, pred, "test", (0.3, 0.5))
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if line.strip()}
    assert float(rows["0.50"][0]) == pytest.approx(100 * expected["mAP"][1], abs=0.005)
    assert float(rows["AVG"][0]) == pytest.approx(100 * expected["average_mAP"], abs=0.005)
    assert float(rows["D"][0]) == pytest.approx(100 * expected["ap_per_class"]["D"][0], abs=0.005)


def test_cli_error_names_the_file(tmp_path):
    pred = write(tmp_path / "result.json", GOLDEN["results"])
    proc = run_cli("--gt", tmp_path / "nowhere.json", "--pred", pred, "--json")
    assert proc.returncode != 0
    assert "nowhere.json" in proc.stderr and proc.stdout == ""


# ---------------------------------------------------------------------------- cross-check with a reference


def reference_tiou(pred, gt) -> float:
    """tIoU of two [start, end] segments, in the official evaluator's arithmetic."""
    intersection = max(0.0, min(pred[1], gt[1]) - max(pred[0], gt[0]))
    union = (gt[1] - gt[0]) + (pred[1] - pred[0]) - intersection
    return intersection / union if union != 0 else 0.0


def reference_ap(tp: list[bool], n_positive: int) -> float:
    """Interpolated AP by plain loops (official interpolated_prec_rec)."""
    precision, recall, hits = [], [], 0
    for i, hit in enumerate(tp):
        hits += hit
        precision.append(hits / (i + 1))
        recall.append(hits / n_positive)
    mprec, mrec = [0.0, *precision, 0.0], [0.0, *recall, 1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.array([i for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]], dtype=int)
    return float(np.sum((np.array(mrec)[idx] - np.array(mrec)[idx - 1]) * np.array(mprec)[idx]))


def reference_map(gt: dict, results: dict, thresholds) -> np.ndarray:
    """ap [n_classes, n_tiou] by the obvious per-prediction loop (ties: later ground truth, input order)."""
    instances = [
        (vid, a["label"], a["segment"])
        for vid, v in gt["database"].items()
        if v["subset"] == "test"
        for a in v["annotations"]
    ]
    classes = sorted({label for _, label, _ in instances})
    preds = [(vid, p["label"], p["score"], p["segment"]) for vid, ps in results.items() for p in ps]
    ap = np.zeros((len(classes), len(thresholds)))
    for c, name in enumerate(classes):
        gts = [(vid, seg) for vid, label, seg in instances if label == name]
        ranked = sorted([p for p in preds if p[1] == name], key=lambda p: -p[2])  # stable
        for t, threshold in enumerate(thresholds):
            used, tp = [False] * len(gts), []
            for vid, _, _, seg in ranked:
                best, best_tiou = None, -1.0
                for j, (gvid, gseg) in enumerate(gts):
                    tiou = reference_tiou(seg, gseg)
                    if gvid == vid and not used[j] and tiou >= threshold and tiou >= best_tiou:
                        best, best_tiou = j, tiou
                if best is not None:
                    used[best] = True
                tp.append(best is not None)
            ap[c, t] = reference_ap(tp, len(gts))
    return ap


def random_case(seed: int) -> tuple[dict, dict]:
    """Crowded random case on a 0.5 s grid: equal-length instances, overlapping predictions, tied scores."""
    rng = np.random.default_rng(seed)
    videos = [f"v{i}" for i in range(5)]
    gt = {
        vid: [(str(rng.choice(["A", "B", "C"])), s, s + float(rng.choice([1.0, 2.0, 3.0]))) for s in starts]
        for vid, starts in zip(videos, rng.integers(0, 40, (len(videos), 8)) / 2)
    }
    results = {
        vid: [
            (str(rng.choice(["A", "B", "C"])), float(rng.integers(0, 20)) / 20, s, s + float(rng.integers(1, 10)) / 2)
            for s in rng.integers(0, 44, 60) / 2
        ]
        for vid in videos + ["extra"]
    }
    return make_gt(gt), make_results(results)["results"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reference_loop(seed):
    gt, results = random_case(seed)
    thresholds = (0.1, 0.2, 0.3, 1 / 3, 0.4, 0.5, 0.6, 0.7)
    with pytest.warns(UserWarning, match="outside the 'test' ground truth"):
        result = evaluate_detection(gt, results, tiou_thresholds=thresholds)
    expected = reference_map(gt, results, thresholds)
    classes = sorted(result["ap_per_class"])
    got = np.stack([result["ap_per_class"][name] for name in classes])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result["mAP"], expected.mean(axis=0), rtol=0, atol=1e-12)
    assert 0 < result["average_mAP"] < 1


# ------------------------------------------------------------------------------------- THUMOS14 "Ambiguous"


AMBIGUOUS_GT = {"v1": [("A", 0, 10), ("Ambiguous", 12, 14), ("B", 20, 30)], "v2": [("Ambiguous", 0, 5)]}
AMBIGUOUS_PRED = {"v1": [("A", 0.9, 0, 10), ("B", 0.8, 21, 30), ("Ambiguous", 0.7, 12, 14), ("A", 0.6, 12, 14)],
                  "v2": [("B", 0.5, 0, 5)]}


def test_ambiguous_is_not_a_class_and_is_counted():
    with_ambiguous = evaluate_detection(make_gt(AMBIGUOUS_GT), make_results(AMBIGUOUS_PRED))
    plain_gt = {vid: [a for a in anns if a[0] != "Ambiguous"] for vid, anns in AMBIGUOUS_GT.items()}
    plain_pred = {vid: [p for p in preds if p[0] != "Ambiguous"] for vid, preds in AMBIGUOUS_PRED.items()}
    plain = evaluate_detection(make_gt(plain_gt), make_results(plain_pred))
    assert list(with_ambiguous["ap_per_class"]) == ["A", "B"]                 # no extra class with AP 0
    np.testing.assert_array_equal(with_ambiguous["mAP"], plain["mAP"])
    assert with_ambiguous["average_mAP"] == plain["average_mAP"] > 0.5
    assert with_ambiguous["ignored"] == {"Ambiguous": 2} and plain["ignored"] == {}
    assert load_ground_truth(make_gt(AMBIGUOUS_GT), "test").video_ids == ["v1", "v2"]   # v2 stays: its B is an FP


def test_cli_prints_one_note_for_ambiguous_segments(tmp_path):
    gt = write(tmp_path / "gt.json", make_gt(AMBIGUOUS_GT))
    pred = write(tmp_path / "result.json", make_results(AMBIGUOUS_PRED))
    proc = run_cli("--gt", gt, "--pred", pred, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "note: 2 'Ambiguous' segment(s) of subset 'test' not scored (not a class, as in the THUMOS14 protocol)"]
    out = json.loads(proc.stdout)
    assert list(out["ap_per_class"]) == ["A", "B"] and out["ignored"] == {"Ambiguous": 2}
    clean = run_cli("--gt", write(tmp_path / "gt2.json", GOLDEN["ground_truth"]),
                    "--pred", write(tmp_path / "result2.json", GOLDEN["results"]), "--json")
    assert clean.returncode == 0 and "note" not in clean.stderr

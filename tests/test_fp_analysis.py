"""Tests of eval/fp_analysis.py: the DETAD false-positive breakdown and its command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.fp_analysis import FP_TYPES, MIN_TIOU, false_positive_breakdown, false_positive_breakdown_files
from helpers import make_gt, make_results

REPO = Path(__file__).resolve().parents[1]


def counts(result: dict) -> dict:
    """{"true_positive": n, <FP type>: n} of a breakdown, zero entries dropped."""
    both = {"true_positive": result["true_positive"], **result["counts"]}
    return {name: n for name, n in both.items() if n}


# Ground truth: v1 has A [10, 20] and B [30, 40]; v2 has A [0, 10]. N_A = 2, N_B = 1.
GT = make_gt({"v1": [("A", 10, 20), ("B", 30, 40)], "v2": [("A", 0, 10)]})
# One prediction of each kind, in score order (tIoU at threshold 0.5 derived by hand):
EACH_ONCE = make_results({
    "v1": [
        ("A", 0.9, 10, 20),  # A[10,20]: 10/10 = 1.0 >= 0.5, unmatched       -> true positive (matches it)
        ("A", 0.8, 11, 20),  # A[10,20]: 9/10 = 0.9, matched by the one above -> double detection
        ("A", 0.7, 30, 40),  # A[10,20]: 0; B[30,40]: 10/10 = 1.0             -> wrong label
        ("A", 0.6, 15, 30),  # A[10,20]: 5/20 = 0.25 in [0.1, 0.5); B: 0/20   -> localization
        ("B", 0.5, 5, 15),   # B[30,40]: 0; A[10,20]: 5/15 = 0.33 in [0.1, 0.5) -> confusion
        ("A", 0.4, 50, 60),  # 0 with every instance of v1                    -> background
    ],
})


# ------------------------------------------------------------------------------------------- each category


def test_each_category_once():
    result = false_positive_breakdown(GT, EACH_ONCE, top_factor=10)  # G_A = 20, G_B = 10: nothing cut
    assert result["predictions"] == 6 and result["true_positive"] == 1 and result["false_positive"] == 5
    assert result["counts"] == dict.fromkeys(FP_TYPES, 1)
    assert result["fractions"] == dict.fromkeys(FP_TYPES, 0.2)  # 1 of 5 false positives each
    assert list(result["counts"]) == list(FP_TYPES)
    assert (result["subset"], result["tiou"], result["top_factor"]) == ("test", 0.5, 10.0)


def test_per_class_counts():
    per_class = false_positive_breakdown(GT, EACH_ONCE, top_factor=10)["per_class"]
    assert per_class["A"] == {  # 5 predictions of A: all kinds but confusion
        "ground_truth": 2, "predictions": 5, "true_positive": 1, "double_detection": 1, "wrong_label": 1,
        "localization": 1, "confusion": 0, "background": 1,
    }
    assert per_class["B"] == {  # 1 prediction of B, the confusion
        "ground_truth": 1, "predictions": 1, "true_positive": 0, "double_detection": 0, "wrong_label": 0,
        "localization": 0, "confusion": 1, "background": 0,
    }


def test_threshold_moves_the_categories():
    # At tIoU 0.2 the 0.25 localization becomes a double detection (A[10,20] is matched) and the 0.33
    # confusion a wrong label; at 0.95 the 0.9 double detection becomes a localization error.
    assert counts(false_positive_breakdown(GT, EACH_ONCE, tiou=0.2, top_factor=10)) == {
        "true_positive": 1, "double_detection": 2, "wrong_label": 2, "background": 1}
    assert counts(false_positive_breakdown(GT, EACH_ONCE, tiou=0.95, top_factor=10)) == {
        "true_positive": 1, "wrong_label": 1, "localization": 2, "confusion": 1, "background": 1}


# --------------------------------------------------------------------------------------------- precedence


def breakdown_of(gt_instances: list, predictions: list, **kwargs) -> dict:
    """counts() of predictions [(label, score, start, end)] against one video of gt_instances [(label, s, e)]."""
    return counts(false_positive_breakdown(make_gt({"v": gt_instances}), make_results({"v": predictions}),
                                           top_factor=10, **kwargs))


def test_matched_same_class_and_other_class_is_a_double_detection():
    # Second A: tIoU 1.0 with the matched A and 1.0 with B -> double detection (rule 1 before rule 2).
    assert breakdown_of([("A", 0, 10), ("B", 0, 10)], [("A", 0.9, 0, 10), ("A", 0.8, 0, 10)]) == {
        "true_positive": 1, "double_detection": 1}


def test_same_class_wins_even_when_the_other_class_overlaps_more():
    # Second A [2,10]: tIoU 8/10 = 0.8 with the matched A[0,10], 8/8 = 1.0 with B[2,10] -> double detection
    # (DETAD's argmax rule would say wrong label).
    assert breakdown_of([("A", 0, 10), ("B", 2, 10)], [("A", 0.9, 0, 10), ("A", 0.8, 2, 10)]) == {
        "true_positive": 1, "double_detection": 1}


def test_true_positive_wins_over_every_error():
    # A [0,6]: tIoU 6/10 = 0.6 with the unmatched A[0,10], 6/6 = 1.0 with B[0,6] -> true positive.
    assert breakdown_of([("A", 0, 10), ("B", 0, 6)], [("A", 0.9, 0, 6)]) == {"true_positive": 1}


def test_wrong_label_wins_over_localization():
    # A [10,20]: tIoU 3/20 = 0.15 with A[0,13] (localization alone) and 10/10 = 1.0 with B[10,20] -> wrong label.
    assert breakdown_of([("A", 0, 13), ("B", 10, 20)], [("A", 0.9, 10, 20)]) == {"wrong_label": 1}


def test_localization_wins_over_confusion():
    # A [0,10]: tIoU 2/10 = 0.2 with A[0,2] and 4/10 = 0.4 with B[0,4], both in [0.1, 0.5) -> localization.
    assert breakdown_of([("A", 0, 2), ("B", 0, 4)], [("A", 0.9, 0, 10)]) == {"localization": 1}


def test_min_tiou_boundary():
    # A [9,10] inside A[0,10]: tIoU 1/10 = 0.1 exactly -> localization; A [9.5,10]: 0.5/10 = 0.05 -> background.
    assert MIN_TIOU == 0.1
    assert breakdown_of([("A", 0, 10)], [("A", 0.9, 9, 10)]) == {"localization": 1}
    assert breakdown_of([("A", 0, 10)], [("A", 0.9, 9.5, 10)]) == {"background": 1}
    assert breakdown_of([("B", 0, 10), ("A", 50, 60)], [("A", 0.9, 9, 10)]) == {"confusion": 1}


def test_tiou_equal_to_the_threshold_is_a_match():
    # A [5,10] against A[0,10]: 5/10 = 0.5 >= 0.5 -> true positive.
    assert breakdown_of([("A", 0, 10)], [("A", 0.9, 5, 10)]) == {"true_positive": 1}


def test_video_without_instances_or_outside_the_subset_is_background():
    gt = make_gt({"v": [("A", 0, 10)], "empty": []})
    results = make_results({"v": [("A", 0.5, 0, 10)], "empty": [("A", 0.8, 0, 10)], "elsewhere": [("A", 0.9, 0, 10)]})
    with pytest.warns(UserWarning, match="outside the 'test' ground truth"):  # "elsewhere" only
        result = false_positive_breakdown(gt, results, top_factor=10)
    assert counts(result) == {"true_positive": 1, "background": 2}


# ------------------------------------------------------------------------------------ top-G, ties, empty


def test_top_g_truncation():
    # G = floor(top_factor * N): A keeps the best G_A of its 5, B the best G_B of its 1 (scores 0.9 ... 0.4).
    one = false_positive_breakdown(GT, EACH_ONCE)  # G_A = 2: TP, double; G_B = 1: confusion
    assert one["predictions"] == 3 and counts(one) == {"true_positive": 1, "double_detection": 1, "confusion": 1}
    assert one["fractions"] == {**dict.fromkeys(FP_TYPES, 0.0), "double_detection": 0.5, "confusion": 0.5}
    half = false_positive_breakdown(GT, EACH_ONCE, top_factor=1.5)  # G_A = 3 adds the wrong label; G_B = 1
    assert counts(half) == {"true_positive": 1, "double_detection": 1, "wrong_label": 1, "confusion": 1}
    two = false_positive_breakdown(GT, EACH_ONCE, top_factor=2)  # G_A = 4 adds the localization; G_B = 2
    assert counts(two) == {"true_positive": 1, **dict.fromkeys(FP_TYPES[:4], 1)}
    assert false_positive_breakdown(GT, EACH_ONCE, top_factor=0.4)["predictions"] == 0  # G = 0 everywhere


def test_truncation_keeps_input_order_on_score_ties():
    # N_A = 1 -> G = 1; both predictions score 0.9, so the one listed first is kept.
    gt = make_gt({"v": [("A", 0, 10)]})
    hit, miss = ("A", 0.9, 0, 10), ("A", 0.9, 50, 60)
    assert counts(false_positive_breakdown(gt, make_results({"v": [hit, miss]}))) == {"true_positive": 1}
    assert counts(false_positive_breakdown(gt, make_results({"v": [miss, hit]}))) == {"background": 1}


def test_equal_scores_match_in_input_order():
    # Instances A[0,10] and A[2,12] (G = 2). p [1,10]: tIoU 9/10 = 0.9 and 8/11 = 0.73; q [0,5]: 5/10 = 0.5
    # and 3/12 = 0.25. Both score 0.9. p first: p takes A[0,10], q only reaches that matched one -> double.
    # q first: q takes A[0,10], p takes A[2,12] -> two true positives.
    gt = make_gt({"v": [("A", 0, 10), ("A", 2, 12)]})
    p, q = ("A", 0.9, 1, 10), ("A", 0.9, 0, 5)
    assert counts(false_positive_breakdown(gt, make_results({"v": [p, q]}))) == {
        "true_positive": 1, "double_detection": 1}
    assert counts(false_positive_breakdown(gt, make_results({"v": [q, p]}))) == {"true_positive": 2}


@pytest.mark.parametrize("results", [{}, {"results": {}}, make_results({"v1": []})])
def test_empty_predictions(results):
    result = false_positive_breakdown(GT, results)
    assert (result["predictions"], result["true_positive"], result["false_positive"]) == (0, 0, 0)
    assert result["counts"] == dict.fromkeys(FP_TYPES, 0)
    assert result["fractions"] == dict.fromkeys(FP_TYPES, 0.0)
    assert result["per_class"]["A"]["ground_truth"] == 2 and result["per_class"]["A"]["predictions"] == 0


@pytest.mark.parametrize("options", [{"tiou": 0}, {"tiou": 1.5}, {"top_factor": 0}, {"top_factor": -1},
                                     {"top_factor": float("inf")}, {"top_factor": "2"}])
def test_bad_options(options):
    with pytest.raises(ValueError):
        false_positive_breakdown(GT, EACH_ONCE, **options)


def test_json_serialisable():
    result = false_positive_breakdown(GT, EACH_ONCE, top_factor=np.float64(10))
    assert json.loads(json.dumps(result)) == result


# ---------------------------------------------------------------------------- cross-check with a reference


def reference_tiou(pred, gt) -> float:
    """tIoU of two [start, end] segments."""
    intersection = max(0.0, min(pred[1], gt[1]) - max(pred[0], gt[0]))
    union = (gt[1] - gt[0]) + (pred[1] - pred[0]) - intersection
    return intersection / union if union != 0 else 0.0


def reference_kind(pred, instances, used, threshold) -> str:
    """Kind of one prediction (vid, label, score, seg) by plain loops; marks the instance it matches in used."""
    vid, label, _, seg = pred
    mine = [(j, reference_tiou(seg, s)) for j, (v, l, s) in enumerate(instances) if v == vid and l == label]
    free = [(t, j) for j, t in mine if not used[j] and t >= threshold]
    if free:
        used[max(free)[1]] = True  # highest tIoU; exact ties: the later instance
        return "true_positive"
    same = [t for _, t in mine]
    other = [reference_tiou(seg, s) for v, l, s in instances if v == vid and l != label]
    for kind, values, low in [("double_detection", same, threshold), ("wrong_label", other, threshold),
                              ("localization", same, MIN_TIOU), ("confusion", other, MIN_TIOU)]:
        if any(t >= low for t in values):
            return kind
    return "background"


def reference_counts(gt: dict, results: dict, threshold: float, top_factor: float) -> dict:
    """counts() by the obvious loop over classes and their top-G predictions in score order."""
    instances = [(vid, a["label"], a["segment"]) for vid, v in gt["database"].items() for a in v["annotations"]]
    preds = [(vid, p["label"], p["score"], p["segment"]) for vid, ps in results["results"].items() for p in ps]
    total = {}
    for name in sorted({l for _, l, _ in instances}):
        n_gt = sum(l == name for _, l, _ in instances)
        ranked = sorted([p for p in preds if p[1] == name], key=lambda p: -p[2])[: int(top_factor * n_gt)]
        used = [False] * len(instances)
        for pred in ranked:
            kind = reference_kind(pred, instances, used, threshold)
            total[kind] = total.get(kind, 0) + 1
    return total


def random_case(seed: int) -> tuple[dict, dict]:
    """Crowded random case on a 0.5 s grid: overlapping instances and predictions, tied scores."""
    rng = np.random.default_rng(seed)
    videos = [f"v{i}" for i in range(4)]
    gt = {vid: [(str(rng.choice(list("ABC"))), s, s + float(rng.choice([1.0, 2.0, 4.0]))) for s in starts]
          for vid, starts in zip(videos, rng.integers(0, 30, (len(videos), 6)) / 2)}
    results = {vid: [(str(rng.choice(list("ABC"))), float(rng.integers(0, 10)) / 10, s,
                      s + float(rng.integers(1, 10)) / 2) for s in rng.integers(0, 34, 30) / 2]
               for vid in videos}
    return make_gt(gt), make_results(results)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("threshold, top_factor", [(0.5, 1), (0.3, 2.5), (0.7, 10)])
def test_matches_reference_loop(seed, threshold, top_factor):
    gt, results = random_case(seed)
    result = false_positive_breakdown(gt, results, tiou=threshold, top_factor=top_factor)
    assert counts(result) == reference_counts(gt, results, threshold, top_factor)
    assert sum(c["predictions"] for c in result["per_class"].values()) == result["predictions"]


# ------------------------------------------------------------------------------------------- command line


def write(path: Path, data) -> Path:
    """data as a JSON file."""
    path.write_text(json.dumps(data))
    return path


def run_cli(*args) -> subprocess.CompletedProcess:
    """python -m eval.fp_analysis with args, from the repository root."""
    return subprocess.run([sys.executable, "-m", "eval.fp_analysis", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_json_equals_the_function(tmp_path):
    gt, pred = write(tmp_path / "gt.json", GT), write(tmp_path / "result.json", EACH_ONCE)
    proc = run_cli("--gt", gt, "--pred", pred, "--subset", "test", "--tiou", "0.5", "--top_factor", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    expected = false_positive_breakdown(GT, EACH_ONCE, "test", 0.5, 2)
    assert json.loads(proc.stdout) == expected
    assert false_positive_breakdown_files(gt, pred, top_factor=2) == expected


def test_cli_table(tmp_path):
    gt, pred = write(tmp_path / "gt.json", GT), write(tmp_path / "result.json", EACH_ONCE)
    proc = run_cli("--gt", gt, "--pred", pred, "--top_factor", "10")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[2:]}
    for name in FP_TYPES:
        assert rows[name] == ["1", "20.00"]
    assert rows["false"] == ["positives", "5"]


def test_cli_error_names_the_file(tmp_path):
    pred = write(tmp_path / "result.json", EACH_ONCE)
    proc = run_cli("--gt", tmp_path / "nowhere.json", "--pred", pred, "--json")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "nowhere.json" in proc.stderr and proc.stdout == ""


def test_ambiguous_segments_are_not_ground_truth(tmp_path):
    gt = make_gt({"v1": [("A", 0, 10), ("Ambiguous", 20, 30)]})
    pred = make_results({"v1": [("A", 0.9, 0, 10), ("A", 0.8, 20, 30)]})
    result = false_positive_breakdown(gt, pred, top_factor=2)
    assert list(result["per_class"]) == ["A"] and result["ignored"] == {"Ambiguous": 1}
    assert result["true_positive"] == 1 and result["counts"]["background"] == 1
    proc = run_cli("--gt", write(tmp_path / "gt.json", gt), "--pred", write(tmp_path / "r.json", pred))
    assert proc.returncode == 0 and proc.stderr.count("\n") == 1 and "'Ambiguous'" in proc.stderr

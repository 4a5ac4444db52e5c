"""Size and speed of the results page (eval/report.py) at THUMOS14 and ActivityNet v1.3 scale (numbers; the
bounds of issue 28 are asserted by tests/test_report.py's browser tests on the same generated cases).

    python3 scripts/bench_report.py [--repeat 3] [--cases thumos anet] [--json]

For each case: the page's size, the time to write it (write_report: scoring, breakdown, per-video AP, page), and
in headless Chromium (tests/browser.py) the best over --repeat loads of the time from navigation to the page's
first frame with every part drawn (window.reportShownMs), and of the time from a click on a column header (sort)
or a class chosen in the filter to the next frame drawn. Chromium and chromedriver: /usr/bin (Debian's packages).
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np

import _repo  # noqa: F401  (the repository root on sys.path)

sys.path.insert(0, os.path.join(_repo.ROOT, "tests"))  # the tests' WebDriver client and result-file builders

from browser import Browser, missing  # noqa: E402
from eval.report import RunInfo, write_report  # noqa: E402
from helpers import make_gt, make_results  # noqa: E402

# an action in the timed script: it gets the page's window, does one thing, and the frame after it is awaited
SORT = "document.querySelector(`#video-table th[data-key=\"${arguments[0]}\"]`).click();"
FILTER = ("const s = document.getElementById('class-filter'); s.value = String(arguments[0]);"
          "s.dispatchEvent(new Event('change'));")
SHOWN = ("const done = arguments[0]; (function wait() { window.reportShownMs ? done(window.reportShownMs) : "
         "setTimeout(wait, 10); }());")
TIMED = ("const done = arguments[arguments.length - 1]; const t0 = performance.now(); {action}"
         "requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));")


def thumos_case(seed: int = 0, n_videos: int = 212, dets: int = 100) -> tuple[dict, dict, dict]:
    """A THUMOS14-sized run: 212 videos of 60-400 s, 20 classes, 100 detections per video (21,200), 3-30
    instances per video, 6 curves of 750 samples per video."""
    rng = np.random.default_rng(seed)
    classes = [f"Class{c:02d}" for c in range(20)]
    gt, results, curves = {}, {}, {}
    for v in range(n_videos):
        vid, duration = f"video_test_{v:07d}", float(rng.uniform(60, 400))
        own = rng.choice(20, size=rng.integers(1, 3), replace=False)
        gt[vid] = [(classes[rng.choice(own)], s, s + float(rng.uniform(1, 10)))
                   for s in rng.uniform(0, duration - 10, rng.integers(3, 30)).tolist()]
        labels = np.where(rng.random(dets) < 0.7, rng.choice(own, dets), rng.integers(0, 20, dets))
        results[vid] = [(classes[c], float(rng.random()), s, s + float(rng.uniform(0.5, 12)))
                        for c, s in zip(labels.tolist(), rng.uniform(0, duration - 10, dets).tolist())]
        names = ["class-aware A", "class-agnostic A_ca", *(f"A_score {classes[c]} (s = 0.93)" for c in own[:1]),
                 "A_score Class19 (s = 0.12)", "A_score Class18 (s = 0.10)", "A_score Class17 (s = 0.05)"]
        curves[vid] = {"seconds_per_sample": duration / 750,
                       "curves": {name: np.cumsum(rng.normal(size=750)) for name in names}}
    ground_truth = make_gt(gt)
    for vid, entry in ground_truth["database"].items():
        entry["duration"] = curves[vid]["seconds_per_sample"] * 750
    return ground_truth, make_results(results), curves


def anet_case(seed: int = 0, n_videos: int = 4926, dets: int = 100, samples: int = 100) -> tuple[dict, dict, dict]:
    """An ActivityNet v1.3 validation-sized run: 4,926 videos of 10-240 s, 200 classes, 1-3 long instances of one
    class per video, 100 detections per video (492,600; scores and times at full float precision), and per
    video 6 curves (A, A_ca, 4 classes' A_score) of `samples` samples (twice T = 50, the ActivityNet test
    sampling)."""
    rng = np.random.default_rng(seed)
    classes = [f"activity {c:03d}" for c in range(200)]
    gt, results, curves = {}, {}, {}
    for v in range(n_videos):
        vid, duration = f"v_{v:011d}", float(rng.uniform(10, 240))
        own = int(rng.integers(200))
        starts = rng.uniform(0, 0.8 * duration, rng.integers(1, 4))
        gt[vid] = [(classes[own], s, min(duration, s + float(rng.uniform(0.1, 0.5)) * duration))
                   for s in starts.tolist()]
        labels = np.where(rng.random(dets) < 0.5, own, rng.integers(0, 200, dets))
        start = rng.uniform(0, 0.9 * duration, dets)
        end = np.minimum(duration, start + rng.uniform(0.02, 0.6, dets) * duration)
        results[vid] = [(classes[c], s, t0, t1) for c, s, t0, t1 in
                        zip(labels.tolist(), rng.random(dets).tolist(), start.tolist(), end.tolist())]
        names = ["class-aware A", "class-agnostic A_ca", f"A_score {classes[own]} (s = 0.81)",
                 *(f"A_score {classes[c]} (s = 0.1{k})" for k, c in enumerate(rng.integers(0, 200, 3).tolist()))]
        curves[vid] = {"seconds_per_sample": duration / samples,
                       "curves": {name: np.cumsum(rng.normal(size=samples)) for name in names}}
    ground_truth = make_gt(gt, subset="validation")
    for vid, entry in ground_truth["database"].items():
        entry["duration"] = curves[vid]["seconds_per_sample"] * samples
    return ground_truth, make_results(results), curves


CASES = {"thumos": (thumos_case, "test"), "anet": (anet_case, "validation")}


def write_case(name: str, folder) -> tuple[str, float]:
    """(path of the page of case `name` written into folder, seconds write_report took)."""
    make, subset = CASES[name]
    gt, results, curves = make()
    tiou = None if name == "thumos" else tuple(np.linspace(0.5, 0.95, 10).round(2).tolist())
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_report(os.path.join(folder, f"{name}.html"), results, gt, subset=subset,
                            run=RunInfo(curves=curves), **({"tiou": tiou} if tiou else {}))
    return path, time.perf_counter() - start


def open_time(browser: Browser, path, repeat: int) -> float:
    """Best over `repeat` loads of the milliseconds from navigation to the page's first frame drawn."""
    shown = []
    for _ in range(repeat):
        browser.open(path)
        shown.append(browser.run_async(SHOWN))
    return min(shown)


def action_time(browser: Browser, action: str, value, repeat: int) -> float:
    """Best over `repeat` runs of the milliseconds from an action (SORT or FILTER with its value) to the next
    frame drawn. Sorting twice by one key reverses the order, so every run re-sorts."""
    return min(browser.run_async(TIMED.format(action=action), value) for _ in range(repeat))


def page_timings(browser: Browser, path, repeat: int = 3) -> dict:
    """{"open_ms", "sort_ms": {column: ms}, "filter_ms", "unfilter_ms"} of a written page (best of `repeat`)."""
    timings = {"open_ms": open_time(browser, path, repeat)}
    keys = browser.run("return [...document.querySelectorAll('#video-table th')].map((th) => th.dataset.key)")
    timings["sort_ms"] = {key: action_time(browser, SORT, key, repeat) for key in keys}
    timings["filter_ms"] = action_time(browser, FILTER, 1, repeat)
    timings["unfilter_ms"] = action_time(browser, FILTER, -1, repeat)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="loads and actions per timing (the best is shown)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    reason = missing()
    if reason:
        print(f"error: the page timings need Chromium: {reason}", file=sys.stderr)
        return 1
    rows = {}
    with tempfile.TemporaryDirectory() as folder, Browser() as browser:
        for name in args.cases:
            path, written = write_case(name, folder)
            rows[name] = {"bytes": os.path.getsize(path), "write_s": written, "load_avg": os.getloadavg()[0],
                          **page_timings(browser, path, args.repeat)}
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'case':<8} {'MB':>6} {'write s':>8} {'open ms':>8} {'sort ms (worst column)':>23} {'filter ms':>10} "
          f"{'unfilter ms':>12} {'load':>5}")
    for name, r in rows.items():
        worst = max(r["sort_ms"], key=r["sort_ms"].get)
        print(f"{name:<8} {r['bytes'] / 1e6:6.1f} {r['write_s']:8.1f} {r['open_ms']:8.0f} "
              f"{r['sort_ms'][worst]:15.0f} ({worst:<5}) {r['filter_ms']:10.0f} {r['unfilter_ms']:12.0f} "
              f"{r['load_avg']:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

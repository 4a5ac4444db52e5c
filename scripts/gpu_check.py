"""The GPU check: one command that shows whether this project computes on a CUDA GPU what it computes on CPU.

    bash scripts/gpu_check.sh [--out ckpt/gpu_check] [--overwrite]

Without a CUDA device it prints one line and exits 3, having done nothing. Otherwise, in --out:
1. training: the demo data (dataset.py), the same seed and steps with main.py on CPU (fp32) and on CUDA in
   fp32 (TF32 convolutions, PyTorch's default), fp32 with --strict_fp32 and bf16; losses (step 1, last
   window) and mAP (last evaluation) side by side;
2. inference: the CPU run's best.pt evaluated by main.py --inference_only on CPU and on CUDA (--strict_fp32,
   then with TF32): mAP and the scores of the detections both devices make;
3. I3D (features/i3d.py, weights filled by tests/i3d_weights.py's rule): features of the same clips on CPU
   and CUDA, TF32 off (the parity) and on (reported), and snippets/s;
4. TV-L1: features/tvl1.py on CUDA (torch.compile'd, as the extractor runs it, and op by op) against OpenCV's
   Dual TV-L1 on CPU on generated frame pairs, after the extractor's finishing (features/flow.py finish),
   and pairs/s per batch size;
and prints one table (part, CPU, CUDA, difference, tolerance, verdict) and writes every figure into
OUT/gpu_check.json. Exit status: 0 when every parity holds, 1 when one fails, 3 without CUDA. Estimated
at 4 to 6 minutes on an H200 machine with 16 cores (not measured: no GPU was at hand when it was written).
Why each tolerance is what it is: TOLERANCES below.
"""
import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager

import cv2
import numpy as np
import pandas as pd
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import _repo  # noqa: E402,F401  (the repository root on sys.path)

from dataset import make_synthetic_dataset  # noqa: E402
from features.flow import finish, opencv_remap_grid, port_compiles  # noqa: E402
from features.i3d import load_i3d  # noqa: E402
from features.tvl1 import tvl1  # noqa: E402
from bench_flow import cuda_rates  # noqa: E402
from utils.cli import run  # noqa: E402
from utils.io import read_json, save_json  # noqa: E402

ROOT = _repo.ROOT
# Sizes: "full" is the check; "tiny" lets the tests run every part in seconds (--self-test-on-cpu).
SIZES = {
    "full": dict(train_videos=60, test_videos=30, length=(80, 200), T=100, steps=300, eval_every=150,
                 i3d_cpu_batch=2, i3d_batch=16, i3d_repeats=3, warmup=1,
                 flow_pairs=8, flow_hw=(256, 341), flow_crop=224, flow_batches=(8, 16, 32, 64, 128, 256)),
    "tiny": dict(train_videos=8, test_videos=4, length=(40, 60), T=40, steps=6, eval_every=3,
                 i3d_cpu_batch=1, i3d_batch=1, i3d_repeats=1, warmup=0,
                 flow_pairs=2, flow_hw=(128, 171), flow_crop=112, flow_batches=(2,)),
}
# Tolerances (why, in short). Training: the model has no randomness of its own and starts from the same
# CPU-built weights, so step 1's loss differs only by rounding: float32 summation order (1e-3 with
# --strict_fp32), TF32 convolutions (10-bit mantissas: 1e-2), bf16 (8 bits: 5e-2). Later steps add the
# atomic-add order of gather's backward on CUDA and let rounding grow: the last window's mean loss within
# 2% (bf16 5%; CPU bf16 and fp32 differ by 0.1% on the bench data) and the last evaluation's average mAP
# within 5 points (bf16 10: on the demo, same seed, bf16 and fp32 differ by up to 5.1 points at step 300,
# README "Accuracy in bf16"). A device path that computes something else misses these by far. Inference of
# one checkpoint: strict fp32 within 0.5 mAP points, scores of the detections both devices make within
# 1e-3 and 99% of them made by both; TF32 within 1 point, 1e-2 and 95%. I3D: max |CPU - CUDA| of the
# features within 1e-4 with TF32 off (reported with TF32 on). TV-L1: relative L2 of the finished fields
# per pair, median <= 1% and 95th percentile <= 3% (the port replicates OpenCV's arithmetic; what is left
# is float rounding amplified where the solver's stopping test flips).
TOLERANCES = {
    "fp32": {"loss_step1": 1e-2, "loss_last": 0.02, "mAP_points": 5.0},
    "fp32_strict": {"loss_step1": 1e-3, "loss_last": 0.02, "mAP_points": 5.0},
    "bf16": {"loss_step1": 5e-2, "loss_last": 0.05, "mAP_points": 10.0},
    "infer_strict": {"mAP_points": 0.5, "score": 1e-3, "matched": 0.99},
    "infer_tf32": {"mAP_points": 1.0, "score": 1e-2, "matched": 0.95},
    "i3d": 1e-4, "flow_median": 0.01, "flow_p95": 0.03,
}
TRAIN_RUNS = (("fp32", "fp32", []), ("fp32_strict", "fp32", ["--strict_fp32"]), ("bf16", "bf16", []))


class Check:
    """The rows of the table, their verdicts and the progress lines."""

    def __init__(self):
        self.start = time.time()
        self.rows = []

    def say(self, text):
        print(f"[{time.time() - self.start:6.1f} s] {text}", flush=True)

    def row(self, part, what, cpu, dev, tol=None, rel=False):
        """One compared figure; tol None: information only. rel: the difference relative to |cpu|."""
        diff = None if cpu is None or dev is None else abs(dev - cpu) / (abs(cpu) if rel else 1.0)
        ok = None if tol is None else diff is not None and diff <= tol
        self.rows.append({"part": part, "what": what, "cpu": cpu, "cuda": dev, "difference": diff,
                          "relative": rel, "tolerance": tol, "pass": ok})

    def verdict(self, part, what, ok, note):
        """A row whose verdict is given (a part that did not run: ok False, or None for a note)."""
        self.rows.append({"part": part, "what": what, "cpu": None, "cuda": None, "difference": None,
                          "relative": False, "tolerance": None, "pass": ok, "note": note})

    def parts(self):
        """{part: True / False / None (information only)}: a part passes when none of its rows fails."""
        out = {}
        for r in self.rows:
            if r["pass"] is not None:
                out[r["part"]] = out.get(r["part"], True) and r["pass"]
            else:
                out.setdefault(r["part"], None)
        return out


def fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float) and value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(rows):
    """The one table: part, figure, CPU, CUDA, difference (relative where marked), tolerance, verdict."""
    head = ("part", "figure", "CPU", "CUDA", "difference", "tolerance", "verdict")
    lines = [head]
    for r in rows:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[r["pass"]]
        diff = fmt(r["difference"]) + (" rel" if r["relative"] and r["difference"] is not None else "")
        lines.append((r["part"], r["what"] + (f" ({r['note']})" if r.get("note") else ""), fmt(r["cpu"]),
                      fmt(r["cuda"]), diff, fmt(r["tolerance"]), verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def run_main(args, log):
    """python3 main.py ARGS in the repository root. Returns (exit status, [(seconds since start, line)])."""
    start = time.time()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen([sys.executable, "main.py", *map(str, args)], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        lines = [(time.time() - start, line.rstrip("\n")) for line in proc.stdout]
    with open(log, "w") as f:
        f.writelines(f"{t:8.2f} {line}\n" for t, line in lines)
    return proc.returncode, lines


def step_losses(run_dir):
    """{step: total loss} and the median seconds between consecutive steps, from the run's TensorBoard events."""
    events = EventAccumulator(os.path.join(run_dir, "logs"), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Scalars("loss/total")
    return {e.step: e.value for e in scalars}, float(np.median(np.diff([e.wall_time for e in scalars])))


def train(name, device, precision, extra, cfg, out):
    """One training run of the demo; its figures, or {"error": last lines} when main.py failed."""
    args = ["--data_path", os.path.join(out, "demo"), "--output_dir", os.path.join(out, "runs"), "--exp_name", name,
            "--num_segments", cfg["T"], "--max_steps", cfg["steps"], "--detection_inf_step", cfg["eval_every"],
            "--soft_nms", "--seed", 1, "--device", device, "--precision", precision, *extra]
    started = time.time()
    rc, lines = run_main(args, os.path.join(out, "runs", f"{name}.out"))
    if rc != 0:
        return {"error": f"main.py exited {rc}: " + " | ".join(line for _, line in lines[-3:])}
    run_dir = os.path.join(out, "runs", name)
    last = read_json(os.path.join(run_dir, "last_metrics.json"))
    losses, step_s = step_losses(run_dir)
    t_start, t_step0 = (next((t for t, line in lines if line.startswith(prefix)), None)
                        for prefix in ("training on", "step 0 "))      # the step-0 evaluation: one test pass
    log = pd.read_csv(os.path.join(run_dir, "log.csv"))
    return {"wall_s": time.time() - started, "train_step_s": step_s,
            "test_pass_s": None if None in (t_start, t_step0) else t_step0 - t_start,
            "loss_step1": losses[1], "loss_last_window": float(log["total"].iloc[-1]),
            "average_mAP": last["average_mAP"] * 100, "mAP": dict(zip(map(str, last["tiou"]),
                                                                      (m * 100 for m in last["mAP"]))),
            "best": os.path.join(run_dir, "best.pt")}


def training_part(check, device, cfg, out):
    """CPU fp32 against each CUDA run: rows and the runs' figures."""
    check.say("training on the CPU (fp32)")
    runs = {"cpu": train("cpu_fp32", "cpu", "fp32", [], cfg, out)}
    for name, precision, extra in TRAIN_RUNS:
        check.say(f"training on {device} ({name})")
        runs[name] = train(f"cuda_{name}", device, precision, extra, cfg, out)
    cpu = runs["cpu"]
    for name, _, _ in TRAIN_RUNS:
        part, dev, tol = f"train {name}", runs[name], TOLERANCES[name]
        if "error" in cpu or "error" in dev:
            check.verdict(part, "training run", False, (cpu if "error" in cpu else dev)["error"])
            continue
        check.row(part, "loss at step 1", cpu["loss_step1"], dev["loss_step1"], tol["loss_step1"], rel=True)
        check.row(part, "loss, last window", cpu["loss_last_window"], dev["loss_last_window"], tol["loss_last"],
                  rel=True)
        check.row(part, "average mAP (last)", cpu["average_mAP"], dev["average_mAP"], tol["mAP_points"])
        for t in ("0.3", "0.5", "0.7"):
            check.row(part, f"mAP@{t} (last)", cpu["mAP"].get(t), dev["mAP"].get(t))
        check.row(part, "train step (s)", cpu["train_step_s"], dev["train_step_s"])
        check.row(part, "test pass (s)", cpu["test_pass_s"], dev["test_pass_s"])
    return runs


def infer(name, device, ckpt, extra, out):
    """main.py --inference_only of ``ckpt``: (metrics, predictions), or (None, the error)."""
    args = ["--inference_only", "--model_file", ckpt, "--data_path", os.path.join(out, "demo"), "--output_dir",
            os.path.join(out, "runs"), "--exp_name", name, "--device", device, *extra]
    rc, lines = run_main(args, os.path.join(out, "runs", f"{name}.out"))
    if rc != 0:
        return None, f"main.py exited {rc}: " + " | ".join(line for _, line in lines[-3:])
    folder = os.path.join(out, "runs", name, "eval_" + os.path.splitext(os.path.basename(ckpt))[0])
    return read_json(os.path.join(folder, "metrics.json")), read_json(os.path.join(folder, "predictions.json"))


def match_detections(a, b):
    """Detections (vid, label, segment to 0.01 s) both prediction files hold: (fraction of all detections
    that both hold, the largest score difference among them)."""
    def keyed(p):
        return {(vid, d["label"], round(d["segment"][0], 2), round(d["segment"][1], 2)): d["score"]
                for vid, dets in p["results"].items() for d in dets}
    ka, kb = keyed(a), keyed(b)
    both = ka.keys() & kb.keys()
    fraction = len(both) / max(1, len(ka.keys() | kb.keys()))
    return fraction, max((abs(ka[k] - kb[k]) for k in both), default=0.0)


def inference_part(check, device, ckpt, out):
    """The CPU run's best.pt evaluated on CPU and on CUDA (strict fp32, then TF32): rows and figures."""
    check.say(f"inference of {os.path.relpath(ckpt, out)} on the CPU and on {device}")
    cpu, cpu_preds = infer("infer_cpu", "cpu", ckpt, [], out)
    figures = {"cpu": cpu and {"average_mAP": cpu["average_mAP"] * 100}}
    for name, extra in (("strict", ["--strict_fp32"]), ("tf32", [])):
        part, tol = f"inference {name}", TOLERANCES[f"infer_{name}"]
        dev, dev_preds = infer(f"infer_cuda_{name}", device, ckpt, extra, out)
        if cpu is None or dev is None:
            check.verdict(part, "inference run", False, cpu_preds if cpu is None else dev_preds)
            continue
        fraction, score_diff = match_detections(cpu_preds, dev_preds)
        figures[name] = {"average_mAP": dev["average_mAP"] * 100, "matched_fraction": fraction,
                         "max_score_difference": score_diff}
        check.row(part, "average mAP", cpu["average_mAP"] * 100, dev["average_mAP"] * 100, tol["mAP_points"])
        check.row(part, "detections made by both", 1.0, fraction, 1 - tol["matched"])
        check.row(part, "max score difference", 0.0, score_diff, tol["score"])
    return figures


def load_rule_weights_module():
    """tests/i3d_weights.py (the golden fill rule of the I3D weights), loaded by its path."""
    spec = importlib.util.spec_from_file_location("i3d_weights", os.path.join(ROOT, "tests", "i3d_weights.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def tf32(allowed):
    """TF32 in cuDNN convolutions and CUDA matmuls on or off, restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def snippets_per_s(model, x, repeats, warmup):
    """Clips per second of model.extract_features on x, timed over ``repeats`` passes after ``warmup``."""
    for _ in range(warmup):
        model.extract_features(x)
    sync(x.device)
    start = time.time()
    for _ in range(repeats):
        model.extract_features(x)
    sync(x.device)
    return repeats * len(x) / (time.time() - start)


@torch.inference_mode()
def i3d_stream(check, stream, device, cfg, out):
    """One I3D stream: features of the same clips on CPU and device, TF32 off and on; snippets/s."""
    path = os.path.join(out, "i3d", f"{stream}_rule.pt")
    load_rule_weights_module().write_rule_weights(path, stream)
    cpu_model, dev_model = load_i3d(path, stream, "cpu"), load_i3d(path, stream, device)
    channels = cpu_model.in_channels
    clips = np.random.default_rng(2023).random((cfg["i3d_cpu_batch"], channels, 16, 224, 224)) * 2 - 1
    x = torch.from_numpy(clips.astype(np.float32))
    start = time.time()
    ref = cpu_model.extract_features(x).numpy()
    cpu_rate = len(x) / (time.time() - start)
    diffs = {}
    for allowed in (False, True):
        with tf32(allowed):
            feats = dev_model.extract_features(x.to(device)).cpu().numpy()
        diffs[allowed] = float(np.abs(feats - ref).max())
    with tf32(False):
        batch = torch.rand(cfg["i3d_batch"], channels, 16, 224, 224, device=device) * 2 - 1
        dev_rate = snippets_per_s(dev_model, batch, cfg["i3d_repeats"], cfg["warmup"])
    part = f"i3d {stream}"
    check.row(part, "max |feature diff|, TF32 off", 0.0, diffs[False], TOLERANCES["i3d"])
    check.row(part, "max |feature diff|, TF32 on", 0.0, diffs[True])
    check.row(part, f"snippets/s (CPU batch {len(x)}, CUDA {len(batch)})", cpu_rate, dev_rate)
    return {"max_abs_diff_tf32_off": diffs[False], "max_abs_diff_tf32_on": diffs[True],
            "feature_scale": float(np.abs(ref).max()), "cpu_snippets_per_s": cpu_rate,
            "cuda_snippets_per_s": dev_rate, "cpu_batch": len(x), "cuda_batch": len(batch)}


def frame_pairs(n, h, w, seed=0):
    """n pairs of uint8 grayscale frames [n, h, w]: a smooth random texture and the same texture shifted
    by 1 to 3 px and rotated by up to 1.5 degrees (one texture per pair)."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for i in range(n):
        big = (h + 32, w + 32)
        texture = cv2.resize(rng.standard_normal((big[0] // 8, big[1] // 8)).astype(np.float32), big[::-1],
                             interpolation=cv2.INTER_CUBIC)
        motion = cv2.getRotationMatrix2D((big[1] / 2, big[0] / 2), 1.5 * i / max(1, n - 1), 1.0)
        motion[:, 2] += (1 + 2 * rng.random(), 2 * rng.random() - 1)
        moved = cv2.warpAffine(texture, motion, big[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        for frames, img in ((first, texture), (second, moved)):
            frames.append(np.clip(128 + 48 * img, 0, 255).astype(np.uint8)[16:16 + h, 16:16 + w])
    return np.stack(first), np.stack(second)


def tvl1_part(check, device, cfg):
    """features/tvl1.py on the device against OpenCV's CPU Dual TV-L1, finished as the extractor does: the port
    as the extractor runs it (torch.compile'd where Triton is there) and op by op, and pairs/s per batch."""
    part, grid = "tvl1", opencv_remap_grid()               # the installed OpenCV's remap rule, as the extractor
    (h, w), crop, n = cfg["flow_hw"], cfg["flow_crop"], cfg["flow_pairs"]
    first, second = frame_pairs(n, h, w)
    engine = cv2.optflow.DualTVL1OpticalFlow_create()
    start = time.time()
    ref = finish(np.stack([engine.calc(a, b, None) for a, b in zip(first, second)]), crop)
    cpu_rate = n / (time.time() - start)
    compiled = port_compiles(device)
    fields = {"eager": finish(np.asarray(tvl1(first, second, device=str(device), grid=grid)), crop)}
    start = time.time()
    if compiled:
        fields["compiled"] = finish(np.asarray(tvl1(first, second, str(device), grid, compiled=True)), crop)
        check.row(part, "compiled vs op by op, max |field diff|", 0.0, float(np.abs(fields["compiled"] -
                                                                                    fields["eager"]).max()))
    compile_s = time.time() - start
    rel = {k: [float(np.linalg.norm(p - r) / max(np.linalg.norm(r), 1e-12)) for p, r in zip(f, ref)]
           for k, f in fields.items()}
    for kind, errors in rel.items():
        check.row(part, f"relative L2 ({kind}), median of {n}", 0.0, float(np.median(errors)),
                  TOLERANCES["flow_median"])
        check.row(part, f"relative L2 ({kind}), 95th percentile", 0.0, float(np.percentile(errors, 95)),
                  TOLERANCES["flow_p95"])
    rates = cuda_rates(first, second, str(device), cfg["flow_batches"], compiled)
    eager_rate = cuda_rates(first, second, str(device), cfg["flow_batches"][-1:], False) if compiled else {}
    for batch, rate in rates.items():
        check.row(part, f"pairs/s {h}x{w}, batch {batch} (OpenCV: 1 core; goal 100)", cpu_rate, rate)
    for batch, rate in eager_rate.items():
        check.row(part, f"pairs/s op by op, batch {batch}", cpu_rate, rate)
    return {"relative_l2": rel["compiled" if compiled else "eager"], "relative_l2_eager": rel["eager"],
            "remap_grid": grid, "compiled": compiled, "compiled_first_call_s": compile_s,
            "opencv_cpu_pairs_per_s": cpu_rate, "port_pairs_per_s": {str(b): r for b, r in rates.items()},
            "port_eager_pairs_per_s": {str(b): r for b, r in eager_rate.items()}, "size": [h, w], "crop": crop}


def guarded(check, part, fn, *args):
    """fn(check, *args); an error on the way (CUDA out of memory, a kernel that fails) fails the part with
    its first line instead of ending the check."""
    try:
        return fn(check, *args)
    except Exception as err:
        message = (str(err).strip().splitlines() or [""])[0][:200]
        check.verdict(part, "ran", False, f"{type(err).__name__}: {message}")
        return {"error": f"{type(err).__name__}: {message}"}


def timings(report):
    """The speed figures of the parts in one place: seconds per training step and per test pass (each run),
    I3D snippets/s and TV-L1 pairs/s (None where a part did not run)."""
    runs = report["training"]
    i3d = {s: {d: report[f"i3d_{s}"].get(f"{d}_snippets_per_s") for d in ("cpu", "cuda")} for s in ("rgb", "flow")}
    flow = report.get("tvl1", {})
    return {"train_step_s": {name: r.get("train_step_s") for name, r in runs.items()},
            "test_pass_s": {name: r.get("test_pass_s") for name, r in runs.items()},
            "i3d_snippets_per_s": i3d,
            "flow_pairs_per_s": {"opencv_cpu": flow.get("opencv_cpu_pairs_per_s"),
                                 "port_cuda": flow.get("port_pairs_per_s")}}


def prepare(out, overwrite):
    """An empty --out folder: one that holds files is refused without --overwrite (then emptied)."""
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise ValueError(f"--out {out}: the folder holds files; give --overwrite to replace them "
                             f"(or another --out)")
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)


def environment(device, self_test):
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "gpu": "none (self-test: cpu stands in)" if self_test else torch.cuda.get_device_name(device),
            "cpu_threads": torch.get_num_threads(), "python": sys.version.split()[0], "self_test": self_test}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="ckpt/gpu_check", help="folder of the runs and gpu_check.json "
                   "(scripts/gpu_check.sh runs in the repository root)")
    p.add_argument("--overwrite", action="store_true", help="empty a --out folder that holds files")
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="tiny: every part at toy sizes "
                   "(about a minute; for the tests, not a parity check worth reporting)")
    p.add_argument("--self-test-on-cpu", action="store_true", help="for the tests: run every part with the CPU "
                   "standing in for CUDA at --size tiny (TV-L1 skipped: the port takes minutes on CPU)")
    return p.parse_args(argv)


def main_check(argv=None):
    opts = parse_args(argv)
    if not torch.cuda.is_available() and not opts.self_test_on_cpu:
        print(f"gpu_check: no CUDA device (torch {torch.__version__} sees none); nothing was run")
        return 3
    device = torch.device("cpu" if opts.self_test_on_cpu else "cuda")
    cfg = SIZES["tiny" if opts.self_test_on_cpu else opts.size]
    out = os.path.abspath(opts.out)
    prepare(out, opts.overwrite)
    check = Check()
    report = {"environment": environment(device, opts.self_test_on_cpu),
              "size": "tiny" if opts.self_test_on_cpu else opts.size, "sizes": cfg,
              "tolerances": TOLERANCES}
    check.say(f"gpu_check on {report['environment']['gpu']}; demo data into {out}")
    make_synthetic_dataset(os.path.join(out, "demo"), num_train=cfg["train_videos"], num_test=cfg["test_videos"],
                           length=cfg["length"])
    report["training"] = training_part(check, str(device), cfg, out)
    if "error" not in report["training"]["cpu"]:
        report["inference"] = inference_part(check, str(device), report["training"]["cpu"]["best"], out)
    else:
        check.verdict("inference", "inference runs", False, "not run: the CPU training run failed")
    for stream in ("rgb", "flow"):
        check.say(f"I3D {stream} on the CPU and on {device}")
        report[f"i3d_{stream}"] = guarded(check, f"i3d {stream}", i3d_stream, stream, device, cfg, out)
    if opts.self_test_on_cpu:
        check.verdict("tvl1", "tvl1 port", None, "skipped in the self-test")
    else:
        check.say(f"TV-L1: the port on {device} against OpenCV on the CPU")
        report["tvl1"] = guarded(check, "tvl1", tvl1_part, device, cfg)
    parts = check.parts()
    report.update(timings=timings(report), rows=check.rows, parts=parts,
                  passed=all(ok is not False for ok in parts.values()), elapsed_s=time.time() - check.start)
    save_json(report, os.path.join(out, "gpu_check.json"))
    print(table(check.rows))
    failed = [part for part, ok in parts.items() if ok is False]
    print(f"gpu_check: {'FAILED: ' + ', '.join(failed) if failed else 'every parity holds'} "
          f"({report['elapsed_s']:.0f} s; {os.path.join(out, 'gpu_check.json')})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(main_check))

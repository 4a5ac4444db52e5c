"""The GPU check: one command that shows whether this project computes on a CUDA GPU what it computes on CPU.

    bash scripts/gpu_check.sh [--out ckpt/gpu_check] [--work DIR] [--overwrite]

Without a CUDA device it prints one line and exits 3, having done nothing. Otherwise it prints progress lines
(which part runs, seconds so far) and then one table (part, figure, CPU, CUDA, difference, tolerance, verdict):
0. machine: the optional pieces it has (Triton, a C compiler and Python's headers for Triton's launcher,
   cv2.optflow, PyAV, the CUDA and cuDNN versions) and utils.environment's record;
1. TV-L1 (features/tvl1.py): the port on CUDA, torch.compile'd as the extractor runs it and op by op, against
   the same port on the CPU on the same generated pairs, after the extractor's finishing (features.flow
   finish); compiled against op by op bit for bit; against OpenCV's CPU Dual TV-L1 where cv2.optflow is
   importable; pairs/s per batch size. The port follows the installed OpenCV's remap rule, as the extractor
   does (OpenCV itself, without its contrib modules, is there wherever features/flow.py imports): 4.x's grid
   of 32 (the released feature sets') or 5's exact coordinates; the table says which. A compilation that
   fails is a failed row (a note where Triton's launcher lacks a C compiler or Python's headers), and the
   part goes on op by op;
2. I3D (features/i3d.py, weights by tests/i3d_weights.py's rule): features of the same clips fed through the
   extractor's own batching (features.streams.I3DBatches, channels-last) on CPU and CUDA, TF32 off (the
   parity) and on (reported), and snippets/s;
3. training: the demo data (dataset.py), the same seed and steps with main.py on CPU (fp32) and on CUDA in
   fp32 (TF32 convolutions, PyTorch's default), fp32 with --strict_fp32 and bf16; every loss term at steps 1
   to 3 (strict), the total at step 1 (TF32, bf16), the gradient norm of each parameter group after step 1
   (main.train_step in this process, strict); end-of-run losses, mAP and times as information;
4. inference: the CPU run's best.pt evaluated by main.py --inference_only on CPU and on CUDA (--strict_fp32,
   then with TF32): mAP and the scores of the detections both devices make.
--out receives two files, gpu_check.json (every figure) and gpu_check.txt (the table); the runs' working
files go to a temporary folder, removed at the end (or to --work DIR, kept). Exit status: 0 when every parity
holds, 1 when one fails, 3 without CUDA. Sized for under 5 minutes on an H200 machine with 16 cores
(estimated, not measured: docs/training.md, "GPU runs"); the TV-L1 batch ladder stops early when its part
has run for SIZES[...]["flow_budget_s"]. Why each tolerance is what it is: TOLERANCES below.
"""
import argparse
import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

import cv2
import numpy as np
import pandas as pd
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import _repo  # noqa: E402,F401  (the repository root on sys.path)

import checkpoint  # noqa: E402
import inference  # noqa: E402
import main as aicl  # noqa: E402
from bench_flow import cuda_rates  # noqa: E402
from dataset import collate, make_synthetic_dataset  # noqa: E402
from features.flow import finish, opencv_remap_grid, port_compiles  # noqa: E402
from features.i3d import load_i3d  # noqa: E402
from features.streams import I3DBatches  # noqa: E402
from features.tvl1 import TAB, tvl1  # noqa: E402
from settings import resolve  # noqa: E402
from utils.cli import run  # noqa: E402
from utils.device import set_tf32, tf32_flags  # noqa: E402
from utils.environment import environment  # noqa: E402
from utils.io import read_json, save_json, save_text  # noqa: E402

ROOT = _repo.ROOT
# Sizes: "full" is the check; "tiny" lets the tests run every part in a few minutes (--self-test-on-cpu).
SIZES = {
    "full": dict(train_videos=60, test_videos=30, length=(80, 200), T=100, steps=100, eval_every=50,
                 i3d_cpu_batch=2, i3d_clips=4, i3d_batch=16, i3d_repeats=3, warmup=1,
                 flow_pairs=8, flow_hw=(256, 341), flow_crop=224, flow_batches=(8, 16, 32, 64, 128, 256),
                 flow_blocks=(1, 10), flow_block_batch=64, flow_budget_s=120),
    "tiny": dict(train_videos=8, test_videos=4, length=(40, 60), T=40, steps=6, eval_every=3,
                 i3d_cpu_batch=1, i3d_clips=1, i3d_batch=1, i3d_repeats=1, warmup=0,
                 flow_pairs=2, flow_hw=(64, 85), flow_crop=48, flow_batches=(2,),
                 flow_blocks=(1,), flow_block_batch=2, flow_budget_s=120),
}
# Tolerances (why, in short). Training: the model has no randomness of its own and starts from the same
# CPU-built weights, so the first steps differ only by rounding: float32 summation order with --strict_fp32
# (every loss term at steps 1 to 3, and each parameter group's gradient norm at step 1, within 1e-3
# relative; a wrong gradient in a term of weight 0.01 misses this by far), TF32 convolutions (10-bit
# mantissas: the total at step 1 within 1e-2), bf16 (8 bits: 5e-2). Later steps add the atomic-add order of
# gather's backward on CUDA and chaotic growth, so the end-of-run figures are information only. Inference of
# one checkpoint: strict fp32 within 0.5 mAP points, scores of the detections both devices make within 1e-3
# and 99% of them made by both; TF32 within 1 point, 1e-2 and 95%. I3D: max |CPU - CUDA| of the features
# within 1e-4 of their largest magnitude with TF32 off (float32 sums over about 60 layers differ in order;
# a wrong kernel differs by the scale itself). TV-L1: the port on CUDA against the port on the CPU and
# against OpenCV, relative L2 of the finished fields per pair, median <= 1% and 95th percentile <= 3% (what is
# left is float rounding, amplified where the solver's stopping test flips); compiled against op by op on
# the same device: 0, bit for bit (features/tvl1.py makes inductor keep the eager rounding).
TOLERANCES = {
    "fp32": {"loss_step1": 1e-2},
    "fp32_strict": {"terms_steps_1_3": 1e-3, "grad_norm_step1": 1e-3},
    "bf16": {"loss_step1": 5e-2},
    "infer_strict": {"mAP_points": 0.5, "score": 1e-3, "matched": 0.99},
    "infer_tf32": {"mAP_points": 1.0, "score": 1e-2, "matched": 0.95},
    "i3d_relative": 1e-4, "flow_median": 0.01, "flow_p95": 0.03, "flow_compiled": 0.0,
}
TRAIN_RUNS = (("fp32", "fp32", []), ("fp32_strict", "fp32", ["--strict_fp32"]), ("bf16", "bf16", []))
CHECKED_STEPS = (1, 2, 3)


class Check:
    """The rows of the table, their verdicts and the progress lines."""

    def __init__(self):
        self.start = time.time()
        self.rows = []

    def elapsed(self):
        return time.time() - self.start

    def say(self, text):
        print(f"[{self.elapsed():6.1f} s] {text}", flush=True)

    @contextlib.contextmanager
    def part(self, name):
        """Progress lines around one part: which runs, and how long it took."""
        start = time.time()
        self.say(f"{name} ...")
        try:
            yield
        finally:
            self.say(f"{name}: done in {time.time() - start:.1f} s")

    def row(self, part, what, cpu, dev, tol=None, rel=False):
        """One compared figure; tol None: information only. rel: the difference relative to |cpu|."""
        self.add(part, what, cpu, dev, difference(cpu, dev, rel), tol, rel)

    def add(self, part, what, cpu, dev, diff, tol=None, rel=False):
        """A row whose difference is given (e.g. the largest over several steps)."""
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
            if r["pass"] is None:
                out.setdefault(r["part"], None)
            else:
                out[r["part"]] = out.get(r["part"]) is not False and r["pass"]
        return out


def difference(cpu, dev, rel=False):
    """|dev - cpu|, relative to |cpu| when ``rel`` (0 where both are 0); None where either is missing."""
    if cpu is None or dev is None:
        return None
    diff = abs(dev - cpu)
    return diff / abs(cpu) if rel and cpu != 0 else (0.0 if rel and diff == 0 else diff)


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


# ------------------------------------------------------------------------------------------------ machine
def has_opencv_tvl1():
    """Whether OpenCV's contrib modules (cv2.optflow, its Dual TV-L1) are importable."""
    try:
        from cv2 import optflow  # noqa: F401
    except ImportError:
        return False
    return True


def machine(device):
    """The optional pieces of this machine that parts of the check use (None: absent)."""
    triton = importlib.util.find_spec("triton") and importlib.import_module("triton").__version__
    compilers = [c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c]
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    return {"triton": triton or None, "c_compiler": next(filter(None, map(shutil.which, compilers)), None),
            "python_headers": os.path.isfile(headers), "cv2": cv2.__version__, "cv2_optflow": has_opencv_tvl1(),
            "pyav": importlib.util.find_spec("av") is not None, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def machine_row(check, pieces):
    said = {"triton": "Triton", "c_compiler": "C compiler", "cv2_optflow": "cv2.optflow", "pyav": "PyAV",
            "cuda": "CUDA", "cudnn": "cuDNN"}
    note = ", ".join(f"{name} {'no' if pieces[k] in (None, False) else 'yes' if pieces[k] is True else pieces[k]}"
                     for k, name in said.items())
    check.verdict("machine", "optional pieces", None, note + f", Python headers "
                  f"{'yes' if pieces['python_headers'] else 'no'}")


# ------------------------------------------------------------------------------------------------- TV-L1
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


def relative_l2(fields, ref):
    """Per pair, ||fields - ref|| / ||ref|| of finished fields [n, crop, crop, 2]."""
    return [float(np.linalg.norm(f - r) / max(np.linalg.norm(r), 1e-12)) for f, r in zip(fields, ref)]


def parity_rows(check, what, fields, ref):
    errors = relative_l2(fields, ref)
    check.row("tvl1", f"relative L2, {what}, median of {len(errors)}", 0.0, float(np.median(errors)),
              TOLERANCES["flow_median"])
    check.row("tvl1", f"relative L2, {what}, 95th percentile", 0.0, float(np.percentile(errors, 95)),
              TOLERANCES["flow_p95"])
    return errors


def compiled_fields(check, first, second, device, grid, launcher=True):
    """(raw fields of the torch.compile'd port on ``device``, or None; seconds of that first call): None
    with a note where torch.compile cannot build it here; where building it fails, a failed row, or a note
    when ``launcher`` is False (no C compiler or Python headers for Triton's launcher: the extractor too
    falls back to op by op there)."""
    if not port_compiles(device):
        missing = "Triton" if device.type == "cuda" else "a C++ compiler"
        check.verdict("tvl1", "compiled port", None, f"not run: no {missing}, so the extractor runs op by op")
        return None, None
    start = time.time()
    try:
        fields = np.asarray(tvl1(first, second, str(device), grid, compiled=True))
    except Exception as err:           # Triton's launcher needs a C compiler and Python's headers, inductor more
        message = (str(err).strip().splitlines() or [""])[0][:160]
        why = "" if launcher else ", as expected without a C compiler or Python's headers"
        check.verdict("tvl1", "compiled port", False if launcher else None, f"torch.compile failed "
                      f"({type(err).__name__}: {message}){why}; the part goes on op by op")
        return None, time.time() - start
    return fields, time.time() - start


def opencv_rows(check, first, second, crop, fields):
    """OpenCV's CPU Dual TV-L1 on the pairs against the port's ``fields`` ({kind: finished fields}): rows and
    OpenCV's pairs/s (one process)."""
    engine = cv2.optflow.DualTVL1OpticalFlow_create()
    start = time.time()
    ref = finish(np.stack([engine.calc(a, b, None) for a, b in zip(first, second)]), crop)
    rate = len(first) / (time.time() - start)
    errors = {kind: parity_rows(check, f"port {kind} vs OpenCV", f, ref) for kind, f in fields.items()}
    check.row("tvl1", "pairs/s, OpenCV's TV-L1 on the CPU (one process)", rate, None)
    return {"relative_l2": errors, "pairs_per_s": rate}


def rate_rows(check, pairs, device, cfg, compiled, started):
    """Pairs/s of the port on ``device`` per batch size (compiled where it compiled), the first and the largest
    always, the others while the part is within its time budget; op by op at the largest batch when there is
    time left."""
    (h, w), batches, rates = cfg["flow_hw"], cfg["flow_batches"], {}
    for b in batches:
        if b not in (batches[0], batches[-1]) and time.time() - started > cfg["flow_budget_s"]:
            check.verdict("tvl1", f"pairs/s {h}x{w}, batch {b}", None, "not run: the part's time budget is spent")
            continue
        rates[b] = cuda_rates(*pairs, str(device), (b,), compiled)[b]
        check.row("tvl1", f"pairs/s {h}x{w}, batch {b}{'' if compiled else ', op by op'} (goal 100)", None,
                  rates[b])
        if rates[b] is None:                             # out of memory: larger batches will not fit either
            break
    block_rows(check, pairs, device, cfg, compiled, started)
    eager = {}
    if compiled and time.time() - started <= cfg["flow_budget_s"]:
        eager = cuda_rates(*pairs, str(device), batches[-1:], False)
        check.row("tvl1", f"pairs/s {h}x{w}, batch {batches[-1]}, op by op", None, eager[batches[-1]])
    return {str(b): r for b, r in rates.items()}, {str(b): r for b, r in eager.items()}


def block_rows(check, pairs, device, cfg, compiled, started):
    """Pairs/s of the compiled port at one batch size per block (inner iterations per compiled call,
    features.tvl1.BLOCK), while the part is within its time budget: the figures that settle the CUDA block."""
    (h, w), b = cfg["flow_hw"], cfg["flow_block_batch"]
    for k in cfg["flow_blocks"] if compiled else ():
        what = f"pairs/s {h}x{w}, batch {b}, block {k}"
        if time.time() - started > cfg["flow_budget_s"]:
            check.verdict("tvl1", what, None, "not run: the part's time budget is spent")
            continue
        check.row("tvl1", what, None, cuda_rates(*pairs, str(device), (b,), compiled, block=k)[b])


def tvl1_part(check, device, cfg, launcher=True):
    """The port on ``device`` (compiled as the extractor runs it, and op by op) against the same port on the
    CPU, compiled against op by op, against OpenCV where cv2.optflow is there; pairs/s per batch."""
    started, with_opencv, grid = time.time(), has_opencv_tvl1(), opencv_remap_grid()
    rule = f"the installed OpenCV {cv2.__version__}'s, as the extractor follows it: " + (
        f"grid {TAB}, OpenCV 4.x's (the released feature sets')" if grid == TAB else
        "exact coordinates (grid None), OpenCV 5's")
    check.say(f"TV-L1 remap rule: {rule}")
    check.verdict("tvl1", "remap rule", None, rule)
    (h, w), crop = cfg["flow_hw"], cfg["flow_crop"]
    first, second = frame_pairs(cfg["flow_pairs"], h, w)
    start = time.time()
    cpu = finish(np.asarray(tvl1(first, second, "cpu", grid)), crop)
    cpu_rate = len(first) / (time.time() - start)
    eager = np.asarray(tvl1(first, second, str(device), grid))
    compiled, compile_s = compiled_fields(check, first, second, device, grid, launcher)
    fields = {"op by op": finish(eager, crop)}
    if compiled is not None:
        fields["compiled"] = finish(compiled, crop)
        check.row("tvl1", "compiled vs op by op on the device, max |raw field diff| (px)", 0.0,
                  float(np.abs(compiled - eager).max()), TOLERANCES["flow_compiled"])
    errors = {kind: parity_rows(check, f"port {kind} vs the port on the CPU", f, cpu) for kind, f in fields.items()}
    check.row("tvl1", f"pairs/s, the port op by op on the CPU (batch {len(first)})", cpu_rate, None)
    report = {"remap_grid": grid, "remap_rule": rule, "compiled": compiled is not None, "compile_s": compile_s,
              "relative_l2_vs_cpu_port": errors, "cpu_port_pairs_per_s": cpu_rate, "size": [h, w], "crop": crop}
    if with_opencv:
        report["opencv"] = opencv_rows(check, first, second, crop, fields)
    else:
        check.verdict("tvl1", "vs OpenCV's TV-L1", None, "not run: cv2.optflow is not importable (OpenCV without "
                      "its contrib modules)")
    report["port_pairs_per_s"], report["port_eager_pairs_per_s"] = rate_rows(
        check, (first, second), device, cfg, compiled is not None, started)
    return report


# --------------------------------------------------------------------------------------------------- I3D
def load_rule_weights_module():
    """tests/i3d_weights.py (the golden fill rule of the I3D weights), loaded by its path."""
    spec = importlib.util.spec_from_file_location("i3d_weights", os.path.join(ROOT, "tests", "i3d_weights.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def tf32(allowed):
    """TF32 in cuDNN convolutions and CUDA matmuls on or off (utils.device.set_tf32), restored afterwards."""
    saved = tf32_flags()
    set_tf32(allowed, allowed)
    try:
        yield
    finally:
        set_tf32(*saved)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def i3d_features(model, device, clips, batch):
    """Features [n, 1024] of ``clips`` (the extractor's per-snippet arrays) through I3DBatches in batches of
    ``batch``, as features/extract.py runs the network."""
    batches = I3DBatches(model, device, batch)
    for clip in clips:
        batches.add(clip)
    return batches.features()


def stream_clips(stream, n, seed=2023):
    """n snippets as the extractor hands them to I3DBatches: RGB uint8 [n, 16, 224, 224, 3], flow float32
    [n, 16, 224, 224, 2] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    if stream == "rgb":
        return rng.integers(0, 256, (n, 16, 224, 224, 3), dtype=np.uint8)
    return (rng.random((n, 16, 224, 224, 2), dtype=np.float32) * 2 - 1).astype(np.float32)


def snippets_per_s(model, device, clips, batch, repeats, warmup):
    """Snippets per second through I3DBatches (host arrays in, features on the host out)."""
    for _ in range(warmup):
        i3d_features(model, device, clips, batch)
    sync(device)
    start = time.time()
    for _ in range(repeats):
        i3d_features(model, device, clips, batch)
    sync(device)
    return repeats * len(clips) / (time.time() - start)


def i3d_stream(check, stream, device, cfg, work):
    """One I3D stream: features of the same clips on CPU and device, TF32 off and on; snippets/s."""
    path = os.path.join(work, f"i3d_{stream}_rule.pt")
    load_rule_weights_module().write_rule_weights(path, stream)
    cpu_model, dev_model = load_i3d(path, stream, "cpu"), load_i3d(path, stream, device)
    clips = stream_clips(stream, cfg["i3d_clips"])
    start = time.time()
    ref = i3d_features(cpu_model, torch.device("cpu"), clips, cfg["i3d_cpu_batch"])
    cpu_rate, scale = len(clips) / (time.time() - start), float(np.abs(ref).max())
    diffs = {}
    for allowed in (False, True):
        with tf32(allowed):
            diffs[allowed] = float(np.abs(i3d_features(dev_model, device, clips, len(clips)) - ref).max()) / scale
    with tf32(False):
        batch = stream_clips(stream, cfg["i3d_batch"], seed=7)
        dev_rate = snippets_per_s(dev_model, device, batch, len(batch), cfg["i3d_repeats"], cfg["warmup"])
    part = f"i3d {stream}"
    check.add(part, f"max |feature diff| / {scale:.3g} (the largest |feature|), TF32 off", 0.0, diffs[False],
              diffs[False], TOLERANCES["i3d_relative"], rel=True)
    check.add(part, "max |feature diff| / the largest |feature|, TF32 on", 0.0, diffs[True], diffs[True], rel=True)
    check.row(part, f"snippets/s (CPU batch {cfg['i3d_cpu_batch']}, CUDA {len(batch)})", cpu_rate, dev_rate)
    return {"relative_diff_tf32_off": diffs[False], "relative_diff_tf32_on": diffs[True], "feature_scale": scale,
            "cpu_snippets_per_s": cpu_rate, "cuda_snippets_per_s": dev_rate, "cpu_batch": cfg["i3d_cpu_batch"],
            "cuda_batch": len(batch)}


# ---------------------------------------------------------------------------------------------- training
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


def train_flags(name, device, precision, extra, cfg, work):
    return ["--data_path", os.path.join(work, "demo"), "--output_dir", os.path.join(work, "runs"), "--exp_name",
            name, "--num_segments", cfg["T"], "--max_steps", cfg["steps"], "--detection_inf_step",
            cfg["eval_every"], "--soft_nms", "--seed", 1, "--device", device, "--precision", precision, *extra]


def logged_scalars(run_dir):
    """{tag: {step: value}} of the run's TensorBoard scalars (loss/<term>, mining/...) and the median seconds
    between consecutive steps."""
    events = EventAccumulator(os.path.join(run_dir, "logs"), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    wall = [e.wall_time for e in scalars["loss/total"]]
    return {tag: {e.step: e.value for e in s} for tag, s in scalars.items()}, float(np.median(np.diff(wall)))


def train(name, device, precision, extra, cfg, work):
    """One training run of the demo; its figures, or {"error": last lines} when main.py failed."""
    started = time.time()
    rc, lines = run_main([str(a) for a in train_flags(name, device, precision, extra, cfg, work)],
                         os.path.join(work, "runs", f"{name}.out"))
    if rc != 0:
        return {"error": f"main.py exited {rc}: " + " | ".join(line for _, line in lines[-3:])}
    run_dir = os.path.join(work, "runs", name)
    last = read_json(os.path.join(run_dir, "last_metrics.json"))
    scalars, step_s = logged_scalars(run_dir)
    terms = {tag.split("/", 1)[1]: [values.get(s) for s in CHECKED_STEPS]
             for tag, values in scalars.items() if tag.startswith("loss/")}
    t_start, t_step0 = (next((t for t, line in lines if line.startswith(prefix)), None)
                        for prefix in ("training on", "step 0 "))      # the step-0 evaluation: one test pass
    log = pd.read_csv(os.path.join(run_dir, "log.csv"))
    return {"wall_s": time.time() - started, "train_step_s": step_s,
            "test_pass_s": None if None in (t_start, t_step0) else t_step0 - t_start,
            "terms_steps_1_3": terms, "loss_step1": terms["total"][0], "loss_last_window": float(log["total"].iloc[-1]),
            "average_mAP": last["average_mAP"] * 100, "mAP": dict(zip(map(str, last["tiou"]),
                                                                      (m * 100 for m in last["mAP"]))),
            "best": os.path.join(run_dir, "best.pt")}


@contextlib.contextmanager
def gpu_numerics(strict_fp32):
    """main.set_gpu_numerics for the steps in this process, the cuDNN and TF32 flags restored afterwards."""
    saved = tf32_flags(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    aicl.set_gpu_numerics(strict_fp32)
    try:
        yield
    finally:
        set_tf32(*saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1:]


def step_one_gradients(device, cfg, work):
    """{parameter group: gradient norm} after main.train_step's first step of the strict fp32 run, in this
    process on ``device``: the same settings, first batch and CPU-built initial weights as main.py's runs."""
    args = aicl.parse_args([str(a) for a in train_flags("grad", str(device), "fp32", ["--strict_fp32"], cfg, work)])
    with contextlib.redirect_stdout(io.StringIO()):      # the settings and feature-cache lines of main.py's runs
        resolved = resolve(args)
        train_set = inference.feature_dataset(resolved.args, "train", resolved.class_names)
    args = resolved.args
    train_set.set_epoch(0)
    feats, labels, _, _ = collate([train_set[i] for i in aicl.epoch_batches(len(train_set), args.batch_size,
                                                                            args.seed, 0)[0]])
    torch.manual_seed(args.seed)
    model = checkpoint.build_model(args, len(resolved.class_names)).to(device)
    with gpu_numerics(strict_fp32=True):
        aicl.train_step(model, aicl.build_optimizer(args, model), feats.to(device), labels.to(device), args)
    squares = {}
    for name, p in model.named_parameters():       # group: the module path without container and index parts
        group = ".".join(part for part in name.split(".")[1:-1] if not part.isdigit())
        squares[group] = squares.get(group, 0.0) + float(p.grad.double().pow(2).sum())
    return {group: s ** 0.5 for group, s in squares.items()}


def strict_rows(check, cpu, dev, grads):
    """Every loss term at steps 1 to 3 and each group's gradient norm at step 1, CPU against strict fp32 CUDA."""
    part, tol = "train fp32_strict", TOLERANCES["fp32_strict"]
    for term, values in cpu["terms_steps_1_3"].items():
        pairs = list(zip(values, dev["terms_steps_1_3"].get(term, [None] * len(values))))
        diffs = [difference(c, d, rel=True) for c, d in pairs]
        worst = None if None in diffs else max(diffs)
        check.add(part, f"{term}, steps 1-3 (step 1 shown; largest difference)", values[0], pairs[0][1], worst,
                  tol["terms_steps_1_3"], rel=True)
    for group, norm in grads["cpu"].items():
        check.row(part, f"gradient norm at step 1, {group}", norm, grads["cuda"].get(group),
                  tol["grad_norm_step1"], rel=True)


def end_of_run_rows(check, part, cpu, dev):
    """The figures of the whole run, as information (rounding grows over training: no tolerance)."""
    check.row(part, "loss, last window", cpu["loss_last_window"], dev["loss_last_window"], rel=True)
    check.row(part, "average mAP (last evaluation)", cpu["average_mAP"], dev["average_mAP"])
    for t in ("0.3", "0.5", "0.7"):
        check.row(part, f"mAP@{t} (last evaluation)", cpu["mAP"].get(t), dev["mAP"].get(t))
    check.row(part, "train step (s)", cpu["train_step_s"], dev["train_step_s"])
    check.row(part, "test pass (s)", cpu["test_pass_s"], dev["test_pass_s"])


def training_part(check, device, cfg, work):
    """CPU fp32 against each CUDA run (rows) and the gradients of step 1; the runs' figures."""
    check.say("training on the CPU (fp32)")
    runs = {"cpu": train("cpu_fp32", "cpu", "fp32", [], cfg, work)}
    for name, precision, extra in TRAIN_RUNS:
        check.say(f"training on {device} ({name})")
        runs[name] = train(f"cuda_{name}", str(device), precision, extra, cfg, work)
    check.say(f"step 1's gradients on the CPU and on {device} (strict fp32, in this process)")
    grads = {"cpu": step_one_gradients(torch.device("cpu"), cfg, work),
             "cuda": step_one_gradients(device, cfg, work)}
    cpu = runs["cpu"]
    for name, _, _ in TRAIN_RUNS:
        part, dev = f"train {name}", runs[name]
        if "error" in cpu or "error" in dev:
            check.verdict(part, "training run", False, (cpu if "error" in cpu else dev)["error"])
            continue
        if name == "fp32_strict":
            strict_rows(check, cpu, dev, grads)
        else:
            check.row(part, "total loss at step 1", cpu["loss_step1"], dev["loss_step1"],
                      TOLERANCES[name]["loss_step1"], rel=True)
        end_of_run_rows(check, part, cpu, dev)
    return dict(runs, step1_gradient_norms=grads)


# --------------------------------------------------------------------------------------------- inference
def infer(name, device, ckpt, extra, work):
    """main.py --inference_only of ``ckpt``: (metrics, predictions), or (None, the error)."""
    args = ["--inference_only", "--model_file", ckpt, "--data_path", os.path.join(work, "demo"), "--output_dir",
            os.path.join(work, "runs"), "--exp_name", name, "--device", device, *extra]
    rc, lines = run_main(args, os.path.join(work, "runs", f"{name}.out"))
    if rc != 0:
        return None, f"main.py exited {rc}: " + " | ".join(line for _, line in lines[-3:])
    folder = os.path.join(work, "runs", name, "eval_" + os.path.splitext(os.path.basename(ckpt))[0])
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


def inference_part(check, device, ckpt, work):
    """The CPU run's best.pt evaluated on CPU and on CUDA (strict fp32, then TF32): rows and figures."""
    cpu, cpu_preds = infer("infer_cpu", "cpu", ckpt, [], work)
    figures = {"cpu": cpu and {"average_mAP": cpu["average_mAP"] * 100}}
    for name, extra in (("strict", ["--strict_fp32"]), ("tf32", [])):
        part, tol = f"inference {name}", TOLERANCES[f"infer_{name}"]
        dev, dev_preds = infer(f"infer_cuda_{name}", str(device), ckpt, extra, work)
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


# ------------------------------------------------------------------------------------------------ driver
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
    runs = {k: v for k, v in report["training"].items() if isinstance(v, dict) and k != "step1_gradient_norms"}
    i3d = {s: {d: report[f"i3d_{s}"].get(f"{d}_snippets_per_s") for d in ("cpu", "cuda")} for s in ("rgb", "flow")}
    flow = report.get("tvl1", {})
    return {"train_step_s": {name: r.get("train_step_s") for name, r in runs.items()},
            "test_pass_s": {name: r.get("test_pass_s") for name, r in runs.items()},
            "i3d_snippets_per_s": i3d,
            "flow_pairs_per_s": {"opencv_cpu": flow.get("opencv", {}).get("pairs_per_s"),
                                 "port_cpu": flow.get("cpu_port_pairs_per_s"),
                                 "port_cuda": flow.get("port_pairs_per_s"),
                                 "port_cuda_op_by_op": flow.get("port_eager_pairs_per_s")}}


def empty_folder(path, flag, overwrite):
    """``path`` as an empty folder: one that holds files is refused without --overwrite (then emptied)."""
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise ValueError(f"{flag} {path}: the folder holds files; give --overwrite to replace them "
                             f"(or another {flag})")
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="ckpt/gpu_check", help="folder of gpu_check.json and gpu_check.txt, the table "
                   "(scripts/gpu_check.sh runs in the repository root)")
    p.add_argument("--work", default=None, help="folder of the runs' working files, kept (default: a temporary "
                   "folder, removed at the end)")
    p.add_argument("--overwrite", action="store_true", help="empty an --out or --work folder that holds files")
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="tiny: every part at toy sizes "
                   "(for the tests, not a parity check worth reporting)")
    p.add_argument("--self-test-on-cpu", action="store_true", help="for the tests: run every part, TV-L1 "
                   "included, with the CPU standing in for CUDA at --size tiny")
    return p.parse_args(argv)


def run_parts(check, report, device, cfg, work):
    """The parts in order (each guarded: one that fails does not end the check); their figures into report."""
    with check.part("TV-L1"):
        launcher = bool(report["machine"]["c_compiler"] and report["machine"]["python_headers"])
        report["tvl1"] = guarded(check, "tvl1", tvl1_part, device, cfg, launcher)
    for stream in ("rgb", "flow"):
        with check.part(f"I3D {stream}"):
            report[f"i3d_{stream}"] = guarded(check, f"i3d {stream}", i3d_stream, stream, device, cfg, work)
    with check.part("training"):
        make_synthetic_dataset(os.path.join(work, "demo"), num_train=cfg["train_videos"],
                               num_test=cfg["test_videos"], length=cfg["length"])
        os.makedirs(os.path.join(work, "runs"), exist_ok=True)
        report["training"] = guarded(check, "training", training_part, device, cfg, work)
    with check.part("inference"):
        cpu_run = report["training"].get("cpu", {})
        if "best" in cpu_run:
            report["inference"] = inference_part(check, device, cpu_run["best"], work)
        else:
            check.verdict("inference", "inference runs", False, "not run: the CPU training run failed")


def main_check(argv=None):
    opts = parse_args(argv)
    if not torch.cuda.is_available() and not opts.self_test_on_cpu:
        print(f"gpu_check: no CUDA device (torch {torch.__version__} sees none); nothing was run")
        return 3
    device = torch.device("cpu" if opts.self_test_on_cpu else "cuda")
    size = "tiny" if opts.self_test_on_cpu else opts.size
    out, cfg = os.path.abspath(opts.out), SIZES[size]
    empty_folder(out, "--out", opts.overwrite)
    if opts.work:
        empty_folder(os.path.abspath(opts.work), "--work", opts.overwrite)
    check, pieces = Check(), machine(device)
    report = {"machine": pieces, "environment": environment(device), "self_test": opts.self_test_on_cpu,
              "size": size, "sizes": cfg, "tolerances": TOLERANCES}
    check.say(f"gpu_check on {pieces['gpu'] or 'the CPU standing in for CUDA (self-test)'}; results into {out}")
    machine_row(check, pieces)
    with contextlib.ExitStack() as stack:
        work = os.path.abspath(opts.work) if opts.work else stack.enter_context(
            tempfile.TemporaryDirectory(prefix="gpu_check_"))
        check.say(f"working files in {work}{'' if opts.work else ' (removed at the end)'}")
        run_parts(check, report, device, cfg, work)
    parts = check.parts()
    report.update(timings=timings(report), rows=check.rows, parts=parts,
                  passed=all(ok is not False for ok in parts.values()), elapsed_s=check.elapsed())
    failed = [part for part, ok in parts.items() if ok is False]
    text = (table(check.rows) + f"\ngpu_check: {'FAILED: ' + ', '.join(failed) if failed else 'every parity holds'}"
            f" ({report['elapsed_s']:.0f} s; {os.path.join(out, 'gpu_check.json')})")
    save_json(report, os.path.join(out, "gpu_check.json"))
    save_text(text + "\n", os.path.join(out, "gpu_check.txt"))
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(main_check))

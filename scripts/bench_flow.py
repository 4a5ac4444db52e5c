"""Speed of TV-L1 optical flow at the extractor's 256x341 scale: OpenCV's CPU DualTVL1 on a pool of worker
processes over all cores (as features/extract.py runs it) against the PyTorch port (features/tvl1.py) on all
cores, eager and torch.compile'd, and on CUDA when present; plus the port's parity with OpenCV on the same
pairs (relative L2 of the finished fields: crop 224, clip 20, /20).

    python3 scripts/bench_flow.py [--pairs 16] [--repeats 2] [--no-compile] [--json]

The frames (natural_pairs) are generated, not footage: a textured scene with detail at several scales, moved
by a smooth, spatially varying (non-rigid) field plus a pan, three textured ellipses moving on their own
(occluding the background), a brightness change and sensor noise between the two frames. Real footage
converges more slowly than such textures (shared/VIDEO_FEATURES.md), so absolute times there are longer for
both implementations; the ratio is what this measures.
"""
import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np
import torch

import _repo  # noqa: E402,F401  (the repository root on sys.path)

from features import flow as flowlib  # noqa: E402
from features import tvl1 as port  # noqa: E402

CUDA_BATCHES = (8, 16, 32, 64, 128, 256)


def _layers(rng, h, w, sigmas=(1.0, 3.0, 9.0)):
    """Smooth random texture with detail at several scales, float32 [h, w] in about 0..255."""
    img = sum(cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), s) * s for s in sigmas)
    return cv2.normalize(img, None, 20, 235, cv2.NORM_MINMAX)


def _motion(rng, h, w):
    """A smooth non-rigid displacement field (dx, dy) float32 [h, w] each: pan plus low-frequency warping."""
    pan = rng.uniform(-3, 3, 2)
    fields = []
    for p in pan:
        coarse = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 40)
        fields.append((p + 2.5 * coarse / max(np.abs(coarse).max(), 1e-6)).astype(np.float32))
    return fields


def natural_pair(rng, h=256, w=341):
    """One generated pair of uint8 grayscale frames (first, second) [h, w] (see the module docstring)."""
    scene = _layers(rng, h, w)
    dx, dy = _motion(rng, h, w)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    frames = [scene, cv2.remap(scene, gx - dx, gy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)]
    for _ in range(3):                                      # objects: textured ellipses with their own motion
        tex, mask = _layers(rng, h, w) * 0.5 + rng.uniform(20, 140), np.zeros((h, w), np.uint8)
        centre, axes = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h)), \
            (int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.08, 0.2) * h))
        step = rng.uniform(-6, 6, 2)
        for i, frame in enumerate(frames):
            m = np.float32([[1, 0, step[0] * i], [0, 1, step[1] * i]])
            mask[:] = 0
            cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
            moved_mask = cv2.warpAffine(mask, m, (w, h)).astype(bool)
            frame[moved_mask] = cv2.warpAffine(tex, m, (w, h))[moved_mask]
    gain, offset = rng.uniform(0.95, 1.05), rng.uniform(-5, 5)
    frames[1] = frames[1] * gain + offset
    return tuple(np.clip(f + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8) for f in frames)


def natural_pairs(n, h=256, w=341, seed=0):
    """n generated pairs -> (first, second), uint8 [n, h, w] each."""
    rng = np.random.default_rng(seed)
    pairs = [natural_pair(rng, h, w) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def opencv_pool(first, second, workers=None):
    """OpenCV TV-L1 on a spawn pool of `workers` single-threaded processes (all cores) ->
    (seconds per pair, finished fields [n, 224, 224, 2]); the pool is started before the clock."""
    workers = workers or os.cpu_count()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=flowlib.worker_init) as pool:
        list(pool.map(flowlib.params, ["tvl1"] * workers))                     # warm the workers up
        start = time.perf_counter()
        fields = list(pool.map(flowlib.fields, [np.stack(p) for p in zip(first, second)]))
        seconds = time.perf_counter() - start
    return seconds / len(first), np.concatenate(fields)


def port_time(first, second, device="cpu", batch=None, compiled=False, block=None):
    """The port over all pairs in batches of `batch` (None: as the extractor, one pair at a time on a CPU, 16 on
    a GPU), `block` inner iterations per call (None: the port's BLOCK) -> (seconds per pair, finished fields
    [n, 224, 224, 2])."""
    batch = batch or (1 if torch.device(device).type == "cpu" else 16)
    out, start = [], time.perf_counter()
    for i in range(0, len(first), batch):
        flow = port.tvl1(torch.from_numpy(first[i:i + batch]), torch.from_numpy(second[i:i + batch]),
                         device=device, grid=GRID, compiled=compiled, block=block)
        out.append(flow.cpu().numpy())
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(first), flowlib.finish(np.concatenate(out))


def block_calls(first, second, block):
    """The compiled solve of each pair, one at a time, recording its block calls -> [(state shape, budgets)],
    and the number of verdicts 2 (the serial sum on the host) among them."""
    calls, unsure, verdicts = [], [0], port.verdicts

    def record(info, update, eps):
        calls.append((update.shape, info[0].clone()))
        unsure[0] += int((info[1] == 2).sum())
        return verdicts(info, update, eps)
    port.verdicts = record
    try:
        for i in range(len(first)):
            port.tvl1(first[i:i + 1], second[i:i + 1], grid=GRID, compiled=True, block=block)
    finally:
        port.verdicts = verdicts
    return calls, unsure[0]


def floor_time(calls, block):
    """What the solve would cost with zero overhead: the compiled block step alone, called as the solve calls
    it (`calls` of block_calls: the same sizes and iterations, on zero flows), seconds in all."""
    step = port.kernels(True, "cpu", block)[1]
    zeros = {}
    with torch.inference_mode():
        for shape, ran in calls:
            if shape not in zeros:
                b, h, w = shape
                zeros[shape] = (torch.zeros(b, 3, 2, h, w), torch.zeros(b, 4, h, w),
                                port.stop_limits(np.float32(1e-4 * h * w), h * w, "cpu") * 0)
        start = time.perf_counter()
        for shape, ran in calls:
            state, warp, limits = zeros[shape]
            step(state, warp, limits, ran)
        return time.perf_counter() - start


GRID = flowlib.opencv_remap_grid()        # the installed OpenCV's remap rule, as the extractor gives the port


def parity(ours, ref):
    """Median and 95th percentile over pairs of the relative L2 of finished fields."""
    rel = [np.linalg.norm(o - r) / max(np.linalg.norm(r), 1e-12) for o, r in zip(ours, ref)]
    return float(np.median(rel)), float(np.percentile(rel, 95))


def bench_tvl1(first, second, device="cpu", repeats=2, compile_port=True, block=10):
    """Seconds per pair on all cores: OpenCV's pool (flow_pair_s_opencv) and the port on the CPU one pair at a
    time as the extractor runs it, eager (flow_pair_s_torch_eager), compiled one inner iteration per call
    (flow_pair_s_torch_compiled, with compile_s: the first calls, which compile unless inductor's cache on this
    machine holds the kernels) and in blocks of `block` (flow_pair_s_torch_blocks, compile_s_blocks), and
    the floor of the blocks (flow_floor_s: their compiled block step alone, see floor_time);
    flow_pair_s_torch is the fastest port; each the minimum over `repeats`. flow_unsure_verdicts: verdicts 2
    over the pairs' solves. With CUDA on `device`: flow_pairs_per_s_cuda {batch: pairs/s}. Also parity with
    OpenCV (flow_rel_l2_median, flow_rel_l2_p95)."""
    torch.set_num_threads(os.cpu_count())
    runs = [opencv_pool(first, second) for _ in range(repeats)]
    res = {"flow_pair_s_opencv": min(r[0] for r in runs), "flow_pairs": len(first), "cores": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "opencv": cv2.__version__, "remap_grid": GRID}
    ref = runs[0][1]
    eager = [port_time(first, second) for _ in range(repeats)]
    res["flow_pair_s_torch_eager"] = min(r[0] for r in eager)
    res["flow_rel_l2_median"], res["flow_rel_l2_p95"] = parity(eager[0][1], ref)
    res["flow_pair_s_torch"] = res["flow_pair_s_torch_eager"]
    if compile_port:
        for k, name in ((1, ""), (block, "_blocks")):
            start = time.perf_counter()
            port.tvl1(first[:2], second[:2], grid=GRID, compiled=True, block=k)   # both kernel classes
            port.tvl1(first[:1], second[:1], grid=GRID, compiled=True, block=k)
            res["compile_s" + name] = time.perf_counter() - start
            comp = [port_time(first, second, compiled=True, block=k) for _ in range(repeats)]
            res["flow_pair_s_torch" + (name or "_compiled")] = min(r[0] for r in comp)
            res["flow_pair_s_torch"] = min(res["flow_pair_s_torch"], min(r[0] for r in comp))
        res["flow_rel_l2_median_compiled"], res["flow_rel_l2_p95_compiled"] = parity(comp[0][1], ref)
        calls, res["flow_unsure_verdicts"] = block_calls(first, second, block)
        res["flow_floor_s"] = min(floor_time(calls, block) for _ in range(repeats)) / len(first)
        res["block"] = block
    if torch.device(device).type == "cuda":
        res["flow_pairs_per_s_cuda"] = cuda_rates(first, second, device)
    return res


def cuda_rates(first, second, device, batches=CUDA_BATCHES, compiled=None, block=None):
    """{batch: pairs per second} of the port on `device`, compiled or not (None: as the extractor runs it,
    torch.compile'd where it can be), `block` inner iterations per call (None: the port's BLOCK for it), the pairs
    tiled to fill each batch (after a warm-up, which compiles)."""
    compiled = flowlib.port_compiles(torch.device(device)) if compiled is None else compiled
    rates = {}
    for b in batches:
        reps = -(-b // len(first))
        f, s = np.concatenate([first] * reps)[:b], np.concatenate([second] * reps)[:b]
        port_time(f[:2], s[:2], device, batch=2, compiled=compiled, block=block)
        try:
            rates[b] = 1.0 / port_time(f, s, device, batch=b, compiled=compiled, block=block)[0]
        except torch.cuda.OutOfMemoryError:                  # the largest batches need a large GPU
            rates[b] = None
            torch.cuda.empty_cache()
            break
    return rates


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd port")
    p.add_argument("--json", action="store_true")
    opts = p.parse_args(argv)
    first, second = natural_pairs(opts.pairs)
    res = bench_tvl1(first, second, opts.device, opts.repeats, not opts.no_compile)
    res["loadavg"] = os.getloadavg()
    if opts.json:
        print(json.dumps(res, indent=1))
        return
    for key, value in res.items():
        print(f"{key:32s} {value:.4f}" if isinstance(value, float) else f"{key:32s} {value}")


if __name__ == "__main__":
    main()

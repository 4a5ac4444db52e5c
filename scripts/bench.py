"""Benchmarks of the three loops that bound a THUMOS14 run (numbers, never asserted in tests).

    python3 scripts/bench.py [--json] [--device auto] [--data data/bench]

1. Training step (batch 16, T = 750, all five losses, backward, Adam) in fp32 and in bf16 (--precision),
   each against its floor: the measured time of exactly the three embedding convolutions (2048->D and
   twice 1024->D, k = 3; forward plus weight and bias gradients, no input gradient) in the same
   precision, timed interleaved with the steps (the minimum over the repeats of each); and, as
   information, those convolutions as the model runs them (the class-aware one as two of 1024 channels).
2. Full test pass (213 THUMOS14-sized videos, T = 750, batch 1) in both precisions: forward passes +
   proposals + NMS + mAP, against the forward passes alone.
3. Evaluator: 100,000 predictions against 3,000 ground-truth instances, 20 classes, 7 tIoUs; and at
   ActivityNet v1.3 validation scale (4,926 videos, 200 classes, 10 tIoUs, 500,000 predictions).
The data for 1 and 2 is generated once into --data (synthetic features in the real layout, THUMOS14's
200 training and 213 test videos, by dataset.make_synthetic_dataset).

    python3 scripts/bench.py --anet [--anet_sizes 2000 8000]

4. Feature cache at ActivityNet scale (only this, with --anet): peak memory and the training iteration
   (batch fetch + step of the ActivityNet v1.3 recipe: B32, T50, 200 classes) with the features held in
   memory or memory-mapped, on generated ActivityNet-layout training sets of --anet_sizes videos (10 to
   200 snippets each, written once into --data/anet_N by dataset.make_synthetic_dataset; the smaller sets are
   the largest one's first videos, their files hard-linked). Each configuration runs in its own process, whose
   peak RSS is reported; "cold" first drops the set's pages from the page cache (posix_fadvise), so that
   memory-mapped reads come from disk.

5. Feature extraction (features/, also alone with --features_only): decoding a generated 60 s 320x240 30 fps
   video to 25 fps at the 256-px scale, optical flow per frame pair on one core (TV-L1 on a part of it, DIS),
   TV-L1 per pair on all cores (OpenCV's process pool against the PyTorch port, features/tvl1.py; with CUDA the
   port's pairs/s per batch size) on scripts/bench_flow.py's generated 256x341 pairs, and each I3D stream per
   16-frame snippet against its FLOP count at the rate of the fp32 embedding convolutions (the floor of 1.).

The rows live in scripts/bench_train.py (1.-3.), bench_anet.py (4.) and bench_features.py (5.); each measures the
project's own code (main.train_step with main.build_optimizer, inference.evaluate, dataset.make_synthetic_dataset,
features.video / flow / streams / i3d), not a copy of it.
"""
import argparse
import importlib.util
import json
import sys
import time

import torch

import _repo  # noqa: F401  (the repository root on sys.path)

import main  # noqa: E402
from bench_anet import anet_cache_run, bench_anet  # noqa: E402
from bench_train import (bench_eval, bench_test_pass, bench_train, conv_flops, conv_rate,  # noqa: E402
                         ensure_data)
from dataset import THUMOS14_CLASSES, FeatureDataset  # noqa: E402
from utils.device import resolve_device  # noqa: E402
from utils.environment import environment  # noqa: E402


def print_rows(device, rows):
    print(f"device: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"{'measurement':<30} {'time (s)':>9} {'reference (s)':>14} {'ratio':>6}  note")
    for name, t, ref, note in rows:
        ref_s, ratio = (f"{ref:14.3f}", f"{t / ref:6.2f}") if ref else (f"{'':14}", f"{'':6}")
        print(f"{name:<30} {t:9.3f} {ref_s} {ratio}  {note}")


def train_rows(opts, args, device):
    """(rows, JSON keys) of 1.-3. on the THUMOS14-sized data, the fp32 embedding convolutions' FLOP/s (the I3D
    rows' reference rate) and the footnote of the table."""
    torch.manual_seed(args.seed)
    main.set_gpu_numerics(args.strict_fp32)              # the training's cuDNN and TF32 settings
    ensure_data(opts.data)
    start = time.perf_counter()
    train_set = FeatureDataset(opts.data, "train", args.num_segments, "random", THUMOS14_CLASSES, args.seed)
    test_set = FeatureDataset(opts.data, "test", args.num_segments, "uniform", THUMOS14_CLASSES, args.seed)
    load_s = time.perf_counter() - start
    models, step_s, floor_s, as_run_s, fetch_s = bench_train(args, device, train_set, opts.steps)
    flop = conv_flops(args.batch_size, args.num_segments, args.embed_dim)
    test = {p: bench_test_pass(argparse.Namespace(**dict(vars(args), precision=p)), device, models[p], test_set)
            for p in models}                         # per precision: forward_s, test_s, metrics, detections
    eval_s = bench_eval()
    anet_eval_s = bench_eval(repeat=1, tiou=main.ANET_TIOU, n_pred=500_000, n_gt=7_654, n_classes=200,
                             n_videos=4_926)
    rows = []
    for p in models:
        rows.append((f"train step {p} (B16, T750)", step_s[p], floor_s[p],
                     f"vs the 3 embedding convs alone ({flop / 1e9:.0f} GFLOP): step {flop / step_s[p] / 1e9:.0f}, "
                     f"convs {flop / floor_s[p] / 1e9:.0f} GFLOP/s"))
        rows.append((f"  its convs as run ({p})", as_run_s[p], floor_s[p],
                     "class-aware conv as the sum of its rgb and flow halves (same FLOPs), vs the floor"))
    rows.append(("batch fetch (in-memory)", fetch_s, step_s["fp32"], "vs the fp32 step"))
    for p, (forward_s, test_s, _, detections) in test.items():
        rows.append((f"test pass {p} ({len(test_set)} videos)", test_s, forward_s,
                     f"vs forward passes alone; {detections:.0f} detections/video"))
    rows += [
        ("evaluator (100k pred, 3k GT)", eval_s, 1.0, "vs the 1 s target; 20 classes, 7 tIoUs"),
        ("evaluator, ActivityNet scale", anet_eval_s, None, "500k pred, 7.6k GT, 4,926 videos, 200 classes, 10 tIoUs"),
        ("feature loading (once)", load_s, None, f"{len(train_set) + len(test_set)} videos"),
    ]
    keys = {"train_step_gflop": flop / 1e9, "train_step_s": step_s["fp32"], "train_step_floor_s": floor_s["fp32"],
            "train_step_bf16_s": step_s["bf16"], "train_step_floor_bf16_s": floor_s["bf16"],
            "train_convs_as_run_s": as_run_s["fp32"], "train_convs_as_run_bf16_s": as_run_s["bf16"],
            "batch_fetch_s": fetch_s, "test_pass_s": test["fp32"][1], "forward_only_s": test["fp32"][0],
            "test_pass_bf16_s": test["bf16"][1], "forward_only_bf16_s": test["bf16"][0],
            "eval_s": eval_s, "anet_eval_s": anet_eval_s, "feature_load_s": load_s}
    note = (f"(times: the minimum over {opts.steps} interleaved steps, 2 test passes; the models have had "
            f"{opts.steps + 2} training steps on synthetic data: their mAP, {test['fp32'][2]['average_mAP'] * 100:.1f} "
            "(fp32), means nothing; the detections give the post-processing load)")
    return rows, keys, flop / floor_s["fp32"], note


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/bench", help="where the synthetic THUMOS14-sized data lives")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--anet", action="store_true", help="only the feature-cache table at ActivityNet scale (4.)")
    p.add_argument("--anet_sizes", type=int, nargs="+", default=[2000, 8000], help="videos per generated set")
    p.add_argument("--repeat", type=int, default=2, help="runs of each --anet configuration (minima reported)")
    p.add_argument("--anet_run", nargs=5, metavar=("ROOT", "CACHE", "WORKERS", "STEPS", "COLD"),
                   help=argparse.SUPPRESS)                              # one configuration, in a subprocess
    p.add_argument("--features_only", action="store_true", help="only the feature-extraction rows (5.)")
    return p.parse_args(argv)


def main_bench(argv=None):
    opts = parse_args(argv)
    if opts.anet_run:
        root, cache, workers, steps, cold = opts.anet_run
        print(json.dumps(anet_cache_run(root, cache, int(workers), int(steps), bool(int(cold)))))
        return
    if opts.anet:
        return bench_anet(opts)
    device = resolve_device(opts.device)
    args = main.parse_args(["--data_path", opts.data, "--soft_nms"])      # the release recipe
    if opts.features_only:
        rows, keys, rate, note = [], {}, conv_rate(args, device), None
    else:
        rows, keys, rate, note = train_rows(opts, args, device)
    feature_rows, flow_keys = [], {}
    if importlib.util.find_spec("av") is None:           # the rows above need no PyAV; decoding (5.) does
        print("PyAV (av) is not installed: the feature-extraction rows (5.) are left out", file=sys.stderr)
    else:
        from bench_features import bench_features

        feature_rows, flow_keys = bench_features(device, rate, opts.data)
    print_rows(device, rows + feature_rows)
    if note:
        print(note)
    if opts.json:
        print(json.dumps(dict({"device": str(device)}, **keys, **flow_keys, environment=environment(device))))


if __name__ == "__main__":
    main_bench()

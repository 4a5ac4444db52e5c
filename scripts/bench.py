"""Benchmarks of the three loops that bound a THUMOS14 run (numbers, never asserted in tests).

    python3 scripts/bench.py [--json] [--device auto] [--data data/bench]

1. Training step (batch 16, T = 750, all five losses, backward, Adam) in fp32 and in bf16 (--precision),
   each against its floor: the measured time of exactly the three embedding convolutions (2048->D and
   twice 1024->D, k = 3; forward plus weight and bias gradients, no input gradient) in the same
   precision, timed interleaved with the steps (the minimum over the repeats of each).
2. Full test pass (213 THUMOS14-sized videos, T = 750, batch 1) in both precisions: forward passes +
   proposals + NMS + mAP, against the forward passes alone.
3. Evaluator: 100,000 predictions against 3,000 ground-truth instances, 20 classes, 7 tIoUs; and at
   ActivityNet v1.3 validation scale (4,926 videos, 200 classes, 10 tIoUs, 500,000 predictions).
The data for 1 and 2 is generated once into --data (synthetic features in the real layout).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import main  # noqa: E402
from dataset import THUMOS14_CLASSES, FeatureDataset, make_synthetic_dataset  # noqa: E402
from eval import THUMOS_TIOU, evaluate_detection  # noqa: E402
from model import FEATURE_DIM  # noqa: E402

THUMOS_TEST_VIDEOS = 213    # THUMOS14's test set (the W-TALC conversion holds 212 of them)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn, device):
    """Seconds of one call of fn."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timed(fn, device, repeat):
    """Seconds of each of ``repeat`` calls of fn (after one warm-up call)."""
    fn()
    return [seconds(fn, device) for _ in range(repeat)]


def conv_flops(batch, T, embed_dim):
    """Forward + weight-gradient FLOPs of the three k=3 embedding convolutions (2048->D, 1024->D twice)."""
    macs = batch * T * embed_dim * 3 * (2 * FEATURE_DIM + FEATURE_DIM + FEATURE_DIM)
    return 2 * 2 * macs


def conv_floor(args, device):
    """A callable that runs exactly the three embedding convolutions of a training step (class-aware
    Conv1d 2048->D, class-agnostic Conv1d 1024->D twice, k = 3, [B, C_in, T] inputs): forward, then
    the weight and bias gradients (inputs need none), under the precision of ``args``."""
    B, T, D = args.batch_size, args.num_segments, args.embed_dim
    convs = [torch.nn.Conv1d(c, D, 3, padding=1).to(device) for c in (2 * FEATURE_DIM, FEATURE_DIM, FEATURE_DIM)]
    inputs = [torch.randn(B, conv.in_channels, T, device=device) for conv in convs]
    params = [p for conv in convs for p in conv.parameters()]

    def run():
        with main.autocast(args, device):
            outs = [conv(x) for conv, x in zip(convs, inputs)]          # [B, D, T] each
        torch.autograd.grad(outs, params, [torch.ones_like(o) for o in outs])
    return run


def ensure_data(root):
    if not os.path.isfile(os.path.join(root, "gt.json")):
        print(f"generating THUMOS14-sized synthetic features in {root} (once)", file=sys.stderr)
        make_synthetic_dataset(root, num_train=48, num_test=THUMOS_TEST_VIDEOS, num_classes=20,
                               length=(100, 700), seed=0)
    return root


def bench_train(args, device, train_set, steps, precisions=("fp32", "bf16")):
    """Per precision: the minimum seconds of one training step on real batches and of its convolution
    floor, timed interleaved (floor, step, floor, step, ... over the precisions) so that both see the
    same load; also the median seconds spent fetching a batch and the trained models."""
    settings = {p: argparse.Namespace(**dict(vars(args), precision=p)) for p in precisions}
    models, optimizers, floors = {}, {}, {}
    for p, a in settings.items():
        torch.manual_seed(a.seed)
        models[p] = main.build_model(a, len(THUMOS14_CLASSES)).to(device)
        optimizers[p] = main.build_optimizer(a, models[p])
        floors[p] = conv_floor(a, device)
    batches = main.epoch_batches(len(train_set), args.batch_size, args.seed, 0)
    loader = iter(DataLoader(train_set, batch_sampler=batches * (steps + 2), num_workers=args.num_workers))
    step_times, floor_times, fetch_times = ({p: [] for p in precisions} for _ in range(3))
    for i in range(steps + 2):                       # two warm-up steps
        start = time.perf_counter()
        feats, labels, _, _ = next(loader)
        fetch_s = time.perf_counter() - start
        feats, labels = feats.to(device), labels.to(device)
        for p, a in settings.items():
            floor_s = seconds(floors[p], device)
            step_s = seconds(lambda: main.train_step(models[p], optimizers[p], feats, labels, a), device)
            if i >= 2:
                step_times[p].append(step_s)
                floor_times[p].append(floor_s)
        if i >= 2:
            fetch_times[precisions[0]].append(fetch_s)
    return (models, {p: min(t) for p, t in step_times.items()}, {p: min(t) for p, t in floor_times.items()},
            statistics.median(fetch_times[precisions[0]]))


def bench_test_pass(args, device, model, test_set):
    """Seconds of the forward passes alone and of forward + post-processing + mAP, the metrics, and the
    mean number of detections per video (the post-processing load)."""
    model.eval()

    def forward_only():
        with torch.no_grad():
            for feats, _, _, _ in DataLoader(test_set, batch_size=1, num_workers=args.num_workers):
                with main.autocast(args, device):
                    model(feats.to(device))

    forward_s = min(timed(forward_only, device, 2))
    outcome = {}

    def full():
        outcome["metrics"], outcome["predictions"] = main.evaluate(model, test_set, args, device)

    full_s = min(timed(full, device, 2))
    detections = sum(map(len, outcome["predictions"]["results"].values())) / len(test_set)
    return forward_s, full_s, outcome["metrics"], detections


def synthetic_detections(n_pred=100_000, n_gt=3_000, n_classes=20, n_videos=200, seed=0):
    """Ground truth and predictions of THUMOS-like statistics for the evaluator benchmark."""
    rng = np.random.default_rng(seed)
    classes = [f"class{c:02d}" for c in range(n_classes)]
    gt_video, gt_class = rng.integers(n_videos, size=n_gt), rng.integers(n_classes, size=n_gt)
    start = rng.uniform(0, 300, n_gt).round(1)
    length = rng.uniform(1, 20, n_gt).round(1)
    database = {f"v{v:03d}": {"subset": "test", "annotations": []} for v in range(n_videos)}
    for v, c, s, d in zip(gt_video, gt_class, start, length):
        database[f"v{v:03d}"]["annotations"].append({"label": classes[c], "segment": [float(s), float(s + d)]})
    which = rng.integers(n_gt, size=n_pred)                      # each prediction jitters one instance
    jitter = rng.normal(0, 2, (n_pred, 2))
    seg = np.sort(np.stack([start[which], start[which] + length[which]], 1) + jitter, axis=1)
    results = {vid: [] for vid in database}
    for w, (s, e), score in zip(which, seg, rng.random(n_pred)):
        results[f"v{gt_video[w]:03d}"].append({"label": classes[gt_class[w]], "score": float(score),
                                               "segment": [float(s), float(e)]})
    return {"database": database}, {"version": "bench", "results": results, "external_data": {}}


def bench_eval(repeat=3, tiou=THUMOS_TIOU, **sizes):
    gt, results = synthetic_detections(**sizes)
    return min(timed(lambda: evaluate_detection(gt, results, "test", tiou), torch.device("cpu"), repeat))


def main_bench(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/bench", help="where the synthetic THUMOS14-sized data lives")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    opts = p.parse_args(argv)
    device = main.resolve_device(opts.device)
    args = main.parse_args(["--data_path", opts.data, "--soft_nms"])      # the release recipe
    torch.manual_seed(args.seed)
    ensure_data(opts.data)

    start = time.perf_counter()
    train_set = FeatureDataset(opts.data, "train", args.num_segments, "random", THUMOS14_CLASSES, args.seed)
    test_set = FeatureDataset(opts.data, "test", args.num_segments, "uniform", THUMOS14_CLASSES, args.seed)
    load_s = time.perf_counter() - start

    models, step_s, floor_s, fetch_s = bench_train(args, device, train_set, opts.steps)
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
    rows.append(("batch fetch (in-memory)", fetch_s, step_s["fp32"], "vs the fp32 step"))
    for p, (forward_s, test_s, _, detections) in test.items():
        rows.append((f"test pass {p} ({len(test_set)} videos)", test_s, forward_s,
                     f"vs forward passes alone; {detections:.0f} detections/video"))
    rows += [
        ("evaluator (100k pred, 3k GT)", eval_s, 1.0, "vs the 1 s target; 20 classes, 7 tIoUs"),
        ("evaluator, ActivityNet scale", anet_eval_s, None, "500k pred, 7.6k GT, 4,926 videos, 200 classes, 10 tIoUs"),
        ("feature loading (once)", load_s, None, f"{len(train_set) + len(test_set)} videos"),
    ]
    print(f"device: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"{'measurement':<30} {'time (s)':>9} {'reference (s)':>14} {'ratio':>6}  note")
    for name, t, ref, note in rows:
        ref_s, ratio = (f"{ref:14.3f}", f"{t / ref:6.2f}") if ref else (f"{'':14}", f"{'':6}")
        print(f"{name:<30} {t:9.3f} {ref_s} {ratio}  {note}")
    print(f"(times: the minimum over {opts.steps} interleaved steps, 2 test passes; the models have had "
          f"{opts.steps + 2} training steps on synthetic data: their mAP, "
          f"{test['fp32'][2]['average_mAP'] * 100:.1f} (fp32), means nothing; the detections give the "
          f"post-processing load)")
    if opts.json:
        print(json.dumps({"device": str(device), "train_step_gflop": flop / 1e9,
                          "train_step_s": step_s["fp32"], "train_step_floor_s": floor_s["fp32"],
                          "train_step_bf16_s": step_s["bf16"], "train_step_floor_bf16_s": floor_s["bf16"],
                          "batch_fetch_s": fetch_s, "test_pass_s": test["fp32"][1], "forward_only_s": test["fp32"][0],
                          "test_pass_bf16_s": test["bf16"][1], "forward_only_bf16_s": test["bf16"][0],
                          "eval_s": eval_s, "anet_eval_s": anet_eval_s, "feature_load_s": load_s}))


if __name__ == "__main__":
    main_bench()

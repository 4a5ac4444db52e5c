"""Benchmarks of the three loops that bound a THUMOS14 run (numbers, never asserted in tests).

    python3 scripts/bench.py [--json] [--device auto] [--data data/bench]

1. Training step (batch 16, T = 750, all five losses, backward, Adam) against its floor: the FLOPs of
   the three embedding convolutions (forward and weight gradients) at the fp32 matmul rate measured here.
2. Full test pass (213 THUMOS14-sized videos, T = 750, batch 1): forward passes + proposals + NMS + mAP,
   against the forward passes alone.
3. Evaluator: 100,000 predictions against 3,000 ground-truth instances, 20 classes, 7 tIoUs; and at
   ActivityNet v1.3 validation scale (4,926 videos, 200 classes, 10 tIoUs, 500,000 predictions).
The data for 1 and 2 is generated once into --data (synthetic features in the real layout).
4. Feature extraction (features/, also alone with --features_only): decoding a generated 60 s 320x240 30 fps
   video to 25 fps at the 256-px scale, optical flow per frame pair on one core (TV-L1 on a part of it, DIS),
   and each I3D stream per 16-frame snippet against its FLOP floor at the matmul rate.
"""
import argparse
import json
import os
import statistics
import sys
import time

import av
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import main  # noqa: E402
from dataset import THUMOS14_CLASSES, FeatureDataset, make_synthetic_dataset  # noqa: E402
from eval import THUMOS_TIOU, evaluate_detection  # noqa: E402
from features import flow as flowlib  # noqa: E402
from features.i3d import FLOPS_PER_SNIPPET, FLOPS_PER_SNIPPET_FLOW, InceptionI3d  # noqa: E402
from features.video import Video, centre_crop  # noqa: E402
from model import FEATURE_DIM  # noqa: E402

THUMOS_TEST_VIDEOS = 213


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat):
    """Seconds of each of ``repeat`` calls of fn (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def matmul_rate(device, n=4096, repeat=5):
    """Best fp32 matmul rate (FLOP/s) of an n x n product."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n ** 3 / min(timed(lambda: a @ b, device, repeat))


def conv_flops(batch, T, embed_dim):
    """Forward + weight-gradient FLOPs of the three k=3 embedding convolutions (2048->D, 1024->D twice)."""
    macs = batch * T * embed_dim * 3 * (2 * FEATURE_DIM + FEATURE_DIM + FEATURE_DIM)
    return 2 * 2 * macs


def ensure_data(root):
    if not os.path.isfile(os.path.join(root, "gt.json")):
        print(f"generating THUMOS14-sized synthetic features in {root} (once)", file=sys.stderr)
        make_synthetic_dataset(root, num_train=48, num_test=THUMOS_TEST_VIDEOS, num_classes=20,
                               length=(100, 700), seed=0)
    return root


def bench_train(args, device, train_set, steps):
    """Median seconds of one training step on real batches, and the seconds spent fetching them."""
    model = main.build_model(args, len(THUMOS14_CLASSES)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    batches = main.epoch_batches(len(train_set), args.batch_size, args.seed, 0)
    loader = iter(DataLoader(train_set, batch_sampler=batches * steps, num_workers=args.num_workers))
    step_times, fetch_times = [], []
    for i in range(steps + 2):
        start = time.perf_counter()
        feats, labels, _, _ = next(loader)
        fetched = time.perf_counter()
        main.train_step(model, optimizer, feats.to(device), labels.to(device), args)
        sync(device)
        if i >= 2:                                   # two warm-up steps
            fetch_times.append(fetched - start)
            step_times.append(time.perf_counter() - fetched)
    return model, statistics.median(step_times), statistics.median(fetch_times)


def bench_test_pass(args, device, model, test_set):
    """Seconds of the forward passes alone and of forward + post-processing + mAP, the metrics, and the
    mean number of detections per video (the post-processing load)."""
    model.eval()

    def forward_only():
        with torch.no_grad():
            for feats, _, _, _ in DataLoader(test_set, batch_size=1, num_workers=args.num_workers):
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


def write_bench_video(path, seconds=60, fps=30, w=320, h=240):
    """A 30 fps H.264 video of a smooth random texture panning 3 px right per frame and a bright square crossing
    it (real motion for the flow), encoded frame by frame."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((h, 2 * w)) * 255).astype(np.uint8), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * fps):
            img = np.roll(texture, -3 * i, axis=1)[:, :w].copy()
            x = (5 * i) % (w - 40)
            img[h // 2 - 20:h // 2 + 20, x:x + 40] = 255
            frame = av.VideoFrame.from_ndarray(np.repeat(img[:, :, None], 3, axis=2), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def bench_features(device, rate, folder, seconds=60, tvl1_pairs=16, dis_pairs=256, snippets=4):
    """Rows (name, seconds, reference seconds, note) of the extraction stages on a generated video."""
    path = os.path.join(folder, f"video_{seconds}s.mp4")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        write_bench_video(path, seconds)
    keep, frames, count = max(tvl1_pairs, dis_pairs, 16 * snippets) + 1, [], []

    def decode():
        frames.clear()
        count[:] = [0]
        for frame in Video(path).frames(25):                        # [H, W, 3] uint8 at the 256-px scale
            count[0] += 1
            if len(frames) < keep:
                frames.append(frame)

    decode_s = min(timed(decode, torch.device("cpu"), 2))
    gray = flowlib.grayscale(np.stack(frames[:max(tvl1_pairs, dis_pairs) + 1]))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)                                           # one core, as each flow worker process
    tvl1_s = min(timed(lambda: flowlib.fields(gray[:tvl1_pairs + 1], "tvl1"), torch.device("cpu"), 1)) / tvl1_pairs
    dis_s = min(timed(lambda: flowlib.fields(gray[:dis_pairs + 1], "dis"), torch.device("cpu"), 2)) / dis_pairs
    cv2.setNumThreads(threads)
    h, w = frames[0].shape[:2]
    rows = [(f"decode {seconds} s video", decode_s, None,
             f"{count[0] / decode_s:.0f} frames/s: 30 -> 25 fps, {w}x{h} ({count[0]} frames)"),
            ("flow TV-L1 (per pair, 1 core)", tvl1_s, None,
             f"{1 / tvl1_s:.2f} frames/s, {w}x{h}, first {tvl1_pairs} pairs"),
            ("flow DIS (per pair, 1 core)", dis_s, None, f"{1 / dis_s:.0f} frames/s, first {dis_pairs} pairs")]
    clips = np.stack([centre_crop(np.stack(frames[16 * i:16 * i + 16])) for i in range(snippets)])  # [B,16,224,224,3]
    for stream, channels, flops in (("rgb", 3, FLOPS_PER_SNIPPET), ("flow", 2, FLOPS_PER_SNIPPET_FLOW)):
        model = InceptionI3d(channels).eval().to(device)
        if device.type == "cpu":
            model = model.to_channels_last()
        x = torch.from_numpy(clips[..., :channels]).to(device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
        with torch.inference_mode():
            per_snippet = min(timed(lambda: model.extract_features(x), device, 2)) / snippets
        rows.append((f"I3D {stream} (per snippet, B{snippets})", per_snippet, flops / rate,
                     f"{16 / per_snippet:.0f} frames/s, {flops / per_snippet / 1e9:.0f} GFLOP/s; floor = "
                     f"{flops / 1e9:.1f} GFLOP at the matmul rate"))
    return rows


def print_rows(device, rows):
    print(f"device: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"{'measurement':<30} {'time (s)':>9} {'reference (s)':>14} {'ratio':>6}  note")
    for name, t, ref, note in rows:
        ref_s, ratio = (f"{ref:14.3f}", f"{t / ref:6.2f}") if ref else (f"{'':14}", f"{'':6}")
        print(f"{name:<30} {t:9.3f} {ref_s} {ratio}  {note}")


def main_bench(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/bench", help="where the synthetic THUMOS14-sized data lives")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--features_only", action="store_true", help="only the feature-extraction rows (4.)")
    opts = p.parse_args(argv)
    device = main.resolve_device(opts.device)
    if opts.features_only:
        return print_rows(device, bench_features(device, matmul_rate(device), opts.data))
    args = main.parse_args(["--data_path", opts.data, "--soft_nms"])      # the release recipe
    torch.manual_seed(args.seed)
    ensure_data(opts.data)

    start = time.perf_counter()
    train_set = FeatureDataset(opts.data, "train", args.num_segments, "random", THUMOS14_CLASSES, args.seed)
    test_set = FeatureDataset(opts.data, "test", args.num_segments, "uniform", THUMOS14_CLASSES, args.seed)
    load_s = time.perf_counter() - start

    rate = matmul_rate(device)
    floor = conv_flops(args.batch_size, args.num_segments, args.embed_dim) / rate
    model, step_s, fetch_s = bench_train(args, device, train_set, opts.steps)
    forward_s, test_s, metrics, detections = bench_test_pass(args, device, model, test_set)
    eval_s = bench_eval()
    anet_eval_s = bench_eval(repeat=1, tiou=main.ANET_TIOU, n_pred=500_000, n_gt=7_654, n_classes=200,
                             n_videos=4_926)

    rows = [
        ("train step (B16, T750)", step_s, floor, f"floor = {conv_flops(16, 750, args.embed_dim) / 1e9:.0f} GFLOP "
                                                  f"at {rate / 1e9:.0f} GFLOP/s (matmul)"),
        ("batch fetch (in-memory)", fetch_s, step_s, "vs the step"),
        (f"test pass ({len(test_set)} videos)", test_s, forward_s,
         f"vs forward passes alone; {detections:.0f} detections/video"),
        ("evaluator (100k pred, 3k GT)", eval_s, 1.0, "vs the 1 s target; 20 classes, 7 tIoUs"),
        ("evaluator, ActivityNet scale", anet_eval_s, None, "500k pred, 7.6k GT, 4,926 videos, 200 classes, 10 tIoUs"),
        ("feature loading (once)", load_s, None, f"{len(train_set) + len(test_set)} videos"),
    ]
    rows += bench_features(device, rate, opts.data)
    print_rows(device, rows)
    print(f"(the model has had {opts.steps + 2} training steps on synthetic data: its mAP, "
          f"{metrics['average_mAP'] * 100:.1f}, means nothing; the detections give the post-processing load)")
    if opts.json:
        print(json.dumps({"device": str(device), "matmul_gflops": rate / 1e9, "train_step_s": step_s,
                          "train_step_floor_s": floor, "batch_fetch_s": fetch_s, "test_pass_s": test_s,
                          "forward_only_s": forward_s, "eval_s": eval_s, "anet_eval_s": anet_eval_s,
                          "feature_load_s": load_s}))


if __name__ == "__main__":
    main_bench()

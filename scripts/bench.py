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
200 training and 213 test videos).

    python3 scripts/bench.py --anet [--anet_sizes 2000 8000]

4. Feature cache at ActivityNet scale (only this, with --anet): peak memory and the training iteration
   (batch fetch + step of the ActivityNet v1.3 recipe: B32, T50, 200 classes) with the features held in
   memory or memory-mapped, on generated ActivityNet-layout training sets of --anet_sizes videos (10 to
   200 snippets each, written once into --data/anet_N; the smaller sets hard-link the largest one's
   files). Each configuration runs in its own process, whose peak RSS is reported; "cold" first drops
   the set's pages from the page cache (posix_fadvise), so that memory-mapped reads come from disk.

5. Feature extraction (features/, also alone with --features_only): decoding a generated 60 s 320x240 30 fps
   video to 25 fps at the 256-px scale, optical flow per frame pair on one core (TV-L1 on a part of it, DIS),
   and each I3D stream per 16-frame snippet against its FLOP count at the rate of the fp32
   embedding convolutions (the floor of 1.).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import av
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

import _repo  # noqa: E402,F401  (the repository root on sys.path)

import checkpoint  # noqa: E402
import inference  # noqa: E402
import main  # noqa: E402
from dataset import (STREAM_DIM, THUMOS14_CLASSES, FeatureDataset, collate, make_synthetic_dataset,  # noqa: E402
                     read_split)
from eval import THUMOS_TIOU, evaluate_detection  # noqa: E402
from features import flow as flowlib  # noqa: E402
from features.i3d import FLOPS_PER_SNIPPET, FLOPS_PER_SNIPPET_FLOW, InceptionI3d  # noqa: E402
from features.video import Video, centre_crop  # noqa: E402
from model import FEATURE_DIM, early_fusion_conv  # noqa: E402
from utils.device import resolve_device  # noqa: E402

THUMOS_TEST_VIDEOS = 213    # THUMOS14's test set (the W-TALC conversion holds 212 of them)
THUMOS_TRAIN_VIDEOS = 200   # THUMOS14's validation set, which WTAL trains on


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


def conv_floor(args, device, as_run=False):
    """A callable that runs exactly the three embedding convolutions of a training step (class-aware
    Conv1d 2048->D, class-agnostic Conv1d 1024->D twice, k = 3, [B, C_in, T] inputs): forward, then
    the weight and bias gradients (inputs need none), under the precision of ``args``. ``as_run``: the
    class-aware one as the model runs it (model.early_fusion_conv: its rgb half on rgb plus its flow half
    on flow, four convolutions of 1024 input channels in all, the same FLOPs)."""
    B, T, D = args.batch_size, args.num_segments, args.embed_dim
    convs = [torch.nn.Conv1d(c, D, 3, padding=1).to(device) for c in (2 * FEATURE_DIM, FEATURE_DIM, FEATURE_DIM)]
    inputs = [torch.randn(B, conv.in_channels, T, device=device) for conv in convs]
    params = [p for conv in convs for p in conv.parameters()]

    def run():
        with inference.autocast(args, device):
            outs = [early_fusion_conv(convs[0], inputs[1], inputs[2]) if as_run else convs[0](inputs[0])]
            outs += [conv(x) for conv, x in zip(convs[1:], inputs[1:])]   # [B, D, T] each
        torch.autograd.grad(outs, params, [torch.ones_like(o) for o in outs])
    return run


def ensure_data(root):
    """THUMOS14-sized synthetic data in root: generated when root holds no gt.json; a set of other sizes
    there (an older bench's, or a dataset) is refused, not overwritten."""
    if not os.path.isfile(os.path.join(root, "gt.json")):
        print(f"generating THUMOS14-sized synthetic features in {root} (once)", file=sys.stderr)
        make_synthetic_dataset(root, num_train=THUMOS_TRAIN_VIDEOS, num_test=THUMOS_TEST_VIDEOS, num_classes=20,
                               length=(100, 700), seed=0)
    sizes = [len(read_split(os.path.join(root, f"split_{s}.txt"))) for s in ("train", "test")]
    if sizes != [THUMOS_TRAIN_VIDEOS, THUMOS_TEST_VIDEOS]:
        sys.exit(f"{root}: holds {sizes[0]} training and {sizes[1]} test videos, not the bench's "
                 f"{THUMOS_TRAIN_VIDEOS} and {THUMOS_TEST_VIDEOS}; remove it (an older bench's data) or give --data")
    return root


def bench_train(args, device, train_set, steps, precisions=("fp32", "bf16")):
    """Per precision: the minimum seconds of one training step on real batches, of its convolution floor
    and of the convolutions as the model runs them, timed interleaved (floor, as run, step, ... over the
    precisions) so that all see the same load; also the median seconds spent fetching a batch and the
    trained models."""
    settings = {p: argparse.Namespace(**dict(vars(args), precision=p)) for p in precisions}
    models, optimizers, floors, as_run = {}, {}, {}, {}
    for p, a in settings.items():
        torch.manual_seed(a.seed)
        models[p] = checkpoint.build_model(a, len(THUMOS14_CLASSES)).to(device)
        optimizers[p] = main.build_optimizer(a, models[p])
        floors[p], as_run[p] = conv_floor(a, device), conv_floor(a, device, as_run=True)
    batches = main.epoch_batches(len(train_set), args.batch_size, args.seed, 0)
    loader = iter(DataLoader(train_set, batch_sampler=batches * (steps + 2), num_workers=args.num_workers,
                             collate_fn=collate))
    step_times, floor_times, as_run_times, fetch_times = ({p: [] for p in precisions} for _ in range(4))
    for i in range(steps + 2):                       # two warm-up steps
        start = time.perf_counter()
        feats, labels, _, _ = next(loader)
        fetch_s = time.perf_counter() - start
        feats, labels = feats.to(device), labels.to(device)
        for p, a in settings.items():
            floor_s, as_run_s = seconds(floors[p], device), seconds(as_run[p], device)
            step_s = seconds(lambda: main.train_step(models[p], optimizers[p], feats, labels, a), device)
            if i >= 2:
                step_times[p].append(step_s)
                floor_times[p].append(floor_s)
                as_run_times[p].append(as_run_s)
        if i >= 2:
            fetch_times[precisions[0]].append(fetch_s)
    minima = [{p: min(t) for p, t in times.items()} for times in (step_times, floor_times, as_run_times)]
    return (models, *minima, statistics.median(fetch_times[precisions[0]]))


def bench_test_pass(args, device, model, test_set):
    """Seconds of the forward passes alone and of forward + post-processing + mAP, the metrics, and the
    mean number of detections per video (the post-processing load)."""
    model.eval()

    def forward_only():
        with torch.no_grad():
            for feats, _, _, _ in DataLoader(test_set, batch_size=1, num_workers=args.num_workers, collate_fn=collate):
                with inference.autocast(args, device):
                    model(feats.to(device))

    forward_s = min(timed(forward_only, device, 2))
    outcome = {}

    def full():
        outcome["metrics"], outcome["predictions"] = inference.evaluate(model, test_set, args, device)

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


ANET_CLASSES = [f"activity {c:03d}" for c in range(200)]
ANET_LENGTH = (10, 200)                                            # snippets per generated video


def ensure_anet_data(root, sizes):
    """ActivityNet-layout training sets of each size under root/anet_N: the largest is written once
    (rows cut from one random pool, so that writing is the only cost), the others hard-link its files."""
    largest = max(sizes)
    vids = [f"v_{i:06d}" for i in range(largest)]
    big = os.path.join(root, f"anet_{largest}")
    if not os.path.isfile(os.path.join(big, "gt.json")):
        print(f"generating {largest} ActivityNet-layout videos in {big} (once)", file=sys.stderr)
        rng = np.random.default_rng(0)
        pool = rng.standard_normal((4096, STREAM_DIM), dtype=np.float32)
        lengths = rng.integers(ANET_LENGTH[0], ANET_LENGTH[1] + 1, size=largest)
        starts = rng.integers(0, len(pool) - ANET_LENGTH[1], size=(largest, 2))
        for stream in ("rgb", "flow"):
            os.makedirs(os.path.join(big, "features", "train", stream), exist_ok=True)
        for vid, T_v, (a, b) in zip(vids, lengths, starts):
            np.save(os.path.join(big, "features", "train", "rgb", f"{vid}.npy"), pool[a:a + T_v])
            np.save(os.path.join(big, "features", "train", "flow", f"{vid}.npy"), pool[b:b + T_v])
        write_anet_split(big, vids, lengths)
    lengths = [int(l) for l in json.load(open(os.path.join(big, "lengths.json")))]
    for n in sizes:
        small = os.path.join(root, f"anet_{n}")
        if n == largest or os.path.isfile(os.path.join(small, "gt.json")):
            continue
        for stream in ("rgb", "flow"):
            os.makedirs(os.path.join(small, "features", "train", stream), exist_ok=True)
            for vid in vids[:n]:
                os.link(os.path.join(big, "features", "train", stream, f"{vid}.npy"),
                        os.path.join(small, "features", "train", stream, f"{vid}.npy"))
        write_anet_split(small, vids[:n], lengths[:n])
    return {n: os.path.join(root, f"anet_{n}") for n in sizes}


def write_anet_split(root, vids, lengths):
    """gt.json (one instance per video, classes in turn), split_train.txt and the lengths; gt.json last."""
    database = {vid: {"subset": "training", "duration": int(T_v) * 16 / 25,
                      "annotations": [{"label": ANET_CLASSES[i % len(ANET_CLASSES)], "segment": [0.0, 1.0]}]}
                for i, (vid, T_v) in enumerate(zip(vids, lengths))}
    with open(os.path.join(root, "split_train.txt"), "w") as f:
        f.write("\n".join(vids) + "\n")
    with open(os.path.join(root, "lengths.json"), "w") as f:
        json.dump([int(l) for l in lengths], f)
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": database}, f)


def drop_page_cache(root):
    """Ask the kernel to drop the cached pages of root's feature files (no root rights needed)."""
    for dirpath, _, files in os.walk(os.path.join(root, "features")):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def anet_cache_run(root, cache, workers, steps, cold):
    """One configuration (run in its own process): dataset set-up, then training iterations of the
    ActivityNet v1.3 recipe. Returns seconds (the fastest iteration) and the process's peak RSS (and
    its workers' largest)."""
    torch.set_num_threads(2)
    if cold:
        drop_page_cache(root)
    args = main.parse_args(["--dataset", "anet13", "--data_path", root, "--feature_cache", cache,
                            "--num_workers", str(workers)])
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    train_set = FeatureDataset(root, "train", args.num_segments, "random", ANET_CLASSES, args.seed, cache=cache)
    init_s = time.perf_counter() - start
    model = checkpoint.build_model(args, len(ANET_CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    batches = [b for epoch in range(steps + 2) for b in main.epoch_batches(len(train_set), args.batch_size,
                                                                           args.seed, epoch)
               if len(b) == args.batch_size][:steps + 2]                 # full batches only, as SAL (drop_last)
    loader = iter(DataLoader(train_set, batch_sampler=batches, num_workers=workers, collate_fn=collate))
    iteration, fetch = [], []
    for i in range(steps + 2):
        start = time.perf_counter()
        feats, labels, _, _ = next(loader)
        fetched = time.perf_counter()
        main.train_step(model, optimizer, feats, labels, args)
        if i >= 2:                                                     # two warm-up iterations
            fetch.append(fetched - start)
            iteration.append(time.perf_counter() - start)
    del loader
    kib = 1024 if sys.platform != "darwin" else 1 / 1024             # ru_maxrss: KiB on Linux, bytes on macOS
    return {"videos": len(train_set), "cache": train_set.cache, "workers": workers, "cold": cold,
            "feature_gib": train_set.feature_bytes / 2 ** 30, "init_s": init_s,
            "iteration_s": min(iteration), "fetch_s": min(fetch),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 2 ** 30,
            "workers_peak_rss_gib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib / 2 ** 30}


def bench_anet(opts):
    """Table 4: each configuration in a fresh process (its peak RSS is its own), --repeat times (minima)."""
    roots = ensure_anet_data(opts.data, opts.anet_sizes)
    configs = []
    for n in sorted(roots):
        configs += [(n, "memory", 0, False), (n, "mmap", 0, False)]
    configs += [(max(roots), "mmap", 2, False), (max(roots), "mmap", 0, True), (max(roots), "mmap", 2, True)]
    rows = []
    for n, cache, workers, cold in configs:
        runs = []
        for _ in range(opts.repeat):
            cmd = [sys.executable, os.path.abspath(__file__), "--anet_run", roots[n], cache, str(workers),
                   str(opts.steps), str(int(cold))]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        row = dict(runs[0], **{k: min(r[k] for r in runs) for k in ("init_s", "iteration_s", "fetch_s")})
        row["peak_rss_gib"] = max(r["peak_rss_gib"] for r in runs)
        row["workers_peak_rss_gib"] = max(r["workers_peak_rss_gib"] for r in runs)
        rows.append(row)
    reference = {r["videos"]: r["iteration_s"] for r in rows if r["cache"] == "memory"}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ActivityNet v1.3 recipe (B32, T50, "
          f"embed 1024, 200 classes); iteration = batch fetch + step; the minimum of {opts.steps} iterations and "
          f"{opts.repeat} runs (contention only adds time)")
    print(f"{'videos':>6} {'features':>9} {'cache':>6} {'workers':>7} {'pages':>5} {'set-up (s)':>10} "
          f"{'peak RSS':>9} {'workers RSS':>11} {'fetch (s)':>9} {'iteration (s)':>13} {'vs memory':>9}")
    for r in rows:
        ratio = r["iteration_s"] / reference[r["videos"]] if r["videos"] in reference else None
        print(f"{r['videos']:>6} {r['feature_gib']:>7.2f}Gi {r['cache']:>6} {r['workers']:>7} "
              f"{'cold' if r['cold'] else 'warm':>5} {r['init_s']:>10.1f} {r['peak_rss_gib']:>7.2f}Gi "
              f"{r['workers_peak_rss_gib']:>9.2f}Gi {r['fetch_s']:>9.3f} {r['iteration_s']:>13.3f} "
              + (f"{ratio:>9.2f}" if ratio else f"{'':>9}"))
    if opts.json:
        print(json.dumps(rows))


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


def conv_rate(args, device):
    """FLOP/s of the fp32 embedding convolutions (conv_floor), the reference rate for the I3D rows."""
    fp32 = argparse.Namespace(**dict(vars(args), precision="fp32"))
    flop = conv_flops(args.batch_size, args.num_segments, args.embed_dim)
    return flop / min(timed(conv_floor(fp32, device), device, 3))


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
                     f"{flops / 1e9:.1f} GFLOP at the embedding convs' rate"))
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
    p.add_argument("--anet", action="store_true", help="only the feature-cache table at ActivityNet scale (4.)")
    p.add_argument("--anet_sizes", type=int, nargs="+", default=[2000, 8000], help="videos per generated set")
    p.add_argument("--repeat", type=int, default=2, help="runs of each --anet configuration (minima reported)")
    p.add_argument("--anet_run", nargs=5, metavar=("ROOT", "CACHE", "WORKERS", "STEPS", "COLD"),
                   help=argparse.SUPPRESS)                              # one configuration, in a subprocess
    p.add_argument("--features_only", action="store_true", help="only the feature-extraction rows (5.)")
    opts = p.parse_args(argv)
    if opts.anet_run:
        root, cache, workers, steps, cold = opts.anet_run
        print(json.dumps(anet_cache_run(root, cache, int(workers), int(steps), bool(int(cold)))))
        return
    if opts.anet:
        return bench_anet(opts)
    device = resolve_device(opts.device)
    args = main.parse_args(["--data_path", opts.data, "--soft_nms"])      # the release recipe
    if opts.features_only:
        return print_rows(device, bench_features(device, conv_rate(args, device), opts.data))
    torch.manual_seed(args.seed)
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
    rows += bench_features(device, flop / floor_s["fp32"], opts.data)
    print_rows(device, rows)
    print(f"(times: the minimum over {opts.steps} interleaved steps, 2 test passes; the models have had "
          f"{opts.steps + 2} training steps on synthetic data: their mAP, "
          f"{test['fp32'][2]['average_mAP'] * 100:.1f} (fp32), means nothing; the detections give the "
          f"post-processing load)")
    if opts.json:
        print(json.dumps({"device": str(device), "train_step_gflop": flop / 1e9,
                          "train_step_s": step_s["fp32"], "train_step_floor_s": floor_s["fp32"],
                          "train_step_bf16_s": step_s["bf16"], "train_step_floor_bf16_s": floor_s["bf16"],
                          "train_convs_as_run_s": as_run_s["fp32"], "train_convs_as_run_bf16_s": as_run_s["bf16"],
                          "batch_fetch_s": fetch_s, "test_pass_s": test["fp32"][1], "forward_only_s": test["fp32"][0],
                          "test_pass_bf16_s": test["bf16"][1], "forward_only_bf16_s": test["bf16"][0],
                          "eval_s": eval_s, "anet_eval_s": anet_eval_s, "feature_load_s": load_s}))


if __name__ == "__main__":
    main_bench()

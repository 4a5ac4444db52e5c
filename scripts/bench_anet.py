"""The ActivityNet feature-cache table of scripts/bench.py (--anet): peak memory and the training iteration (batch
fetch + main.train_step with main.build_optimizer, the ActivityNet v1.3 recipe: B32, T50, 200 classes) with the
features held in memory or memory-mapped, on ActivityNet-layout training sets written by
dataset.make_synthetic_dataset. Each configuration runs in its own process (scripts/bench.py --anet_run), whose
peak RSS is its own."""
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch.utils.data import DataLoader

import _repo  # noqa: F401  (the repository root on sys.path)

import checkpoint  # noqa: E402
import main  # noqa: E402
from dataset import FeatureDataset, Synthetic, collate, make_synthetic_dataset, read_database, read_split  # noqa: E402

ANET_CLASSES = tuple(f"activity {c:03d}" for c in range(200))
# a training set of 10 to 200 snippets per video (ActivityNet's at T = 50 sampling), long instances, no test videos
ANET_SHAPE = Synthetic(num_test=0, num_classes=len(ANET_CLASSES), length=(10, 200), classes=ANET_CLASSES,
                       subsets=("training", "validation"), instance_length=(5, 100), seed=0)
BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench.py")


def ensure_anet_data(root, sizes):
    """ActivityNet-layout training sets of each size under root/anet_N: the largest is generated once, the others
    are its first N videos (what make_synthetic_dataset would write for N, its videos being drawn in turn), their
    feature files hard-linked. Returns {N: folder}."""
    largest = max(sizes)
    big = os.path.join(root, f"anet_{largest}")
    if not os.path.isfile(os.path.join(big, "gt.json")):
        print(f"generating {largest} ActivityNet-layout videos in {big} (once)", file=sys.stderr)
        make_synthetic_dataset(big, **dict(dataclasses.asdict(ANET_SHAPE), num_train=largest))
    vids = read_split(os.path.join(big, "split_train.txt"))
    _, database = read_database(os.path.join(big, "gt.json"))
    for n in sizes:
        small = os.path.join(root, f"anet_{n}")
        if n != largest and not os.path.isfile(os.path.join(small, "gt.json")):
            link_subset(big, small, vids[:n], database)
    return {n: os.path.join(root, f"anet_{n}") for n in sizes}


def link_subset(big, small, vids, database):
    """Hard-link the feature files of vids from big into small and write their split and gt.json (gt.json last:
    its presence marks a finished set), in make_synthetic_dataset's layout."""
    for stream in ("rgb", "flow"):
        os.makedirs(os.path.join(small, "features", "train", stream), exist_ok=True)
        for vid in vids:
            target = os.path.join(small, "features", "train", stream, f"{vid}.npy")
            if not os.path.exists(target):
                os.link(os.path.join(big, "features", "train", stream, f"{vid}.npy"), target)
    for split, names in (("train", vids), ("test", [])):
        with open(os.path.join(small, f"split_{split}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    with open(os.path.join(small, "gt.json"), "w") as f:
        json.dump({"database": {vid: database[vid] for vid in vids}}, f)


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
    optimizer = main.build_optimizer(args, model)                       # the fused Adam of training
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
            cmd = [sys.executable, BENCH, "--anet_run", roots[n], cache, str(workers),
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

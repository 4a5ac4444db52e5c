"""The training-side rows of scripts/bench.py: the convolution floor of a training step, the training step itself
(main.train_step with main.build_optimizer, in fp32 and bf16), the test pass (inference.evaluate) and the
evaluator (eval.evaluate_detection), on THUMOS14-sized data written by dataset.make_synthetic_dataset. Also the
timing helpers the other bench modules use."""
import argparse
import dataclasses
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

import _repo  # noqa: F401  (the repository root on sys.path)

import checkpoint  # noqa: E402
import inference  # noqa: E402
import main  # noqa: E402
from dataset import THUMOS14_CLASSES, Synthetic, collate, make_synthetic_dataset, read_split  # noqa: E402
from eval import THUMOS_TIOU, evaluate_detection  # noqa: E402
from model import FEATURE_DIM, early_fusion_conv  # noqa: E402

# THUMOS14's sizes: WTAL trains on its 200 validation videos and tests on 213 (the W-TALC conversion holds 212)
THUMOS_SHAPE = Synthetic(num_train=200, num_test=213, num_classes=20, length=(100, 700), seed=0)


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
    """THUMOS14-sized synthetic data in root (THUMOS_SHAPE): generated when root holds no gt.json; a set of
    other sizes there (an older bench's, or a dataset) is refused, not overwritten."""
    if not os.path.isfile(os.path.join(root, "gt.json")):
        print(f"generating THUMOS14-sized synthetic features in {root} (once)", file=sys.stderr)
        make_synthetic_dataset(root, **dataclasses.asdict(THUMOS_SHAPE))
    sizes = [len(read_split(os.path.join(root, f"split_{s}.txt"))) for s in ("train", "test")]
    expected = [THUMOS_SHAPE.num_train, THUMOS_SHAPE.num_test]
    if sizes != expected:
        sys.exit(f"{root}: holds {sizes[0]} training and {sizes[1]} test videos, not the bench's {expected[0]} and "
                 f"{expected[1]}; remove it (an older bench's data) or give --data")
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
                             collate_fn=collate, pin_memory=device.type == "cuda"))     # as main.training_steps
    step_times, floor_times, as_run_times, fetch_times = ({p: [] for p in precisions} for _ in range(4))
    for i in range(steps + 2):                       # two warm-up steps
        start = time.perf_counter()
        feats, labels, _, _ = next(loader)
        fetch_s = time.perf_counter() - start
        feats, labels = feats.to(device, non_blocking=True), labels.to(device, non_blocking=True)
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


def conv_rate(args, device):
    """FLOP/s of the fp32 embedding convolutions (conv_floor), the reference rate for the I3D rows."""
    fp32 = argparse.Namespace(**dict(vars(args), precision="fp32"))
    flop = conv_flops(args.batch_size, args.num_segments, args.embed_dim)
    return flop / min(timed(conv_floor(fp32, device), device, 3))

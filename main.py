"""AICL training and inference driver (THUMOS14 recipe of the authors' release).

    python main.py --data_path data/THUMOS14 --exp_name aicl --soft_nms            # train
    python main.py --data_path data/THUMOS14 --inference_only --soft_nms --model_file CKPT    # evaluate

Every number of the recipe is an argparse default below; flag names follow the release.
"""
import argparse
import contextlib
import csv
import io
import math
import os
import shutil
import signal
import sys

try:
    import fcntl                                      # the run lock (POSIX); without it runs are not locked
except ImportError:
    fcntl = None

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import checkpoint
from checkpoint import build_model
from dataset import (CLASS_COUNTS, FEATURE_FPS, SNIPPET_FRAMES, FeatureDataset, collate, load_class_names,
                     load_features, load_joint_features, read_split, uniform_indices)
from eval import THUMOS_TIOU, evaluate_detection, load_ground_truth, scored_subset
from losses import RELEASE_WEIGHTS, total_loss
from utils.cli import run as run_cli
from utils.device import resolve_device
from utils.io import read_json, save_json, save_text
from utils.plots import plot_series, plot_video
from utils.proposals import localize, select_classes


# Settings that differ between datasets; a flag left unset takes its dataset's value. THUMOS14: the
# authors' release. ActivityNet (the release has no ActivityNet code): T = 50, k = T // 2, gamma 1/2,
# embedding 1024 for v1.3 (supplement), tIoU 0.5:0.05:0.95 (np.linspace as the official evaluator), train
# on "training" and test on "validation". Where the paper and supplement are silent, the same authors'
# ActivityNet v1.3 code (lizhilin-ustc/SAL_ActivityNet) decides: class_th 0.1, soft-NMS at 0.7,
# 50k steps of batch 32 evaluated every 200, and short test videos kept at their own length (README,
# "ActivityNet v1.2 and v1.3", lists each value with its file).
ANET_TIOU = np.linspace(0.5, 0.95, 10).tolist()
THUMOS14_DEFAULTS = dict(num_segments=750, embed_dim=512, topk_ratio=8, cas_weight=1 / 3, class_th=0.25,
                         nms_thresh=0.4, short_videos="stretch", test_subset="test", tiou=list(THUMOS_TIOU),
                         batch_size=16, num_epochs=900, max_steps=0, detection_inf_step=50)
ANET_DEFAULTS = dict(num_segments=50, topk_ratio=2, cas_weight=1 / 2, class_th=0.1, nms_thresh=0.7,
                     short_videos="keep", test_subset="validation", tiou=ANET_TIOU,
                     batch_size=32, num_epochs=0, max_steps=50_000, detection_inf_step=200)
DATASET_DEFAULTS = {
    "thumos14": THUMOS14_DEFAULTS,
    "anet12": dict(ANET_DEFAULTS, embed_dim=512),
    "anet13": dict(ANET_DEFAULTS, embed_dim=1024),
}


class ArgumentParser(argparse.ArgumentParser):
    """A mistyped or missing flag is one line naming main.py (also when a runner script passed it on)."""

    def error(self, message):
        self.exit(2, f"main.py: error: {message} (python3 main.py --help lists the flags)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help keeps the docstring's layout and shows every default; the (*) flags, whose default depends on
    --dataset, name theirs in their help."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parse_args(argv=None):
    p = ArgumentParser(prog="main.py", description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    # data
    p.add_argument("--dataset", default="thumos14", choices=sorted(CLASS_COUNTS),
                   help="selects the class list and the defaults marked (*) (see DATASET_DEFAULTS)")
    p.add_argument("--data_path", default="data/THUMOS14", help="dataset root (gt.json, split_*.txt, features/)")
    p.add_argument("--modal", default="all", choices=["all"], help="AICL always uses both streams")
    p.add_argument("--num_segments", type=int, help="(*) snippets per video after sampling (T): 750 / 50")
    p.add_argument("--num_workers", type=int, default=0,
                   help="DataLoader workers (they prefetch batches; worth it with --feature_cache mmap)")
    p.add_argument("--feature_cache", default="auto", choices=["auto", "memory", "mmap"],
                   help="hold every feature file in memory, or memory-map the files and read the sampled snippets; "
                        "auto: memory when a split's features take under half the available memory")
    p.add_argument("--test_subset", help="(*) gt.json subset scored by the evaluator: test / validation")
    # model
    p.add_argument("--embed_dim", type=int, help="(*) embedding width: 512 (THUMOS14, ANet1.2) / 1024 (ANet1.3)")
    p.add_argument("--cas_weight", type=float,
                   help="(*) gamma of Eq. 4: A_score = g Softmax(CAS) + (1 - g) A_ca: 1/3 / 1/2")
    p.add_argument("--topk_ratio", type=int, help="(*) MIL top-k: k = T // topk_ratio: 8 / 2")
    p.add_argument("--mine_ratio", type=int, default=20,
                   help="contrastive sets: K = T // mine_ratio (the paper's T/20; ANet supplement: 40, i.e. k/20)")
    p.add_argument("--aware_fusion", default="early", choices=["early", "late"],
                   help="RGB/flow fusion of the class-aware branch (Table 6; paper: early)")
    p.add_argument("--agnostic_fusion", default="late", choices=["early", "late"],
                   help="RGB/flow fusion of the class-agnostic branch (Table 6; paper: late)")
    # optimisation
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--weight_decay", type=float, default=5e-4, help="Adam weight decay")
    p.add_argument("--batch_size", type=int, help="(*) videos per training step: 16 / 32")
    p.add_argument("--num_epochs", type=int,
                   help="(*) training epochs (0: no epoch limit, --max_steps decides): 900 / 0")
    p.add_argument("--max_steps", type=int, help="(*) stop after this many steps (0: no limit): 0 / 50000")
    p.add_argument("--q_val", type=float, default=0.7, help="q of the generalized cross-entropy L_ca")
    p.add_argument("--losses", default="a,ca,mc,c,ac",
                   help="loss terms switched on (Table 4 ablation): any of a, ca, mc, c, ac, comma-separated")
    p.add_argument("--stop_gradient", action="store_true",
                   help="the paper's L_mc/L_ac: MSE with the target side detached (release: both sides)")
    p.add_argument("--contrast_spaces", default="E,E_R,E_F",
                   help="embedding spaces of L_c (release: E,E_R,E_F; paper: E_R,E_F)")
    p.add_argument("--seed", type=int, default=1, help="initialisation; data order and sampling use (seed, epoch)")
    p.add_argument("--detection_inf_step", type=int, help="(*) evaluate every this many steps: 50 / 200")
    p.add_argument("--resume", default=None,
                   help="a run's last.pt to continue (e.g. ckpt/aicl/last.pt): its settings come back; a differing "
                        "flag is refused except " + ", ".join(f"--{k}" for k in checkpoint.RESUME_FREE))
    p.add_argument("--val_split", default=None, metavar="FILE",
                   help="video ids (one a line) of training videos held out to select best.pt; test is scored once, "
                        "at the end (default: select on test, as the release does)")
    p.add_argument("--val_fraction", type=float, default=None, metavar="F",
                   help="hold out this fraction of the training videos (a fixed draw) to select best.pt "
                        "(default: none, see --val_split)")
    # inference and post-processing
    p.add_argument("--inference_only", action="store_true",
                   help="evaluate (or, with --predict_dir, apply) a checkpoint")
    p.add_argument("--model_file", default=None, help="checkpoint to evaluate (ours or the release's CAS_Only.pkl)")
    p.add_argument("--predict_dir", default=None,
                   help="with --inference_only: localize actions in the videos of DIR (rgb/VID.npy + flow/VID.npy, "
                        "or VID.npy of width 2048) without ground truth")
    p.add_argument("--predict_videos", nargs="+", default=None, metavar="VID",
                   help="with --predict_dir: only these videos of DIR (scripts/predict.sh passes the videos it was "
                        "given) (default: all)")
    p.add_argument("--class_names", default=None,
                   help="text file, one class per line: the classes of a dataset of one's own (default: "
                        "DATA/classes.txt when present, as scripts/build_dataset.py writes), or of a checkpoint "
                        "that carries no class names")
    p.add_argument("--top_k", type=int, default=0, help="keep the best N detections per video (0: all, as for mAP)")
    p.add_argument("--min_score", type=float, default=None, help="drop detections scoring below this")
    p.add_argument("--plot", action="store_true", help="with --predict_dir: one PNG timeline per video")
    p.add_argument("--class_th", type=float, help="(*) keep classes with video score >= this: 0.25 / 0.1")
    p.add_argument("--gamma", type=float, default=0.2,
                   help="outer-region inflation of the outer-inner proposal score (the release's --gamma)")
    p.add_argument("--class_weight", type=float, default=0.2,
                   help="weight of the video class score in a proposal's score (the release's constant 0.2)")
    p.add_argument("--scale", type=int, default=24, help="upsampling factor of the curves")
    p.add_argument("--soft_nms", action=argparse.BooleanOptionalAction, default=False,
                   help="soft-NMS (the release scripts pass it; a bare CAS_Only.pkl gets it) instead of NMS")
    p.add_argument("--nms_thresh", type=float, help="(*) IoU at which (soft-)NMS suppresses (soft: decays): 0.4 / 0.7")
    p.add_argument("--nms_alpha", type=float, default=0.35, help="soft-NMS decay: score *= exp(-IoU^2 / alpha)")
    p.add_argument("--feature_fps", type=float, default=FEATURE_FPS,
                   help="frame rate the features were extracted at (snippets of 16 frames): maps snippets to seconds "
                        "(with --predict_dir: DIR/extraction.json's when present)")
    p.add_argument("--short_videos", choices=["stretch", "keep"],
                   help="(*) a test video of at most T snippets: stretch it to T by repeating snippets (THUMOS14 "
                        "release) or keep its own length (SAL, CoLA on ActivityNet): stretch / keep")
    p.add_argument("--plot_video", nargs="+", default=[], metavar="VID",
                   help="test videos to draw (curves, ground truth, detections) into OUTPUT_DIR/EXP_NAME/plots/")
    p.add_argument("--tiou", type=float, nargs="+", help="(*) tIoU thresholds: 0.1:0.1:0.7 / 0.5:0.05:0.95")
    # output
    p.add_argument("--exp_name", default="aicl", help="name of the run's folder under OUTPUT_DIR")
    p.add_argument("--output_dir", default="ckpt", help="checkpoints, logs and results go to OUTPUT_DIR/EXP_NAME/")
    p.add_argument("--overwrite", action="store_true",
                   help="train into an OUTPUT_DIR/EXP_NAME that holds a run: its outputs and logs are removed first; "
                        "with --inference_only: write results into another checkpoint's run folder")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--strict_fp32", action="store_true",
                   help="GPU: no TF32 in cuDNN convolutions (PyTorch's default and the release's runs use it) "
                        "or matmuls")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: the convolutions run under bf16 autocast (CPU and CUDA); heads' outputs, mining, "
                        "losses and evaluation stay float32. fp32 (default) is the reproduction")
    args = p.parse_args(argv)
    given = {a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv) if a.startswith("--")}
    args.explicit = {action.dest for action in p._actions if given & set(action.option_strings)}
    args.losses = args.losses.split(",")
    if not args.losses or set(args.losses) - set(RELEASE_WEIGHTS):
        p.error(f"--losses takes terms from {sorted(RELEASE_WEIGHTS)}, got {','.join(args.losses)}")
    args.contrast_spaces = args.contrast_spaces.split(",")
    if not args.contrast_spaces or set(args.contrast_spaces) - {"E", "E_R", "E_F"}:
        p.error(f"--contrast_spaces takes E, E_R, E_F, got {','.join(args.contrast_spaces)}")
    for name, value in DATASET_DEFAULTS[args.dataset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.num_segments < 1:
        p.error(f"--num_segments must be >= 1, got {args.num_segments}")
    if args.plot and not args.predict_dir:
        p.error("--plot draws the videos of --predict_dir; for test videos use --plot_video VID")
    if args.predict_dir and not args.inference_only:
        p.error("--predict_dir needs --inference_only (it localizes actions with a trained --model_file)")
    if args.resume and args.inference_only:
        p.error("--resume continues training; to evaluate a checkpoint give it as --model_file")
    if args.val_split and args.val_fraction is not None:
        p.error("give --val_split or --val_fraction, not both")
    if args.val_fraction is not None and not 0 < args.val_fraction < 1:
        p.error(f"--val_fraction must be between 0 and 1, got {args.val_fraction}")
    if not (args.num_epochs or args.max_steps):
        p.error("--num_epochs and --max_steps are both 0: the run would never end")
    return args


def set_gpu_numerics(strict_fp32):
    """As the release's set_seed: deterministic cuDNN algorithms, no autotuning, so that a GPU run repeats
    (the backward of torch.gather still adds with atomics on CUDA: README, "Robust runs"). TF32 stays at
    PyTorch's defaults (on in cuDNN convolutions, off in matmuls) unless strict_fp32 turns it off in both."""
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = not strict_fp32
    torch.backends.cuda.matmul.allow_tf32 = False


def build_optimizer(args, model):
    """The release's Adam. fused=True runs each update as one kernel per parameter (CPU and CUDA):
    the same update as the per-tensor loop to float32 rounding, a twelfth of its time on 2 CPU cores."""
    return torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=args.weight_decay,
                            fused=True)


def autocast(args, device):
    """The forward pass's precision: bf16 autocast for --precision bf16, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")



def localize_video(out, T_v, args):
    """Post-processing of one video's model outputs: video scores s [C], kept classes, detections [N, 4]
    (class, score, start s, end s) in the release's order."""
    probs = torch.softmax(out["p"][0], dim=0).cpu().numpy()                 # [C] video scores
    kept = select_classes(probs, args.class_th)
    detections = localize(out["A_score"][0].cpu().numpy(), probs, kept, T_v,
                          soft=args.soft_nms, nms_thresh=args.nms_thresh, alpha=args.nms_alpha,
                          scale=args.scale, inflation=args.gamma, class_weight=args.class_weight,
                          fps=args.feature_fps, frames_per_snippet=SNIPPET_FRAMES)   # [N, 4]
    if args.min_score is not None:
        detections = detections[detections[:, 1] >= args.min_score]
    if args.top_k:
        detections = detections[np.argsort(-detections[:, 1], kind="stable")[:args.top_k]]
    return probs, kept, detections


def as_records(detections, class_names):
    """[N, 4] detections -> ActivityNet result records."""
    return [{"label": class_names[int(c)], "score": float(s), "segment": [float(t0), float(t1)]}
            for c, s, t0, t1 in detections]


@torch.no_grad()
def predict(model, dataset, args, device):
    """Detections for every video of ``dataset`` (ActivityNet result form) and the classification and
    binary-actionness accuracies (Table 5: A^bin and A_ca^bin against the frame-level ground truth at
    the sampled snippets). Videos named in --plot_video get a figure."""
    model.eval()
    results, correct, hits, snippets = {}, 0, np.zeros(2), 0
    loader = DataLoader(dataset, batch_size=1, num_workers=args.num_workers, collate_fn=collate)
    for feats, label, vid, T_v in loader:
        vid, T_v = vid[0], int(T_v[0])
        with autocast(args, device):
            out = model(feats.to(device))
        probs, kept, detections = localize_video(out, T_v, args)
        correct += set(kept.tolist()) == set(np.flatnonzero(label[0].numpy()).tolist())
        action = dataset.frame_labels(vid).any(axis=1)[uniform_indices(T_v, args.num_segments, dataset.keep_short)]
        for i, key in enumerate(("A_bin", "A_ca_bin")):
            hits[i] += np.sum(out[key][0].cpu().numpy().astype(bool) == action)
        snippets += len(action)
        results[vid] = as_records(detections, dataset.class_names)
        if vid in args.plot_video:
            plot_detections(out, T_v, detections, dataset.class_names, args, vid,
                            gt=[(dataset.class_names[c], t0, t1) for c, t0, t1 in dataset.annotations[vid]])
    n = max(1, len(dataset))
    A_bin_acc, A_ca_bin_acc = (hits / max(1, snippets)).tolist()
    stats = {"cls_acc": correct / n, "A_bin_acc": A_bin_acc, "A_ca_bin_acc": A_ca_bin_acc}
    return result_file(results), stats


def result_file(results):
    """The ActivityNet result form. "method" as well as "version": SAL's and CoLA's evaluators require
    "method" and "results", the official one "version", "results" and "external_data"."""
    return {"version": "AICL", "method": "AICL", "results": results, "external_data": {}}


def plot_detections(out, T_v, detections, class_names, args, vid, gt=()):
    """Figures 1/4 of the paper for one video: class-aware A, class-agnostic A_ca and the A_score of every
    class that is kept (s_c >= class_th), detected or in the ground truth, each in its own panel, with the
    ground truth and the top detections, as OUTPUT_DIR/EXP_NAME/plots/VID.png."""
    curves = {"class-aware A": out["A"][0].cpu().numpy(), "class-agnostic A_ca": out["A_ca"][0].cpu().numpy()}
    probs = torch.softmax(out["p"][0], dim=0).cpu().numpy()                 # [C] video scores
    index = {name: c for c, name in enumerate(class_names)}
    shown = [*select_classes(probs, args.class_th).tolist(), *(int(c) for c in detections[:, 0]),
             *(index[label] for label, _, _ in gt)]
    for c in dict.fromkeys(shown):
        curves[f"A_score {class_names[c]} (s = {probs[c]:.2f})"] = out["A_score"][0, :, c].cpu().numpy()
    seconds = T_v * SNIPPET_FRAMES / args.feature_fps / len(curves["class-aware A"])
    path = os.path.join(args.output_dir, args.exp_name, "plots", f"{vid}.png")
    plot_video(path, curves, seconds, list(gt), [(class_names[int(c)], s, t0, t1) for c, s, t0, t1 in detections],
               title=vid)
    return path


def evaluate(model, dataset, args, device):
    """Predict, then score with the ActivityNet protocol. Returns (metrics, predictions); metrics["subset"]
    is the gt.json subset scored (SAL's "val" when gt.json names the validation videos so)."""
    predictions, stats = predict(model, dataset, args, device)
    subset = scored_subset(dataset.gt, args.test_subset)
    # Classes with no ground truth in the subset do not enter the ActivityNet mAP (the demo data uses
    # 6 of the 20 classes); leave them out here so the evaluator's error is kept for foreign files.
    gt, subset = dataset.gt, scored_subset(dataset.gt, args.test_subset)
    if dataset.split == "train":        # held-out training videos (--val_split/--val_fraction): exactly those
        gt, subset = {"database": {v: dict(gt["database"][v], subset="held_out") for v in dataset.vids}}, "held_out"
    gt_classes = set(load_ground_truth(gt, subset).classes)
    scored = {vid: [d for d in dets if d["label"] in gt_classes] for vid, dets in predictions["results"].items()}
    det = evaluate_detection(gt, scored, subset=subset, tiou_thresholds=args.tiou)
    metrics = {"subset": subset, "tiou": list(args.tiou), "mAP": [float(m) for m in det["mAP"]],
               "average_mAP": float(det["average_mAP"]), **stats,
               "ap_per_class": {c: [float(a) for a in ap] for c, ap in det["ap_per_class"].items()}}
    return metrics, predictions


def format_table(metrics):
    """The per-tIoU mAP (%) row of the paper's Table 1, with its averages."""
    tiou, m = metrics["tiou"], np.array(metrics["mAP"]) * 100
    head, row = ["tIoU"] + [f"{t:g}" for t in tiou], ["mAP(%)"] + [f"{v:.1f}" for v in m]
    if tuple(tiou) == THUMOS_TIOU:
        head += ["AVG(0.1:0.5)", "AVG(0.1:0.7)"]
        row += [f"{m[:5].mean():.1f}", f"{m.mean():.1f}"]
    else:
        head.append("AVG")
        row.append(f"{m.mean():.1f}")
    width = [max(len(h), len(r)) for h, r in zip(head, row)]
    table = "\n".join("  ".join(s.rjust(w) for s, w in zip(line, width)) for line in (head, row))
    return (f"{table}\nclassification accuracy {metrics['cls_acc'] * 100:.1f}%; binary actionness accuracy "
            f"against the frame labels (Table 5): A^bin {metrics['A_bin_acc'] * 100:.1f}%, "
            f"A_ca^bin {metrics['A_ca_bin_acc'] * 100:.1f}%")


def write_results(out_dir, metrics, predictions):
    save_json(predictions, os.path.join(out_dir, "predictions.json"))
    save_json(metrics, os.path.join(out_dir, "metrics.json"))


def dataset_class_names(args):
    """The classes of the dataset at --data_path: --class_names FILE, else DATA/classes.txt when it exists
    (a dataset of one's own, as scripts/build_dataset.py writes it), else the --dataset list."""
    path = args.class_names or os.path.join(args.data_path, "classes.txt")
    if not args.class_names and not os.path.isfile(path):
        return load_class_names(args.data_path, args.dataset)
    names = checkpoint.read_class_names(path)
    print(f"class list: the {len(names)} classes of {path}")
    return names


def run_inference(args, device):
    """Evaluate --model_file (default OUTPUT_DIR/EXP_NAME/best.pt) on the test split, or localize actions in
    --predict_dir, with the settings the checkpoint carries unless given on the command line."""
    out_dir = os.path.join(args.output_dir, args.exp_name)
    model_file = args.model_file or os.path.join(out_dir, "best.pt")
    state = checkpoint.load(model_file)
    checkpoint.restore(args, state, model_file)
    if args.predict_dir and os.path.isfile(os.path.join(out_dir, "last.pt")) and not args.overwrite:
        raise ValueError(f"{out_dir} holds a training run: the detections of {model_file} on {args.predict_dir} "
                         f"would replace its predictions.json; give another --exp_name (or --overwrite)")
    if args.predict_dir:
        return predict_folder(args, device, state, model_file, out_dir)
    class_names = checkpoint.class_names_of(state, model_file, args.class_names,
                                            dataset_class_names(args))
    test_set = feature_dataset(args, "test", class_names)
    check_plot_videos(args.plot_video, test_set.vids, f"the test split of {args.data_path}")
    model = checkpoint.load_model(state, args, len(class_names), device, model_file)
    metrics, predictions = evaluate(model, test_set, args, device)
    # A run's own metrics.json / predictions.json (its best step) are never replaced by a later evaluation.
    eval_dir = os.path.join(out_dir, "eval_" + os.path.splitext(os.path.basename(model_file))[0])
    write_results(eval_dir, metrics, predictions)
    print(f"model {model_file} on {args.data_path} ({len(test_set)} test videos, gt.json subset "
          f"{metrics['subset']!r})")
    print(format_table(metrics))
    print(f"predictions and metrics written to {eval_dir}/")
    return metrics


def check_plot_videos(plot_video, vids, where):
    unknown = sorted(set(plot_video) - set(vids))
    if unknown:
        raise ValueError(f"--plot_video: {', '.join(unknown)} not among the {len(vids)} videos of {where}")


@torch.no_grad()
def predict_folder(args, device, state, model_file, out_dir):
    """Localize actions in videos without ground truth: predictions.json, detections.csv and, with
    --plot (or --plot_video VID), one PNG per video under OUTPUT_DIR/EXP_NAME/."""
    class_names = checkpoint.class_names_of(state, model_file, args.class_names)
    model = checkpoint.load_model(state, args, len(class_names), device, model_file)
    model.eval()
    videos = feature_files(args.predict_dir)
    if args.predict_videos:
        missing = sorted(set(args.predict_videos) - set(videos))
        if missing:
            raise FileNotFoundError(f"{args.predict_dir}: no features of video(s) {missing[:3]}")
        videos = {v: videos[v] for v in args.predict_videos}
    check_plot_videos(args.plot_video, videos, args.predict_dir)
    snippet_timing(args)
    results, table = {}, io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["video", "label", "start", "end", "score"])
    for vid, read in videos.items():
        feats = read()                                                    # [T_v, 2048]
        x = torch.from_numpy(feats[uniform_indices(len(feats), args.num_segments, args.short_videos == "keep")])
        x = x[None].to(device)                                            # [1, T or T_v, 2048]
        with autocast(args, device):
            out = model(x)
        _, _, detections = localize_video(out, len(feats), args)
        results[vid] = as_records(detections, class_names)
        rows.writerows([vid, d["label"], f"{d['segment'][0]:.2f}", f"{d['segment'][1]:.2f}", f"{d['score']:.4f}"]
                       for d in results[vid])
        if args.plot or vid in args.plot_video:
            plot_detections(out, len(feats), detections, class_names, args, vid)
    save_json(result_file(results), os.path.join(out_dir, "predictions.json"))
    save_text(table.getvalue(), os.path.join(out_dir, "detections.csv"))
    n_detections = sum(map(len, results.values()))
    n_detected = len({d["label"] for dets in results.values() for d in dets})
    print(f"{len(videos)} videos, {n_detections} detections of {n_detected} classes (of the checkpoint's "
          f"{len(class_names)}) written to {out_dir}/predictions.json and detections.csv"
          + (f", figures in {out_dir}/plots/" if args.plot or args.plot_video else ""))
    return results


def snippet_timing(args):
    """Take the snippet grid of features extracted by ``python -m features`` from DIR/extraction.json
    (its fps; 16-frame snippets are required), unless --feature_fps was given."""
    path = os.path.join(args.predict_dir, "extraction.json")
    if not os.path.isfile(path) or "feature_fps" in args.explicit:
        return
    saved = read_json(path)
    settings = saved.get("settings") if isinstance(saved, dict) else None
    settings = settings if isinstance(settings, dict) else {}
    if settings.get("snippet_frames") != SNIPPET_FRAMES or not isinstance(settings.get("fps"), (int, float)):
        raise ValueError(f"{path}: expected settings with fps and snippet_frames {SNIPPET_FRAMES}, "
                         f"found {settings.get('fps')!r} and {settings.get('snippet_frames')!r}")
    args.feature_fps = settings["fps"]
    print(f"snippet timing from {path}: {SNIPPET_FRAMES} frames at {args.feature_fps:g} fps")


def feature_files(folder):
    """{video id: loader of [T_v, 2048] features} for rgb/VID.npy + flow/VID.npy or VID.npy files."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: folder not found")
    if os.path.isdir(os.path.join(folder, "rgb")) and any(f.endswith(".npy") for f in os.listdir(folder)):
        raise ValueError(f"{folder}: holds both rgb/ (+ flow/) and VID.npy files; keep one layout per folder")
    if os.path.isdir(os.path.join(folder, "rgb")):
        vids = sorted(f[:-4] for f in os.listdir(os.path.join(folder, "rgb")) if f.endswith(".npy"))
        videos = {v: (lambda v=v: load_features(folder, v)) for v in vids}
    else:
        vids = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npy"))
        videos = {v: (lambda v=v: load_joint_features(os.path.join(folder, f"{v}.npy"))) for v in vids}
    if not videos:
        raise ValueError(f"{folder}: no feature files (expected rgb/VID.npy + flow/VID.npy, or VID.npy of width 2048)")
    return videos


def feature_dataset(args, split, class_names, sampling=None, only=None):
    """The train ('random' sampling) or test ('uniform') split, or ``only`` some of its videos with the
    ``sampling`` given; its feature cache said in the log."""
    sampling = sampling or ("random" if split == "train" else "uniform")
    ds = FeatureDataset(args.data_path, split, args.num_segments, sampling, class_names, args.seed, only=only,
                        keep_short=args.short_videos == "keep", cache=args.feature_cache)
    where = "in memory" if ds.cache == "memory" else "memory-mapped, read when sampled"
    print(f"{split} features: {len(ds)} videos, {ds.feature_bytes / 2 ** 30:.2f} GiB as float32, {where} "
          f"({ds.cache_reason})")
    return ds


def train_step(model, optimizer, feats, labels, args):
    """One optimisation step on a batch (feats [B, T, 2048], labels [B, C]). Returns the loss terms as
    floats and the mean number of consistent snippets per video (both branches agree: Fig. 3)."""
    model.train()
    with autocast(args, feats.device):
        out = model(feats)                                 # float32 outputs in either precision
    weights = {name: w if name in args.losses else 0.0 for name, w in RELEASE_WEIGHTS.items()}
    loss, terms = total_loss(out, labels, q=args.q_val, weights=weights, stop_gradient=args.stop_gradient,
                             spaces=args.contrast_spaces)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    consistent = ((out["A_bin"] + out["A_ca_bin"]) != 1).sum(dim=1).float().mean().item()
    return {k: v.item() for k, v in terms.items()}, consistent


def epoch_batches(n, batch_size, seed, epoch):
    """The release shuffles every epoch; here the order depends only on (seed, epoch), so a run
    resumed mid-epoch sees the same batches."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag that the training loop checks between steps, so that an
    interrupted run can write a resumable checkpoint instead of dying mid-step."""

    def __enter__(self):
        self.signum = None
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def train(args, device, resumed=None):
    """Train, evaluating every --detection_inf_step steps on the selection set (test, as the release does,
    or training videos held out by --val_split/--val_fraction); ``resumed`` is the --resume checkpoint."""
    from torch.utils.tensorboard import SummaryWriter

    out_dir = os.path.join(args.output_dir, args.exp_name)
    if resumed is None or os.path.abspath(out_dir) != os.path.dirname(os.path.abspath(args.resume)):
        claim_output_dir(out_dir, args.overwrite)
    class_names = dataset_class_names(args)
    train_ids, held_out = held_out_videos(args)
    train_set = feature_dataset(args, "train", class_names, only=train_ids)
    test_set = feature_dataset(args, "test", class_names)
    select_set, select_name = test_set, "test"
    if held_out:
        select_set = feature_dataset(args, "train", class_names, sampling="uniform", only=held_out)
        select_name = "val"
    check_plot_videos(args.plot_video, test_set.vids, f"the test split of {args.data_path}")
    if resumed is None:
        model = build_model(args, len(class_names)).to(device)
    else:                                             # the RNG state comes back with the checkpoint below
        model = checkpoint.load_model(resumed, args, len(class_names), device, args.resume)
    optimizer = build_optimizer(args, model)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    total_steps = steps_per_epoch * args.num_epochs if args.num_epochs else args.max_steps
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    step, best_mAP, best_metrics, consistent = 0, -1.0, None, []   # consistent: [step, snippets] (Fig. 3)
    best_file = None                                                # where the best checkpoint so far lives
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        step, best_mAP, best_metrics = resumed["step"], resumed["best_mAP"], resumed["best_metrics"]
        consistent = resumed["consistent"]
        torch.set_rng_state(resumed["torch_rng"])
        if best_metrics is not None and os.path.isfile(os.path.join(os.path.dirname(args.resume), "best.pt")):
            best_file = os.path.join(os.path.dirname(args.resume), "best.pt")
    history = read_log(os.path.dirname(args.resume), step) if args.resume else []   # log.csv rows so far
    window = []                                                    # loss terms since the last evaluation

    def save(name, resumable=False):
        """best.pt: what inference needs; last.pt also what resuming needs (the optimizer's state)."""
        state = dict(optimizer=optimizer, best_mAP=best_mAP, consistent=consistent,
                     torch_rng=torch.get_rng_state()) if resumable else {}
        checkpoint.save(os.path.join(out_dir, name), model, args, class_names, step=step, best_metrics=best_metrics,
                        **state)

    log_line(out_dir, f"training on {len(train_set)} videos ({steps_per_epoch} steps/epoch, {total_steps} steps) "
                      f"on {device}; " + (f"best.pt selected on {len(select_set)} held-out training videos, test "
                                          f"scored once at the end" if held_out
                                          else "best.pt selected by test mAP (the release's recipe)"))
    if step == 0:
        metrics, _ = evaluate(model, select_set, args, device)
        log_evaluation(out_dir, history, step, metrics, window)
        log_line(out_dir, f"step 0 (untrained): {select_name} mAP {metrics['average_mAP'] * 100:.2f}  "
                          f"cls_acc {metrics['cls_acc'] * 100:.1f}")
    writer = SummaryWriter(os.path.join(out_dir, "logs"), purge_step=step or None)   # a resumed run drops later events
    bar = tqdm(total=total_steps, initial=step, dynamic_ncols=True, disable=None)   # terminal only: off when piped
    with StopRequest() as stop:
        while step < total_steps and not stop.signum:
            epoch = step // steps_per_epoch
            train_set.set_epoch(epoch)
            batches = epoch_batches(len(train_set), args.batch_size, args.seed, epoch)[step % steps_per_epoch:]
            for feats, labels, _, _ in DataLoader(train_set, batch_sampler=batches, num_workers=args.num_workers,
                                                   collate_fn=collate):
                terms, n_consistent = train_step(model, optimizer, feats.to(device), labels.to(device), args)
                step += 1
                window.append(terms)
                consistent.append([step, n_consistent])
                for k, v in terms.items():
                    writer.add_scalar(f"loss/{k}", v, step)
                writer.add_scalar("mining/consistent_snippets", n_consistent, step)
                bar.update(1)
                bar.set_postfix({k: f"{terms[k]:.3f}" for k in ("total", "L_a", "L_ca", "L_mc", "L_ac", "L_c")})
                if step % args.detection_inf_step == 0 or step == total_steps:
                    metrics, predictions = evaluate(model, select_set, args, device)
                    log_metrics(writer, metrics, step, select_name)
                    log_evaluation(out_dir, history, step, metrics, window)
                    window = []
                    if metrics["average_mAP"] > best_mAP:
                        best_mAP = metrics["average_mAP"]
                        best_metrics = dict(metrics, step=step, selected_on=select_name)
                        save("best.pt")
                        best_file = os.path.join(out_dir, "best.pt")
                        if not held_out:
                            write_results(out_dir, best_metrics, predictions)
                    save("last.pt", resumable=True)
                    save_json(dict(metrics, step=step, split=select_name), os.path.join(out_dir, "last_metrics.json"))
                    plot_consistent(consistent, args, os.path.join(out_dir, "consistent_segments.png"))
                    log_line(out_dir, f"step {step}: {select_name} mAP {metrics['average_mAP'] * 100:.2f}  "
                                      f"best {best_mAP * 100:.2f}  cls_acc {metrics['cls_acc'] * 100:.1f}  "
                                      f"loss {history[-1]['total']:.4f}")
                if step == total_steps or stop.signum:
                    break
    bar.close()
    writer.close()
    if stop.signum:
        save("last.pt", resumable=True)
        print(f"interrupted by {signal.Signals(stop.signum).name} after step {step}; resumable checkpoint "
              f"written: continue with --resume {out_dir}/last.pt", file=sys.stderr)
        raise SystemExit(128 + stop.signum)
    if best_file is None:
        return best_metrics
    if held_out:
        best_metrics = test_best(best_file, args, test_set, device, out_dir)
        print(f"best checkpoint (by validation mAP on {len(select_set)} held-out training videos): {best_file}, "
              f"step {best_metrics['step']}; test, scored once:")
    else:
        print(f"best checkpoint (by test mAP, as the release selects): {best_file}, step {best_metrics['step']}")
    print(format_table(best_metrics))
    return best_metrics


def test_best(best_file, args, test_set, device, out_dir):
    """Score the checkpoint selected on validation data on the test split, once: metrics.json and
    predictions.json hold these test numbers (with the validation mAP that chose it)."""
    state = checkpoint.load(best_file)
    model = checkpoint.load_model(state, args, len(test_set.class_names), device, best_file)
    metrics, predictions = evaluate(model, test_set, args, device)
    metrics = dict(metrics, step=state["step"], selected_on="val",
                   val_average_mAP=state["best_metrics"]["average_mAP"])
    write_results(out_dir, metrics, predictions)
    return metrics


def held_out_videos(args):
    """(training videos to train on, training videos held out for model selection): --val_split's ids, or a
    fixed draw of --val_fraction of split_train.txt (independent of --seed, so runs with other seeds select
    on the same videos); (None, None) without either flag."""
    if not args.val_split and args.val_fraction is None:
        return None, None
    train_file = os.path.join(args.data_path, "split_train.txt")
    train_ids = read_split(train_file)
    if args.val_split:
        held = read_split(args.val_split)
        unknown = sorted(set(held) - set(train_ids))
        if unknown:
            raise ValueError(f"{args.val_split}: {len(unknown)} video(s) not in {train_file}, e.g. {unknown[:3]}")
    else:
        n_held = round(args.val_fraction * len(train_ids))
        held = np.random.default_rng(0).permutation(sorted(train_ids))[:n_held].tolist()
    held = set(held)
    if not held or len(held) == len(set(train_ids)):
        raise ValueError(f"{args.val_split or '--val_fraction'}: holds out {len(held)} of the {len(set(train_ids))} "
                         f"training videos; at least one must be held out and one left to train on")
    return [v for v in train_ids if v not in held], held


RUN_OUTPUTS = ("best.pt", "last.pt", "metrics.json", "last_metrics.json", "predictions.json", "log.csv",
               "consistent_segments.png", "logs", "plots")


@contextlib.contextmanager
def output_dir_lock(out_dir):
    """Hold an exclusive lock on the run's folder while training in it, so that a second run started into
    it stops at once, before it removes or writes anything, even while the first has written nothing yet
    (its step-0 evaluation). The lock goes with the process; a folder created here and left empty is
    removed again."""
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"{out_dir}: another run is training in this folder; wait for it to end, or "
                                 f"choose another --exp_name / --output_dir") from None
        yield
    finally:
        os.close(fd)
        if created and not os.listdir(out_dir):
            os.rmdir(out_dir)


def claim_output_dir(out_dir, overwrite):
    """A new run needs a folder without another run's outputs; --overwrite removes them first (so that
    the tensorboard curves of two runs never interleave)."""
    present = [f for f in RUN_OUTPUTS if os.path.lexists(os.path.join(out_dir, f))]
    if present and not overwrite:
        hint = f"continue it with --resume {out_dir}/last.pt, " if "last.pt" in present else ""
        raise ValueError(f"{out_dir} already holds a run ({', '.join(present)}): {hint}replace it with --overwrite, "
                         f"or choose another --exp_name / --output_dir")
    if os.path.isfile(os.path.join(out_dir, "log.txt")):   # alone: the log of a start stopped before its first step
        os.remove(os.path.join(out_dir, "log.txt"))
    if not present:
        return
    for f in present:
        path = os.path.join(out_dir, f)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    print(f"--overwrite: removed {', '.join(present)} from {out_dir}")


def plot_consistent(consistent, args, path):
    """Fig. 3: consistent snippets per video (both branches agree) over the training steps."""
    steps, counts = zip(*consistent)
    plot_series(path, {"consistent snippets": (list(steps), list(counts))}, "step",
                f"snippets per video (of T = {args.num_segments})", title="Consistent segments during training")


def log_line(out_dir, line):
    """A line for the terminal (above the progress bar) and for OUTPUT_DIR/EXP_NAME/log.txt."""
    tqdm.write(line)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "log.txt"), "a") as f:
        f.write(line + "\n")


def log_evaluation(out_dir, history, step, metrics, window):
    """Append one row to ``history`` and rewrite OUTPUT_DIR/EXP_NAME/log.csv atomically: the step, each loss
    term averaged over the steps since the last evaluation (``window``: their term dicts; empty at step 0),
    the mAP at each tIoU, its average and the accuracies."""
    row = {"step": step, **(pd.DataFrame(window).mean().to_dict() if window else {})}
    row.update({f"mAP@{t:g}": m for t, m in zip(metrics["tiou"], metrics["mAP"])})
    row.update({k: metrics[k] for k in ("average_mAP", "cls_acc", "A_bin_acc", "A_ca_bin_acc")})
    history.append(row)
    save_text(pd.DataFrame(history).to_csv(index=False), os.path.join(out_dir, "log.csv"))


def read_log(folder, step):
    """The log.csv rows of ``folder`` up to ``step`` (a resumed run continues its log), [] without one."""
    path = os.path.join(folder, "log.csv")
    if not os.path.isfile(path):
        return []
    return pd.read_csv(path).query("step <= @step").to_dict("records")


def log_metrics(writer, metrics, step, split="test"):
    writer.add_scalar(f"{split}/average_mAP", metrics["average_mAP"], step)
    writer.add_scalar(f"{split}/cls_acc", metrics["cls_acc"], step)
    for t, m in zip(metrics["tiou"], metrics["mAP"]):
        writer.add_scalar(f"{split}/mAP@{t:g}", m, step)


def main(argv=None):
    args = parse_args(argv)
    resumed = None
    if args.resume:                                   # the run's settings come back before anything uses them
        resumed = checkpoint.load(args.resume)
        checkpoint.restore_run(args, resumed, args.resume)
    torch.manual_seed(args.seed)
    set_gpu_numerics(args.strict_fp32)
    device = resolve_device(args.device)
    if args.inference_only:
        return run_inference(args, device)
    with output_dir_lock(os.path.join(args.output_dir, args.exp_name)):
        return train(args, device, resumed)


def cli(argv=None):
    """main() for the command line (utils.cli.run). Once training runs, StopRequest saves last.pt on Ctrl-C;
    an interrupt reaching here came before the first step."""
    return run_cli(main, argv, interrupted="interrupted (Ctrl-C) before the first training step; nothing to resume")


if __name__ == "__main__":
    cli()

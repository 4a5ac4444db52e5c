"""AICL training and inference driver (THUMOS14 recipe of the authors' release).

    python main.py --data_path data/THUMOS14 --exp_name aicl --soft_nms            # train
    python main.py --data_path data/THUMOS14 --inference_only --model_file CKPT    # evaluate

Every number of the recipe is an argparse default below; flag names follow the release.
"""
import argparse
import csv
import io
import math
import os
import signal
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataset import (CLASS_COUNTS, FEATURE_FPS, SNIPPET_FRAMES, THUMOS14_CLASSES, FeatureDataset, load_class_names,
                     load_features, load_joint_features, read_json, uniform_indices)
from eval import THUMOS_TIOU, evaluate_detection, load_ground_truth
from losses import RELEASE_WEIGHTS, total_loss
from model import AICL, load_weights
from utils.io import save_json, save_text, save_torch
from utils.plots import plot_series, plot_video
from utils.proposals import localize, select_classes


# Settings that differ between datasets; a flag left unset takes its dataset's value. THUMOS14: the
# authors' release. ActivityNet (paper and supplement; the release has no ActivityNet code): T = 50,
# k = T // 2, gamma 1/2, embedding 1024 for v1.3, tIoU 0.5:0.05:0.95 (np.linspace as the official
# evaluator), train on "training" and test on "validation". class_th 0.1 for ActivityNet is our choice
# (the paper gives none); the other post-processing values are the THUMOS14 release's.
ANET_TIOU = np.linspace(0.5, 0.95, 10).tolist()
DATASET_DEFAULTS = {
    "thumos14": dict(num_segments=750, embed_dim=512, topk_ratio=8, cas_weight=1 / 3, class_th=0.25,
                     test_subset="test", tiou=list(THUMOS_TIOU)),
    "anet12": dict(num_segments=50, embed_dim=512, topk_ratio=2, cas_weight=1 / 2, class_th=0.1,
                   test_subset="validation", tiou=ANET_TIOU),
    "anet13": dict(num_segments=50, embed_dim=1024, topk_ratio=2, cas_weight=1 / 2, class_th=0.1,
                   test_subset="validation", tiou=ANET_TIOU),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    # data
    p.add_argument("--dataset", default="thumos14", choices=sorted(CLASS_COUNTS),
                   help="selects the class list and the defaults marked (*) (see DATASET_DEFAULTS)")
    p.add_argument("--data_path", default="data/THUMOS14", help="dataset root (gt.json, split_*.txt, features/)")
    p.add_argument("--modal", default="all", choices=["all"], help="AICL always uses both streams")
    p.add_argument("--num_segments", type=int, help="(*) snippets per video after sampling (T): 750 / 50")
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader workers (features are cached in memory)")
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
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight_decay", type=float, default=5e-4)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--num_epochs", type=int, default=900)
    p.add_argument("--max_steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    p.add_argument("--q_val", type=float, default=0.7, help="q of the generalized cross-entropy L_ca")
    p.add_argument("--losses", default="a,ca,mc,c,ac",
                   help="loss terms switched on (Table 4 ablation): any of a, ca, mc, c, ac, comma-separated")
    p.add_argument("--stop_gradient", action="store_true",
                   help="the paper's L_mc/L_ac: MSE with the target side detached (release: both sides)")
    p.add_argument("--contrast_spaces", default="E,E_R,E_F",
                   help="embedding spaces of L_c (release: E,E_R,E_F; paper: E_R,E_F)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--detection_inf_step", type=int, default=50, help="evaluate every this many steps")
    p.add_argument("--resume", default=None, help="checkpoint to continue training from (e.g. ckpt/aicl/last.pt)")
    # inference and post-processing
    p.add_argument("--inference_only", action="store_true")
    p.add_argument("--model_file", default=None, help="checkpoint to evaluate (ours or the release's CAS_Only.pkl)")
    p.add_argument("--predict_dir", default=None,
                   help="with --inference_only: localize actions in the videos of DIR (rgb/VID.npy + flow/VID.npy, "
                        "or VID.npy of width 2048) without ground truth")
    p.add_argument("--predict_videos", nargs="+", default=None, metavar="VID",
                   help="with --predict_dir: only these videos of DIR (scripts/predict.sh passes the videos it was given)")
    p.add_argument("--class_names", default=None,
                   help="text file, one class per line: the classes of a dataset of one's own (default: "
                        "DATA/classes.txt when present, as scripts/build_dataset.py writes), or of a checkpoint "
                        "that carries no class names")
    p.add_argument("--top_k", type=int, default=0, help="keep the best N detections per video (0: all, as for mAP)")
    p.add_argument("--min_score", type=float, default=None, help="drop detections scoring below this")
    p.add_argument("--plot", action="store_true", help="with --predict_dir: one PNG timeline per video")
    p.add_argument("--class_th", type=float, help="(*) keep classes with video score >= this: 0.25 / 0.1")
    p.add_argument("--gamma", type=float, default=0.2,
                   help="weight of the class score in the proposal score (release: also the OIC inflation)")
    p.add_argument("--inflation", type=float, default=None, help="outer-region inflation (default: --gamma)")
    p.add_argument("--scale", type=int, default=24, help="upsampling factor of the curves")
    p.add_argument("--soft_nms", action="store_true", help="soft-NMS (the release scripts pass it) instead of NMS")
    p.add_argument("--nms_thresh", type=float, default=0.4)
    p.add_argument("--nms_alpha", type=float, default=0.35)
    p.add_argument("--feature_fps", type=float, default=FEATURE_FPS,
                   help="frame rate of the snippet grid (with --predict_dir: DIR/extraction.json's when present)")
    p.add_argument("--plot_video", nargs="+", default=[], metavar="VID",
                   help="test videos to draw (curves, ground truth, detections) into OUTPUT_DIR/EXP_NAME/plots/")
    p.add_argument("--tiou", type=float, nargs="+", help="(*) tIoU thresholds: 0.1:0.1:0.7 / 0.5:0.05:0.95")
    # output
    p.add_argument("--exp_name", default="aicl")
    p.add_argument("--output_dir", default="ckpt", help="checkpoints, logs and results go to OUTPUT_DIR/EXP_NAME/")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
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
    if args.inflation is None:
        args.inflation = args.gamma
    return args


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(args, num_classes):
    return AICL(num_classes, embed_dim=args.embed_dim, gamma=args.cas_weight, topk_ratio=args.topk_ratio,
                mine_ratio=args.mine_ratio, aware_fusion=args.aware_fusion, agnostic_fusion=args.agnostic_fusion)


def localize_video(out, T_v, args):
    """Post-processing of one video's model outputs: video scores s [C], kept classes, detections [N, 4]
    (class, score, start s, end s) in the release's order."""
    probs = torch.softmax(out["p"][0], dim=0).cpu().numpy()                 # [C] video scores
    kept = select_classes(probs, args.class_th)
    detections = localize(out["A_score"][0].cpu().numpy(), probs, kept, T_v,
                          soft=args.soft_nms, nms_thresh=args.nms_thresh, alpha=args.nms_alpha,
                          scale=args.scale, inflation=args.inflation, class_weight=args.gamma,
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
    for feats, label, vid, T_v in DataLoader(dataset, batch_size=1, num_workers=args.num_workers):
        vid, T_v = vid[0], int(T_v[0])
        out = model(feats.to(device))
        probs, kept, detections = localize_video(out, T_v, args)
        correct += set(kept.tolist()) == set(np.flatnonzero(label[0].numpy()).tolist())
        action = dataset.frame_labels(vid).any(axis=1)[uniform_indices(T_v, args.num_segments)]   # [T]
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
    return {"version": "AICL", "results": results, "external_data": {}}, stats


def plot_detections(out, T_v, detections, class_names, args, vid, gt=()):
    """Figures 1/4 of the paper for one video: class-aware A, class-agnostic A_ca and A_score of the
    detected classes, with the ground truth and the top detections, as OUTPUT_DIR/EXP_NAME/plots/VID.png."""
    curves = {"class-aware A": out["A"][0].cpu().numpy(), "class-agnostic A_ca": out["A_ca"][0].cpu().numpy()}
    for c in dict.fromkeys(int(c) for c in detections[:, 0]):
        curves[f"A_score {class_names[c]}"] = out["A_score"][0, :, c].cpu().numpy()
    seconds = T_v * SNIPPET_FRAMES / args.feature_fps / len(curves["class-aware A"])
    path = os.path.join(args.output_dir, args.exp_name, "plots", f"{vid}.png")
    plot_video(path, curves, seconds, list(gt), [(class_names[int(c)], s, t0, t1) for c, s, t0, t1 in detections],
               title=vid)
    return path


def evaluate(model, dataset, args, device):
    """Predict, then score with the ActivityNet protocol. Returns (metrics, predictions)."""
    predictions, stats = predict(model, dataset, args, device)
    # Classes with no ground truth in the subset do not enter the ActivityNet mAP (the demo data uses
    # 6 of the 20 classes); leave them out here so the evaluator's error is kept for foreign files.
    gt_classes = set(load_ground_truth(dataset.gt, args.test_subset).classes)
    scored = {vid: [d for d in dets if d["label"] in gt_classes] for vid, dets in predictions["results"].items()}
    det = evaluate_detection(dataset.gt, scored, subset=args.test_subset, tiou_thresholds=args.tiou)
    metrics = {"tiou": list(args.tiou), "mAP": [float(m) for m in det["mAP"]],
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


def load_checkpoint(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e})") from None


MODEL_SETTINGS = ("embed_dim", "aware_fusion", "agnostic_fusion", "cas_weight", "topk_ratio", "mine_ratio")


def model_from_checkpoint(args, model_file, device, class_names=None):
    """The model stored in ``model_file`` and its class names.

    Our checkpoints carry the class list and the settings they were trained with; those settings
    replace the defaults (a flag given on the command line still wins). The release's CAS_Only.pkl is
    a bare state_dict: its classes are THUMOS14's when it has 20 of them, else --class_names must name
    them. With ``class_names`` (a dataset's), a checkpoint trained on other classes is refused.
    """
    state = load_checkpoint(model_file)
    if not isinstance(state, dict):
        raise ValueError(f"{model_file}: not a state_dict or an AICL checkpoint")
    ours = isinstance(state.get("model"), dict)
    for key in MODEL_SETTINGS:
        if ours and key in state.get("args", {}) and key not in args.explicit:
            setattr(args, key, state["args"][key])
    saved = state.get("class_names") if ours else None
    if args.class_names:
        saved = read_class_names(args.class_names)
    if class_names is not None and saved is not None and list(saved) != list(class_names):
        raise ValueError(f"{model_file}: trained on {len(saved)} classes ({saved[:3]}...) that differ from the "
                         f"dataset's {len(class_names)} ({list(class_names)[:3]}...)")
    if class_names is None:
        class_names = saved
    if class_names is None:
        cls_weight = None if ours else state.get("actionness_module.cls.0.weight")
        if cls_weight is None or cls_weight.shape[0] != len(THUMOS14_CLASSES):
            raise ValueError(f"{model_file}: the checkpoint carries no class names; give them with --class_names FILE")
        print(f"{model_file} carries no class names: using the THUMOS14 class list (the release's format)")
        class_names = list(THUMOS14_CLASSES)
    model = build_model(args, len(class_names)).to(device)
    load_weights(model, state, source=model_file)
    return model, list(class_names)


def read_class_names(path):
    """One class name per line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: class-name file not found")
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names in it")
    return names


def dataset_class_names(args):
    """The classes of the dataset at --data_path: --class_names FILE, else DATA/classes.txt when it exists
    (a dataset of one's own, as scripts/build_dataset.py writes it), else the --dataset list."""
    path = args.class_names or os.path.join(args.data_path, "classes.txt")
    if not args.class_names and not os.path.isfile(path):
        return load_class_names(args.data_path, args.dataset)
    names = read_class_names(path)
    print(f"class list: the {len(names)} classes of {path}")
    return names


def run_inference(args, device):
    out_dir = os.path.join(args.output_dir, args.exp_name)
    model_file = args.model_file or os.path.join(out_dir, "best.pt")
    if args.predict_dir:
        return predict_folder(args, device, model_file, out_dir)
    class_names = dataset_class_names(args)
    test_set = FeatureDataset(args.data_path, "test", args.num_segments, "uniform", class_names, args.seed)
    model, _ = model_from_checkpoint(args, model_file, device, class_names)
    metrics, predictions = evaluate(model, test_set, args, device)
    write_results(out_dir, metrics, predictions)
    print(f"model {model_file} on {args.data_path} ({len(test_set)} test videos)")
    print(format_table(metrics))
    print(f"predictions and metrics written to {out_dir}/")
    return metrics


@torch.no_grad()
def predict_folder(args, device, model_file, out_dir):
    """Localize actions in videos without ground truth: predictions.json, detections.csv and, with
    --plot, one PNG per video under OUTPUT_DIR/EXP_NAME/."""
    model, class_names = model_from_checkpoint(args, model_file, device)
    model.eval()
    videos = feature_files(args.predict_dir)
    if args.predict_videos:
        missing = sorted(set(args.predict_videos) - set(videos))
        if missing:
            raise FileNotFoundError(f"{args.predict_dir}: no features of video(s) {missing[:3]}")
        videos = {v: videos[v] for v in args.predict_videos}
    snippet_timing(args)
    results, table = {}, io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["video", "label", "start", "end", "score"])
    for vid, read in videos.items():
        feats = read()                                                    # [T_v, 2048]
        x = torch.from_numpy(feats[uniform_indices(len(feats), args.num_segments)])[None].to(device)
        out = model(x)
        _, _, detections = localize_video(out, len(feats), args)
        results[vid] = as_records(detections, class_names)
        rows.writerows([vid, d["label"], f"{d['segment'][0]:.2f}", f"{d['segment'][1]:.2f}", f"{d['score']:.4f}"]
                       for d in results[vid])
        if args.plot:
            plot_detections(out, len(feats), detections, class_names, args, vid)
    save_json({"version": "AICL", "results": results, "external_data": {}}, os.path.join(out_dir, "predictions.json"))
    save_text(table.getvalue(), os.path.join(out_dir, "detections.csv"))
    n_detections = sum(map(len, results.values()))
    print(f"{len(videos)} videos, {n_detections} detections ({len(class_names)} classes) written to "
          f"{out_dir}/predictions.json and detections.csv" + (f", figures in {out_dir}/plots/" if args.plot else ""))
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
    if os.path.isdir(os.path.join(folder, "rgb")):
        vids = sorted(f[:-4] for f in os.listdir(os.path.join(folder, "rgb")) if f.endswith(".npy"))
        videos = {v: (lambda v=v: load_features(folder, v)) for v in vids}
    else:
        vids = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npy"))
        videos = {v: (lambda v=v: load_joint_features(os.path.join(folder, f"{v}.npy"))) for v in vids}
    if not videos:
        raise ValueError(f"{folder}: no feature files (expected rgb/VID.npy + flow/VID.npy, or VID.npy of width 2048)")
    return videos


def train_step(model, optimizer, feats, labels, args):
    """One optimisation step on a batch (feats [B, T, 2048], labels [B, C]). Returns the loss terms as
    floats and the mean number of consistent snippets per video (both branches agree: Fig. 3)."""
    model.train()
    out = model(feats)
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


def train(args, device):
    from torch.utils.tensorboard import SummaryWriter

    out_dir = os.path.join(args.output_dir, args.exp_name)
    class_names = dataset_class_names(args)
    train_set = FeatureDataset(args.data_path, "train", args.num_segments, "random", class_names, args.seed)
    test_set = FeatureDataset(args.data_path, "test", args.num_segments, "uniform", class_names, args.seed)
    model = build_model(args, len(class_names)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    total_steps = steps_per_epoch * args.num_epochs
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    step, best_mAP, best_metrics, consistent = 0, -1.0, None, []   # consistent: [step, snippets] (Fig. 3)
    if args.resume:
        state = load_checkpoint(args.resume)
        load_weights(model, state, source=args.resume)
        optimizer.load_state_dict(state["optimizer"])
        step, best_mAP, best_metrics = state["step"], state["best_mAP"], state["best_metrics"]
        consistent = state["consistent"]
        torch.set_rng_state(state["torch_rng"])
    writer = SummaryWriter(os.path.join(out_dir, "logs"))

    def checkpoint(name):
        save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "best_mAP": best_mAP, "best_metrics": best_metrics, "class_names": class_names,
                    "args": {k: v for k, v in vars(args).items() if k != "explicit"}, "consistent": consistent,
                    "torch_rng": torch.get_rng_state()},
                   os.path.join(out_dir, name))

    print(f"training on {len(train_set)} videos ({steps_per_epoch} steps/epoch, {total_steps} steps) on {device}")
    if step == 0:
        metrics, _ = evaluate(model, test_set, args, device)
        print(f"step 0 (untrained): mAP {metrics['average_mAP'] * 100:.2f}  cls_acc {metrics['cls_acc'] * 100:.1f}")
    bar = tqdm(total=total_steps, initial=step, dynamic_ncols=True)
    with StopRequest() as stop:
        while step < total_steps and not stop.signum:
            epoch = step // steps_per_epoch
            train_set.set_epoch(epoch)
            batches = epoch_batches(len(train_set), args.batch_size, args.seed, epoch)[step % steps_per_epoch:]
            for feats, labels, _, _ in DataLoader(train_set, batch_sampler=batches, num_workers=args.num_workers):
                terms, n_consistent = train_step(model, optimizer, feats.to(device), labels.to(device), args)
                step += 1
                consistent.append([step, n_consistent])
                for k, v in terms.items():
                    writer.add_scalar(f"loss/{k}", v, step)
                writer.add_scalar("mining/consistent_snippets", n_consistent, step)
                bar.update(1)
                bar.set_postfix({k: f"{terms[k]:.3f}" for k in ("total", "L_a", "L_ca", "L_mc", "L_ac", "L_c")})
                if step % args.detection_inf_step == 0 or step == total_steps:
                    metrics, predictions = evaluate(model, test_set, args, device)
                    log_metrics(writer, metrics, step)
                    if metrics["average_mAP"] > best_mAP:
                        best_mAP = metrics["average_mAP"]
                        best_metrics = dict(metrics, step=step)
                        checkpoint("best.pt")
                        write_results(out_dir, best_metrics, predictions)
                    checkpoint("last.pt")
                    save_json(dict(metrics, step=step), os.path.join(out_dir, "last_metrics.json"))
                    plot_consistent(consistent, args, os.path.join(out_dir, "consistent_segments.png"))
                    bar.write(f"step {step}: mAP {metrics['average_mAP'] * 100:.2f}  best {best_mAP * 100:.2f}  "
                              f"cls_acc {metrics['cls_acc'] * 100:.1f}")
                if step == total_steps or stop.signum:
                    break
    bar.close()
    writer.close()
    if stop.signum:
        checkpoint("last.pt")
        print(f"interrupted by {signal.Signals(stop.signum).name} after step {step}; resumable checkpoint "
              f"written: continue with --resume {out_dir}/last.pt", file=sys.stderr)
        raise SystemExit(128 + stop.signum)
    if best_metrics is not None:
        print(f"best checkpoint (by test mAP, as the release selects): {out_dir}/best.pt, "
              f"step {best_metrics['step']}")
        print(format_table(best_metrics))
    return best_metrics


def plot_consistent(consistent, args, path):
    """Fig. 3: consistent snippets per video (both branches agree) over the training steps."""
    steps, counts = zip(*consistent)
    plot_series(path, {"consistent snippets": (list(steps), list(counts))}, "step",
                f"snippets per video (of T = {args.num_segments})", title="Consistent segments during training")


def log_metrics(writer, metrics, step):
    writer.add_scalar("test/average_mAP", metrics["average_mAP"], step)
    writer.add_scalar("test/cls_acc", metrics["cls_acc"], step)
    for t, m in zip(metrics["tiou"], metrics["mAP"]):
        writer.add_scalar(f"test/mAP@{t:g}", m, step)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    if args.inference_only:
        return run_inference(args, device)
    return train(args, device)


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as err:     # bad input: the message names the file and the problem
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

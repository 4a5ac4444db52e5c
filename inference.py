"""Evaluation and prediction: a model's outputs -> detections (post-processing), scored against gt.json
(``evaluate``) or written for videos without ground truth (``predict_folder``).

One place writes what a prediction or an evaluation produces: ``write_results`` (predictions.json,
metrics.json) and ``write_prediction`` (predictions.json, detections.csv of --predict_dir); both add the
results page, report.html, and the curves it draws, curves.npz (``write_page``, eval/report.py).
"""
import csv
import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

import checkpoint
from dataset import SNIPPET_FRAMES, FeatureDataset, collate, load_features, load_joint_features, uniform_indices
from eval import THUMOS_TIOU, evaluate_detection, load_ground_truth, scored_subset
from eval.report import CURVES_FILE, RunInfo, save_curves, write_report
from utils.environment import environment
from utils.io import read_json, save_json, save_text
from utils.plots import plot_video
from utils.proposals import localize, select_classes

REPORT_FILE = "report.html"


def autocast(args, device):
    """The forward pass's precision: bf16 autocast for --precision bf16, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")


@dataclass(frozen=True)
class PostProcess:
    """The settings that turn one video's model outputs into detections (the release's post-processing)."""
    class_th: float
    soft_nms: bool
    nms_thresh: float
    nms_alpha: float
    scale: int
    gamma: float                  # outer-region inflation of the outer-inner score
    class_weight: float
    fps: float                    # --feature_fps: snippets -> seconds
    min_score: float = None
    top_k: int = 0

    @classmethod
    def from_args(cls, args):
        return cls(class_th=args.class_th, soft_nms=args.soft_nms, nms_thresh=args.nms_thresh,
                   nms_alpha=args.nms_alpha, scale=args.scale, gamma=args.gamma, class_weight=args.class_weight,
                   fps=args.feature_fps, min_score=args.min_score, top_k=args.top_k)


HOST_OUTPUTS = ("p", "A_score", "A", "A_ca", "A_bin", "A_ca_bin")      # what post-processing reads


def to_host(out):
    """The outputs that post-processing and the curves read (HOST_OUTPUTS) of one video's forward pass, copied
    to the host in one transfer (one synchronisation per video on a GPU): {name: CPU tensor, same shape}."""
    parts = [out[k] for k in HOST_OUTPUTS]
    flat = torch.cat([v.reshape(-1) for v in parts]).cpu()
    return {k: v.view(part.shape) for k, v, part in zip(HOST_OUTPUTS, flat.split([p.numel() for p in parts]), parts)}


def localize_video(out, T_v, post):
    """Post-processing of one video's model outputs: video scores s [C], kept classes, detections [N, 4]
    (class, score, start s, end s) in the release's order. ``post``: a PostProcess."""
    probs = torch.softmax(out["p"][0], dim=0).cpu().numpy()                 # [C] video scores
    kept = select_classes(probs, post.class_th)
    detections = localize(out["A_score"][0].cpu().numpy(), probs, kept, T_v,
                          soft=post.soft_nms, nms_thresh=post.nms_thresh, alpha=post.nms_alpha,
                          scale=post.scale, score=(post.gamma, post.class_weight),
                          timing=(SNIPPET_FRAMES, post.fps))   # [N, 4]
    if post.min_score is not None:
        detections = detections[detections[:, 1] >= post.min_score]
    if post.top_k:
        detections = detections[np.argsort(-detections[:, 1], kind="stable")[:post.top_k]]
    return probs, kept, detections


def as_records(detections, class_names):
    """[N, 4] detections -> ActivityNet result records."""
    return [{"label": class_names[int(c)], "score": float(s), "segment": [float(t0), float(t1)]}
            for c, s, t0, t1 in detections]


def detection_curves(out, T_v, detections, class_names, post, gt=()):
    """The curves of Figures 1/4 for one video, without drawing: ({name: [T] float32 array}, seconds per
    sample): class-aware A, class-agnostic A_ca, and the A_score of every class that is kept
    (s_c >= class_th), detected or in the ground truth ``gt`` [(label, start, end)], in that order."""
    curves = {"class-aware A": out["A"][0].cpu().numpy(),
              "class-agnostic A_ca": out["A_ca"][0].cpu().numpy()}
    probs = torch.softmax(out["p"][0], dim=0).cpu().numpy()                 # [C] video scores
    index = {name: c for c, name in enumerate(class_names)}
    shown = [*select_classes(probs, post.class_th).tolist(), *(int(c) for c in detections[:, 0]),
             *(index[label] for label, _, _ in gt)]
    for c in dict.fromkeys(shown):
        curves[f"A_score {class_names[c]} (s = {probs[c]:.2f})"] = out["A_score"][0, :, c].cpu().numpy()
    seconds = T_v * SNIPPET_FRAMES / post.fps / len(curves["class-aware A"])
    return curves, seconds


def plot_detections(out, T_v, detections, class_names, args, vid, gt=()):
    """Figures 1/4 of the paper for one video: the curves of ``detection_curves``, each in its own panel,
    with the ground truth and the top detections, as OUTPUT_DIR/EXP_NAME/plots/VID.png."""
    curves, seconds = detection_curves(out, T_v, detections, class_names, PostProcess.from_args(args), gt)
    path = os.path.join(args.output_dir, args.exp_name, "plots", f"{vid}.png")
    plot_video(path, curves, seconds, list(gt), [(class_names[int(c)], s, t0, t1) for c, s, t0, t1 in detections],
               title=vid)
    return path


@torch.no_grad()
def predict(model, dataset, args, device, curves=False):
    """Detections for every video of ``dataset`` (ActivityNet result form) and the classification and
    binary-actionness accuracies (Table 5: A^bin and A_ca^bin against the frame-level ground truth at
    the sampled snippets, snippets timed at --feature_fps). Videos named in --plot_video get a figure.
    With ``curves`` also {vid: detection_curves(...)} as a third value."""
    model.eval()
    post = PostProcess.from_args(args)
    results, shown, correct, hits, snippets = {}, {}, 0, np.zeros(2), 0
    loader = DataLoader(dataset, batch_size=1, num_workers=args.num_workers, collate_fn=collate)
    for feats, label, vid, T_v in loader:
        vid, T_v = vid[0], int(T_v[0])
        with autocast(args, device):
            out = to_host(model(feats.to(device)))
        probs, kept, detections = localize_video(out, T_v, post)
        correct += set(kept.tolist()) == set(np.flatnonzero(label[0].numpy()).tolist())
        action = dataset.frame_labels(vid, post.fps).any(axis=1)[
            uniform_indices(T_v, args.num_segments, dataset.keep_short)]
        for i, key in enumerate(("A_bin", "A_ca_bin")):
            hits[i] += np.sum(out[key][0].cpu().numpy().astype(bool) == action)
        snippets += len(action)
        results[vid] = as_records(detections, dataset.class_names)
        gt = [(dataset.class_names[c], t0, t1) for c, t0, t1 in dataset.annotations[vid]]
        if curves:
            shown[vid] = detection_curves(out, T_v, detections, dataset.class_names, post, gt)
        if vid in args.plot_video:
            plot_detections(out, T_v, detections, dataset.class_names, args, vid, gt=gt)
    n = max(1, len(dataset))
    A_bin_acc, A_ca_bin_acc = (hits / max(1, snippets)).tolist()
    stats = {"cls_acc": correct / n, "A_bin_acc": A_bin_acc, "A_ca_bin_acc": A_ca_bin_acc}
    return (result_file(results), stats, shown) if curves else (result_file(results), stats)


def result_file(results):
    """The ActivityNet result form. "method" as well as "version": SAL's and CoLA's evaluators require
    "method" and "results", the official one "version", "results" and "external_data"."""
    return {"version": "AICL", "method": "AICL", "results": results, "external_data": {}}


@dataclass
class Evaluation:
    """One evaluation: its metrics, its predictions (predictions.json), the ground truth they were scored on
    (a gt.json dict and its subset), every video's curves ({vid: (curves, seconds per sample)}), which
    the results page shows, and the environment it ran in (utils/environment.py), which metrics.json records."""
    metrics: dict
    predictions: dict
    gt: dict
    subset: str
    curves: dict
    environment: dict


def evaluate(model, dataset, args, device):
    """(metrics, predictions) of ``evaluation``."""
    e = evaluation(model, dataset, args, device)
    return e.metrics, e.predictions


def evaluation(model, dataset, args, device, curves=False):
    """Predict, then score with the ActivityNet protocol: an Evaluation, whose metrics["subset"] is the
    gt.json subset scored (SAL's "val" when gt.json names the validation videos so); with ``curves`` also
    every video's curves, for a results page (else none)."""
    predictions, stats, *shown = predict(model, dataset, args, device, curves=curves)
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
    return Evaluation(metrics, predictions, gt, subset, shown[0] if shown else {}, environment(device))


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


def page_settings(args, model_file=None):
    """What the results page shows of a run: the checkpoint, the data and every setting."""
    return {"checkpoint": model_file and os.path.abspath(model_file), "data_path": args.data_path,
            **checkpoint.settings(args)}


def write_page(out_dir, predictions, run, scored=(None, "test"), tiou=THUMOS_TIOU):
    """report.html (eval/report.py) and the curves it draws, curves.npz, next to predictions.json. ``run``: a
    RunInfo; ``scored``: (gt.json dict, subset) of an evaluation, (None, _) for a prediction."""
    save_curves(os.path.join(out_dir, CURVES_FILE), run.curves)
    gt, subset = scored
    write_report(os.path.join(out_dir, REPORT_FILE), predictions, gt=gt, subset=subset, tiou=tiou, run=run)


def page_curves(curves):
    """{vid: (curves, seconds per sample)} of predict -> the curves form of eval/report.py."""
    return {vid: {"seconds_per_sample": seconds, "curves": named} for vid, (named, seconds) in curves.items()}


def write_results(out_dir, metrics, evaluated, settings):
    """An evaluation's files in ``out_dir``: predictions.json, metrics.json (``metrics``: the Evaluation
    ``evaluated``'s, with what the caller adds, and its environment), and its results page with the run's
    ``settings``."""
    save_json(evaluated.predictions, os.path.join(out_dir, "predictions.json"))
    save_json(dict(metrics, environment=evaluated.environment), os.path.join(out_dir, "metrics.json"))
    write_page(out_dir, evaluated.predictions, RunInfo(settings=settings, curves=page_curves(evaluated.curves)),
               (evaluated.gt, evaluated.subset), metrics["tiou"])


def detections_table(results):
    """detections.csv: one row per detection (times in seconds to the millisecond), each video's rows by
    score, best first."""
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["video", "label", "start", "end", "score"])
    for vid, dets in results.items():
        for d in sorted(dets, key=lambda d: -d["score"]):
            rows.writerow([vid, d["label"], f"{d['segment'][0]:.3f}", f"{d['segment'][1]:.3f}", f"{d['score']:.4f}"])
    return table.getvalue()


def write_prediction(out_dir, results, run):
    """A prediction's files in ``out_dir``: predictions.json, detections.csv and its results page (``run``: a
    RunInfo with the settings, curves, durations and source video files)."""
    predictions = result_file(results)
    save_json(predictions, os.path.join(out_dir, "predictions.json"))
    save_text(detections_table(results), os.path.join(out_dir, "detections.csv"))
    write_page(out_dir, predictions, run)


def source_videos(folder, vids):
    """{vid: video file} of the features that ``python -m features`` extracted into ``folder`` (the sources
    its extraction.json records and that still exist), for the results page's player."""
    path = os.path.join(folder, "extraction.json")
    records = read_json(path).get("videos", {}) if os.path.isfile(path) else {}
    sources = {vid: records[vid].get("source") for vid in vids if isinstance(records.get(vid), dict)}
    return {vid: src for vid, src in sources.items() if isinstance(src, str) and os.path.isfile(src)}


def clear_prediction(out_dir, keep=()):
    """Remove the figures of the previous prediction into ``out_dir`` (plots/VID.png of the videos its
    predictions.json lists) that this one did not draw again (``keep``); called once the new prediction is
    complete, just before write_prediction replaces the other files (predictions.json, detections.csv, the
    page), so that the folder holds one prediction and a failed one leaves the previous intact. Other files
    (a user's, the features of scripts/predict.sh) stay. Returns the paths removed."""
    previous = os.path.join(out_dir, "predictions.json")
    try:
        vids = list(read_json(previous).get("results", {})) if os.path.isfile(previous) else []
    except (ValueError, AttributeError):
        vids = []
    paths = [os.path.join(out_dir, "plots", f"{vid}.png") for vid in vids]
    removed = [p for p in paths if os.path.isfile(p) and p not in keep]
    for p in removed:
        os.remove(p)
    plots = os.path.join(out_dir, "plots")
    if os.path.isdir(plots) and not os.listdir(plots):
        os.rmdir(plots)
    return removed


def run_inference(args, device, resolved):
    """Evaluate the checkpoint of ``resolved`` (settings.Resolved: its state and file, --model_file or
    OUTPUT_DIR/EXP_NAME/best.pt, and the class names) on the test split, or localize actions in
    --predict_dir. Returns (metrics or per-video detections, the folder written)."""
    out_dir = os.path.join(args.output_dir, args.exp_name)
    state, model_file, class_names = resolved.state, resolved.model_file, resolved.class_names
    if args.predict_dir and os.path.isfile(os.path.join(out_dir, "last.pt")) and not args.overwrite:
        raise ValueError(f"{out_dir} holds a training run: the detections of {model_file} on {args.predict_dir} "
                         f"would replace its predictions.json; give another --exp_name (or --overwrite)")
    if args.predict_dir:
        model = checkpoint.load_model(state, args, len(class_names), device, model_file)
        return predict_folder(args, device, model, class_names, model_file), out_dir
    test_set = feature_dataset(args, "test", class_names)
    check_plot_videos(args.plot_video, test_set.vids, f"the test split of {args.data_path}")
    model = checkpoint.load_model(state, args, len(class_names), device, model_file)
    evaluated = evaluation(model, test_set, args, device, curves=True)
    metrics = evaluated.metrics
    # A run's own metrics.json / predictions.json (its best step) are never replaced by a later evaluation.
    eval_dir = os.path.join(out_dir, "eval_" + os.path.splitext(os.path.basename(model_file))[0])
    write_results(eval_dir, metrics, evaluated, page_settings(args, model_file))
    print(f"model {model_file} on {args.data_path} ({len(test_set)} test videos, gt.json subset "
          f"{metrics['subset']!r})")
    print(format_table(metrics))
    print(f"predictions, metrics and the results page ({REPORT_FILE}) written to {eval_dir}/")
    return metrics, eval_dir


def check_plot_videos(plot_video, vids, where):
    unknown = sorted(set(plot_video) - set(vids))
    if unknown:
        raise ValueError(f"--plot_video: {', '.join(unknown)} not among the {len(vids)} videos of {where}")


def prediction_videos(args):
    """{video id: loader} of the --predict_dir videos to predict (--predict_videos, default all)."""
    videos = feature_files(args.predict_dir)
    if args.predict_videos:
        missing = sorted(set(args.predict_videos) - set(videos))
        if missing:
            raise FileNotFoundError(f"{args.predict_dir}: no features of video(s) {missing[:3]}")
        videos = {v: videos[v] for v in args.predict_videos}
    check_plot_videos(args.plot_video, videos, args.predict_dir)
    return videos


@torch.no_grad()
def predict_folder(args, device, model, class_names, model_file):
    """Localize actions in videos without ground truth: predictions.json, detections.csv and, with
    --plot (or --plot_video VID), one PNG per video under OUTPUT_DIR/EXP_NAME/; the previous prediction's
    figures there that this one does not replace are removed (clear_prediction)."""
    out_dir = os.path.join(args.output_dir, args.exp_name)
    model.eval()
    videos = prediction_videos(args)
    post = PostProcess.from_args(args)
    results, curves, durations, drawn = {}, {}, {}, set()
    for vid, read in videos.items():
        feats = read()                                                    # [T_v, 2048]
        x = torch.from_numpy(feats[uniform_indices(len(feats), args.num_segments, args.short_videos == "keep")])
        with autocast(args, device):
            out = to_host(model(x[None].to(device)))                      # x: [T or T_v, 2048]
        _, _, detections = localize_video(out, len(feats), post)
        results[vid] = as_records(detections, class_names)
        curves[vid] = detection_curves(out, len(feats), detections, class_names, post)
        durations[vid] = len(feats) * SNIPPET_FRAMES / post.fps
        if args.plot or vid in args.plot_video:
            drawn.add(plot_detections(out, len(feats), detections, class_names, args, vid))
    clear_prediction(out_dir, drawn)
    write_prediction(out_dir, results, RunInfo(settings=page_settings(args, model_file),
                                               curves=page_curves(curves), durations=durations,
                                               media=source_videos(args.predict_dir, videos)))
    n_detections = sum(map(len, results.values()))
    n_detected = len({d["label"] for dets in results.values() for d in dets})
    print(f"{len(videos)} videos, {n_detections} detections of {n_detected} classes (of the checkpoint's "
          f"{len(class_names)}) written to {out_dir}/predictions.json, detections.csv and {REPORT_FILE}"
          + (f", figures in {out_dir}/plots/" if args.plot or args.plot_video else ""))
    return results


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
    if sampling == "uniform" and args.short_videos == "keep":
        sampling = "uniform_keep_short"
    ds = FeatureDataset(args.data_path, split, args.num_segments, sampling, class_names, args.seed, only=only,
                        cache=args.feature_cache)
    where = "in memory" if ds.cache == "memory" else "memory-mapped, read when sampled"
    print(f"{split} features: {len(ds)} videos, {ds.feature_bytes / 2 ** 30:.2f} GiB as float32, {where} "
          f"({ds.cache_reason})")
    return ds

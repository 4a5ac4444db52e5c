"""AICL training and inference driver (THUMOS14 recipe of the authors' release).

    python main.py --data_path data/THUMOS14 --exp_name aicl --soft_nms            # train
    python main.py --data_path data/THUMOS14 --inference_only --soft_nms --model_file CKPT    # evaluate

Every number of the recipe is an argparse default below; flag names follow the release. A setting comes
from, in this order: its flag, the features' extraction.json (the frame rate), the checkpoint (--model_file,
--resume), the --dataset defaults, the default below (settings.py). Evaluation and prediction: inference.py;
the run's folder and logs: runs.py.
"""
import argparse
import math
import os
import signal
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import checkpoint
from checkpoint import build_model
from dataset import CLASS_COUNTS, FEATURE_FPS, collate, read_split
from eval import THUMOS_TIOU
from inference import (autocast, check_plot_videos, evaluate, evaluation, feature_dataset, format_table,
                       page_settings, run_inference, write_results)
from losses import RELEASE_WEIGHTS, total_loss
from runs import (claim_output_dir, log_evaluation, log_line, log_metrics, log_warning, output_dir_lock,
                  plot_consistent, read_log)
from settings import resolve
from utils.cli import run as run_cli
from utils.device import numerics_flags_restored, resolve_device, set_tf32
from utils.environment import environment, moved
from utils.io import save_json


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
                        "(the extraction.json of the features read wins when present: DATA/features/{train,test}/ "
                        "or --predict_dir DIR; see settings.py for the order of precedence)")
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
    PyTorch's defaults (on in cuDNN convolutions, off in matmuls) unless strict_fp32 turns it off in both (by
    the installed torch's own API: utils.device.set_tf32)."""
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    set_tf32(conv=not strict_fp32, matmul=False)


def build_optimizer(args, model):
    """The release's Adam. fused=True runs each update as one kernel per parameter (CPU and CUDA):
    the same update as the per-tensor loop to float32 rounding, a twelfth of its time on 2 CPU cores."""
    return torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=args.weight_decay,
                            fused=True)


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
    consistent = ((out["A_bin"] + out["A_ca_bin"]) != 1).sum(dim=1).float().mean()
    *values, consistent = torch.stack([*terms.values(), consistent]).tolist()   # one host sync per step
    return dict(zip(terms, values)), consistent


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


@dataclass
class Progress:
    """Where a training run stands; last.pt keeps what --resume needs to continue from here."""
    step: int = 0
    best_mAP: float = -1.0
    best_metrics: dict = None
    consistent: list = field(default_factory=list)   # [step, consistent snippets per video] (Fig. 3)
    best_file: str = None                            # where the best checkpoint so far lives
    history: list = field(default_factory=list)      # log.csv rows so far
    window: list = field(default_factory=list)       # loss terms since the last evaluation

    @classmethod
    def resumed(cls, state, resume):
        """The progress that --resume's last.pt (``state``, read from ``resume``) saved, with its log."""
        folder = os.path.dirname(resume)
        best_file = os.path.join(folder, "best.pt")
        best_file = best_file if state["best_metrics"] is not None and os.path.isfile(best_file) else None
        return cls(step=state["step"], best_mAP=state["best_mAP"], best_metrics=state["best_metrics"],
                   consistent=state["consistent"], best_file=best_file, history=read_log(folder, state["step"]))


@dataclass
class Training:
    """A training run: its settings, folder, data, model, optimizer and progress."""
    args: object
    out_dir: str
    class_names: list
    train_set: object
    select_set: object                               # where best.pt is selected: test, or held-out videos
    test_set: object
    model: object
    optimizer: object
    progress: Progress

    @property
    def select_name(self):
        return "test" if self.select_set is self.test_set else "val"

    @property
    def steps_per_epoch(self):
        return math.ceil(len(self.train_set) / self.args.batch_size)

    @property
    def total_steps(self):
        args = self.args
        total = self.steps_per_epoch * args.num_epochs if args.num_epochs else args.max_steps
        return min(total, args.max_steps) if args.max_steps else total


def start_training(args, device, class_names, resumed=None):
    """Claim the run's folder and set up its data, model, optimizer and progress (``resumed``: the --resume
    checkpoint, whose optimizer, RNG state and progress come back)."""
    out_dir = os.path.join(args.output_dir, args.exp_name)
    if resumed is None or os.path.abspath(out_dir) != os.path.dirname(os.path.abspath(args.resume)):
        claim_output_dir(out_dir, args.overwrite)
    train_ids, held_out = held_out_videos(args)
    train_set = feature_dataset(args, "train", class_names, only=train_ids)
    warn_long_segments(args.num_segments, train_set.lengths.values(), out_dir)
    test_set = select_set = feature_dataset(args, "test", class_names)
    if held_out:
        select_set = feature_dataset(args, "train", class_names, sampling="uniform", only=held_out)
    check_plot_videos(args.plot_video, test_set.vids, f"the test split of {args.data_path}")
    if resumed is None:
        model = build_model(args, len(class_names)).to(device)
    else:                                             # the RNG state comes back with the checkpoint below
        model = checkpoint.load_model(resumed, args, len(class_names), device, args.resume)
    optimizer = build_optimizer(args, model)
    progress = Progress()
    if resumed is not None:
        note = moved(resumed.get("environment"), environment(device))
        if note:
            log_line(out_dir, f"note: {note}; the resumed run's numbers may differ in the last bits")
        optimizer.load_state_dict(resumed["optimizer"])
        progress = Progress.resumed(resumed, args.resume)
        torch.set_rng_state(resumed["torch_rng"])
    return Training(args, out_dir, class_names, train_set, select_set, test_set, model, optimizer, progress)


def warn_long_segments(num_segments, lengths, out_dir):
    """Warn when T is over twice the longest training video: training then samples each snippet many times."""
    lengths = list(lengths)
    if lengths and num_segments > 2 * max(lengths):
        log_warning(out_dir, f"warning: --num_segments {num_segments} is over twice the longest training video "
                             f"({max(lengths)} snippets), so each snippet is sampled many times; consider "
                             f"--num_segments near the median length, {int(np.median(lengths))}")


def save_checkpoint(run, name, resumable=False):
    """best.pt: what inference needs; last.pt (``resumable``) also what resuming needs (the optimizer's state)."""
    p = run.progress
    state = dict(optimizer=run.optimizer, best_mAP=p.best_mAP, consistent=p.consistent,
                 torch_rng=torch.get_rng_state()) if resumable else {}
    checkpoint.save(os.path.join(run.out_dir, name), run.model, run.args, run.class_names, step=p.step,
                    best_metrics=p.best_metrics, environment=environment(next(run.model.parameters()).device),
                    **state)


def evaluation_step(run, writer, device):
    """Evaluate on the selection set, log, keep best.pt (and, selecting on test, its results), save last.pt."""
    p, name = run.progress, run.select_name
    evaluated = evaluation(run.model, run.select_set, run.args, device, curves=name == "test")   # for a page
    metrics = evaluated.metrics
    log_metrics(writer, metrics, p.step, name)
    log_evaluation(run.out_dir, p.history, p.step, metrics, p.window)
    p.window = []
    if metrics["average_mAP"] > p.best_mAP:
        p.best_mAP = metrics["average_mAP"]
        p.best_metrics = dict(metrics, step=p.step, selected_on=name)
        save_checkpoint(run, "best.pt")
        p.best_file = os.path.join(run.out_dir, "best.pt")
        if name == "test":
            write_results(run.out_dir, p.best_metrics, evaluated, page_settings(run.args, p.best_file))
    save_checkpoint(run, "last.pt", resumable=True)
    save_json(dict(metrics, step=p.step, split=name), os.path.join(run.out_dir, "last_metrics.json"))
    plot_consistent(p.consistent, run.args, os.path.join(run.out_dir, "consistent_segments.png"))
    log_line(run.out_dir, f"step {p.step}: {name} mAP {metrics['average_mAP'] * 100:.2f}  "
                          f"best {p.best_mAP * 100:.2f}  cls_acc {metrics['cls_acc'] * 100:.1f}  "
                          f"loss {p.history[-1]['total']:.4f}")


def training_steps(run, device, writer, bar, stop):
    """Step until the last step or a stop request, evaluating every --detection_inf_step steps."""
    args, p, total = run.args, run.progress, run.total_steps
    while p.step < total and not stop.signum:
        epoch = p.step // run.steps_per_epoch
        run.train_set.set_epoch(epoch)
        batches = epoch_batches(len(run.train_set), args.batch_size, args.seed, epoch)[p.step % run.steps_per_epoch:]
        for feats, labels, _, _ in DataLoader(run.train_set, batch_sampler=batches, num_workers=args.num_workers,
                                               collate_fn=collate, pin_memory=device.type == "cuda"):
            feats, labels = feats.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            terms, n_consistent = train_step(run.model, run.optimizer, feats, labels, args)
            p.step += 1
            p.window.append(terms)
            p.consistent.append([p.step, n_consistent])
            for k, v in terms.items():
                writer.add_scalar(f"loss/{k}", v, p.step)
            writer.add_scalar("mining/consistent_snippets", n_consistent, p.step)
            bar.update(1)
            bar.set_postfix({k: f"{terms[k]:.3f}" for k in ("total", "L_a", "L_ca", "L_mc", "L_ac", "L_c")})
            if p.step % args.detection_inf_step == 0 or p.step == total:
                evaluation_step(run, writer, device)
            if p.step == total or stop.signum:
                break


def train(args, device, class_names, resumed=None):
    """Train, evaluating every --detection_inf_step steps on the selection set (test, as the release does,
    or training videos held out by --val_split/--val_fraction); ``resumed`` is the --resume checkpoint.
    Returns the metrics of best.pt (None when no evaluation ran)."""
    from torch.utils.tensorboard import SummaryWriter

    run = start_training(args, device, class_names, resumed)
    p, held_out = run.progress, run.select_name == "val"
    log_line(run.out_dir, f"training on {len(run.train_set)} videos ({run.steps_per_epoch} steps/epoch, "
                          f"{run.total_steps} steps) on {device}; " +
             (f"best.pt selected on {len(run.select_set)} held-out training videos, test scored once at the end"
              if held_out else "best.pt selected by test mAP (the release's recipe)"))
    if p.step == 0:
        metrics, _ = evaluate(run.model, run.select_set, args, device)
        log_evaluation(run.out_dir, p.history, p.step, metrics, p.window)
        log_line(run.out_dir, f"step 0 (untrained): {run.select_name} mAP {metrics['average_mAP'] * 100:.2f}  "
                              f"cls_acc {metrics['cls_acc'] * 100:.1f}")
    # a resumed run drops later events; the bar is for a terminal only (off when piped)
    writer = SummaryWriter(os.path.join(run.out_dir, "logs"), purge_step=p.step or None)
    bar = tqdm(total=run.total_steps, initial=p.step, dynamic_ncols=True, disable=None)
    with StopRequest() as stop:
        training_steps(run, device, writer, bar, stop)
    bar.close()
    writer.close()
    if stop.signum:
        save_checkpoint(run, "last.pt", resumable=True)
        print(f"interrupted by {signal.Signals(stop.signum).name} after step {p.step}; resumable checkpoint "
              f"written: continue with --resume {run.out_dir}/last.pt", file=sys.stderr)
        raise SystemExit(128 + stop.signum)
    return finish_training(run, device)


def finish_training(run, device):
    """The metrics of best.pt: on test as selected, or (held-out selection) scored once on test now."""
    p = run.progress
    if p.best_file is None:
        return p.best_metrics
    if run.select_name == "val":
        best_metrics = test_best(p.best_file, run.args, run.test_set, device, run.out_dir)
        print(f"best checkpoint (by validation mAP on {len(run.select_set)} held-out training videos): "
              f"{p.best_file}, step {best_metrics['step']}; test, scored once:")
    else:
        best_metrics = p.best_metrics
        print(f"best checkpoint (by test mAP, as the release selects): {p.best_file}, step {best_metrics['step']}")
    print(format_table(best_metrics))
    return best_metrics


def test_best(best_file, args, test_set, device, out_dir):
    """Score the checkpoint selected on validation data on the test split, once: metrics.json and
    predictions.json hold these test numbers (with the validation mAP that chose it)."""
    state = checkpoint.load(best_file)
    model = checkpoint.load_model(state, args, len(test_set.class_names), device, best_file)
    evaluated = evaluation(model, test_set, args, device, curves=True)
    metrics = dict(evaluated.metrics, step=state["step"], selected_on="val",
                   val_average_mAP=state["best_metrics"]["average_mAP"])
    write_results(out_dir, metrics, evaluated, page_settings(args, best_file))
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


class Result(dict):
    """What ``main`` returns: a dict, as before (training: the metrics of best.pt, {} when no evaluation ran;
    evaluation: its metrics; --predict_dir: the detections per video), and ``out_dir``, the folder the
    command wrote into (scripts/tables.py and seeds.py read last_metrics.json there)."""

    def __init__(self, value, out_dir):
        super().__init__(value or {})
        self.out_dir = out_dir


@numerics_flags_restored()                            # main() is also called in-process (tests, seeds.py)
def main(argv=None):
    args = parse_args(argv)
    set_gpu_numerics(args.strict_fp32)                # before anything is read (again below: a resumed run's)
    run = resolve(args)                               # the run's settings, from here on read-only
    args = run.args
    torch.manual_seed(args.seed)
    set_gpu_numerics(args.strict_fp32)
    device = resolve_device(args.device)
    if args.inference_only:
        return Result(*run_inference(args, device, run))
    out_dir = os.path.join(args.output_dir, args.exp_name)
    with output_dir_lock(out_dir):
        return Result(train(args, device, run.class_names, run.state if args.resume else None), out_dir)


def cli(argv=None):
    """main() for the command line (utils.cli.run). Once training runs, StopRequest saves last.pt on Ctrl-C;
    an interrupt reaching here came before the first training step."""
    return run_cli(main, argv, interrupted="interrupted (Ctrl-C) before the first training step; nothing to resume")


if __name__ == "__main__":
    cli()

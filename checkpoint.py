"""Checkpoints: saving, loading (ours and the release's CAS_Only.pkl), and the settings they carry.

Our checkpoints are dicts: "model" (state_dict), "class_names", "args" (every setting of the run), "step",
"best_metrics", "environment" (what it was made with: utils/environment.py; recorded, never required); last.pt
adds what resuming needs ("optimizer", "torch_rng", "consistent", "best_mAP").
The release's CAS_Only.pkl is a bare state_dict: it carries no settings and no class names.

One rule restores settings (``restore``): every setting in CARRIED is taken from the checkpoint unless
it was given on the command line (``args.explicit``). Resuming (``restore_run``) restores every setting
of the run and refuses a differing flag, except the RESUME_FREE ones. Both return what they take and
change nothing; settings.resolve applies it. This module knows files, not argparse: ``args`` is any
namespace.
"""
import os

import torch

from dataset import THUMOS14_CLASSES
from model import AICL, load_weights
from utils.io import read_lines, save_torch

MODEL_SETTINGS = ("embed_dim", "aware_fusion", "agnostic_fusion", "cas_weight", "topk_ratio", "mine_ratio")
# Settings that change the model or its outputs: they travel with a checkpoint to inference, prediction and
# resume. A new flag of that kind (a class weight, a precision, ...) is added here and nowhere else.
CARRIED = MODEL_SETTINGS + ("dataset", "num_segments", "test_subset", "class_th", "tiou", "soft_nms", "nms_thresh",
                            "nms_alpha", "gamma", "class_weight", "scale", "feature_fps", "short_videos")
# The release's CAS_Only.pkl carries no settings; its authors' test script ran it with these.
RELEASE_SETTINGS = {"soft_nms": True}
# Flags that --resume accepts with a value other than the stored one (logged): how long and where a run goes.
RESUME_FREE = ("max_steps", "num_epochs", "detection_inf_step", "device", "num_workers", "output_dir", "exp_name")
NOT_STORED = ("explicit", "resume", "overwrite")   # what this command asks, not what the run is


def settings(args):
    """The settings of a run as stored in a checkpoint's "args"."""
    return {k: v for k, v in vars(args).items() if k not in NOT_STORED}


def save(path, model, args, class_names, optimizer=None, **state):
    """Write a checkpoint atomically: weights, class names, settings and ``state`` (step, metrics, ...);
    the optimizer's state only when given (last.pt: it is twice the size of the weights)."""
    ckpt = {"model": model.state_dict(), "class_names": list(class_names), "args": settings(args), **state}
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    save_torch(ckpt, path)


def load(path):
    """The content of a checkpoint file (ours or a bare state_dict); errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__   # torch's run over lines
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state_dict or an AICL checkpoint")
    return state


def is_ours(state):
    return isinstance(state.get("model"), dict)


def restore(args, state, source):
    """The CARRIED settings that the checkpoint brings (the release's format: RELEASE_SETTINGS), less those
    given on the command line (``args.explicit``): {name: value}. ``args`` is left as it is."""
    stored = state.get("args", {}) if is_ours(state) else RELEASE_SETTINGS
    return {k: stored[k] for k in CARRIED if k in stored and k not in args.explicit}


def restore_run(args, state, source):
    """--resume: every stored setting of the run comes back. Returns ({name: stored value} of the settings
    not given now, ["--flag now (was stored)"] of the RESUME_FREE flags given with another value); a
    flag given now with another value is an error naming it, except RESUME_FREE ones. ``args`` is left as
    it is."""
    if not is_ours(state) or "optimizer" not in state:
        raise ValueError(f"{source}: not a resumable checkpoint (resume from a run's last.pt)")
    taken, changed = {}, []
    for k, v in state.get("args", {}).items():
        if k in NOT_STORED or not hasattr(args, k):
            continue
        now = getattr(args, k)
        if k not in args.explicit:
            taken[k] = v
        elif now != v and k in RESUME_FREE:
            changed.append(f"--{k} {format_value(now)} (was {format_value(v)})")
        elif now != v:
            raise ValueError(f"{source}: --{k} {format_value(now)} differs from the run's {format_value(v)}; "
                             f"a resumed run keeps its settings (drop the flag, or start a new run)")
    return taken, changed


def format_value(v):
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(map(format_value, v))
    return str(v)


def read_class_names(path):
    """One class name per line, each once."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: class-name file not found")
    names = read_lines(path)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{path}: expected distinct class names, one per line")
    return names


def class_names_of(state, source, names_file=None, expected=None):
    """The class list of a checkpoint: its own (ours), ``names_file``'s, or for a bare state_dict of 20
    classes THUMOS14's (said so). With ``expected`` (a dataset's list), a checkpoint trained on other
    classes is refused."""
    saved = state.get("class_names") if is_ours(state) else None
    if names_file:
        saved = read_class_names(names_file)
    if expected is not None and saved is not None and list(saved) != list(expected):
        raise ValueError(f"{source}: trained on {len(saved)} classes ({saved[:3]}...) that differ from the "
                         f"dataset's {len(expected)} ({list(expected)[:3]}...)")
    if expected is not None:
        return list(expected)
    if saved is not None:
        return list(saved)
    cls_weight = None if is_ours(state) else state.get("actionness_module.cls.0.weight")
    if cls_weight is None or cls_weight.shape[0] != len(THUMOS14_CLASSES):
        raise ValueError(f"{source}: the checkpoint carries no class names; give them with --class_names FILE")
    print(f"{source} carries no class names: using the THUMOS14 class list (the release's format)")
    return list(THUMOS14_CLASSES)


def build_model(args, num_classes):
    return AICL(num_classes, embed_dim=args.embed_dim, gamma=args.cas_weight, topk_ratio=args.topk_ratio,
                mine_ratio=args.mine_ratio, aware_fusion=args.aware_fusion, agnostic_fusion=args.agnostic_fusion)


def load_model(state, args, num_classes, device, source):
    """The model of ``state`` (built with the settings in ``args``) on ``device``; a checkpoint that does
    not fit is an error naming ``source`` and the parameters."""
    model = build_model(args, num_classes).to(device)
    load_weights(model, state, source=source)
    return model

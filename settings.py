"""A run's settings, resolved once (``resolve``) from the command line, the dataset's files and a checkpoint.

Precedence, highest first:
  1. a flag given on the command line (``args.explicit``);
  2. the frame rate of the features the command reads (feature_fps only): the extraction.json that
     ``python -m features`` / scripts/build_dataset.py write, of --predict_dir, else of DATA/features/test/
     (evaluation) or of DATA/features/{train,test}/ (training; the two must agree). A --feature_fps given
     against it wins, with a printed note;
  3. the checkpoint's settings: with --inference_only the CARRIED settings of --model_file (the release's
     CAS_Only.pkl: RELEASE_SETTINGS); with --resume every stored setting of the run (and 2. is not read:
     the run's settings were resolved from those files when it started);
  4. the --dataset defaults (main.DATASET_DEFAULTS, applied by main.parse_args);
  5. argparse's defaults.
Class names: --class_names FILE; else, training and evaluation: DATA/classes.txt, else the --dataset list
(a checkpoint trained on other classes is refused); --predict_dir: the checkpoint's own (a bare 20-class
state_dict: THUMOS14's). One printed line says what came from where; the settings returned are read-only.
"""
import argparse
import os
from dataclasses import dataclass

import checkpoint
from dataset import SNIPPET_FRAMES, load_class_names
from utils.io import read_json


class Settings(argparse.Namespace):
    """A run's resolved settings: read-only, so that nothing after ``resolve`` changes one."""

    def __init__(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"settings are resolved once (settings.resolve); {name} cannot be set afterwards")

    def __delattr__(self, name):
        raise AttributeError(f"settings are resolved once (settings.resolve); {name} cannot be removed")


@dataclass
class Resolved:
    """What ``resolve`` returns: the settings, the class list, and the checkpoint read (--model_file or
    --resume: its content and path; None without one)."""
    args: Settings
    class_names: list
    state: dict = None
    model_file: str = None


def resolve(args):
    """The run's settings from parsed ``args`` (main.parse_args), the dataset's files and the checkpoint,
    in the precedence of this module's docstring; prints one line saying what came from where."""
    values, parts, state, model_file = dict(vars(args)), [], None, None
    if args.resume:
        state, model_file = checkpoint.load(args.resume), args.resume
        taken, changed = checkpoint.restore_run(args, state, model_file)
        parts.append(f"resuming {model_file} (step {state.get('step')}) with the run's settings"
                     + (", changed: " + ", ".join(changed) if changed else ""))
    elif args.inference_only:
        model_file = args.model_file or os.path.join(args.output_dir, args.exp_name, "best.pt")
        state = checkpoint.load(model_file)
        taken = checkpoint.restore(args, state, model_file)
        if taken:
            what = "settings from" if checkpoint.is_ours(state) else "the release's settings for"
            parts.append(f"{what} {model_file} (a flag given on the command line wins): "
                         + ", ".join(f"{k}={checkpoint.format_value(v)}" for k, v in taken.items()))
    else:
        taken = {}
    values.update(taken)
    if not args.resume:
        timing, said = feature_timing(values, args.explicit)
        values.update(timing)
        parts += [said] if said else []
    class_names, said = resolve_class_names(values, state, model_file)
    parts += [said] if said else []
    if parts:
        print("; ".join(parts))
    return Resolved(Settings(**values), class_names, state, model_file)


def extraction_files(values):
    """The extraction.json files that describe the features the command reads."""
    if values["predict_dir"]:
        return [os.path.join(values["predict_dir"], "extraction.json")]
    splits = ("test",) if values["inference_only"] else ("train", "test")
    return [os.path.join(values["data_path"], "features", split, "extraction.json") for split in splits]


def extraction_fps(path):
    """The frame rate of features extracted by ``python -m features`` (16-frame snippets required)."""
    saved = read_json(path)
    stored = saved.get("settings") if isinstance(saved, dict) else None
    stored = stored if isinstance(stored, dict) else {}
    if stored.get("snippet_frames") != SNIPPET_FRAMES or not isinstance(stored.get("fps"), (int, float)):
        raise ValueError(f"{path}: expected settings with fps and snippet_frames {SNIPPET_FRAMES}, "
                         f"found {stored.get('fps')!r} and {stored.get('snippet_frames')!r}")
    return stored["fps"]


def feature_timing(values, explicit):
    """({"feature_fps": the features' frame rate} or {}, what to print or None) from the extraction.json of
    the features read; train and test features of different rates are refused."""
    found = {path: extraction_fps(path) for path in extraction_files(values) if os.path.isfile(path)}
    if not found:
        return {}, None
    where, rates = " and ".join(found), sorted(set(found.values()))
    if "feature_fps" in explicit:                       # the flag wins, also over splits that disagree
        given = values["feature_fps"]
        said = "/".join(f"{fps:g}" for fps in rates)
        return {}, None if rates == [given] else f"--feature_fps {given:g} given: {where} says {said} fps (not used)"
    if len(rates) > 1:
        (a, fa), (b, fb) = found.items()
        raise ValueError(f"{a} says {fa:g} fps but {b} says {fb:g} fps: the train and test features of one dataset "
                         f"must share one frame rate (re-extract one split, or give --feature_fps)")
    fps = rates[0]
    return {"feature_fps": fps}, f"snippet timing from {where}: {SNIPPET_FRAMES} frames at {fps:g} fps"


def dataset_class_names(values):
    """(The classes of the dataset at data_path, where they came from or None): --class_names FILE, else
    DATA/classes.txt when it exists (a dataset of one's own, as scripts/build_dataset.py writes it), else
    the --dataset list."""
    path = values["class_names"] or os.path.join(values["data_path"], "classes.txt")
    if not values["class_names"] and not os.path.isfile(path):
        return load_class_names(values["data_path"], values["dataset"]), None
    names = checkpoint.read_class_names(path)
    return names, f"class list: the {len(names)} classes of {path}"


def resolve_class_names(values, state, model_file):
    """(The run's class list, where it came from or None); see this module's docstring."""
    if values["predict_dir"]:
        return checkpoint.class_names_of(state, model_file, values["class_names"]), None
    names, said = dataset_class_names(values)
    if values["inference_only"]:
        names = checkpoint.class_names_of(state, model_file, values["class_names"], names)
    return names, said

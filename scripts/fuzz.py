"""Seeded fuzzing of every input format: each format's loader reads a valid generated file mutated from a seed
(truncated, bytes flipped, a span deleted, inserted or repeated, a number or line changed, emptied, replaced by
another format's bytes) and the outcome is sorted:

- unchanged: the result equals the unmutated file's (the mutation did not matter);
- refused: one line naming the file (an error of the command line's bad-input kinds, FFmpeg's VideoError, or a
  partial file set aside to be recomputed);
- changed: another result without a word: the mutation made another valid file (a digit of a number, a name)
  or the loader missed damage; for binary formats (.npy, .npz, .pt, video) a structural mutation (truncated,
  span deleted or inserted) that loads as another result counts as silent (goal 0);
- traceback: any other exception (goal 0), or a refusal that does not name the file or spans several lines.

    python3 scripts/fuzz.py [--per-format 60] [--seed 0] [--formats gt split ...]
"""
import argparse
import json
import os
import sys
import tempfile
import warnings

import numpy as np

import _repo  # noqa: F401  (the repository root on sys.path)

STRUCTURAL = ("truncate", "delete", "insert", "empty", "other")
BINARY = ("features", "joint", "partial", "checkpoint", "video")


def mutate(data, rng, text):
    """(name, mutated bytes) of ``data``."""
    kinds = ["truncate", "flip", "delete", "insert", "repeat", "empty", "other"] + (["number", "line"] if text else [])
    kind = str(rng.choice(kinds))
    n = len(data)
    i, j = sorted(int(x) for x in rng.integers(0, max(n, 1), 2))
    if kind == "truncate":
        return kind, data[:i]
    if kind == "flip":
        b = bytearray(data)
        b[i] ^= int(rng.integers(1, 256))
        return kind, bytes(b)
    if kind == "delete":
        return kind, data[:i] + data[j + 1:]
    if kind == "insert":
        return kind, data[:i] + rng.bytes(int(rng.integers(1, 16))) + data[i:]
    if kind == "repeat":
        return kind, data[:j] + data[i:j] + data[j:]
    if kind == "empty":
        return kind, b""
    if kind == "other":
        return kind, b'{"a": [1, 2]}' if not text else b"\x93NUMPY\x01\x00" + rng.bytes(40)
    if kind == "number":
        digits = [k for k, c in enumerate(data) if chr(c).isdigit()]
        if not digits:
            return "flip", data
        k = int(rng.choice(digits))
        return kind, data[:k] + str(rng.choice(["-1", "1e999", "NaN", "\"x\"", "null", "[]"])).encode() + data[k + 1:]
    lines = data.split(b"\n")
    k = int(rng.integers(0, len(lines)))
    lines[k:k + 1] = [] if rng.random() < 0.5 else [lines[k], lines[k]]
    return kind, b"\n".join(lines)


def same(a, b):
    """Whether two loader results are equal (arrays bit for bit, NaN equal to NaN)."""
    import pandas as pd
    import torch
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype and \
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b)
    return type(a) is type(b) and a == b


class Formats:
    """One valid file per format in ``folder``, and each format's loader: {name: (path, load(path), text)}."""

    def __init__(self, folder):
        import torch
        from checkpoint import build_model, save
        from dataset import make_synthetic_dataset
        from features.storage import Layout
        from utils.io import save_json, save_text
        data = make_synthetic_dataset(os.path.join(folder, "data"), num_train=2, num_test=2, num_classes=3,
                                      length=(6, 8), seed=0)
        vid = open(os.path.join(data, "split_test.txt")).read().split()[0]
        feature = os.path.join(data, "features", "test", "rgb", f"{vid}.npy")
        joint = os.path.join(folder, "joint.npy")
        np.save(joint, np.concatenate([np.load(feature)] * 2, axis=1))
        save_text("a\nb\nc\n", os.path.join(folder, "classes.txt"))
        save_text("video,subset,label,start,end\nv1,train,a,0.5,2\nv2,test,b,1,3.25\n",
                  os.path.join(folder, "annotations.csv"))
        save_json({"settings": {"fps": 25, "snippet_frames": 16}, "videos": {}},
                  os.path.join(folder, "extraction.json"))
        self.layout = Layout(os.path.join(folder, "features"))
        self.layout.save_partial("v", "key", np.ones((3, 1024), np.float32), np.zeros((3, 1024), np.float32))
        from main import parse_args
        args = parse_args(["--embed_dim", "8"])
        torch.manual_seed(0)
        save(os.path.join(folder, "ckpt.pt"), build_model(args, 3), args, ["a", "b", "c"], step=1)
        gt = os.path.join(data, "gt.json")
        db = json.load(open(gt))["database"]
        preds = {"results": {v: [{"label": a["label"], "score": 0.5, "segment": a["segment"]}
                                 for a in e["annotations"]] for v, e in db.items() if e["subset"] == "test"}}
        save_json(preds, os.path.join(folder, "predictions.json"))
        self.gt = gt
        self.files = {
            "gt": (gt, self.read_gt, True),
            "split": (os.path.join(data, "split_test.txt"), self.read_split, True),
            "classes": (os.path.join(folder, "classes.txt"), self.read_classes, True),
            "features": (feature, self.read_features, False),
            "joint": (joint, self.read_joint, False),
            "annotations": (os.path.join(folder, "annotations.csv"), self.read_csv, True),
            "extraction": (os.path.join(folder, "extraction.json"), self.read_extraction, True),
            "partial": (self.layout.partial("v"), self.read_partial, False),
            "checkpoint": (os.path.join(folder, "ckpt.pt"), self.read_checkpoint, False),
            "predictions": (os.path.join(folder, "predictions.json"), self.read_predictions, True),
        }
        video = self.make_video(folder)
        if video:
            self.files["video"] = (video, self.read_video, False)

    @staticmethod
    def make_video(folder):
        try:
            sys.path.insert(0, os.path.join(_repo.ROOT, "tests"))
            from videos import moving_frames, write_video
        except ImportError:                           # PyAV missing: no video format
            return None
        return os.fspath(write_video(os.path.join(folder, "v.mp4"), moving_frames(20, w=64, h=48, dx=1)))

    @staticmethod
    def read_gt(path):
        from dataset import read_database
        from eval.detection import load_ground_truth
        gt, database = read_database(path)
        truth = load_ground_truth(gt, "test")
        return database, truth.video_ids, truth.classes, truth.label, truth.segment

    @staticmethod
    def read_split(path):
        from dataset import read_split
        return read_split(path)

    @staticmethod
    def read_classes(path):
        from checkpoint import read_class_names
        return read_class_names(path)

    @staticmethod
    def read_features(path):
        from dataset import STREAM_DIM, read_feature_file
        return read_feature_file(path, STREAM_DIM)

    @staticmethod
    def read_joint(path):
        from dataset import load_joint_features
        return load_joint_features(path)

    @staticmethod
    def read_csv(path):
        sys.path.insert(0, os.path.join(_repo.ROOT, "scripts"))
        from build_dataset import read_annotations
        return read_annotations(path, ("train", "test"))

    @staticmethod
    def read_extraction(path):
        from settings import extraction_fps
        return extraction_fps(path)

    def read_partial(self, path):
        return self.layout.load_partial("v", "key")

    @staticmethod
    def read_checkpoint(path):
        from checkpoint import class_names_of, load
        state = load(path)
        return state["model"] if isinstance(state.get("model"), dict) else state, class_names_of(state, path)

    def read_predictions(self, path):
        from eval import evaluate_files
        return evaluate_files(self.gt, path)

    @staticmethod
    def read_video(path):
        from features.video import probe
        return probe(path)


def outcome(load, path, want, kind, binary):
    """'unchanged', 'refused', 'changed', 'silent' or 'traceback' (with the error) of one mutated file."""
    from features.video import VideoError
    from utils.cli import BAD_INPUT, error_line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = load(path)
    except (*BAD_INPUT, OSError, VideoError) as err:
        line = error_line(err)
        if os.path.basename(path) in line and "\n" not in line:
            return "refused", None
        return "traceback", f"{type(err).__name__}: {line[:200]}"
    except Exception as err:                          # noqa: BLE001  (what the fuzzing looks for)
        return "traceback", f"{type(err).__name__}: {str(err)[:200]}"
    if same(got, want):
        return "unchanged", None
    if got is None:                                   # a partial file set aside: the video is recomputed
        return "refused", None
    return ("silent" if binary and kind in STRUCTURAL else "changed"), None


def fuzz(formats, names, per_format, seed):
    """{format: {outcome: count}} and the tracebacks found (format, mutation, error)."""
    rows, problems = {}, []
    for name in names:
        path, load, text = formats.files[name]
        original = open(path, "rb").read()
        want = load(path)
        rng = np.random.default_rng([seed, sorted(formats.files).index(name)])
        counts = dict.fromkeys(("tried", "unchanged", "refused", "changed", "silent", "traceback"), 0)
        for _ in range(per_format):
            kind, data = mutate(original, rng, text)
            with open(path, "wb") as f:
                f.write(data)
            result, error = outcome(load, path, want, kind, name in BINARY)
            counts["tried"] += 1
            counts[result] += 1
            if error or result == "silent":
                problems.append((name, kind, error or "loaded as another result"))
        with open(path, "wb") as f:
            f.write(original)
        rows[name] = counts
    return rows, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description="Seeded fuzzing of every input format (one table row each).")
    parser.add_argument("--per-format", type=int, default=60, help="mutated inputs per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="+", help="formats to fuzz (default: all)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        formats = Formats(folder)
        rows, problems = fuzz(formats, args.formats or sorted(formats.files), args.per_format, args.seed)
    columns = ["format", "tried", "unchanged", "refused", "changed", "silent", "traceback"]
    print("  ".join(f"{c:>11}" for c in columns))
    for name, counts in rows.items():
        print("  ".join(f"{x:>11}" for x in [name] + [counts[c] for c in columns[1:]]))
    for name, kind, error in problems:
        print(f"{name} ({kind}): {error}")
    return int(bool(problems))


if __name__ == "__main__":
    sys.exit(main())

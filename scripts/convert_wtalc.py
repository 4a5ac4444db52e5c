"""Convert W-TALC / "Thumos14reduced" I3D features into this project's layout (README, "Data").

    python3 scripts/convert_wtalc.py --src Thumos14reduced --out data/THUMOS14_wtalc \
        [--train_subset validation] [--test_subset test] [--force]

Source (one folder): DATASET-I3D-JOINTFeatures.npy, an object array of N float arrays [T_i, 2048]
(rgb channels 0..1023, flow 1024..2047), and DATASET-Annotations/ holding per-video arrays of length N:
videoname, classlist (not per video: the class names), segments ([[t0, t1], ...] in seconds), subset,
duration, and the per-instance labels aligned with segments: labels.npy where it exists (W-TALC,
CO2-Net), else labels_all.npy (which those releases use for the unique video-level labels).
Target: OUT/gt.json, OUT/split_{train,test}.txt, OUT/features/{train,test}/{rgb,flow}/VID.npy
(float32 [T, 1024]). Videos of other subsets go to gt.json only. THUMOS14's "Ambiguous" segments are
left out of gt.json (not a class: the evaluator would ignore them too) and counted. The output is written into a
temporary folder next to OUT and renamed at the end, so a failed run leaves nothing behind.
"""
import argparse
import importlib
import json
import os
import pickle
import shutil
import tempfile

import numpy as np

import _repo  # noqa: E402,F401  (the repository root on sys.path)

from dataset import IGNORED_LABELS, STREAM_DIM, check_features  # noqa: E402
from utils.cli import run as run_cli  # noqa: E402

FEATURES_SUFFIX = "-I3D-JOINTFeatures.npy"
PER_VIDEO_FILES = ("videoname", "segments", "subset", "duration")
LABEL_FILES = ("labels", "labels_all")            # per-instance labels: the first that exists
# What an object array's pickle may name: numpy's array and scalar reconstructors and dtypes (Python 2's
# "numpy.core" spelling too), and the bytes constructor of protocol-2 pickles. Strings, bytes, lists, tuples,
# dicts and numbers need no name; anything else (os.system, builtins.open, ...) is refused unloaded.
PICKLE_GLOBALS = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
OLD_NUMPY = {"numpy.core.multiarray": "numpy._core.multiarray", "numpy.core.numeric": "numpy._core.numeric"}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays and plain values (PICKLE_GLOBALS): a crafted file runs nothing."""

    def find_class(self, module, name):
        module = OLD_NUMPY.get(module, module)
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays and plain values)")
        return getattr(importlib.import_module(module), name)


def read_npy(path):
    """The array of a .npy file; an object array through ArrayUnpickler (np.load would run its pickle)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        try:
            arr = ArrayUnpickler(f, encoding="bytes").load()
        except (EOFError, TypeError, AttributeError, IndexError, KeyError) as e:   # a damaged pickle stream
            raise ValueError(f"damaged object array ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray) or arr.shape != shape:
        raise ValueError(f"holds {type(arr).__name__} instead of an array of shape {shape}")
    return arr


def find_features_file(src):
    """The one DATASET-I3D-JOINTFeatures.npy of src; none or several is an error."""
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src}: source folder not found")
    found = sorted(f for f in os.listdir(src) if f.endswith(FEATURES_SUFFIX))
    if len(found) != 1:
        what = "none" if not found else f"{len(found)} ({', '.join(found)})"
        raise FileNotFoundError(f"{src}: expected one *{FEATURES_SUFFIX} file, found {what}")
    return os.path.join(src, found[0])


def load_array(path):
    """Load a .npy file (object arrays through ArrayUnpickler) as a sequence; a 0-d array is unwrapped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    try:
        arr = read_npy(path)
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path}: not a readable .npy file ({e})") from None
    return arr.item() if arr.ndim == 0 else arr


def as_text(x, path):
    """A name as str: bytes (np.bytes_) are decoded as UTF-8; 0-d arrays are unwrapped."""
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x.item()
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, str):
        return str(x)
    raise ValueError(f"{path}: expected a name (str or bytes), found {x!r}")


def as_list(x):
    """A per-video entry as a list: arrays and tuples are listed, a lone name is a list of one,
    None is empty."""
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return x.tolist() if x.ndim else as_list(x.item())
    if isinstance(x, (str, bytes)):
        return [x]
    return list(x)


def load_annotations(ann_dir, n):
    """Per-video annotation arrays of ann_dir, each checked to hold n entries; also the label file used.

    Returns ({name: sequence}, classlist [str], path of the per-instance label file).
    """
    label_paths = [os.path.join(ann_dir, f"{name}.npy") for name in LABEL_FILES]
    label_path = next((p for p in label_paths if os.path.isfile(p)), None)
    if label_path is None:
        raise FileNotFoundError(f"{ann_dir}: neither {' nor '.join(map(os.path.basename, label_paths))} found")
    arrays = {name: load_array(os.path.join(ann_dir, f"{name}.npy")) for name in PER_VIDEO_FILES}
    arrays["labels"] = load_array(label_path)
    for name, arr in arrays.items():
        path = label_path if name == "labels" else os.path.join(ann_dir, f"{name}.npy")
        if len(arr) != n:
            raise ValueError(f"{path}: {len(arr)} entries, but the features file has {n} videos")
    classlist_path = os.path.join(ann_dir, "classlist.npy")
    classlist = [as_text(c, classlist_path) for c in as_list(load_array(classlist_path))]
    return arrays, classlist, label_path


def parse_video(i, arrays, classlist, ann_dir, label_path):
    """(vid, gt.json entry, number of IGNORED_LABELS segments left out) of video i; labels must be in
    classlist (or IGNORED_LABELS), segments [t0, t1] with t0 <= t1, one per label."""
    vid = as_text(arrays["videoname"][i], os.path.join(ann_dir, "videoname.npy"))
    labels = [as_text(label, label_path) for label in as_list(arrays["labels"][i])]
    segments_path = os.path.join(ann_dir, "segments.npy")
    segments = as_list(arrays["segments"][i])
    if len(labels) != len(segments):
        raise ValueError(f"{label_path} / {segments_path}: video {vid} has {len(labels)} labels "
                         f"but {len(segments)} segments")
    annotations, ignored = [], 0
    for label, segment in zip(labels, segments):
        if label not in classlist and label not in IGNORED_LABELS:
            raise ValueError(f"{label_path}: video {vid}: label {label!r} is not in classlist.npy")
        try:
            t0, t1 = (float(t) for t in as_list(segment))
        except (TypeError, ValueError):
            raise ValueError(f"{segments_path}: video {vid}: segment {segment!r} is not [t0, t1]") from None
        if not (np.isfinite(t0) and np.isfinite(t1) and t0 <= t1):
            raise ValueError(f"{segments_path}: video {vid}: segment [{t0}, {t1}] is not finite with start <= end")
        if label in IGNORED_LABELS:
            ignored += 1
            continue
        annotations.append({"label": label, "segment": [t0, t1]})
    duration_path = os.path.join(ann_dir, "duration.npy")
    try:
        duration = float(np.asarray(arrays["duration"][i], dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise ValueError(f"{duration_path}: video {vid}: duration {arrays['duration'][i]!r} is not a number") from None
    subset = as_text(arrays["subset"][i], os.path.join(ann_dir, "subset.npy"))
    return vid, {"subset": subset, "duration": duration, "annotations": annotations}, ignored


def split_streams(feat, path, vid):
    """(rgb, flow) float32 [T, 1024] halves of a joint [T, 2048] feature array, checked."""
    feat = check_features(feat, 2 * STREAM_DIM, f"{path}: video {vid}")
    return feat[:, :STREAM_DIM], feat[:, STREAM_DIM:]


def split_of(subset, train_subset, test_subset):
    """'train', 'test' or None (gt.json only) for a video of this subset."""
    return {train_subset: "train", test_subset: "test"}.get(subset)


def check_out(out, src, force):
    """Refuse an existing OUT that is not an empty folder (unless force) and an OUT that holds src."""
    out, src = os.path.abspath(out), os.path.abspath(src)
    if os.path.exists(out) and not (os.path.isdir(out) and not os.listdir(out)) and not force:
        raise FileExistsError(f"{out}: exists and is not an empty folder (use --force to replace it)")
    if os.path.commonpath([out, src]) == out:
        raise ValueError(f"{out}: the output folder would contain the source folder {src}")


def replace_out(tmp, out):
    """Move the finished tmp folder to out, replacing whatever was there."""
    if os.path.isdir(out):
        shutil.rmtree(out)
    elif os.path.exists(out):
        os.remove(out)
    os.rename(tmp, out)


def write_dataset(tmp, features_path, features, arrays, classlist, ann_dir, label_path, subsets):
    """Write gt.json, the split files and the features of the train and test videos (``subsets``: the
    gt.json subsets (train, test)) into tmp; returns the summary counts."""
    train_subset, test_subset = subsets
    database, splits, ignored = {}, {"train": [], "test": []}, 0
    for i in range(len(features)):
        vid, entry, n_ignored = parse_video(i, arrays, classlist, ann_dir, label_path)
        ignored += n_ignored
        if vid in database or not vid or os.sep in vid or vid in (".", ".."):
            raise ValueError(f"{os.path.join(ann_dir, 'videoname.npy')}: video id {vid!r} is repeated "
                             f"or not usable as a file name")
        database[vid] = entry
        split = split_of(entry["subset"], train_subset, test_subset)
        if split is None:
            continue
        splits[split].append(vid)
        for stream, arr in zip(("rgb", "flow"), split_streams(features[i], features_path, vid)):
            folder = os.path.join(tmp, "features", split, stream)
            os.makedirs(folder, exist_ok=True)
            np.save(os.path.join(folder, f"{vid}.npy"), arr)
    for split, subset in (("train", train_subset), ("test", test_subset)):
        if not splits[split]:
            found = sorted({e["subset"] for e in database.values()})
            raise ValueError(f"{os.path.join(ann_dir, 'subset.npy')}: no video of subset {subset!r} "
                             f"for the {split} split (subsets found: {found})")
        with open(os.path.join(tmp, f"split_{split}.txt"), "w") as f:
            f.write("\n".join(splits[split]) + "\n")
    with open(os.path.join(tmp, "gt.json"), "w") as f:
        json.dump({"database": database}, f)
    return {"train": len(splits["train"]), "test": len(splits["test"]),
            "other": len(database) - len(splits["train"]) - len(splits["test"]),
            "classes": len(classlist),
            "instances": sum(len(e["annotations"]) for e in database.values()), "ignored": ignored}


def convert(src, out, train_subset="validation", test_subset="test", force=False):
    """Convert the W-TALC-layout folder src into the project layout at out.

    Returns a summary: videos per split ('train', 'test', 'other': gt.json only), 'classes' (length of
    classlist.npy), 'instances' (annotations written to gt.json), 'ignored' (IGNORED_LABELS segments left
    out of it), 'out'.
    """
    if train_subset == test_subset:
        raise ValueError(f"--train_subset and --test_subset are both {train_subset!r}")
    check_out(out, src, force)
    features_path = find_features_file(src)
    ann_dir = features_path[:-len(FEATURES_SUFFIX)] + "-Annotations"
    features = load_array(features_path)
    arrays, classlist, label_path = load_annotations(ann_dir, len(features))
    out_abs = os.path.abspath(out)
    os.makedirs(os.path.dirname(out_abs), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_abs)}.tmp-", dir=os.path.dirname(out_abs))
    try:
        summary = write_dataset(tmp, features_path, features, arrays, classlist, ann_dir, label_path,
                                (train_subset, test_subset))
        replace_out(tmp, out_abs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**summary, "out": out}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert W-TALC / Thumos14reduced I3D features into this "
                                                 "project's layout (README, 'Data').")
    parser.add_argument("--src", required=True,
                        help="folder holding DATASET-I3D-JOINTFeatures.npy and DATASET-Annotations/")
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument("--train_subset", default="validation", help="subset.npy value of the training videos")
    parser.add_argument("--test_subset", default="test", help="subset.npy value of the test videos")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    s = convert(args.src, args.out, args.train_subset, args.test_subset, args.force)
    print(f"{s['out']}: train {s['train']} videos ({args.train_subset}), test {s['test']} ({args.test_subset}), "
          f"other {s['other']} (gt.json only); {s['classes']} classes; {s['instances']} instances"
          + (f" ({s['ignored']} {'/'.join(sorted(IGNORED_LABELS))} segments left out)" if s["ignored"] else ""))


if __name__ == "__main__":
    run_cli(main)

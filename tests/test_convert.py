"""Tests of scripts/convert_wtalc.py: a tiny W-TALC-layout folder is converted, compared with its source
and loaded with dataset.FeatureDataset; each input error stops with the file named and leaves no output."""
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from dataset import THUMOS14_CLASSES, FeatureDataset

REPO = Path(__file__).resolve().parents[1]

from convert_wtalc import convert

FEATURES = "Thumos14reduced-I3D-JOINTFeatures.npy"
CLASSES = [THUMOS14_CLASSES[i] for i in (0, 2, 7)]          # BaseballPitch, Billiards, Diving
VIDEOS = ["video_validation_0000051", "video_validation_0000052", "video_validation_0000053",
          "video_test_0000004", "video_test_0000006"]
SUBSETS = ["validation", "validation", "validation", "test", "test"]
LENGTHS = [12, 7, 20, 9, 15]
DURATIONS = [7.68, 4.48, 12.8, 5.76, 9.6]
LABELS = [["BaseballPitch", "BaseballPitch"], [b"Billiards"], ["Diving", "Billiards"], [], ["Diving"]]
SEGMENTS = [[[0.5, 2.0], [3.25, 4.0]], [[1.0, 3.5]], [[0.0, 12.8], [2.0, 2.0]], [], [[4.0, 6.4]]]


def object_array(items):
    """A 1-d object array of the given items (ragged lists and arrays kept as elements)."""
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr


def source_features(seed=0):
    """The joint [T_i, 2048] float32 features of the tiny source, one array per video."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((T, 2048)).astype(np.float32) for T in LENGTHS]


def make_wtalc(root, features=None, drop=(), **arrays):
    """Write the tiny W-TALC-layout folder into root: bytes-typed names, labels.npy per instance and
    labels_all.npy the unique labels of each video, as in the W-TALC releases.

    features: replaces the per-video feature list; arrays: replaces an annotation array by name (None
    leaves it out); drop: file names to leave out. Returns root.
    """
    ann = root / "Thumos14reduced-Annotations"
    ann.mkdir(parents=True)
    files = {
        "videoname": np.array([v.encode() for v in VIDEOS]),
        "classlist": np.array([c.encode() for c in CLASSES]),
        "subset": np.array([s.encode() for s in SUBSETS]),
        "duration": np.array(DURATIONS),
        "labels": object_array(LABELS),
        "labels_all": object_array([sorted({x if isinstance(x, str) else x.decode() for x in ls}) for ls in LABELS]),
        "segments": object_array([np.array(s, dtype=np.float64).reshape(-1, 2) for s in SEGMENTS]),
    }
    files.update(arrays)
    for name, arr in files.items():
        if arr is not None:
            np.save(ann / f"{name}.npy", arr, allow_pickle=True)
    np.save(root / FEATURES, object_array(source_features() if features is None else features), allow_pickle=True)
    for name in drop:
        (root / name).unlink()
    return root


@pytest.fixture
def src(tmp_path):
    return make_wtalc(tmp_path / "Thumos14reduced")


def load_split(out, split):
    """FeatureDataset of a converted split; any warning fails the test (the data should load cleanly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return FeatureDataset(str(out), split, 8, "random" if split == "train" else "uniform", CLASSES)


# --- a correct conversion -------------------------------------------------------------------------------

def test_convert_writes_gt_splits_and_features(src, tmp_path):
    out = tmp_path / "out"
    summary = convert(str(src), str(out))
    assert summary == {"train": 3, "test": 2, "other": 0, "classes": 3, "instances": 6, "ignored": 0,
                       "out": str(out)}
    database = json.loads((out / "gt.json").read_text())["database"]
    assert list(database) == VIDEOS
    for i, vid in enumerate(VIDEOS):
        labels = [x if isinstance(x, str) else x.decode() for x in LABELS[i]]
        assert database[vid] == {"subset": SUBSETS[i], "duration": DURATIONS[i],
                                 "annotations": [{"label": lab, "segment": seg} for lab, seg in zip(labels, SEGMENTS[i])]}
    assert (out / "split_train.txt").read_text().split() == VIDEOS[:3]
    assert (out / "split_test.txt").read_text().split() == VIDEOS[3:]
    for vid, feat, split in zip(VIDEOS, source_features(), ["train"] * 3 + ["test"] * 2):
        rgb = np.load(out / "features" / split / "rgb" / f"{vid}.npy")
        flow = np.load(out / "features" / split / "flow" / f"{vid}.npy")
        assert rgb.dtype == flow.dtype == np.float32
        assert rgb.tobytes() == feat[:, :1024].tobytes() and flow.tobytes() == feat[:, 1024:].tobytes()
    assert sorted(os.listdir(tmp_path)) == ["Thumos14reduced", "out"]       # no temporary folder left


def test_converted_data_loads_with_feature_dataset(src, tmp_path):
    out = tmp_path / "out"
    convert(str(src), str(out))
    train, test = load_split(out, "train"), load_split(out, "test")
    assert train.vids == VIDEOS[:3] and test.vids == VIDEOS[3:]
    assert train.labels[VIDEOS[2]].tolist() == [0.0, 1.0, 1.0]             # Billiards and Diving
    assert test.labels[VIDEOS[3]].tolist() == [0.0, 0.0, 0.0]               # the video without instances
    feats, label, vid, T_v = train[0]
    assert tuple(feats.shape) == (8, 2048) and vid == VIDEOS[0] and T_v == LENGTHS[0]
    assert label.tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_array_equal(test.features[VIDEOS[4]], source_features()[4])


def test_labels_all_per_instance_used_without_labels_file(tmp_path):
    """A release without labels.npy: labels_all.npy is read as the per-instance labels."""
    src = make_wtalc(tmp_path / "src", labels=None, labels_all=object_array(LABELS))
    convert(str(src), str(tmp_path / "out"))
    database = json.loads((tmp_path / "out" / "gt.json").read_text())["database"]
    assert [a["label"] for a in database[VIDEOS[0]]["annotations"]] == ["BaseballPitch", "BaseballPitch"]


def test_ambiguous_segments_are_left_out_of_gt_json_and_counted(tmp_path):
    labels = [list(ls) for ls in LABELS]
    segments = [list(seg) for seg in SEGMENTS]
    labels[4], segments[4] = ["Diving", b"Ambiguous"], [[4.0, 6.4], [7.0, 8.0]]
    labels[1], segments[1] = ["Ambiguous", "Billiards"], [[0.0, 0.5], [1.0, 3.5]]
    src = make_wtalc(tmp_path / "src", labels=object_array(labels),
                     segments=object_array([np.array(x, dtype=np.float64).reshape(-1, 2) for x in segments]))
    out = tmp_path / "out"
    summary = convert(str(src), str(out))
    assert (summary["instances"], summary["ignored"]) == (6, 2)
    database = json.loads((out / "gt.json").read_text())["database"]
    assert database[VIDEOS[4]]["annotations"] == [{"label": "Diving", "segment": [4.0, 6.4]}]
    assert database[VIDEOS[1]]["annotations"] == [{"label": "Billiards", "segment": [1.0, 3.5]}]
    assert load_split(out, "train").labels[VIDEOS[1]].tolist() == [0.0, 1.0, 0.0]   # no warning either


def test_subset_options_and_other_subsets(tmp_path):
    """ActivityNet-style subsets: training/validation chosen by option; a third subset goes to gt.json only."""
    subsets = ["training", "training", "other", "validation", "validation"]
    src = make_wtalc(tmp_path / "src", subset=np.array([s.encode() for s in subsets]))
    out = tmp_path / "out"
    summary = convert(str(src), str(out), train_subset="training", test_subset="validation")
    assert (summary["train"], summary["test"], summary["other"]) == (2, 2, 1)
    assert json.loads((out / "gt.json").read_text())["database"][VIDEOS[2]]["subset"] == "other"
    assert not (out / "features" / "train" / "rgb" / f"{VIDEOS[2]}.npy").exists()


def test_cli_prints_one_line_summary(src, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "convert_wtalc.py"), "--src", str(src),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "train 3" in lines[0] and "test 2" in lines[0] and "6 instances" in lines[0]


# --- refusing bad input and existing output -------------------------------------------------------------

def bad_features(kind):
    feats = source_features()
    if kind == "width":
        feats[1] = feats[1][:, :1024]
    elif kind == "nan":
        feats[2][3, 5] = np.nan
    else:
        feats[4][0, 0] = np.inf
    return feats


ERRORS = {                            # case: (make_wtalc arguments, error, message naming file and problem)
    "missing features": (dict(drop=[FEATURES]), FileNotFoundError, "I3D-JOINTFeatures.npy file, found none"),
    "missing subset": (dict(subset=None), FileNotFoundError, "subset.npy: file not found"),
    "missing labels": (dict(labels=None, labels_all=None), FileNotFoundError, "neither labels.npy nor labels_all.npy"),
    "length mismatch": (dict(duration=np.array(DURATIONS[:4])), ValueError, "duration.npy: 4 entries"),
    "feature width": (dict(features=bad_features("width")), ValueError,
                      f"{FEATURES}: video video_validation_0000052: expected shape"),
    "nan feature": (dict(features=bad_features("nan")), ValueError,
                    f"{FEATURES}: video video_validation_0000053: .*NaN or Inf"),
    "inf feature": (dict(features=bad_features("inf")), ValueError,
                    f"{FEATURES}: video video_test_0000006: .*NaN or Inf"),
    "labels vs segments": (dict(labels=object_array([["BaseballPitch"]] + LABELS[1:])), ValueError,
                           "labels.npy / .*segments.npy: video video_validation_0000051 has 1 labels but 2"),
    "end before start": (dict(segments=object_array(SEGMENTS[:4] + [[[6.4, 4.0]]])), ValueError,
                         "segments.npy: video video_test_0000006: segment"),
    "unknown label": (dict(labels=object_array(LABELS[:4] + [["Cricket"]])), ValueError,
                      "labels.npy: video .*'Cricket'"),
    "no test video": (dict(subset=np.array([b"validation"] * 5)), ValueError,
                      "subset.npy: no video of subset 'test'"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_input_raises_naming_the_file(case, tmp_path):
    kwargs, error, message = ERRORS[case]
    src = make_wtalc(tmp_path / "src", **kwargs)
    with pytest.raises(error, match=message):
        convert(str(src), str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["src"]                          # nothing half-written


def test_existing_output_refused_unless_forced(src, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="out: exists"):
        convert(str(src), str(out))
    assert (out / "keep.txt").exists()
    convert(str(src), str(out), force=True)
    assert not (out / "keep.txt").exists() and (out / "gt.json").exists()


def test_empty_output_folder_accepted(src, tmp_path):
    (tmp_path / "out").mkdir()
    assert convert(str(src), str(tmp_path / "out"))["train"] == 3


def test_output_holding_source_refused(src):
    with pytest.raises(ValueError, match="would contain the source"):
        convert(str(src), str(src.parent), force=True)


# --- hostile files run nothing --------------------------------------------------------------------------

class Planted:
    """An object whose unpickling would create the file ``path`` (a crafted W-TALC array would do worse)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("name", ["labels", "segments", "features"])
def test_a_crafted_object_array_is_refused_and_runs_nothing(name, tmp_path):
    planted = tmp_path / "planted"
    crafted = object_array(LABELS[:4] + [[Planted(str(planted))]])
    kwargs = {"features": source_features()[:4] + [Planted(str(planted))]} if name == "features" else {name: crafted}
    src = make_wtalc(tmp_path / "src", **kwargs)
    assert not planted.exists()
    proc = subprocess.run([sys.executable, "scripts/convert_wtalc.py", "--src", str(src), "--out",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    file = FEATURES if name == "features" else f"{name}.npy"
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert file in proc.stderr and "refused to load io.open" in proc.stderr
    assert not planted.exists() and sorted(os.listdir(tmp_path)) == ["src"]


def test_numpy_scalars_bytes_and_old_numpy_names_still_load(tmp_path):
    # as a Python 2 / NumPy 1 release wrote them: pickle protocol 2 (bytes via _codecs), "numpy.core"
    src = make_wtalc(tmp_path / "src")
    for name, arr in (("duration", object_array([np.float64(d) for d in DURATIONS])),
                      ("videoname", object_array([v.encode() for v in VIDEOS]))):
        with open(src / "Thumos14reduced-Annotations" / f"{name}.npy", "wb") as f:
            np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
            f.write(pickle.dumps(arr, protocol=2).replace(b"numpy._core.", b"numpy.core."))
    convert(str(src), str(tmp_path / "out"))
    gt = json.loads((tmp_path / "out" / "gt.json").read_text())["database"]
    assert [gt[v]["duration"] for v in VIDEOS] == DURATIONS

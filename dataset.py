"""I3D feature datasets in the CoLA/AICL layout (see README, "Data layout").

DATA/gt.json, DATA/split_{train,test}.txt, DATA/features/{train,test}/{rgb,flow}/VID.npy ([T_v, 1024] each).
Features are read once and kept in memory, or memory-mapped and read snippet by snippet when they would not
fit (FeatureDataset's ``cache``); an item is (features [T, 2048] or [T_v, 2048], label [C], vid, T_v).
Items and the batches of ``collate`` hold their features channel-major (a [T, 2048] view of [2048, T]
memory), the layout of the model's convolutions, so that a training step copies none of its input.
"""
import json
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from eval import IGNORED_LABELS   # THUMOS14's "Ambiguous": not a class, skipped (as its official evaluation does)
from utils.io import read_json, read_lines

THUMOS14_CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling",
    "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow",
    "LongJump", "PoleVault", "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
]
CLASS_COUNTS = {"thumos14": 20, "anet12": 100, "anet13": 200}
FEATURE_FPS = 25
SNIPPET_FRAMES = 16
STREAM_DIM = 1024
# FeatureDataset's snippet sampling: training's random draw per stretch; the test's uniform grid stretched to
# T (THUMOS14 release), or keeping a video of at most T snippets at its own length (SAL, CoLA on ActivityNet)
SAMPLINGS = ("random", "uniform", "uniform_keep_short")


def uniform_indices(T_v, T, keep_short=False):
    """Test-time sampling: identity if T_v == T, else idx_i = floor(i T_v / T), i = 0..T-1, which repeats
    snippets of a video shorter than T (THUMOS14 release). With ``keep_short`` a video of T_v <= T snippets
    keeps its own T_v (SAL and CoLA on ActivityNet)."""
    if T_v == T or (keep_short and T_v <= T):
        return np.arange(T_v)
    return np.floor(np.arange(T) * T_v / T).astype(np.int64)


def random_indices(T_v, T, rng):
    """Training sampling (release): one index drawn uniformly from each of T consecutive stretches.

    s_i = i T_v / T; idx_i is drawn from floor(s_i) .. floor(s_{i+1}) inclusive when those differ
    (else floor(s_i)); the last from floor(s_{T-1}) .. T_v - 1. Neighbouring draws may coincide.
    """
    if T_v == T:
        return np.arange(T)
    lo = np.floor(np.arange(T) * T_v / T).astype(np.int64)       # floor(s_i)
    hi = np.append(lo[1:], T_v - 1)                               # inclusive upper bounds, >= lo
    return rng.integers(lo, hi + 1)                               # lo itself where hi == lo


def read_database(gt_path):
    """gt.json's content and its "database" object; an error names the file when either is missing."""
    gt = read_json(gt_path)
    database = gt.get("database") if isinstance(gt, dict) else None
    if not isinstance(database, dict):
        raise ValueError(f"{gt_path}: no 'database' object")
    return gt, database


def read_split(path):
    """Video ids, one per line (blank lines ignored)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: split file not found")
    return read_lines(path)


def load_class_names(data_path, dataset):
    """The class list of a dataset: THUMOS14's fixed alphabetical 20, or for ActivityNet the sorted
    labels of gt.json (every subset), which must number 100 (v1.2) or 200 (v1.3)."""
    if dataset not in CLASS_COUNTS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(CLASS_COUNTS)}")
    if dataset == "thumos14":
        return list(THUMOS14_CLASSES)
    gt_path = os.path.join(data_path, "gt.json")
    _, database = read_database(gt_path)
    labels = sorted({a["label"] for entry in database.values() if isinstance(entry, dict)
                     for a in entry.get("annotations") or []
                     if isinstance(a, dict) and isinstance(a.get("label"), str)})
    if len(labels) != CLASS_COUNTS[dataset]:
        raise ValueError(f"{gt_path}: {len(labels)} classes found, but {dataset} has {CLASS_COUNTS[dataset]}")
    return labels


def load_features(root, vid, mmap=False):
    """rgb and flow of one video concatenated along channels: [T_v, 2048] float32; with ``mmap`` the
    two streams memory-mapped, [T_v, 1024] each, shapes checked and values unread.

    A flow stream one snippet shorter than rgb (or the reverse) is cut to the shorter with a warning;
    a larger difference is an error naming the video.
    """
    rgb, flow = (read_feature_file(os.path.join(root, stream, f"{vid}.npy"), STREAM_DIM, f" for video {vid}", mmap)
                 for stream in ("rgb", "flow"))
    if len(rgb) != len(flow):
        if abs(len(rgb) - len(flow)) > 1:
            raise ValueError(f"video {vid}: rgb has {len(rgb)} snippets but flow has {len(flow)} (in {root})")
        warnings.warn(f"video {vid}: rgb {len(rgb)} vs flow {len(flow)} snippets, cut to the shorter")
        n = min(len(rgb), len(flow))
        rgb, flow = rgb[:n], flow[:n]
    return (rgb, flow) if mmap else np.concatenate([rgb, flow], axis=1)


def check_features(arr, width, where, values=True):
    """``arr`` as float32 [T, width]; a wrong shape, no snippet, non-numbers or NaN/Inf is an error
    naming ``where`` (a file, or a file and a video). ``values=False`` checks the shape and type only
    and returns ``arr`` as it is (a memory-mapped file stays unread)."""
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{where}: expected shape [T, {width}], found {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{where}: empty features (0 snippets)")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{where}: features of type {arr.dtype} are not numbers")
    if not values:
        return arr
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: contains NaN or Inf")
    return arr.astype(np.float32, copy=False)


def read_feature_file(path, width, what="", mmap=False):
    """A checked [T, width] float32 array from a .npy file (see check_features); with ``mmap`` the file
    memory-mapped, its shape and type checked and its values unread."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: feature file not found{what}")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None)
        with open(path, "rb") as f:                   # numpy reads as many bytes as the header says
            version = np.lib.format.read_magic(f)
            (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
            extra = os.path.getsize(path) - f.tell() - arr.nbytes
    except (ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e or 'empty file'})") from None
    if extra:
        raise ValueError(f"{path}: not a readable .npy array ({extra} bytes more than its header says)")
    return check_features(arr, width, path, values=not mmap)


def channel_major(feats):
    """[T, 2048] features as a [T, 2048] view of channel-major ([2048, T]) memory."""
    return torch.from_numpy(np.ascontiguousarray(feats.T)).t()


def collate(batch):
    """DataLoader batches of FeatureDataset items: (features [B, T, 2048] as a view of [B, 2048, T] memory,
    labels [B, C], vids, T_v [B]); stacking the items' channel-major memory keeps the layout."""
    batch = [(feats.t(), *rest) for feats, *rest in batch]                  # [2048, T] each
    feats, *rest = torch.utils.data.default_collate(batch)                   # [B, 2048, T]
    return (feats.transpose(1, 2), *rest)


def load_joint_features(path):
    """One file holding rgb and flow side by side: [T_v, 2048] float32 (rgb in channels 0..1023)."""
    return read_feature_file(path, 2 * STREAM_DIM, " (rgb then flow, width 2048)")


def available_memory():
    """Bytes of memory that new allocations can take (Linux MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


class FeatureDataset(torch.utils.data.Dataset):
    """One split of an I3D feature dataset (train: 'random' sampling; test: 'uniform' or 'uniform_keep_short').

    Items: features [num_segments, 2048] float32, multi-hot label [C], video id, original length T_v;
    with 'uniform_keep_short' sampling a test video of T_v <= num_segments snippets gives [T_v, 2048]
    (uniform_indices with keep_short; ``self.keep_short`` says so).
    ``only``: use just these videos of the split (e.g. training videos held out for model selection).
    ``set_epoch`` makes the random sampling of an epoch depend only on (seed, epoch, item).
    ``cache``: "memory" reads every feature file once and holds it (values checked up front); "mmap"
    checks the files' shapes up front and reads only the sampled snippets of a video when it is asked
    for (values checked there), so memory does not grow with the number of videos; "auto" takes
    "memory" when the split's float32 features fit in half the available memory (``self.cache`` and
    ``self.cache_reason`` say which and why).
    """

    def __init__(self, data_path, split, num_segments, sampling, class_names=THUMOS14_CLASSES, seed=1, only=None,
                 cache="auto"):
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(map(repr, SAMPLINGS))}, got {sampling!r}")
        if cache not in ("auto", "memory", "mmap"):
            raise ValueError(f"cache must be 'auto', 'memory' or 'mmap', got {cache!r}")
        self.keep_short = sampling == "uniform_keep_short"
        self.data_path, self.split, self.num_segments, self.sampling = data_path, split, num_segments, sampling
        self.class_names = list(class_names)
        self.class_index = {name: c for c, name in enumerate(self.class_names)}
        self.seed, self.epoch = seed, 0
        gt_path = os.path.join(data_path, "gt.json")
        self.gt, database = read_database(gt_path)
        vids = read_split(os.path.join(data_path, f"split_{split}.txt"))
        if only is not None:                               # a part of the split (held-out videos for selection)
            only = set(only)
            vids = [v for v in vids if v in only]
        missing = [v for v in vids if v not in database]
        if missing:
            raise ValueError(f"{gt_path}: {len(missing)} video(s) of split_{split}.txt are not in it, "
                             f"e.g. {missing[:3]}")
        self.ignored = 0                                   # annotations with an IGNORED_LABELS label
        self.annotations = {v: self._parse_annotations(gt_path, v, database[v]) for v in vids}
        if self.ignored:
            warnings.warn(f"{gt_path}: {self.ignored} annotation(s) labelled {sorted(IGNORED_LABELS)} not used")
        self.labels = {v: self._multi_hot(anns) for v, anns in self.annotations.items()}
        if split == "train":
            unlabelled = [v for v in vids if self.labels[v].sum() == 0]
            if unlabelled:
                warnings.warn(f"{len(unlabelled)} training video(s) without a label skipped "
                              f"(their MIL target would be 0/0), e.g. {unlabelled[:3]}")
                vids = [v for v in vids if v not in unlabelled]
            if not vids:
                raise ValueError(f"{os.path.join(data_path, 'split_train.txt')}: no labelled training video")
        self.vids = vids
        self.feature_root = os.path.join(data_path, "features", split)
        self.lengths = {v: len(load_features(self.feature_root, v, mmap=True)[0]) for v in vids}   # T_v
        self.feature_bytes = sum(self.lengths.values()) * 2 * STREAM_DIM * 4               # as float32
        self.cache, self.cache_reason = cache, "--feature_cache"
        if cache == "auto":
            free = available_memory()
            self.cache = "memory" if free is None or self.feature_bytes < free / 2 else "mmap"
            self.cache_reason = ("auto: available memory unknown" if free is None else
                                 f"auto: {free / 2 ** 30:.1f} GiB available")
        self.features = None                                   # mmap: read in _snippets
        if self.cache == "memory":                             # [T_v, 2048] views of [2048, T_v] memory
            self.features = {v: channel_major(load_features(self.feature_root, v)) for v in vids}

    def _parse_annotations(self, gt_path, vid, entry):
        """[(class index, t0, t1)] of one video. A label outside the class list is an error, except
        THUMOS14's 'Ambiguous' marker (IGNORED_LABELS), which is skipped."""
        anns = entry.get("annotations", []) if isinstance(entry, dict) else None
        if not isinstance(anns, list):
            raise ValueError(f"{gt_path}: video {vid} has no 'annotations' list")
        out = []
        for a in anns:
            try:
                label, (t0, t1) = a["label"], a["segment"]
                t0, t1 = float(t0), float(t1)
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{gt_path}: video {vid}: malformed annotation {a!r}") from None
            if not (np.isfinite(t0) and np.isfinite(t1) and t0 <= t1):
                raise ValueError(f"{gt_path}: video {vid}: segment {a['segment']!r} is not [start, end] "
                                 f"with start <= end")
            if not isinstance(label, str) or not (label in self.class_index or label in IGNORED_LABELS):
                raise ValueError(f"{gt_path}: video {vid}: unknown label {label!r} "
                                 f"(not one of the {len(self.class_names)} classes)")
            if label in IGNORED_LABELS:
                self.ignored += 1
            else:
                out.append((self.class_index[label], t0, t1))
        return out

    def _multi_hot(self, anns):
        y = np.zeros(len(self.class_names), dtype=np.float32)
        y[[c for c, _, _ in anns]] = 1.0
        return y

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.vids)

    def __getitem__(self, i):
        vid = self.vids[i]
        T_v = self.lengths[vid]
        if self.sampling != "random":
            idx = uniform_indices(T_v, self.num_segments, self.keep_short)
        else:
            idx = random_indices(T_v, self.num_segments, np.random.default_rng([self.seed, self.epoch, i]))
        return self._snippets(vid, idx), torch.from_numpy(self.labels[vid]), vid, T_v

    def _snippets(self, vid, idx):
        """Features of the snippets ``idx`` of one video: [len(idx), 2048] float32, channel-major."""
        if self.features is not None:
            return self.features[vid].t().index_select(1, torch.from_numpy(idx)).t()
        out = np.empty((2 * STREAM_DIM, len(idx)), dtype=np.float32)                  # [2048, len(idx)]
        for s, stream in enumerate(("rgb", "flow")):
            path = os.path.join(self.feature_root, stream, f"{vid}.npy")
            out[s * STREAM_DIM:(s + 1) * STREAM_DIM] = check_features(np.load(path, mmap_mode="r")[idx],
                                                                      STREAM_DIM, path).T
        return torch.from_numpy(out).t()

    def frame_labels(self, vid, fps=FEATURE_FPS):
        """Snippet-level ground truth [T_v, C]: snippet i is labelled c when its centre,
        (16 i + 8) / fps s, lies inside an instance of c (``fps``: the rate the features were extracted at)."""
        T_v = self.lengths[vid]
        centre = (np.arange(T_v) * SNIPPET_FRAMES + SNIPPET_FRAMES / 2) / fps   # [T_v] seconds
        out = np.zeros((T_v, len(self.class_names)), dtype=np.float32)
        for c, t0, t1 in self.annotations[vid]:
            out[(centre >= t0) & (centre <= t1), c] = 1.0
        return out


@dataclass(frozen=True)
class Synthetic:
    """The shape of a generated dataset (make_synthetic_dataset): videos per split, classes used (the first
    ``num_classes`` of ``classes``), snippets per video (``length``, inclusive range) and per instance
    (``instance_length``), Gaussian ``noise`` and the class ``signal`` added to it, the gt.json subsets of
    train and test (``subsets``), and the ``seed`` of it all."""
    num_train: int = 60
    num_test: int = 30
    num_classes: int = 6
    length: tuple = (80, 200)
    noise: float = 1.0
    signal: float = 0.1
    seed: int = 0
    classes: tuple = tuple(THUMOS14_CLASSES)
    subsets: tuple = ("validation", "test")
    instance_length: tuple = (5, 30)


def make_synthetic_dataset(root, **shape):
    """Write a small dataset in the real layout whose actions are learnable from video labels alone;
    ``shape``: the fields of Synthetic (its defaults: a THUMOS14-like demo).

    Each class has its own direction in rgb and in flow feature space; an action snippet adds it
    (times ``signal``) to Gaussian noise, a background snippet adds a shared background direction.
    Videos hold 1-4 non-overlapping instances (``instance_length`` snippets; THUMOS14-like short ones by
    default, ActivityNet-like long ones when asked) of one class, a quarter of them of a second class too.
    Train and test videos are in the gt.json subsets ``subsets`` (THUMOS14: "validation" and "test";
    ActivityNet: "training" and "validation"). Returns root.
    """
    spec = Synthetic(**shape)
    rng = np.random.default_rng(spec.seed)
    classes = list(spec.classes)[:spec.num_classes]

    def directions(n):                                             # [n, 1024], each of norm sqrt(1024)
        v = rng.standard_normal((n, STREAM_DIM))
        return v / np.linalg.norm(v, axis=1, keepdims=True) * np.sqrt(STREAM_DIM)

    proto = {s: directions(spec.num_classes) for s in ("rgb", "flow")}  # class directions, [C, 1024]
    background = {s: directions(1)[0] for s in ("rgb", "flow")}
    database = {}
    for split, subset, n in (("train", spec.subsets[0], spec.num_train), ("test", spec.subsets[1], spec.num_test)):
        vids = [f"video_{subset}_{i:04d}" for i in range(n)]
        for vid in vids:
            T_v = int(rng.integers(spec.length[0], spec.length[1] + 1))
            video_classes = rng.choice(spec.num_classes, size=2 if rng.random() < 0.25 else 1, replace=False)
            owner = np.full(T_v, -1)                                   # class of each snippet, -1 background
            annotations = []
            for _ in range(int(rng.integers(1, 5))):
                shortest, longest = spec.instance_length
                c, dur = int(rng.choice(video_classes)), int(rng.integers(shortest, longest + 1))
                start = int(rng.integers(0, max(1, T_v - dur)))
                stop = min(T_v, start + dur)
                if (owner[start:stop] >= 0).any():
                    continue
                owner[start:stop] = c
                annotations.append({"label": classes[c], "segment": [round(start * SNIPPET_FRAMES / FEATURE_FPS, 2),
                                                                     round(stop * SNIPPET_FRAMES / FEATURE_FPS, 2)]})
            database[vid] = {"subset": subset, "duration": T_v * SNIPPET_FRAMES / FEATURE_FPS,
                             "annotations": annotations}
            for s in ("rgb", "flow"):
                content = np.where((owner >= 0)[:, None], proto[s][np.maximum(owner, 0)], background[s])   # [T_v, 1024]
                feat = spec.noise * rng.standard_normal((T_v, STREAM_DIM)) + spec.signal * content
                os.makedirs(os.path.join(root, "features", split, s), exist_ok=True)
                np.save(os.path.join(root, "features", split, s, f"{vid}.npy"), feat.astype(np.float32))
        with open(os.path.join(root, f"split_{split}.txt"), "w") as f:
            f.write("\n".join(vids) + "\n")
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": database}, f)
    return root


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Generate the synthetic demo dataset (real THUMOS14 layout).")
    parser.add_argument("--out", default="data/demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_synthetic_dataset(args.out, seed=args.seed)
    print(f"synthetic demo dataset written to {args.out}")

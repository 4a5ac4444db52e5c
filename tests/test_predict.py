"""Localizing actions in videos without ground truth (--predict_dir, scripts/predict.sh)."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import checkpoint
import main
import missing_modules
from dataset import THUMOS14_CLASSES, make_synthetic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--num_segments", "32", "--batch_size", "8", "--soft_nms", "--embed_dim", "64"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained briefly on a tiny dataset, and the test videos' features in both layouts."""
    root = tmp_path_factory.mktemp("predict")
    data = make_synthetic_dataset(str(root / "data"), num_train=16, num_test=4, num_classes=3, length=(30, 60),
                                  signal=0.15, seed=2)
    main.main(["--data_path", data, "--output_dir", str(root / "ckpt"), "--exp_name", "m", "--max_steps", "40",
               "--detection_inf_step", "40", "--num_epochs", "40"] + QUICK)
    split = os.path.join(data, "features", "test")
    joint = root / "joint"
    joint.mkdir()
    for f in sorted(os.listdir(os.path.join(split, "rgb"))):
        rgb, flow = np.load(os.path.join(split, "rgb", f)), np.load(os.path.join(split, "flow", f))
        np.save(joint / f, np.concatenate([rgb, flow], axis=1))
    return {"root": root, "ckpt": str(root / "ckpt" / "m" / "best.pt"), "split": split, "joint": str(joint)}


def predict(trained, folder, tmp_path, *flags):
    return main.main(["--inference_only", "--predict_dir", folder, "--model_file", trained["ckpt"],
                      "--output_dir", str(tmp_path), "--exp_name", "p"] + QUICK + list(flags))


def test_both_layouts_give_the_same_detections(trained, tmp_path):
    split = predict(trained, trained["split"], tmp_path / "a")
    joint = predict(trained, trained["joint"], tmp_path / "b")
    assert split == joint and len(split) == 4 and sum(map(len, split.values())) > 0
    saved = json.load(open(tmp_path / "a" / "p" / "predictions.json"))["results"]
    assert saved == split
    rows = list(csv.DictReader(open(tmp_path / "a" / "p" / "detections.csv")))
    assert len(rows) == sum(map(len, split.values()))
    assert set(rows[0]) == {"video", "label", "start", "end", "score"}
    assert {r["label"] for r in rows} <= set(THUMOS14_CLASSES)      # the checkpoint's class names


def test_top_k_min_score_and_plots(trained, tmp_path):
    full = predict(trained, trained["split"], tmp_path / "full")
    cut = predict(trained, trained["split"], tmp_path / "cut", "--top_k", "3", "--min_score", "0.2", "--plot")
    for vid, dets in full.items():
        expected = sorted((d for d in dets if d["score"] >= 0.2), key=lambda d: -d["score"])[:3]
        assert cut[vid] == expected
        assert (tmp_path / "cut" / "p" / "plots" / f"{vid}.png").read_bytes()[:4] == b"\x89PNG"


def test_release_checkpoint_uses_the_thumos14_list_and_says_so(trained, tmp_path, capsys):
    plain = tmp_path / "CAS_Only.pkl"
    torch.save(torch.load(trained["ckpt"], weights_only=True)["model"], plain)
    result = main.main(["--inference_only", "--predict_dir", trained["split"], "--model_file", str(plain),
                        "--output_dir", str(tmp_path), "--exp_name", "p"] + QUICK)
    assert "using the THUMOS14 class list" in capsys.readouterr().out
    assert result == predict(trained, trained["split"], tmp_path / "ours")


def test_checkpoint_without_class_names(trained, tmp_path):
    model = checkpoint.build_model(main.parse_args(QUICK), 5)
    plain = tmp_path / "five.pkl"
    torch.save(model.state_dict(), plain)
    args = ["--inference_only", "--predict_dir", trained["split"], "--model_file", str(plain),
            "--output_dir", str(tmp_path), "--exp_name", "p"] + QUICK
    with pytest.raises(ValueError, match=r"five\.pkl: the checkpoint carries no class names.*--class_names"):
        main.main(args)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"action {i}" for i in range(5)) + "\n")
    result = main.main(args + ["--class_names", str(names)])
    assert {d["label"] for dets in result.values() for d in dets} <= {f"action {i}" for i in range(5)}


def test_bad_folders_and_files(trained, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty: no feature files"):
        predict(trained, str(empty), tmp_path)
    wide = tmp_path / "wide"
    wide.mkdir()
    np.save(wide / "v.npy", np.zeros((10, 1024), dtype=np.float32))
    with pytest.raises(ValueError, match=r"v\.npy: expected shape \[T, 2048\]"):
        predict(trained, str(wide), tmp_path)
    half = tmp_path / "half"
    shutil.copytree(trained["split"], half)
    os.remove(next((half / "flow").iterdir()))
    with pytest.raises(FileNotFoundError, match="flow"):
        predict(trained, str(half), tmp_path)


@pytest.mark.slow
def test_predict_script(trained, tmp_path):
    """On a feature folder, also where PyAV and OpenCV's contrib modules are missing (the GPU machine)."""
    env = dict(missing_modules.environment(tmp_path / "hide"), PYTHON=sys.executable)
    proc = subprocess.run(["bash", "scripts/predict.sh", trained["joint"], trained["ckpt"], "--output_dir",
                           str(tmp_path)] + QUICK, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "4 videos" in proc.stdout and (tmp_path / "predict" / "detections.csv").exists()
    usage = subprocess.run(["bash", "scripts/predict.sh"], cwd=REPO, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_our_checkpoint_brings_its_training_settings(trained, tmp_path):
    # trained with --embed_dim 64; not given here, so the checkpoint's value replaces the default 512
    result = main.main(["--inference_only", "--predict_dir", trained["split"], "--model_file", trained["ckpt"],
                        "--output_dir", str(tmp_path), "--exp_name", "p", "--num_segments", "32", "--soft_nms"])
    assert result == predict(trained, trained["split"], tmp_path / "explicit")
    with pytest.raises(ValueError, match="shape mismatch"):                  # an explicit flag still wins
        main.main(["--inference_only", "--predict_dir", trained["split"], "--model_file", trained["ckpt"],
                   "--output_dir", str(tmp_path), "--exp_name", "p", "--num_segments", "32", "--embed_dim", "128"])

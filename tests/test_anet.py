"""ActivityNet v1.2 / v1.3: class lists, defaults, and an end-to-end run on a tiny generated dataset."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import main
from dataset import FeatureDataset, load_class_names, make_synthetic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANET12_CLASSES = sorted(f"Activity {i:03d}" for i in range(100))


def anet_layout(root, classes=ANET12_CLASSES, used=4, seed=0, **kwargs):
    """A tiny ActivityNet-layout dataset: videos of the first ``used`` classes in subsets "training" and
    "validation", and one annotation-only "testing" entry per class (no features, in no split), so that
    gt.json lists every class, as the release's does."""
    root = make_synthetic_dataset(str(root), num_classes=used, classes=classes, subsets=("training", "validation"),
                                  seed=seed, **kwargs)
    gt_path = os.path.join(root, "gt.json")
    gt = json.load(open(gt_path))
    for i, label in enumerate(classes):
        gt["database"][f"catalogue_{i:03d}"] = {"subset": "testing", "annotations": [{"label": label,
                                                                                       "segment": [0.0, 1.0]}]}
    json.dump(gt, open(gt_path, "w"))
    return root


def test_class_list_is_read_from_gt_json_and_checked(tmp_path):
    root = anet_layout(tmp_path / "ok", num_train=2, num_test=1, length=(10, 20))
    assert load_class_names(root, "anet12") == ANET12_CLASSES
    with pytest.raises(ValueError, match=r"gt\.json: 100 classes found, but anet13 has 200"):
        load_class_names(root, "anet13")
    short = anet_layout(tmp_path / "short", classes=ANET12_CLASSES[:99], num_train=2, num_test=1, length=(10, 20))
    with pytest.raises(ValueError, match="99 classes found, but anet12 has 100"):
        load_class_names(short, "anet12")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_class_names(root, "anet14")


@pytest.mark.parametrize("dataset, embed_dim", [("anet12", 512), ("anet13", 1024)])
def test_activitynet_defaults(dataset, embed_dim):
    args = main.parse_args(["--dataset", dataset])
    assert (args.num_segments, args.embed_dim, args.topk_ratio, args.cas_weight) == (50, embed_dim, 2, 0.5)
    assert args.test_subset == "validation" and args.mine_ratio == 20 and args.class_th == 0.1
    assert args.tiou == np.linspace(0.5, 0.95, 10).tolist() and len(args.tiou) == 10
    assert main.parse_args(["--dataset", dataset, "--num_segments", "100"]).num_segments == 100
    thumos = main.parse_args([])
    assert (thumos.num_segments, thumos.embed_dim, thumos.topk_ratio, thumos.cas_weight) == (750, 512, 8, 1 / 3)
    assert thumos.test_subset == "test" and thumos.class_th == 0.25 and len(thumos.tiou) == 7


def test_videos_shorter_than_num_segments_are_stretched(tmp_path):
    root = anet_layout(tmp_path, num_train=2, num_test=2, length=(7, 12))
    ds = FeatureDataset(root, "test", 50, "uniform", ANET12_CLASSES)
    feats, _, _, T_v = ds[0]
    assert feats.shape == (50, 2048) and T_v < 50
    expected = ds.features[ds.vids[0]][np.floor(np.arange(50) * T_v / 50).astype(int)]
    assert np.array_equal(feats.numpy(), expected)


@pytest.mark.slow
def test_end_to_end_on_tiny_activitynet_layout(tmp_path):
    # ActivityNet-like: long instances (k = T // 2 assumes actions fill much of a video)
    root = anet_layout(tmp_path / "data", num_train=32, num_test=12, length=(40, 80), instance_length=(25, 60),
                       signal=0.15, seed=4)
    common = ["--dataset", "anet12", "--data_path", root, "--output_dir", str(tmp_path / "ckpt"),
              "--batch_size", "8", "--soft_nms"]
    args = main.parse_args(common)
    torch.manual_seed(args.seed)
    untrained, _ = main.evaluate(main.build_model(args, 100),
                                 FeatureDataset(root, "test", 50, "uniform", ANET12_CLASSES), args, torch.device("cpu"))
    best = main.main(common + ["--exp_name", "anet", "--num_epochs", "30", "--detection_inf_step", "40"])
    assert best["tiou"] == np.linspace(0.5, 0.95, 10).tolist() and len(best["mAP"]) == 10
    assert best["average_mAP"] > untrained["average_mAP"] + 0.5
    state = torch.load(tmp_path / "ckpt" / "anet" / "best.pt", weights_only=True)
    assert state["class_names"] == ANET12_CLASSES and state["model"]["actionness_module.cls.0.weight"].shape[0] == 100
    again = main.main(common + ["--exp_name", "anet_eval", "--inference_only",
                                "--model_file", str(tmp_path / "ckpt" / "anet" / "best.pt")])
    assert again["mAP"] == pytest.approx(best["mAP"], abs=1e-12)


@pytest.mark.slow
def test_activitynet_scripts(tmp_path):
    root = anet_layout(tmp_path / "data", num_train=8, num_test=4, length=(20, 40), instance_length=(10, 20))
    env = dict(os.environ, DATA_PATH=root, PYTHON=sys.executable,
               MODEL_FILE=str(tmp_path / "ckpt" / "aicl_anet12" / "best.pt"))
    out = ["--output_dir", str(tmp_path / "ckpt")]
    train = subprocess.run(["bash", "scripts/train_anet.sh", "anet12", "--max_steps", "2", "--detection_inf_step", "2"]
                           + out, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    infer = subprocess.run(["bash", "scripts/inference_anet.sh", "anet12"] + out, cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert infer.returncode == 0, infer.stderr
    assert "0.95" in infer.stdout and "AVG" in infer.stdout
    usage = subprocess.run(["bash", "scripts/train_anet.sh", "anet99"], cwd=REPO, capture_output=True, text=True)
    assert usage.returncode == 2 and "anet12|anet13" in usage.stderr
    missing = subprocess.run(["bash", "scripts/train_anet.sh", "anet13"], cwd=REPO, capture_output=True, text=True,
                             env=dict(os.environ, DATA_PATH=str(tmp_path / "none")))
    assert missing.returncode == 1 and "No dataset found" in missing.stderr


def test_gt_json_without_a_database_object_is_a_clean_error(tmp_path):
    (tmp_path / "gt.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"gt\.json: no 'database' object"):
        load_class_names(str(tmp_path), "anet12")

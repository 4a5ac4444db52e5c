"""ActivityNet v1.2 / v1.3: class lists, defaults, and an end-to-end run on a tiny generated dataset."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import dataset
import checkpoint
import inference
import main
from dataset import FeatureDataset, load_class_names, make_synthetic_dataset, uniform_indices
from eval import evaluate_detection
from helpers import make_gt, make_results

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
    # SAL_ActivityNet: soft-NMS 0.7, short test videos kept, 50k steps of batch 32 evaluated every 200
    assert (args.nms_thresh, args.nms_alpha, args.short_videos) == (0.7, 0.35, "keep")
    assert (args.batch_size, args.num_epochs, args.max_steps, args.detection_inf_step) == (32, 0, 50_000, 200)
    thumos = main.parse_args([])
    assert (thumos.num_segments, thumos.embed_dim, thumos.topk_ratio, thumos.cas_weight) == (750, 512, 8, 1 / 3)
    assert thumos.test_subset == "test" and thumos.class_th == 0.25 and len(thumos.tiou) == 7
    assert (thumos.nms_thresh, thumos.nms_alpha, thumos.short_videos) == (0.4, 0.35, "stretch")
    assert (thumos.batch_size, thumos.num_epochs, thumos.max_steps, thumos.detection_inf_step) == (16, 900, 0, 50)
    given = main.parse_args(["--dataset", dataset, "--nms_thresh", "0.5", "--short_videos", "stretch"])
    assert (given.nms_thresh, given.short_videos) == (0.5, "stretch")


def test_a_run_without_an_end_is_refused(capsys):
    with pytest.raises(SystemExit):
        main.parse_args(["--dataset", "anet13", "--max_steps", "0"])
    assert "both 0" in capsys.readouterr().err
    assert main.parse_args(["--dataset", "anet13", "--max_steps", "0", "--num_epochs", "3"]).num_epochs == 3


def test_short_videos_are_kept_for_activitynet_and_stretched_for_thumos14(tmp_path):
    root = anet_layout(tmp_path, num_train=2, num_test=2, length=(7, 12))
    for name, keep in (("anet12", True), ("thumos14", False)):
        args = main.parse_args(["--dataset", name, "--data_path", root, "--num_segments", "50"])
        ds = inference.feature_dataset(args, "test", ANET12_CLASSES)
        feats, _, _, T_v = ds[0]
        full = ds.features[ds.vids[0]]                                         # [T_v, 2048]
        assert T_v == len(full) < 50 and ds.keep_short == keep
        if keep:                                                               # SAL / CoLA: the video itself
            assert np.array_equal(feats.numpy(), full)
        else:                                                                  # release: repeated snippets
            assert np.array_equal(feats.numpy(), full[np.floor(np.arange(50) * T_v / 50).astype(int)])
    assert uniform_indices(7, 50, keep_short=True).tolist() == list(range(7))
    assert uniform_indices(50, 50, keep_short=True).tolist() == list(range(50))
    assert uniform_indices(100, 50, keep_short=True).tolist() == list(range(0, 100, 2))   # longer: sampled
    train = inference.feature_dataset(main.parse_args(["--dataset", "anet12", "--data_path", root,
                                                       "--num_segments", "50"]), "train", ANET12_CLASSES)
    assert train[0][0].shape == (50, 2048) and not train.keep_short            # training always samples T


def test_kept_short_videos_give_detections_inside_the_video(tmp_path):
    root = anet_layout(tmp_path, num_train=2, num_test=6, length=(3, 30), instance_length=(2, 10))
    args = main.parse_args(["--dataset", "anet12", "--data_path", root, "--soft_nms"])
    torch.manual_seed(0)
    model = checkpoint.build_model(args, 100)
    test_set = inference.feature_dataset(args, "test", ANET12_CLASSES)
    metrics, predictions = inference.evaluate(model, test_set, args, torch.device("cpu"))
    assert 0 <= metrics["average_mAP"] <= 1 and metrics["subset"] == "validation"
    for vid, dets in predictions["results"].items():
        seconds = test_set.lengths[vid] * 16 / 25
        assert dets and all(0 <= d["segment"][0] < d["segment"][1] <= seconds + 1e-9 for d in dets)


def test_result_files_satisfy_the_official_sal_and_cola_evaluators(tmp_path):
    root = anet_layout(tmp_path, num_train=2, num_test=2, length=(20, 40))
    args = main.parse_args(["--dataset", "anet12", "--data_path", root])
    model = checkpoint.build_model(args, 100)
    _, predictions = inference.evaluate(model, inference.feature_dataset(args, "test", ANET12_CLASSES), args,
                                   torch.device("cpu"))
    # official ActivityNet: results, version, external_data; SAL (eval_detection13) and CoLA: method, results
    assert {"results", "version", "external_data", "method"} <= set(predictions)
    assert isinstance(predictions["method"], str) and all("score" in d for v in predictions["results"].values()
                                                          for d in v)


def test_val_subset_of_sal_is_scored_for_validation(tmp_path):
    gt = make_gt({"v1": [("A", 0.0, 5.0)], "v2": [("B", 2.0, 4.0)]}, subset="val")
    results = make_results({"v1": [("A", 0.9, 0.0, 5.0)], "v2": [("A", 0.8, 2.0, 4.0)]})
    out = evaluate_detection(gt, results, "validation", [0.5])
    assert out["subset"] == "val" and out["ap_per_class"]["A"][0] == 1.0 and out["ap_per_class"]["B"][0] == 0.0
    both = make_gt({"v1": [("A", 0.0, 5.0)]}, subset="val")
    both["database"]["v3"] = {"subset": "validation", "annotations": [{"label": "B", "segment": [2.0, 4.0]}]}
    assert evaluate_detection(both, results, "validation", [0.5])["subset"] == "validation"
    with pytest.raises(ValueError, match="no annotated instance in subset 'test'"):
        evaluate_detection(gt, results, "test", [0.5])             # only validation has the alias
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    cli = subprocess.run([sys.executable, "-m", "eval", "--gt", str(path), "--pred", str(tmp_path / "pred.json"),
                          "--subset", "validation", "--tiou", "0.5"], cwd=REPO, capture_output=True, text=True)
    assert cli.returncode == 0 and "subset 'val'" in cli.stdout


def test_driver_scores_a_val_subset_and_says_so(tmp_path, capsys):
    root = anet_layout(tmp_path / "data", num_train=4, num_test=3, length=(20, 40))
    gt_path = os.path.join(root, "gt.json")
    gt = json.load(open(gt_path))
    for entry in gt["database"].values():
        entry["subset"] = {"validation": "val"}.get(entry["subset"], entry["subset"])
    json.dump(gt, open(gt_path, "w"))
    args = main.parse_args(["--dataset", "anet12", "--data_path", root])
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    torch.save({"model": checkpoint.build_model(args, 100).state_dict(), "class_names": ANET12_CLASSES,
                "args": {"embed_dim": 512}}, ckpt)
    metrics = main.main(["--dataset", "anet12", "--data_path", root, "--inference_only", "--model_file", str(ckpt),
                         "--output_dir", str(tmp_path / "out")])
    assert metrics["subset"] == "val" and "gt.json subset 'val'" in capsys.readouterr().out
    assert json.load(open(tmp_path / "out" / "aicl" / "eval_model" / "predictions.json"))["method"] == "AICL"


# --- feature cache: memory or memory-mapped ----------------------------------------------------------------

def batches(ds, num_workers=0, epochs=(0, 1), batch_size=3):
    """Every batch of the epochs (features, labels, vids, lengths), in a fixed order."""
    out = []
    for epoch in epochs:
        ds.set_epoch(epoch)
        order = main.epoch_batches(len(ds), batch_size, 1, epoch)
        out += list(torch.utils.data.DataLoader(ds, batch_sampler=order, num_workers=num_workers))
    return out


@pytest.mark.parametrize("split, sampling", [("train", "random"), ("test", "uniform_keep_short"), ("test", "uniform")])
def test_memory_mapped_and_in_memory_features_give_identical_batches(tmp_path, split, sampling):
    root = anet_layout(tmp_path, num_train=7, num_test=7, length=(30, 70))
    vid = open(os.path.join(root, f"split_{split}.txt")).read().split()[0]
    path = os.path.join(root, "features", split, "flow", f"{vid}.npy")
    np.save(path, np.load(path).astype(np.float64)[:-1])       # float64 and one snippet short: same handling
    with pytest.warns(UserWarning, match="cut to the shorter"):
        memory = FeatureDataset(root, split, 50, sampling, ANET12_CLASSES, cache="memory")
    with pytest.warns(UserWarning, match="cut to the shorter"):
        mapped = FeatureDataset(root, split, 50, sampling, ANET12_CLASSES, cache="mmap")
    assert (memory.cache, mapped.cache, mapped.features) == ("memory", "mmap", None)
    assert mapped.lengths == {v: len(f) for v, f in memory.features.items()}
    loop = dict(epochs=(0, 1), batch_size=3) if sampling == "random" else dict(epochs=(0,), batch_size=1)
    expected = batches(memory, **loop)
    for workers in (0, 2):
        got = batches(mapped, workers, **loop)
        assert len(got) == len(expected)
        for (f1, y1, v1, t1), (f2, y2, v2, t2) in zip(expected, got):
            assert f1.dtype == f2.dtype == torch.float32
            assert torch.equal(f1, f2) and torch.equal(y1, y2) and v1 == v2 and torch.equal(t1, t2)
    for v in memory.vids:
        assert np.array_equal(memory.frame_labels(v), mapped.frame_labels(v))


def test_automatic_cache_choice_and_mmap_input_errors(tmp_path, monkeypatch):
    root = anet_layout(tmp_path, num_train=3, num_test=2, length=(30, 40))
    ds = FeatureDataset(root, "train", 50, "random", ANET12_CLASSES)
    assert ds.cache == "memory" and ds.feature_bytes == sum(ds.lengths.values()) * 2048 * 4
    monkeypatch.setattr(dataset, "available_memory", lambda: ds.feature_bytes * 2 - 1)    # more than half: mmap
    small = FeatureDataset(root, "train", 50, "random", ANET12_CLASSES)
    assert small.cache == "mmap" and "GiB available" in small.cache_reason
    vid = small.vids[0]
    path = os.path.join(root, "features", "train", "rgb", f"{vid}.npy")
    bad = np.load(path)
    bad[:] = np.nan
    np.save(path, bad)
    with pytest.raises(ValueError, match=f"{vid}.npy: contains NaN or Inf"):
        small[0]                                                 # values are checked where they are read
    np.save(path, bad[:, :10])
    with pytest.raises(ValueError, match=rf"{vid}.npy: expected shape \[T, 1024\]"):
        FeatureDataset(root, "train", 50, "random", ANET12_CLASSES, cache="mmap")   # shapes up front
    with pytest.raises(ValueError, match="cache must be"):
        FeatureDataset(root, "train", 50, "random", ANET12_CLASSES, cache="disk")


@pytest.mark.slow
def test_end_to_end_on_tiny_activitynet_layout(tmp_path):
    # ActivityNet-like: long instances (k = T // 2 assumes actions fill much of a video)
    root = anet_layout(tmp_path / "data", num_train=32, num_test=12, length=(40, 80), instance_length=(25, 60),
                       signal=0.15, seed=4)
    common = ["--dataset", "anet12", "--data_path", root, "--output_dir", str(tmp_path / "ckpt"),
              "--batch_size", "8", "--soft_nms"]
    args = main.parse_args(common)
    torch.manual_seed(args.seed)
    untrained, _ = inference.evaluate(checkpoint.build_model(args, 100),
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
    assert missing.returncode == 2 and "no dataset found" in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_gt_json_without_a_database_object_is_a_clean_error(tmp_path):
    (tmp_path / "gt.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"gt\.json: no 'database' object"):
        load_class_names(str(tmp_path), "anet12")

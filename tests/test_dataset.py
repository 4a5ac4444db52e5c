"""Tests of dataset.py: sampling to a fixed T, the feature layout, labels and input errors (spec "Data layout",
"Sampling to a fixed T")."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import torch

from dataset import FeatureDataset, collate, random_indices, uniform_indices

GOLDEN = json.loads((Path(__file__).parent / "data" / "release_golden.json").read_text())["uniform_sampling"]


# --- sampling -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_uniform_indices_golden(case):
    T_v, T = map(int, case.split("->"))
    assert uniform_indices(T_v, T).tolist() == GOLDEN[case]


def test_uniform_indices_by_hand():
    assert uniform_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]        # floor(i / 2)
    assert uniform_indices(9, 3).tolist() == [0, 3, 6]
    assert uniform_indices(1, 4).tolist() == [0, 0, 0, 0]


def test_random_indices_identity_when_lengths_match():
    assert random_indices(6, 6, np.random.default_rng(0)).tolist() == [0, 1, 2, 3, 4, 5]


def test_random_indices_longer_video():
    # T_v 10, T 4: s = 0, 2.5, 5, 7.5 -> idx_0 in 0..2, idx_1 in 2..5, idx_2 in 5..7, idx_3 in 7..9.
    draws = np.array([random_indices(10, 4, np.random.default_rng(seed)) for seed in range(300)])
    assert (np.diff(draws, axis=1) >= 0).all()
    ranges = [range(0, 3), range(2, 6), range(5, 8), range(7, 10)]
    for i, r in enumerate(ranges):
        assert set(draws[:, i].tolist()) == set(r), i               # every value of the inclusive range drawn
    assert draws[:, 0].min() == 0 and draws[:, 3].max() == 9


def test_random_indices_shorter_video_repeats():
    # T_v 3, T 7: floor(s_i) = 0 0 0 1 1 2 2 -> idx = 0, 0, {0,1}, 1, {1,2}, 2, 2 (last: floor(s_6) = T_v - 1).
    draws = np.array([random_indices(3, 7, np.random.default_rng(seed)) for seed in range(100)])
    assert (draws < 3).all() and (np.diff(draws, axis=1) >= 0).all()
    expected = [{0}, {0}, {0, 1}, {1}, {1, 2}, {2}, {2}]
    assert [set(draws[:, i].tolist()) for i in range(7)] == expected


def test_random_indices_same_seed_same_draws():
    a = random_indices(100, 7, np.random.default_rng(42))
    b = random_indices(100, 7, np.random.default_rng(42))
    assert a.tolist() == b.tolist()


# --- a tiny dataset in the real layout ------------------------------------------------------------------

def stream(T_v, value):
    """[T_v, 1024] whose row t holds value + t everywhere (so a sampled row tells its snippet)."""
    return np.repeat(value + np.arange(T_v, dtype=np.float32)[:, None], 1024, axis=1)


def write_dataset(root, videos, gt_videos=None):
    """videos: {vid: (split, T_v, annotations)}; features rgb = t, flow = 100 + t. Returns root as str."""
    database = {vid: {"subset": "validation" if split == "train" else "test", "annotations": anns}
                for vid, (split, _, anns) in videos.items()}
    for vid in gt_videos or []:
        database.pop(vid)
    (root / "gt.json").write_text(json.dumps({"database": database}))
    for split in ("train", "test"):
        vids = [v for v, (s, _, _) in videos.items() if s == split]
        (root / f"split_{split}.txt").write_text("\n".join(vids) + "\n")
        for vid in vids:
            T_v = videos[vid][1]
            for name, value in (("rgb", 0.0), ("flow", 100.0)):
                folder = root / "features" / split / name
                folder.mkdir(parents=True, exist_ok=True)
                np.save(folder / f"{vid}.npy", stream(T_v, value))
    return str(root)


VIDEOS = {
    "v_dive": ("train", 12, [{"label": "CliffDiving", "segment": [1.0, 2.5]},
                             {"label": "Diving", "segment": [1.0, 2.5]}]),
    "v_pitch": ("train", 5, [{"label": "BaseballPitch", "segment": [0.5, 1.5]}]),
    "t_billiards": ("test", 7, [{"label": "Billiards", "segment": [0.9, 2.0]},
                                {"label": "VolleyballSpiking", "segment": [3.0, 4.0]}]),
    "t_empty": ("test", 4, []),
}


@pytest.fixture
def data(tmp_path):
    return write_dataset(tmp_path, VIDEOS)


def test_train_items(data):
    ds = FeatureDataset(data, "train", 4, "random")
    assert ds.vids == ["v_dive", "v_pitch"]
    feats, label, vid, T_v = ds[0]
    assert vid == "v_dive" and T_v == 12
    assert feats.shape == (4, 2048) and str(feats.dtype) == "torch.float32"
    assert label.shape == (20,)
    assert label.nonzero().flatten().tolist() == [4, 7]                # CliffDiving, Diving
    assert ds[1][1].nonzero().flatten().tolist() == [0]                # BaseballPitch
    idx = feats[:, 0].numpy()
    assert (feats[:, :1024].numpy() == idx[:, None]).all()              # rgb in channels 0..1023
    assert (feats[:, 1024:].numpy() == 100 + idx[:, None]).all()        # flow in channels 1024..2047
    # idx_0 in 0..3, idx_1 in 3..6, idx_2 in 6..9, idx_3 in 9..11
    assert [lo <= i <= hi for i, (lo, hi) in zip(idx, [(0, 3), (3, 6), (6, 9), (9, 11)])] == [True] * 4


def test_test_items_use_uniform_sampling(data):
    ds = FeatureDataset(data, "test", 4, "uniform")
    assert ds.vids == ["t_billiards", "t_empty"]
    feats, label, vid, T_v = ds[0]
    assert T_v == 7
    assert feats[:, 0].tolist() == [0, 1, 3, 5]                          # floor(i 7 / 4)
    assert label.nonzero().flatten().tolist() == [2, 19]
    feats, label, vid, T_v = ds[1]                                       # a test video without ground truth is valid
    assert vid == "t_empty" and T_v == 4 and label.sum() == 0 and feats[:, 0].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("cache", ["memory", "mmap"])
def test_items_and_batches_are_channel_major(data, cache):
    # the layout of the model's convolutions: [T, 2048] views of [2048, T] memory, kept by collate
    ds = FeatureDataset(data, "test", 4, "uniform", cache=cache)
    items = [ds[0], ds[1]]
    for feats, *_ in items:
        assert feats.shape == (4, 2048) and feats.t().is_contiguous()
    feats, labels, vids, T_v = collate(items)
    assert feats.shape == (2, 4, 2048) and feats.transpose(1, 2).is_contiguous()
    assert torch.equal(feats, torch.stack([f for f, *_ in items]))
    assert torch.equal(labels, torch.stack([y for _, y, _, _ in items]))
    assert list(vids) == ["t_billiards", "t_empty"] and T_v.tolist() == [7, 4]
    loaded = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)))
    assert torch.equal(loaded[0], feats) and loaded[0].transpose(1, 2).is_contiguous()


def test_set_epoch_controls_the_random_draws(data):
    ds = FeatureDataset(data, "train", 4, "random")

    def draw(epoch):
        ds.set_epoch(epoch)
        return ds[0][0][:, 0].tolist()

    assert draw(3) == draw(3)
    assert len({tuple(draw(e)) for e in range(6)}) > 1
    again = FeatureDataset(data, "train", 4, "random")
    again.set_epoch(3)
    assert again[0][0][:, 0].tolist() == draw(3)


def test_frame_labels_use_snippet_centres(data):
    # centres (16 i + 8) / 25 = 0.32, 0.96, 1.6, 2.24, 2.88, 3.52, 4.16 s.
    # Billiards [0.9, 2.0] holds snippets 1, 2; VolleyballSpiking [3.0, 4.0] holds snippet 5.
    ds = FeatureDataset(data, "test", 4, "uniform")
    labels = ds.frame_labels("t_billiards")
    assert labels.shape == (7, 20)
    assert labels[:, 2].tolist() == [0, 1, 1, 0, 0, 0, 0]
    assert labels[:, 19].tolist() == [0, 0, 0, 0, 0, 1, 0]
    assert labels.sum() == 3


def test_training_video_without_label_is_skipped(tmp_path):
    videos = dict(VIDEOS, v_nolabel=("train", 6, []))
    data = write_dataset(tmp_path, videos)
    with pytest.warns(UserWarning, match="v_nolabel"):
        ds = FeatureDataset(data, "train", 4, "random")
    assert ds.vids == ["v_dive", "v_pitch"] and len(ds) == 2


def test_ambiguous_annotations_are_skipped_with_a_warning(tmp_path):
    videos = dict(VIDEOS, v_amb=("train", 6, [{"label": "Ambiguous", "segment": [0.0, 1.0]},
                                             {"label": "HighJump", "segment": [2.0, 3.0]}]))
    data = write_dataset(tmp_path, videos)
    with pytest.warns(UserWarning, match="Ambiguous"):
        ds = FeatureDataset(data, "train", 4, "random")
    assert ds.labels["v_amb"].nonzero()[0].tolist() == [11]            # HighJump only


@pytest.mark.parametrize("label", ["Swimming", ["HighJump"], 7])
def test_unknown_label_is_an_error_naming_file_video_and_label(tmp_path, label):
    videos = dict(VIDEOS, v_odd=("train", 6, [{"label": label, "segment": [0.0, 1.0]}]))
    data = write_dataset(tmp_path, videos)
    with pytest.raises(ValueError, match=r"gt\.json: video v_odd: unknown label"):
        FeatureDataset(data, "train", 4, "random")


def test_segment_ending_before_it_starts_is_an_error(tmp_path):
    videos = dict(VIDEOS, v_back=("train", 6, [{"label": "HighJump", "segment": [3.0, 1.0]}]))
    data = write_dataset(tmp_path, videos)
    with pytest.raises(ValueError, match="v_back.*start <= end"):
        FeatureDataset(data, "train", 4, "random")


def test_no_labelled_training_video_is_an_error(tmp_path):
    data = write_dataset(tmp_path, {"v_a": ("train", 6, []), "t": ("test", 4, [])})
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="split_train.txt: no labelled training video"):
        FeatureDataset(data, "train", 4, "random")


# --- input errors ---------------------------------------------------------------------------------------

def test_missing_gt_json(data):
    os.remove(os.path.join(data, "gt.json"))
    with pytest.raises(FileNotFoundError, match="gt.json"):
        FeatureDataset(data, "test", 4, "uniform")


def test_malformed_gt_json(data):
    Path(data, "gt.json").write_text('{"database": {')
    with pytest.raises(ValueError, match="gt.json"):
        FeatureDataset(data, "test", 4, "uniform")


def test_missing_split_file(data):
    os.remove(os.path.join(data, "split_test.txt"))
    with pytest.raises(FileNotFoundError, match="split_test.txt"):
        FeatureDataset(data, "test", 4, "uniform")


def test_video_of_split_not_in_gt(tmp_path):
    data = write_dataset(tmp_path, VIDEOS, gt_videos=["t_empty"])
    with pytest.raises(ValueError, match="t_empty"):
        FeatureDataset(data, "test", 4, "uniform")


def test_missing_feature_file(data):
    os.remove(os.path.join(data, "features", "test", "flow", "t_billiards.npy"))
    with pytest.raises(FileNotFoundError, match=r"flow.t_billiards\.npy"):
        FeatureDataset(data, "test", 4, "uniform")


@pytest.mark.parametrize("array, message", [
    (np.zeros((7, 1000), np.float32), "1024"),
    (np.zeros((0, 1024), np.float32), "empty"),
    (np.where(np.arange(7)[:, None] == 3, np.nan, stream(7, 0.0)).astype(np.float32), "NaN"),
], ids=["wrong_width", "empty", "nan"])
def test_bad_feature_file(data, array, message):
    path = os.path.join(data, "features", "test", "rgb", "t_billiards.npy")
    np.save(path, array)
    with pytest.raises(ValueError, match=message) as err:
        FeatureDataset(data, "test", 4, "uniform")
    assert "t_billiards.npy" in str(err.value)


def test_flow_two_snippets_short_is_an_error(data):
    np.save(os.path.join(data, "features", "test", "flow", "t_billiards.npy"), stream(5, 100.0))
    with pytest.raises(ValueError, match="t_billiards"):
        FeatureDataset(data, "test", 4, "uniform")


def test_flow_one_snippet_short_is_cut_with_a_warning(data):
    np.save(os.path.join(data, "features", "test", "flow", "t_billiards.npy"), stream(6, 100.0))
    with pytest.warns(UserWarning, match="t_billiards"):
        ds = FeatureDataset(data, "test", 6, "uniform")
    feats, _, _, T_v = ds[0]
    assert T_v == 6
    assert feats[:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert (feats[:, 1024] == 100 + feats[:, 0]).all()


@pytest.mark.parametrize("num_segments", [0, -3])
def test_num_segments_must_be_positive(data, num_segments):
    with pytest.raises(ValueError, match="num_segments"):
        FeatureDataset(data, "test", num_segments, "uniform")

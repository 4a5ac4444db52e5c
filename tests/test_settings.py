"""settings.resolve: the features' frame rate travels from the dataset's extraction.json; training warns when T is
far above the training videos' lengths."""
import json
import os

import pytest
import torch

import main
import settings
from dataset import make_synthetic_dataset


def extraction_json(data, split, fps):
    with open(os.path.join(data, "features", split, "extraction.json"), "w") as f:
        json.dump({"settings": {"fps": fps, "snippet_frames": 16}, "videos": {}}, f)


@pytest.fixture()
def data(tmp_path):
    data = make_synthetic_dataset(str(tmp_path / "data"), num_train=8, num_test=2, num_classes=2, length=(30, 30),
                                  seed=4)
    for split in ("train", "test"):
        extraction_json(data, split, 30)
    return data


def test_training_takes_the_frame_rate_of_the_datasets_extraction_json(data, tmp_path, capsys):
    """Issue 19, 3b: a dataset extracted at 30 fps trains at 30 fps without --feature_fps; best.pt carries it.
    Issue 21, item 6: T far above the longest training video is a warning naming both and the median."""
    best = main.main(["--data_path", data, "--output_dir", str(tmp_path), "--exp_name", "r", "--max_steps", "1",
                      "--batch_size", "8", "--embed_dim", "64", "--num_segments", "64"])
    out, err = capsys.readouterr()
    where = " and ".join(os.path.join(data, "features", s, "extraction.json") for s in ("train", "test"))
    assert f"snippet timing from {where}: 16 frames at 30 fps" in out
    assert torch.load(tmp_path / "r" / "best.pt", weights_only=True)["args"]["feature_fps"] == 30
    assert best.out_dir == str(tmp_path / "r") and "average_mAP" in best
    warning = [line for line in err.splitlines() if "--num_segments 64" in line]
    assert len(warning) == 1 and "longest training video (30 snippets)" in warning[0]
    assert "--num_segments near the median" in warning[0]
    assert warning[0] in (tmp_path / "r" / "log.txt").read_text()


def test_a_given_feature_fps_wins_with_a_note_and_splits_must_agree(data, capsys):
    assert settings.resolve(main.parse_args(["--data_path", data])).args.feature_fps == 30
    resolved = settings.resolve(main.parse_args(["--data_path", data, "--feature_fps", "25"])).args
    assert resolved.feature_fps == 25
    assert "--feature_fps 25 given" in capsys.readouterr().out
    extraction_json(data, "test", 25)
    with pytest.raises(ValueError, match="must share one frame rate"):
        settings.resolve(main.parse_args(["--data_path", data]))
    capsys.readouterr()
    assert settings.resolve(main.parse_args(["--data_path", data, "--feature_fps", "25"])).args.feature_fps == 25
    assert "says 25/30 fps (not used)" in capsys.readouterr().out          # the flag wins over splits that disagree
    os.remove(os.path.join(data, "features", "test", "extraction.json"))
    assert settings.resolve(main.parse_args(["--data_path", data])).args.feature_fps == 30


def test_no_warning_when_T_fits_the_videos(data, tmp_path, capsys):
    main.main(["--data_path", data, "--output_dir", str(tmp_path), "--exp_name", "r", "--max_steps", "1",
               "--batch_size", "8", "--embed_dim", "64", "--num_segments", "24"])
    assert "--num_segments" not in capsys.readouterr().err

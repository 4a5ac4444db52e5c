"""inference.py: actionness accuracy at the features' frame rate, the prediction folder holding one prediction's
files, detections.csv's precision and order, and the results page (report.html) of every evaluation and
prediction with its curves."""
import csv
import json
import os
import re

import numpy as np
import pytest
import torch

import checkpoint
import inference
import main
from dataset import THUMOS14_CLASSES, FeatureDataset, make_synthetic_dataset, uniform_indices
from eval.report import CURVES_FILE, load_curves

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    return make_synthetic_dataset(str(root / "data"), num_train=4, num_test=3, num_classes=2, length=(40, 60),
                                  signal=0.15, seed=5)


@pytest.fixture(scope="module")
def model_file(data, tmp_path_factory):
    """An untrained checkpoint (T = 16, embedding 64): enough for detections of every class at --class_th 0.01."""
    args = main.parse_args(["--num_segments", "16", "--embed_dim", "64", "--soft_nms"])
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("model") / "best.pt")
    checkpoint.save(path, checkpoint.build_model(args, len(THUMOS14_CLASSES)), args, THUMOS14_CLASSES, step=0,
                    best_metrics=None)
    return path


class Oracle(torch.nn.Module):
    """A model whose binary actionness is the given masks, video after video; one class kept, flat curves."""

    def __init__(self, masks):
        super().__init__()
        self.masks = iter(masks)

    def forward(self, x):
        mask = torch.from_numpy(next(self.masks)).float()[None]                       # [1, T]
        p = torch.full((1, len(THUMOS14_CLASSES)), -5.0)
        p[0, 0] = 5.0
        A_score = torch.zeros(1, x.shape[1], len(THUMOS14_CLASSES))
        return {"p": p, "A_score": A_score, "A": mask, "A_ca": mask, "A_bin": mask, "A_ca_bin": mask}


def test_actionness_accuracy_times_the_snippets_at_the_feature_rate(data):
    """Issue 19, 3a: Table 5's A^bin / A_ca^bin accuracies label snippet i by its centre (16 i + 8) / fps,
    with --feature_fps (before: always 25 fps)."""
    args = main.parse_args(["--data_path", data, "--num_segments", "32", "--feature_fps", "30"])
    ds = FeatureDataset(data, "test", args.num_segments, "uniform")
    truth = [ds.frame_labels(v, 30).any(axis=1)[uniform_indices(ds.lengths[v], 32)] for v in ds.vids]
    at_25 = [ds.frame_labels(v).any(axis=1)[uniform_indices(ds.lengths[v], 32)] for v in ds.vids]
    assert any((a != b).any() for a, b in zip(truth, at_25))                       # the rate matters here
    _, stats = inference.predict(Oracle(truth), ds, args, CPU)
    assert stats["A_bin_acc"] == stats["A_ca_bin_acc"] == 1.0
    _, stats = inference.predict(Oracle(at_25), ds, main.parse_args(["--data_path", data, "--num_segments", "32"]), CPU)
    assert stats["A_bin_acc"] == stats["A_ca_bin_acc"] == 1.0


def predict(data, model_file, out, *flags):
    return main.main(["--inference_only", "--predict_dir", os.path.join(data, "features", "test"), "--model_file",
                      model_file, "--output_dir", str(out), "--exp_name", "p", "--class_th", "0.01"] + list(flags))


def test_a_prediction_folder_holds_only_that_predictions_files(data, model_file, tmp_path):
    """Issue 21, item 7: a second prediction without --plot leaves no figure of the first; files a
    prediction does not write stay."""
    first = predict(data, model_file, tmp_path, "--plot")
    folder = tmp_path / "p"
    assert first.out_dir == str(folder)
    assert sorted(os.listdir(folder / "plots")) == sorted(f"{v}.png" for v in first)
    (folder / "plots" / "mine.png").write_bytes(b"a user's figure")
    (folder / "notes.txt").write_text("mine")
    vid = sorted(first)[0]
    second = predict(data, model_file, tmp_path, "--predict_videos", vid)
    assert list(second) == [vid]
    assert os.listdir(folder / "plots") == ["mine.png"]
    assert (folder / "notes.txt").read_text() == "mine"
    assert list(json.load(open(folder / "predictions.json"))["results"]) == [vid]
    assert {r["video"] for r in csv.DictReader(open(folder / "detections.csv"))} == {vid}
    os.remove(folder / "plots" / "mine.png")
    predict(data, model_file, tmp_path)
    assert not (folder / "plots").exists()                      # emptied of the previous figures, removed


def test_detections_csv_has_milliseconds_and_each_videos_rows_by_score(data, model_file, tmp_path):
    """Issue 21, item 8: a detection shorter than 10 ms keeps its start and end; best detections first."""
    results = {"v": [{"label": "a", "score": 0.2, "segment": [1.0001, 1.0049]},
                     {"label": "b", "score": 0.9, "segment": [2.0, 3.5]}],
               "w": [{"label": "a", "score": 0.5, "segment": [0.0, 0.0004]}]}
    assert inference.detections_table(results).splitlines() == [
        "video,label,start,end,score", "v,b,2.000,3.500,0.9000", "v,a,1.000,1.005,0.2000", "w,a,0.000,0.000,0.5000"]
    predicted = predict(data, model_file, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "p" / "detections.csv")))
    assert len(rows) == sum(map(len, predicted.values())) > 1
    for vid in predicted:
        scores = [float(r["score"]) for r in rows if r["video"] == vid]
        assert scores == sorted(scores, reverse=True)
    assert all(len(r["start"].split(".")[1]) == 3 and len(r["end"].split(".")[1]) == 3 for r in rows)


def test_predict_returns_the_curves_the_figures_draw(data, model_file, monkeypatch, tmp_path):
    """Issue 19, 5: predict(curves=True) gives every video's curves (those plot_detections draws) without drawing."""
    args = main.parse_args(["--data_path", data, "--num_segments", "16", "--embed_dim", "64", "--output_dir",
                            str(tmp_path), "--class_th", "0.05"])
    model = checkpoint.load_model(checkpoint.load(model_file), args, len(THUMOS14_CLASSES), CPU, model_file)
    ds = FeatureDataset(data, "test", 16, "uniform")
    drawn = {}
    monkeypatch.setattr(inference, "plot_video", lambda path, curves, seconds, *a, **k: drawn.update(
        {os.path.basename(path)[:-4]: (curves, seconds)}))
    predictions, stats, curves = inference.predict(model, ds, args, CPU, curves=True)
    assert not drawn and set(curves) == set(ds.vids) == set(predictions["results"])
    assert (predictions, stats) == inference.predict(model, ds, args, CPU)
    for vid, (named, seconds) in curves.items():
        assert list(named)[:2] == ["class-aware A", "class-agnostic A_ca"] and len(named) > 2
        assert all(isinstance(c, np.ndarray) and c.shape == (16,) for c in named.values())
        assert seconds == pytest.approx(ds.lengths[vid] * 16 / 25 / 16)
    plotting = main.parse_args(["--data_path", data, "--num_segments", "16", "--embed_dim", "64", "--output_dir",
                                str(tmp_path), "--class_th", "0.05", "--plot_video", *ds.vids])
    inference.predict(model, ds, plotting, CPU)
    for vid, (named, seconds) in curves.items():
        assert list(drawn[vid][0]) == list(named) and drawn[vid][1] == seconds
        for name, curve in named.items():
            np.testing.assert_array_equal(drawn[vid][0][name], curve)


def page_data(path):
    """The JSON data embedded in a results page."""
    text = open(path, encoding="utf-8").read()
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)[1])


def test_an_evaluation_writes_its_results_page_beside_its_metrics(data, model_file, tmp_path):
    """Issue 20: report.html and curves.npz next to predictions.json; the page's mAP is metrics.json's, its
    detections those of predictions.json, and it has every test video's curves."""
    metrics = main.main(["--inference_only", "--data_path", data, "--model_file", model_file, "--output_dir",
                         str(tmp_path), "--exp_name", "e", "--class_th", "0.01"])
    folder = tmp_path / "e" / "eval_best"
    page = page_data(folder / "report.html")
    assert page["metrics"]["mAP"] == pytest.approx(metrics["mAP"], abs=1e-12)
    assert page["metrics"]["mAP"] == pytest.approx(json.load(open(folder / "metrics.json"))["mAP"], abs=1e-12)
    predictions = json.load(open(folder / "predictions.json"))["results"]
    assert len(page["det"]["score"]) == sum(map(len, predictions.values())) > 0
    assert sorted(page["videos"]["id"]) == sorted(predictions) == sorted(load_curves(folder / CURVES_FILE))
    assert page["settings"]["checkpoint"] == os.path.abspath(model_file) and page["settings"]["class_th"] == 0.01


def test_a_prediction_writes_its_results_page_with_durations_and_source_videos(data, model_file, tmp_path):
    predicted = predict(data, model_file, tmp_path)
    folder = tmp_path / "p"
    page = page_data(folder / "report.html")
    assert page["metrics"] is None and len(page["det"]["score"]) == sum(map(len, predicted.values()))
    lengths = FeatureDataset(data, "test", 16, "uniform").lengths
    assert dict(zip(page["videos"]["id"], page["videos"]["duration"])) == pytest.approx(
        {vid: T_v * 16 / 25 for vid, T_v in lengths.items()})
    assert set(load_curves(folder / CURVES_FILE)) == set(predicted)
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"a video")
    (tmp_path / "extraction.json").write_text(json.dumps({"videos": {"a": {"source": str(source)},
                                                                     "b": {"source": str(tmp_path / "gone.mp4")}}}))
    assert inference.source_videos(str(tmp_path), ["a", "b", "c"]) == {"a": str(source)}

"""Tests of utils/plots.py: video and series figures, written atomically as PNG files."""

import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib.image  # noqa: E402  (after the skip: matplotlib is not in requirements.txt)

from utils import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CURVES = {
    "class-aware A": np.sin(np.linspace(0, 6, 120)) ** 2,  # [T = 120]
    "class-agnostic A_ca": np.linspace(0, 1, 120),
    "A_score[LongJump]": np.abs(np.cos(np.linspace(0, 4, 100))),  # curves may differ in length
}
GT_SEGMENTS = [("LongJump", 5.0, 12.5), ("HighJump", 20.0, 26.0)]
DETECTIONS = [("LongJump", 0.1 * k, 2.0 * k, 2.0 * k + 6.0) for k in range(12)]  # 12 > top_n = 10


def read_png(path) -> np.ndarray:
    """The image [H, W, channels] of a PNG file, after checking its magic bytes."""
    with open(path, "rb") as file:
        assert file.read(8) == PNG_MAGIC
    return matplotlib.image.imread(path)


def assert_nontrivial(image: np.ndarray, height: int, width: int) -> None:
    """image has the expected size (+-2 pixels) and more than a handful of distinct colours."""
    assert abs(image.shape[0] - height) <= 2 and abs(image.shape[1] - width) <= 2, image.shape
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20


# --------------------------------------------------------------------------------------------- plot_video


def video_height(n_curves: int) -> int:
    """Pixel height of a video figure with n_curves curve panels."""
    return round((n_curves * plots.CURVE_HEIGHT + plots.DETECTION_HEIGHT) * plots.DPI)


def test_each_curve_gets_its_own_panel_and_y_range():
    curves = {"class-aware A": 0.002 + 0.006 * np.sin(np.linspace(0, 3, 50)) ** 2,   # lives near 0
              "class-agnostic A_ca": np.linspace(0.1, 0.9, 50), "A_score flat": np.full(50, 0.3)}
    fig = plots.video_figure(curves, 0.64, GT_SEGMENTS, DETECTIONS)
    assert len(fig.axes) == 4                                     # three curves, then the detections
    for ax, (name, curve) in zip(fig.axes, curves.items()):
        low, high = ax.get_ylim()
        assert low <= curve.min() and curve.max() <= high and name in ax.get_title(loc="left")
    low, high = fig.axes[0].get_ylim()
    assert high - low < 0.01                                      # the small curve fills its panel
    assert fig.axes[2].get_ylim() == pytest.approx((0.29, 0.31))


def test_plot_video_writes_a_png(tmp_path):
    path = tmp_path / "video.png"
    out = plots.plot_video(path, CURVES, 0.25, GT_SEGMENTS, DETECTIONS, title="video_test_0000004")
    assert out == str(path)
    assert_nontrivial(read_png(path), video_height(3), 1200)  # VIDEO_WIDTH at DPI
    assert os.listdir(tmp_path) == ["video.png"]  # no temporary file left


@pytest.mark.parametrize("gt_segments, detections", [([], DETECTIONS), (GT_SEGMENTS, []), ([], [])])
def test_plot_video_without_ground_truth_or_detections(tmp_path, gt_segments, detections):
    path = plots.plot_video(tmp_path / "video.png", CURVES, 0.25, gt_segments, detections)
    assert_nontrivial(read_png(path), video_height(3), 1200)
    assert os.listdir(tmp_path) == ["video.png"]


def test_plot_video_without_curves_and_tied_scores(tmp_path):
    tied = [("A", 0.5, 0.0, 3.0), ("B", 0.5, 4.0, 9.0)]  # equal scores: both opaque
    path = plots.plot_video(tmp_path / "video.png", {}, 1.0, [("A", 0.0, 4.0)], tied)
    read_png(path)


def test_plot_video_creates_missing_folders(tmp_path):
    path = plots.plot_video(tmp_path / "a" / "b" / "video.png", CURVES, 0.25, GT_SEGMENTS, DETECTIONS)
    read_png(path)


def test_plot_video_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="1-D"):
        plots.plot_video(tmp_path / "v.png", {"bad": np.zeros((2, 3))}, 0.25, [], [])
    with pytest.raises(ValueError, match="seconds_per_snippet"):
        plots.plot_video(tmp_path / "v.png", CURVES, 0.0, [], [])
    assert os.listdir(tmp_path) == []


def test_score_alphas():
    np.testing.assert_allclose(plots._score_alphas(np.array([0.9, 0.5, 0.1])), [1.0, 0.625, plots.MIN_BAR_ALPHA])
    np.testing.assert_array_equal(plots._score_alphas(np.array([0.3, 0.3])), [1.0, 1.0])
    assert plots._score_alphas(np.array([])).shape == (0,)


# -------------------------------------------------------------------------------------------- plot_series


def test_plot_series_writes_a_png(tmp_path):
    steps = list(range(0, 1000, 50))
    series = {"AICL": (steps, [min(s / 10, 60) for s in steps]), "baseline": (steps, [s / 20 for s in steps])}
    path = plots.plot_series(tmp_path / "consistent.png", series, "step", "consistent segments", title="Fig. 3")
    assert path == str(tmp_path / "consistent.png")
    assert_nontrivial(read_png(path), 450, 800)  # SERIES_FIGSIZE at DPI
    assert os.listdir(tmp_path) == ["consistent.png"]


def test_plot_series_empty_and_mismatched(tmp_path):
    read_png(plots.plot_series(tmp_path / "empty.png", {}, "step", "count"))
    with pytest.raises(ValueError, match="'bad': 3 x values but 2 y values"):
        plots.plot_series(tmp_path / "bad.png", {"bad": ([1, 2, 3], [1, 2])}, "step", "count")
    assert os.listdir(tmp_path) == ["empty.png"]


# ------------------------------------------------------------------------------------------------ writing


def test_folder_that_cannot_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot create folder"):
        plots.plot_series(blocker / "sub" / "plot.png", {"a": ([0, 1], [0, 1])}, "x", "y")
    with pytest.raises(OSError, match="cannot create folder"):
        plots.plot_video(blocker / "video.png", CURVES, 0.25, GT_SEGMENTS, DETECTIONS)
    assert os.listdir(tmp_path) == ["file.txt"]


def test_permissions_follow_the_umask(tmp_path):
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    path = plots.plot_series(tmp_path / "plot.png", {"a": ([0, 1], [0, 1])}, "x", "y")
    assert os.stat(path).st_mode == os.stat(plain).st_mode  # not the 0600 of a mkstemp file


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "plot.png"
    plots.plot_series(path, {"a": ([0, 1], [0, 1])}, "x", "y")
    before = path.read_bytes()
    plots.plot_series(path, {"a": ([0, 1], [1, 0])}, "x", "y")  # a replacement
    replaced = path.read_bytes()
    assert replaced != before and replaced.startswith(PNG_MAGIC)

    def fail(*args, **kwargs):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(plots.FigureCanvasAgg, "print_png", fail)
    with pytest.raises(RuntimeError, match="rendering failed"):
        plots.plot_series(path, {"a": ([0, 1], [0.5, 0.5])}, "x", "y")
    assert path.read_bytes() == replaced  # the old figure is intact
    assert os.listdir(tmp_path) == ["plot.png"]  # and the temporary file is gone

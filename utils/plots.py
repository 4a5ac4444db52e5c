"""Figures of the paper (Figs. 1, 3, 4): activation curves of one video, and training curves.

Figures are built with matplotlib's object-oriented API and rendered by the non-interactive Agg canvas, so
nothing here touches pyplot's global state or needs a display. Every PNG is written atomically: rendered
into a temporary file of the target folder, then moved over the target with os.replace.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .io import write_atomic

VIDEO_WIDTH = 12.0  # inches; at DPI: 1200 pixels
CURVE_HEIGHT = 1.5  # inches per activation-curve panel
DETECTION_HEIGHT = 2.5  # inches of the detection panel
SERIES_FIGSIZE = (8.0, 4.5)  # 800 x 450 pixels
DPI = 100
GT_ALPHA = 0.2  # shading of a ground-truth span
CLASS_PALETTE = "Dark2"  # class colours of ground truth and detections, apart from the curves' colours
MIN_BAR_ALPHA = 0.25  # opacity of the lowest-scored detection bar shown (the best one is opaque)


def _save_atomic(fig: Figure, path) -> str:
    """Render fig as a PNG at path atomically (utils.io.write_atomic); returns the path as a string."""
    write_atomic(path, FigureCanvasAgg(fig).print_png)
    return os.fspath(path)


def _class_colors(names) -> dict:
    """A Dark2 colour (8, cycling) per class name, in sorted order; the curves keep the default C0, C1, ..."""
    palette = colormaps[CLASS_PALETTE].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(names)))}


def _shade_ground_truth(ax, gt_segments: list, colors: dict, with_labels: bool) -> None:
    """Shaded spans for the (label, start, end) ground truth on ax, optionally labelled at the top."""
    for label, start, end in gt_segments:
        ax.axvspan(start, end, color=colors[label], alpha=GT_ALPHA, linewidth=0)
        if with_labels:
            ax.text((start + end) / 2, 0.98, label, transform=ax.get_xaxis_transform(), ha="center", va="top",
                    fontsize=8, clip_on=True)


def _as_curve(name: str, curve) -> np.ndarray:
    """curve as a float array [T]; ValueError naming it when it is not 1-D or holds no value."""
    curve = np.asarray(curve, dtype=float)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError(f"curve {name!r}: expected a non-empty 1-D array, got shape {curve.shape}")
    return curve


def curve_limits(curve: np.ndarray) -> tuple[float, float]:
    """y-limits of a curve's own panel: its finite range with a 10% margin (a flat curve gets +-0.01 around
    its value), so that a curve living near 0 is as readable as one spanning [0, 1]."""
    finite = curve[np.isfinite(curve)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    margin = 0.1 * (high - low) or 0.01 * max(1.0, abs(high))
    return low - margin, high + margin


def _draw_curve(ax, name: str, curve: np.ndarray, seconds_per_snippet: float, color: str) -> None:
    """One curve [T] against the centre time (t + 0.5) * seconds_per_snippet of its snippets, on its own
    y-range, named with its minimum and maximum above the panel."""
    ax.plot((np.arange(len(curve)) + 0.5) * seconds_per_snippet, curve, color=color, linewidth=1.2)
    ax.set_ylim(*curve_limits(curve))
    ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.set_title(f"{name}  (min {np.nanmin(curve):.3g}, max {np.nanmax(curve):.3g})", loc="left", fontsize=8,
                 color=color)


def _score_alphas(scores: np.ndarray) -> np.ndarray:
    """Opacity [n] of scores [n]: linear from MIN_BAR_ALPHA (lowest) to 1 (highest); 1 when all are equal."""
    spread = np.ptp(scores) if len(scores) else 0.0
    if not spread:
        return np.ones(len(scores))
    return MIN_BAR_ALPHA + (1 - MIN_BAR_ALPHA) * (scores - scores.min()) / spread


def _draw_detections(ax, detections: list, colors: dict, top_n: int) -> None:
    """The top_n (label, score, start, end) detections by score as horizontal bars, best on top, opacity by score."""
    shown = sorted(detections, key=lambda d: -d[1])[:top_n]  # stable: ties keep input order
    alphas = _score_alphas(np.array([score for _, score, _, _ in shown], dtype=float))  # [n]
    for row, ((label, score, start, end), alpha) in enumerate(zip(shown, alphas)):
        ax.barh(row, end - start, left=start, height=0.7, color=colors[label], alpha=float(alpha))
        ax.text(start, row, f" {label} {score:.2f}", va="center", fontsize=7, clip_on=True)
    ax.set_ylim(max(len(shown), 1) - 0.5, -0.5)  # rank 0 at the top
    ax.set_yticks(range(len(shown)))
    ax.set_ylabel(f"top-{len(shown)} detections")


def video_figure(curves: dict, seconds_per_snippet: float, gt_segments: list, detections: list, title: str = "",
                 top_n: int = 10) -> Figure:
    """The figure of plot_video: one panel per curve (in order, each on its own y-range), then the detections."""
    if not seconds_per_snippet > 0:
        raise ValueError(f"seconds_per_snippet must be positive, got {seconds_per_snippet!r}")
    curves = {name: _as_curve(name, curve) for name, curve in curves.items()}
    colors = _class_colors([label for label, *_ in gt_segments] + [label for label, *_ in detections])
    heights = [CURVE_HEIGHT] * len(curves) + [DETECTION_HEIGHT]
    fig = Figure(figsize=(VIDEO_WIDTH, sum(heights)), dpi=DPI, constrained_layout=True)
    axes = fig.subplots(len(heights), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for i, (ax, (name, curve)) in enumerate(zip(axes, curves.items())):
        _shade_ground_truth(ax, gt_segments, colors, with_labels=i == 0)
        _draw_curve(ax, name, curve, seconds_per_snippet, color=f"C{i}")
    _shade_ground_truth(axes[-1], gt_segments, colors, with_labels=not curves)
    _draw_detections(axes[-1], detections, colors, top_n)
    axes[-1].set_xlabel("time (s)")
    axes[0].set_xlim(left=0)
    if title:
        fig.suptitle(title)
    return fig


def plot_video(path, curves: dict, seconds_per_snippet: float, gt_segments: list, detections: list, title: str = "",
               top_n: int = 10) -> str:
    """One PNG of a video: a panel per activation curve with the ground truth, the best detections below.

    curves: {name: [T] array} per snippet, e.g. "class-aware A", "class-agnostic A_ca", "A_score LongJump";
    each gets its own panel and y-range (curve_limits), so curves of very different scales stay readable;
    seconds_per_snippet: the duration of one snippet (time axis in seconds);
    gt_segments: [(label, start, end)] seconds, shaded in every panel and labelled in the top one;
    detections: [(label, score, start, end)]; the top_n by score are drawn as bars, opacity by score.
    The figure is VIDEO_WIDTH wide and CURVE_HEIGHT per curve + DETECTION_HEIGHT high (inches at DPI).
    Writes atomically (see _save_atomic) and returns path as a string.
    """
    return _save_atomic(video_figure(curves, seconds_per_snippet, gt_segments, detections, title, top_n), path)


def plot_series(path, series: dict, xlabel: str, ylabel: str, title: str = "") -> str:
    """One PNG with a line per {name: (x, y)} series (e.g. consistent segments during training, Fig. 3).

    Raises ValueError for a series whose x and y differ in length. Writes atomically; returns path as a string.
    """
    fig = Figure(figsize=SERIES_FIGSIZE, dpi=DPI, constrained_layout=True)
    ax = fig.subplots()
    for name, (x, y) in series.items():
        if len(x) != len(y):
            raise ValueError(f"series {name!r}: {len(x)} x values but {len(y)} y values")
        ax.plot(x, y, label=name, marker="o" if len(x) <= 30 else None, markersize=3)
    if series:
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return _save_atomic(fig, path)

"""Decoding with PyAV: a video file -> a stream of RGB frames on a fixed-rate timeline, never all in memory.

Timeline: the decoded frames go through FFmpeg's own `fps` filter, run in-process (buffer -> fps=FPS ->
buffersink, `av.filter.Graph`), after shifting timestamps so the file starts at 0 as the ffmpeg command line
does. Output frame n (time n / FPS) is the last source frame whose timestamp, rounded to the nearest output
tick, is <= n: the source frame nearest to n / FPS for 30 -> 25 fps, and the latest of those within half a
tick of it when several are (60 fps). Frames are duplicated or dropped, never blended; the last one is repeated
up to the end time (last timestamp + its duration) rounded to the nearest tick; the first output tick is the
first frame's timestamp rounded. So 29.97/30/60 fps and variable-frame-rate files land where
`ffmpeg -i IN -filter:v fps=25` puts them. A display rotation (phone videos) is applied as ffmpeg's autorotate
does.

Per frame: RGB24 (FFmpeg's conversion), then the shorter side resized to 256 with OpenCV bilinear
(cv2.INTER_LINEAR), the longer side to round(long * 256 / short). The centre crop and scaling to [-1, 1]
happen later (`centre_crop`), after optical flow has used the whole 256-px frame.

PyAV is imported where decoding starts (`pyav`), so that what only reads features runs without it.
"""
import os
from fractions import Fraction

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp",
                    ".ts", ".ogv")


class VideoError(Exception):
    """A file that cannot be decoded into a usable frame stream; the message names the file."""


def pyav():
    """The PyAV module (imported here, on first use); a ValueError saying so where it is not installed."""
    try:
        import av
    except ImportError:
        raise ValueError("decoding video files needs PyAV (the av package), which is not installed here: "
                         "pip install av") from None
    return av


def _reason(err):
    """FFmpeg's own words for an error, without errno and path."""
    if getattr(err, "strerror", None):
        return err.strerror
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _open(path):
    """(container, video stream) of `path`, or VideoError saying why not (missing, empty, corrupt, no video)."""
    path, av = os.fspath(path), pyav()
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(f"{path}: cannot be opened as a video ({_reason(err)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container, container.streams.video[0]


def probe(path):
    """dict(duration=seconds, source_fps=frames per second, width, height, stream_duration) of `path`'s first
    video stream, from the container headers (no decoding). `duration` is the video stream's own when the
    header states it (stream_duration True), else the container's (Matroska/WebM files often state only that:
    it spans the audio too). VideoError naming the file when it cannot be read."""
    container, stream, av = *_open(path), pyav()
    with container:
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = None
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return {"duration": duration, "source_fps": float(rate) if rate else None,
                "width": stream.codec_context.width, "height": stream.codec_context.height,
                "stream_duration": stream.duration is not None}


def resize_shorter(img, shorter=256):
    """Bilinear (cv2.INTER_LINEAR) resize of an [H, W, C] image so that min(H, W) == shorter."""
    h, w = img.shape[:2]
    if h <= w:
        size = (int(round(w * shorter / h)), shorter)
    else:
        size = (shorter, int(round(h * shorter / w)))
    if size == (w, h):
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def centre_crop(frames, size=224):
    """Centre size x size crop of [..., H, W, C] frames (the odd pixel goes to the bottom/right margin)."""
    h, w = frames.shape[-3:-1]
    if h < size or w < size:
        raise ValueError(f"frame {h}x{w} is smaller than the {size}x{size} crop")
    y, x = (h - size) // 2, (w - size) // 2
    return frames[..., y:y + size, x:x + size, :]


class Video:
    """One video file, decoded lazily. `frames()` yields the resampled, resized RGB frames; afterwards
    `n_frames` is their number and `start` the source time (s) of the first one."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.info = probe(self.path)
        self.n_frames = 0
        self.start = None

    def frames(self, fps=25, shorter=256, skip=0):
        """Yield uint8 [H, W, 3] RGB frames at `fps` frames per second, shorter side `shorter`. Holds O(1) frames.
        The first `skip` frames are decoded and counted but neither converted nor yielded (continuing a video
        part-way). Decoding errors become VideoError naming the file."""
        container, stream, av = *_open(self.path), pyav()
        stream.thread_type = "AUTO"
        offset = None                                      # the file's start time in stream ticks
        self.n_frames = 0
        try:
            with container:
                graph = av.filter.Graph()
                source = graph.add_buffer(template=stream)
                resample = graph.add("fps", f"fps={Fraction(fps).limit_denominator(1001)}")
                sink = graph.add("buffersink")
                source.link_to(resample)
                resample.link_to(sink)
                graph.configure()
                if container.start_time is not None:
                    offset = int(round(container.start_time / av.time_base / stream.time_base))
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    frame.pts -= offset or 0
                    graph.push(frame)
                    yield from self._drain(graph, shorter, skip)
                graph.push(None)
                yield from self._drain(graph, shorter, skip)
        except (av.error.FFmpegError, ValueError) as err:     # ValueError: no frame format (a file cut short)
            raise VideoError(f"{self.path}: decoding failed after {self.n_frames} frames ({_reason(err)})") from None

    def _drain(self, graph, shorter, skip):
        av = pyav()
        while True:
            try:
                frame = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            if self.start is None:
                self.start = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            self.n_frames += 1
            if self.n_frames <= skip:
                continue
            img = frame.to_ndarray(format="rgb24")
            turns = int(round((frame.rotation or 0) / 90)) % 4      # counterclockwise quarter turns for display
            if turns:
                img = np.ascontiguousarray(np.rot90(img, turns))
            yield resize_shorter(img, shorter)


def snippets(frames, length=16):
    """Group a frame stream into non-overlapping snippets of `length` frames, starting at the first frame; the
    remainder (< length frames) is dropped. Each snippet is yielded as uint8 [length + 1, H, W, 3] holding its
    frames plus the next snippet's first frame (the successor optical flow needs), or [length, H, W, 3] for the
    last snippet when the video has no frame after it. Holds at most length + 1 frames."""
    window = []
    for frame in frames:
        window.append(frame)
        if len(window) == length + 1:
            yield np.stack(window)
            window = window[length:]
    if len(window) == length:
        yield np.stack(window)

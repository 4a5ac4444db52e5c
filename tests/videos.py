"""Small generated videos for the feature-extraction tests (PyAV's bundled libx264, near-lossless)."""
from fractions import Fraction

import av
import numpy as np

BITS = 8


def write_video(path, frames, fps=25, times=None, faststart=False):
    """Encode uint8 RGB frames [H, W, 3] (even H, W) to `path`; `times` (seconds, one per frame) makes a
    variable-frame-rate file, otherwise frames are 1 / fps apart. `faststart` puts an MP4's index (and so its
    duration) before the frames, as files made for streaming have it: such a file cut short still opens."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else None) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "4"}
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def index_frame(i, w=320, h=240):
    """A frame showing the number i in binary: BITS vertical bars, bar b white when bit b of i is set."""
    img = np.zeros((h, w, 3), np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            img[:, b * w // BITS:(b + 1) * w // BITS] = 255
    return img


def read_index(img):
    """The number shown by an index_frame after decoding, resizing and cropping (read at the bar centres of
    the full-width frame: pass the frame before cropping)."""
    w = img.shape[1]
    return sum(int(img[img.shape[0] // 2, (2 * b + 1) * w // (2 * BITS)].mean() > 127) << b for b in range(BITS))


def texture(h, w, seed=0):
    """A smooth random grey texture (uint8 [h, w]) with enough structure for optical flow."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 8 + 2, w // 8 + 2))
    img = np.kron(coarse, np.ones((8, 8)))[:h, :w]
    k = np.exp(-0.5 * (np.arange(-6, 7) / 2.5) ** 2)
    k /= k.sum()
    img = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, img)
    img = np.apply_along_axis(lambda c: np.convolve(c, k, mode="same"), 0, img)
    return (img * 255).astype(np.uint8)


def moving_frames(n, w=320, h=240, dx=0, dy=0, seed=0):
    """n RGB frames of a texture whose content moves dx pixels right and dy down per frame (dx = dy = 0: static)."""
    pad = 2 + max(abs(dx), abs(dy)) * n
    tex = texture(h + 2 * pad, w + 2 * pad, seed)
    out = []
    for i in range(n):
        y, x = pad - dy * i, pad - dx * i
        out.append(np.repeat(tex[y:y + h, x:x + w, None], 3, axis=2))
    return out


def write_video_with_audio(path, frames, fps=25, audio_seconds=4.0, rate=16000):
    """Like write_video, plus a silent FLAC audio track of `audio_seconds` (a container such as Matroska then
    states the longer of the two as its duration, and its video stream states none)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        audio = container.add_stream("flac", rate=rate)
        audio.layout = "mono"
        for img in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")))
        container.mux(video.encode())
        n = int(audio_seconds * rate)
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, min(1024, n - start)), np.int16), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return path

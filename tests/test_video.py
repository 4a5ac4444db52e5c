"""features/video.py: the 25 fps timeline of ffmpeg's fps filter, resizing, snippets, and clear errors."""
import av
import numpy as np
import pytest

from features.video import Video, VideoError, centre_crop, probe, resize_shorter, snippets
from videos import index_frame, moving_frames, read_index, write_video


def fps_filter_pick(times, end, fps):
    """Which source frame ffmpeg's fps filter (rounding 'near') shows at each output tick n: the last frame
    whose time, rounded half away from zero to a tick, is <= n; ticks run up to the end time rounded."""
    ticks = np.floor(np.asarray(times) * fps + 0.5).astype(int)
    first, last = ticks[0], int(np.floor(end * fps + 0.5))
    return [int(np.nonzero(ticks <= n)[0][-1]) for n in range(first, last)]


def decoded_indices(path, fps=25):
    video = Video(path)
    frames = list(video.frames(fps))
    assert video.n_frames == len(frames)
    return [read_index(f) for f in frames], frames


def test_30fps_to_25fps_takes_the_nearest_source_frame(tmp_path):
    path = write_video(tmp_path / "idx30.mp4", [index_frame(i) for i in range(45)], fps=30)
    got, frames = decoded_indices(path)
    nearest = [int(np.argmin(np.abs(np.arange(45) / 30 - n / 25))) for n in range(len(got))]
    assert len(got) == 38                                   # ends at 45/30 s = tick 37.5, rounded up to 38
    assert got == nearest == fps_filter_pick(np.arange(45) / 30, 45 / 30, 25)[:len(got)]
    assert got[:6] == [0, 1, 2, 4, 5, 6]                    # 30 -> 25: every sixth source frame is dropped
    assert frames[0].shape == (256, 341, 3) and frames[0].dtype == np.uint8


def test_60fps_and_variable_frame_rate_follow_the_timestamps(tmp_path):
    path = write_video(tmp_path / "idx60.mp4", [index_frame(i) for i in range(30)], fps=60)
    got, _ = decoded_indices(path)
    assert got == fps_filter_pick(np.arange(30) / 60, 30 / 60, 25)
    assert got[:5] == [1, 3, 5, 8, 10]      # of the source frames within half a tick of n / 25, the latest

    times = [0, 0.01, 0.1, 0.15, 0.3, 0.31, 0.52]           # irregular gaps: frames repeated and dropped
    path = write_video(tmp_path / "vfr.mkv", [index_frame(i) for i in range(7)], times=times)
    got, _ = decoded_indices(path)
    assert got == fps_filter_pick(times, 0.52 + 0.04, 25)   # mkv keeps 1/25 s as the frame duration
    assert got == [1, 1, 1, 2, 3, 3, 3, 3, 5, 5, 5, 5, 5, 6]


def test_other_fps_and_probe(tmp_path):
    path = write_video(tmp_path / "idx30.mp4", [index_frame(i) for i in range(30)], fps=30)
    got, _ = decoded_indices(path, fps=10)
    assert got == fps_filter_pick(np.arange(30) / 30, 1.0, 10) == [1, 4, 7, 10, 13, 16, 19, 22, 25, 28]
    info = probe(path)
    assert info["source_fps"] == pytest.approx(30) and info["duration"] == pytest.approx(1.0)
    assert (info["width"], info["height"]) == (320, 240)


def test_resize_and_crop():
    assert resize_shorter(np.zeros((240, 320, 3), np.uint8)).shape == (256, 341, 3)
    assert resize_shorter(np.zeros((1280, 720, 3), np.uint8)).shape == (455, 256, 3)
    ramp = np.tile(np.arange(341, dtype=np.uint8)[None, :, None] % 251, (256, 1, 3))
    crop = centre_crop(ramp[None])
    assert crop.shape == (1, 224, 224, 3)
    assert crop[0, 0, 0, 0] == ramp[16, 58, 0]              # (256-224)/2 = 16 rows, (341-224)//2 = 58 columns


def test_frames_take_the_shorter_side_and_skip(tmp_path):
    path = write_video(tmp_path / "idx.mp4", [index_frame(i) for i in range(12)], fps=25)
    video = Video(path)
    small = list(video.frames(shorter=128))
    assert small[0].shape == (128, 171, 3)
    rest = list(video.frames(skip=5))                       # decoded and counted, not converted nor yielded
    assert video.n_frames == 12 and video.start == 0
    assert [read_index(f) for f in rest] == list(range(5, 12))


def test_snippets_drop_the_remainder_and_carry_the_successor_frame():
    frames = (np.full((2, 2, 3), i, np.uint8) for i in range(201))
    out = list(snippets(frames, 16))
    assert len(out) == 12                                   # W-TALC: 201 frames -> 12 snippets
    assert all(s.shape[0] == 17 for s in out)
    assert [int(s[0, 0, 0, 0]) for s in out] == list(range(0, 192, 16))
    assert int(out[-1][-1, 0, 0, 0]) == 192                 # successor: first frame of the dropped remainder
    exact = list(snippets((np.zeros((2, 2, 3), np.uint8) for _ in range(32)), 16))
    assert [s.shape[0] for s in exact] == [17, 16]          # the last one has no successor
    assert list(snippets((np.zeros((2, 2, 3), np.uint8) for _ in range(15)), 16)) == []


def test_unreadable_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        c.mux(s.encode(frame))
        c.mux(s.encode())
    for path, words in ((empty, "empty file"), (garbage, "cannot be opened"), (audio, "no video stream"),
                        (tmp_path / "missing.mp4", "no such file")):
        with pytest.raises(VideoError, match=words) as err:
            list(Video(path).frames())
        assert str(path) in str(err.value)


@pytest.mark.parametrize("name, faststart, fraction", [("t.mkv", False, 1 / 3), ("t.mp4", True, 0.4)])
def test_truncated_file_is_a_video_error(tmp_path, name, faststart, fraction):
    """An MP4 with its index first, cut where PyAV finds no frame format, used to escape as a bare ValueError."""
    path = write_video(tmp_path / name, moving_frames(100, w=160, h=120, dx=1), faststart=faststart)
    data = path.read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[:int(len(data) * fraction)])
    try:                                                    # FFmpeg may decode what is left or refuse:
        frames = list(Video(cut).frames())                  # never a crash, never more than was there
        assert len(frames) < 100
    except VideoError as err:
        assert str(cut) in str(err)

"""features/flow.py: sign, size and scaling of the flow fields, 8-bit rounding, and the snippet pairing."""
import cv2
import numpy as np
import pytest
import torch

from features import flow
from features.streams import FlowPool
from videos import moving_frames, write_video


def gray_pair(dx, dy, w=300, h=256):
    frames = moving_frames(2, w=w, h=h, dx=dx, dy=dy)
    return flow.grayscale(np.stack(frames))


def test_tvl1_sign_and_size_of_a_translation():
    fields = flow.fields(gray_pair(3, -2), "tvl1")          # content moves 3 px right and 2 px up
    assert fields.shape == (1, 224, 224, 2) and fields.dtype == np.float32
    inner = fields[0, 16:-16, 16:-16]
    assert np.median(inner[..., 0]) == pytest.approx(3 / 20, abs=0.01)     # channel 0: right is positive
    assert np.median(inner[..., 1]) == pytest.approx(-2 / 20, abs=0.01)    # channel 1: down is positive


def test_dis_sign_and_static_frames_give_zero():
    fields = flow.fields(gray_pair(-4, 1), "dis")
    assert np.median(fields[0, 16:-16, 16:-16, 0]) == pytest.approx(-4 / 20, abs=0.02)
    assert np.median(fields[0, 16:-16, 16:-16, 1]) == pytest.approx(1 / 20, abs=0.02)
    still = flow.fields(gray_pair(0, 0), "dis")
    assert not still.any()


def test_finish_crops_clips_scales_and_quantizes():
    raw = np.zeros((1, 256, 300, 2), np.float32)
    raw[0, :, :, 0] = np.linspace(-30, 30, 300)[None, :]   # horizontal ramp, beyond the clip on both sides
    out = flow.finish(raw)
    assert out.shape == (1, 224, 224, 2)
    assert out.min() == -1 and out.max() == 1               # clipped to [-20, 20], divided by 20
    np.testing.assert_allclose(out[0, 0, :, 0], np.clip(np.linspace(-30, 30, 300)[38:262], -20, 20) / 20, atol=1e-6)
    q = flow.finish(raw, quantize=True)
    levels = np.round(255 * (np.clip(raw[0, 16:240, 38:262], -20, 20) + 20) / 40)
    np.testing.assert_allclose(q[0], levels / 255 * 2 - 1, atol=1e-6)
    assert len(np.unique(q)) <= 256 and np.abs(q - out).max() <= 1 / 255 + 1e-6
    assert q[0, 0, 112, 1] == pytest.approx(2 * 128 / 255 - 1, abs=1e-6)   # zero flow is not exactly 0 after 8-bit rounding


def test_pairing_repeats_the_last_field_only_without_successor():
    full = np.arange(16, dtype=np.float32)[:, None, None, None] * np.ones((16, 2, 2, 2), np.float32)
    assert flow.pair(full) is full
    short = flow.pair(full[:15])
    assert short.shape == (16, 2, 2, 2) and (short[15] == short[14]).all() and (short[:15] == full[:15]).all()
    with pytest.raises(ValueError, match="14 flow fields"):
        flow.pair(full[:14])


def test_raft_without_torchvision_is_a_clear_error():
    pytest.importorskip("torch")
    try:
        import torchvision  # noqa: F401
        pytest.skip("torchvision is installed here")
    except ImportError:
        pass
    with pytest.raises(ValueError, match="needs torchvision"):
        flow.Raft("weights.pt")


def test_params_are_opencv_defaults():
    p = flow.params("tvl1")
    assert (p["tau"], p["lambda"], p["theta"], p["nscales"], p["warps"], p["epsilon"]) == \
        pytest.approx((0.25, 0.15, 0.3, 5, 5, 0.01))
    assert (p["inner_iterations"], p["outer_iterations"], p["scale_step"], p["median_filtering"]) == \
        pytest.approx((30, 10, 0.8, 5))
    with pytest.raises(ValueError, match="unknown CPU flow method"):
        flow.params("farneback")


def test_flow_backend_auto_is_the_port_where_it_compiles_or_the_folders_own():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert flow.port_compiles(cpu)                                   # this machine has a C++ compiler
    assert flow.resolve_backend("auto", "tvl1", cpu) == "torch" and flow.resolve_backend("auto", "tvl1", cuda) == "torch"
    assert flow.resolve_backend("auto", "tvl1", cpu, recorded="opencv") == "opencv"     # continuing a folder
    assert flow.resolve_backend("auto", "dis", cpu, recorded="torch") == "opencv"       # dis has no torch backend
    assert flow.resolve_backend("torch", "tvl1", cpu) == "torch" and flow.resolve_backend("opencv", "tvl1", cuda) == "opencv"
    assert flow.resolve_backend("auto", "dis", cuda) == "opencv" and flow.resolve_backend("auto", "raft", cpu) == "torch"
    cxx = torch._inductor.config.cpp.cxx
    with torch._inductor.config.patch({"cpp.cxx": (None, "no-such-compiler")}):          # as $CXX would set it
        assert not flow.port_compiles(cpu) and flow.resolve_backend("auto", "tvl1", cpu) == "opencv"
        assert flow.resolve_backend("auto", "tvl1", cuda) == "torch"                    # op by op on CUDA still
    assert torch._inductor.config.cpp.cxx == cxx and flow.port_compiles(cpu)            # torch's config restored
    with pytest.raises(ValueError, match="--flow dis has only the opencv backend"):
        flow.resolve_backend("torch", "dis", cpu)
    with pytest.raises(ValueError, match="--flow-backend gpu"):
        flow.resolve_backend("gpu", "tvl1", cpu)


def test_auto_leaves_a_job_too_short_to_repay_the_compilation_to_opencv(tmp_path):
    cpu, cuda, n = torch.device("cpu"), torch.device("cuda"), flow.BREAK_EVEN_PAIRS
    assert flow.resolve_backend("auto", "tvl1", cpu, pairs=n - 1) == "opencv"
    assert flow.resolve_backend("auto", "tvl1", cpu, pairs=n) == "torch"
    assert flow.resolve_backend("auto", "tvl1", cpu, recorded="torch", pairs=1) == "torch"      # the folder's own
    assert flow.resolve_backend("auto", "tvl1", cuda, pairs=1) == "torch"
    assert str(n) in flow.auto_reason("opencv", cpu, n - 1)
    write_video(tmp_path / "a.mp4", moving_frames(50, w=64, h=48), fps=25)               # 2 s
    assert flow.job_pairs([tmp_path / "a.mp4"] * 2, 25) == 100
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert flow.job_pairs([tmp_path / "a.mp4", tmp_path / "bad.mp4"], 25) is None


def test_the_port_follows_the_installed_opencvs_remap_rule():
    major = int(cv2.__version__.split(".")[0])
    assert flow.opencv_remap_grid() == (None if major >= 5 else 32)


def test_both_tvl1_backends_give_one_snippets_fields():
    frames = np.stack(moving_frames(17, w=96, h=72, dx=2, dy=1))                  # [17, 72, 96, 3]
    ours = flow.TorchTVL1(torch.device("cpu"), crop=64, compiled=False)(frames)     # compiled: test_tvl1.py
    ref = flow.fields(flow.grayscale(frames), "tvl1", crop=64)
    assert ours.shape == ref.shape == (16, 64, 64, 2) and ours.dtype == np.float32
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 0.01


def test_on_device_flow_runs_groups_of_snippets_and_flushes_on_demand():
    """FlowPool hands an on-device flow `snippets` snippets per batch() call (the port's GPU batch), computes a
    partial group when one of its results is asked for, and every snippet gets its own fields."""
    class Counting:
        snippets, calls = 3, []

        def batch(self, clips):
            self.calls.append(len(clips))
            return [np.full((16, 2, 2, 2), clip[0, 0, 0, 0], np.float32) for clip in clips]

    pool = FlowPool("tvl1", False, on_device=Counting())
    clips = [np.full((17, 4, 4, 3), i, np.uint8) for i in range(5)]
    handles = [pool.submit(c) for c in clips]
    assert Counting.calls == [3] and [pool.ready(h) for h in handles] == [True] * 3 + [False] * 2
    assert [pool.result(h)[0, 0, 0, 0] for h in handles] == [0, 1, 2, 3, 4] and Counting.calls == [3, 2]


def test_the_ports_batch_of_snippets_equals_one_snippet_at_a_time():
    clips = [np.stack(moving_frames(n, w=40, h=32, dx=1 + i, dy=1)) for i, n in enumerate((17, 16))]
    port = flow.TorchTVL1("cpu", crop=32, compiled=False)
    together = port.batch(clips)
    assert [f.shape for f in together] == [(16, 32, 32, 2), (15, 32, 32, 2)]
    for fields, clip in zip(together, clips):
        assert np.array_equal(fields, port(clip))


def test_a_failed_device_batch_leaves_no_snippet_behind_for_the_next_video():
    class FailsOnce:
        snippets, seen = 2, []

        def batch(self, clips):
            self.seen.append([int(c[0, 0, 0, 0]) for c in clips])
            if len(self.seen) == 1:
                raise RuntimeError("CUDA out of memory")
            return [np.zeros((16, 2, 2, 2), np.float32) for _ in clips]

    pool = FlowPool("tvl1", False, on_device=FailsOnce())
    first = pool.submit(np.full((17, 4, 4, 3), 1, np.uint8))
    with pytest.raises(RuntimeError):
        pool.result(first)                                   # the video fails here
    pool.result(pool.submit(np.full((17, 4, 4, 3), 2, np.uint8)))
    assert FailsOnce.seen == [[1], [2]]


def test_the_port_falls_back_to_op_by_op_when_torch_compile_fails(monkeypatch, capsys):
    from features import tvl1 as port

    def broken(f, *options):
        def call(*args):
            raise torch._dynamo.exc.TorchDynamoException("CppCompileError: C++ compile error\nmore lines")
        return call
    monkeypatch.setattr(port, "_COMPILED", {})
    monkeypatch.setattr(port, "_compile", broken)
    frames = np.stack(moving_frames(3, w=40, h=32, dx=1, dy=1))
    ported = flow.TorchTVL1("cpu", crop=32, compiled=True)
    fields = ported(frames)
    assert not ported.compiled and "torch.compile failed for the TV-L1 port (CppCompileError: C++ compile error)" \
        in capsys.readouterr().err
    assert np.array_equal(fields, flow.TorchTVL1("cpu", crop=32, compiled=False)(frames))

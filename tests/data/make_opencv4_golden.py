"""Regenerates tests/data/opencv4_golden.npz: what OpenCV 4.x (the versions that made the released feature sets)
computes, piece by piece, for tests/test_tvl1_opencv4.py, which checks the TV-L1 port's grid=32 rule against it
without OpenCV 4.x installed.

    python3 -m venv /tmp/cv4 && /tmp/cv4/bin/pip install opencv-contrib-python-headless==4.10.0.84 numpy
    python3 tests/data/make_opencv4_golden.py --opencv4-python /tmp/cv4/bin/python

Run with the project's Python: it builds the inputs here (the tests' generated scenes and the bench's first
natural pairs) and hands them to `--opencv4-python`, which runs this file with --compute (numpy and cv2 only).
Stored: cv2.remap INTER_CUBIC / BORDER_CONSTANT on maps off the 1/32 grid, cv2.resize INTER_LINEAR as the
pyramid (fx = fy = 0.8) and the flow's upsampling (dsize) use it on float32, the frames' uint8 resize
(features/video.py), and DualTVL1 fields finished as the extractor finishes them (float16; of the bench pairs
the central 112 x 112 only, and their frames as a SHA-256: the test regenerates them)."""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "opencv4_golden.npz")
KINDS = ("translate", "rotate", "zoom", "occlusion")
SIZES = ((64, 64), (65, 97))
BENCH_PAIRS, BENCH_CROP = 2, 112


def random_maps(h, w, seed):
    """Absolute coordinates off the 1/32 grid around the identity (spread 3 px, some outside the image), and a
    row of points half way between grid points (where the rounding rule decides)."""
    rng = np.random.default_rng(seed)
    mx = (np.arange(w)[None, :] + rng.standard_normal((h, w)) * 3).astype(np.float32)
    my = (np.arange(h)[:, None] + rng.standard_normal((h, w)) * 3).astype(np.float32)
    mx[0] = (np.arange(w) + (2 * rng.integers(0, 32, w) + 1) / 64).astype(np.float32)
    mx[1, :4], my[1, :4] = [-3.9, -1.2, w + 2.5, w + 3.0], [-0.5, h - 1.5, -4.2, h + 3.5]
    return mx, my


def bench_frames():
    """The first BENCH_PAIRS pairs of scripts/bench_flow.py's natural_pairs (256 x 341) and their SHA-256."""
    from bench_flow import natural_pairs
    first, second = natural_pairs(BENCH_PAIRS)
    return first, second, hashlib.sha256(first.tobytes() + second.tobytes()).hexdigest()


def make_inputs():
    """The inputs, built with the project's packages (the tests' generators use its OpenCV)."""
    from test_tvl1 import scene, smooth_image
    pairs = [scene(kind, *size) for size in SIZES for kind in KINDS]
    first, second, digest = bench_frames()
    rng = np.random.default_rng(3)
    return {"remap_image": smooth_image(40, 56, seed=1), "remap_x": random_maps(40, 56, 2)[0],
            "remap_y": random_maps(40, 56, 2)[1], "resize_image": smooth_image(48, 64, seed=4),
            "frame": rng.integers(0, 256, (45, 60, 3), dtype=np.uint8),
            **{f"pair{i}_{j}": p[j] for i, p in enumerate(pairs) for j in (0, 1)},
            "bench_first": first, "bench_second": second, "bench_sha256": np.array(digest)}


def finish(flow, crop):
    """flow.finish without its import (the 4.x environment has numpy and cv2 only): centre crop, clip 20, /20."""
    h, w = flow.shape[:2]
    y, x = (h - crop) // 2, (w - crop) // 2
    return np.clip(flow[y:y + crop, x:x + crop], -20, 20) / 20


def compute(inputs):
    """What the installed OpenCV (4.x) computes for `inputs`."""
    import cv2
    tvl1 = lambda a, b: cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None)
    out = {"opencv": np.array(cv2.__version__)}
    out["remap"] = cv2.remap(inputs["remap_image"], inputs["remap_x"], inputs["remap_y"], cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    level = inputs["resize_image"]
    for i in range(4):                                # the pyramid, and each level enlarged to the finer size
        smaller = cv2.resize(level, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
        out[f"shrink{i}"] = smaller
        out[f"enlarge{i}"] = cv2.resize(smaller, level.shape[::-1], interpolation=cv2.INTER_LINEAR)
        level = smaller
    out["frame_up"] = cv2.resize(inputs["frame"], (85, 64), interpolation=cv2.INTER_LINEAR)    # shorter side 64
    out["frame_down"] = cv2.resize(inputs["frame"], (43, 32), interpolation=cv2.INTER_LINEAR)  # shorter side 32
    for i in range(len(KINDS) * len(SIZES)):
        a, b = inputs[f"pair{i}_0"], inputs[f"pair{i}_1"]
        out[f"field{i}"] = finish(tvl1(a, b), min(224, *a.shape)).astype(np.float16)
    for i in range(BENCH_PAIRS):
        field = finish(tvl1(inputs["bench_first"][i], inputs["bench_second"][i]), 224)
        c = (224 - BENCH_CROP) // 2
        out[f"bench_field{i}"] = field[c:c + BENCH_CROP, c:c + BENCH_CROP].astype(np.float16)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--opencv4-python", help="a Python with opencv-contrib-python-headless 4.x and numpy")
    p.add_argument("--compute", nargs=2, metavar=("INPUTS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.compute:
        np.savez(args.compute[1], **compute(dict(np.load(args.compute[0]))))
        return
    if not args.opencv4_python:
        p.error("give --opencv4-python (see the usage above)")
    root = os.path.dirname(os.path.dirname(HERE))
    sys.path[:0] = [root, os.path.join(root, "tests"), os.path.join(root, "scripts")]
    inputs = make_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        paths = os.path.join(tmp, "inputs.npz"), os.path.join(tmp, "out.npz")
        np.savez(paths[0], **inputs)
        subprocess.run([args.opencv4_python, os.path.abspath(__file__), "--compute", *paths], check=True)
        out = dict(np.load(paths[1]))
    if not str(out["opencv"]).startswith("4."):
        sys.exit(f"{args.opencv4_python} has OpenCV {out['opencv']}, not 4.x")
    stored = {k: v for k, v in inputs.items() if not k.startswith("bench_") or k == "bench_sha256"}
    np.savez_compressed(GOLDEN, **stored, **out)
    print(f"{GOLDEN}: OpenCV {out['opencv']}, {os.path.getsize(GOLDEN) / 1024:.0f} KB")


if __name__ == "__main__":
    main()

"""SIGKILL at any instant, nothing lost: start a command on generated data, kill it with SIGKILL after seeded
random delays spread over an uninterrupted run's duration, rerun it (--resume where it left a last.pt), and after
every kill check that each file under a final name loads; at the end that no temporary file is left and that the
results equal an uninterrupted run's, bit for bit.

    python3 scripts/faults.py [--commands train features] [--kills 8] [--seed 0] [--work DIR]

Prints a table: command, kills (that hit the running process), lost files (a final name that does not load),
stale locks (a rerun refused by a dead run's lock), temporary files left at the end, mismatches (result files
that differ from the uninterrupted run's). Exit 1 when any of the last four is not zero.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

import _repo  # noqa: F401  (the repository root on sys.path)

ROOT = _repo.ROOT
SKIPPED = ("log.txt", ".lock")                    # appended logs and the lock file: not results
TRAIN = ["--max_steps", "6", "--detection_inf_step", "2", "--embed_dim", "16", "--num_segments", "32",
         "--batch_size", "4", "--soft_nms", "--num_workers", "0", "--seed", "3"]


def loads(path):
    """Whether the file at ``path`` is complete: it loads as its kind of file."""
    import torch
    ext = os.path.splitext(path)[1]
    try:
        if ext == ".pt":
            torch.load(path, map_location="cpu", weights_only=True)
        elif ext == ".json":
            with open(path) as f:
                json.load(f)
        elif ext == ".npy":
            np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as data:
                [data[k] for k in data]
        elif ext == ".csv":
            import pandas as pd
            pd.read_csv(path)
        elif ext == ".png":
            with open(path, "rb") as f:
                data = f.read()
            return data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")
        elif ext == ".html":
            with open(path, "rb") as f:
                return f.read().rstrip().endswith(b"</html>")
    except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile, KeyError):
        return False
    return True


def final_files(folder):
    """Relative paths of the result files under ``folder`` (not temporary files, logs, tensorboard events)."""
    out = []
    for d, dirs, files in os.walk(folder):
        dirs[:] = [x for x in dirs if x != "logs"]
        out += [os.path.relpath(os.path.join(d, f), folder) for f in files
                if not f.startswith(".") and f not in SKIPPED]
    return sorted(out)


def temporary_files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
                  if f.endswith(".tmp"))


class Train:
    """main.py training on a generated dataset; a rerun resumes from last.pt when the killed run left one."""
    name = "train"

    def __init__(self, work):
        from dataset import make_synthetic_dataset
        self.data = make_synthetic_dataset(os.path.join(work, "data"), num_train=8, num_test=4, num_classes=3,
                                           length=(30, 40), seed=1)

    def argv(self, out):
        last = os.path.join(out, "run", "last.pt")
        again = ["--resume", last] if os.path.isfile(last) else ["--overwrite"]
        return [sys.executable, "main.py", "--data_path", self.data, "--output_dir", out, "--exp_name", "run",
                *TRAIN, *again]

    def results(self, out):
        """The files an uninterrupted run promises bit for bit: weights, metrics and detections."""
        import torch
        folder = os.path.join(out, "run")
        found = {f: torch.load(os.path.join(folder, f), weights_only=True)["model"] for f in ("best.pt", "last.pt")}
        for name in ("metrics.json", "predictions.json"):
            with open(os.path.join(folder, name)) as f:
                found[name] = json.load(f)
        return found


class Features:
    """`python -m features` with --flow dis and the stand-in I3D weights on generated videos, progress saved in
    partial/ every 8 snippets; a rerun continues."""
    name = "features"

    def __init__(self, work):
        tests = os.path.join(ROOT, "tests")           # the stand-in weights' and test videos' builders
        if tests not in sys.path:
            sys.path.insert(0, tests)
        from i3d_weights import write_rule_weights
        from videos import moving_frames, write_video
        self.videos = os.path.join(work, "videos")
        os.makedirs(self.videos)
        for i, n in enumerate((150, 40)):
            write_video(os.path.join(self.videos, f"v{i}.mp4"), moving_frames(n, dx=2, seed=i), fps=25)
        self.weights = [os.path.join(work, f"{s}.pt") for s in ("rgb", "flow")]
        for path, stream in zip(self.weights, ("rgb", "flow")):
            write_rule_weights(path, stream)

    def argv(self, out):
        return [sys.executable, "-m", "features", self.videos, "--out", os.path.join(out, "features"),
                "--rgb-weights", self.weights[0], "--flow-weights", self.weights[1], "--flow", "dis",
                "--workers", "0", "--checkpoint-every", "8"]

    def results(self, out):
        folder = os.path.join(out, "features")
        return {f: open(os.path.join(folder, f), "rb").read() for f in final_files(folder)
                if f.endswith(".npy")}


def run(argv, timeout=600):
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr}")
    return proc


def equal(a, b):
    """Whether two results are the same, tensors bit for bit."""
    import torch
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def trial(case, work, kills, rng):
    """Kill ``case`` ``kills`` times at random instants, check after each, finish it; one table row."""
    ref = os.path.join(work, "uninterrupted")
    start = time.monotonic()
    run(case.argv(ref))
    duration = time.monotonic() - start
    out = os.path.join(work, "killed")
    row = {"command": case.name, "kills": 0, "lost files": 0, "stale locks": 0}
    for delay in sorted(rng.uniform(0.2, 1.0, kills) * duration):
        proc = subprocess.Popen(case.argv(out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            row["kills"] += 1
        err = proc.communicate()[1]
        row["stale locks"] += "another run is training" in err
        row["lost files"] += sum(not loads(os.path.join(out, f)) for f in final_files(out))
    finished = run(case.argv(out))
    row["stale locks"] += "another run is training" in finished.stderr
    row["temporary files"] = len(temporary_files(out))
    want, got = case.results(ref), case.results(out)
    row["mismatches"] = sum(not equal(want[k], got.get(k)) for k in want) + len(set(got) - set(want))
    return row


CASES = {"train": Train, "features": Features}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Kill commands with SIGKILL at random instants; check nothing "
                                                 "is lost and reruns finish as an uninterrupted run.")
    parser.add_argument("--commands", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--kills", type=int, default=8, help="kills per command")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill instants")
    parser.add_argument("--work", help="folder for the generated data and runs (default: a temporary one)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        for name in args.commands:
            work = os.path.join(args.work or scratch, name)
            os.makedirs(work, exist_ok=True)
            rows.append(trial(CASES[name](work), work, args.kills, rng))
    columns = list(rows[0])
    print("  ".join(f"{c:>15}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]:>15}" for c in columns))
    return int(any(row[c] for row in rows for c in columns[2:]))


if __name__ == "__main__":
    sys.exit(main())

"""A training run's folder OUTPUT_DIR/EXP_NAME/: claiming it (RUN_OUTPUTS; --overwrite), the lock that keeps
a second run out, and the logs written during training (log.txt, log.csv, tensorboard scalars, the
consistency figure of Fig. 3)."""
import contextlib
import os
import shutil
import sys

try:
    import fcntl                                      # the run lock (POSIX); without it runs are not locked
except ImportError:
    fcntl = None

import pandas as pd
from tqdm import tqdm

from utils.io import append_line, remove_stale_temps, save_text
from utils.plots import plot_series


RUN_OUTPUTS = ("best.pt", "last.pt", "metrics.json", "last_metrics.json", "predictions.json", "log.csv",
               "consistent_segments.png", "logs", "plots", "report.html", "curves.npz")


LOCK_FILE = ".lock"                                   # the process id of the run holding the folder


@contextlib.contextmanager
def output_dir_lock(out_dir):
    """Hold an exclusive lock on the run's folder while training in it, so that a second run started into
    it stops at once, before it removes or writes anything, even while the first has written nothing yet
    (its step-0 evaluation). The lock goes with the process, even one killed with SIGKILL; the lock file
    (LOCK_FILE: its process id) such a run leaves is taken over, saying so, and its temporary files are
    removed. A folder created here and left empty is removed again."""
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY)
    lock_file = os.path.join(out_dir, LOCK_FILE)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"{out_dir}: another run is training in this folder; wait for it to end, or "
                                 f"choose another --exp_name / --output_dir") from None
        take_over(lock_file)
        remove_stale_temps(out_dir)
        yield
    finally:
        os.close(fd)
        if os.path.isfile(lock_file) and read_pid(lock_file) == os.getpid():
            os.remove(lock_file)
        if created and not os.listdir(out_dir):
            os.rmdir(out_dir)


def read_pid(lock_file):
    """The process id in a lock file (None: unreadable)."""
    try:
        with open(lock_file) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def take_over(lock_file):
    """Write this process's id into the lock file; one left by a run that did not end (killed: its lock went
    with it) is said so on stderr."""
    if os.path.lexists(lock_file):
        pid = read_pid(lock_file)
        print(f"{os.path.dirname(lock_file)}: taking over the lock of a run that did not end "
              f"(process {pid if pid is not None else '?'}, no longer running)", file=sys.stderr)
    save_text(f"{os.getpid()}\n", lock_file)


def claim_output_dir(out_dir, overwrite):
    """A new run needs a folder without another run's outputs; --overwrite removes them first (so that
    the tensorboard curves of two runs never interleave)."""
    present = [f for f in RUN_OUTPUTS if os.path.lexists(os.path.join(out_dir, f))]
    if present and not overwrite:
        hint = f"continue it with --resume {out_dir}/last.pt, " if "last.pt" in present else ""
        raise ValueError(f"{out_dir} already holds a run ({', '.join(present)}): {hint}replace it with --overwrite, "
                         f"or choose another --exp_name / --output_dir")
    if os.path.isfile(os.path.join(out_dir, "log.txt")):   # alone: the log of a start stopped before its first step
        os.remove(os.path.join(out_dir, "log.txt"))
    if not present:
        return
    for f in present:
        path = os.path.join(out_dir, f)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    print(f"--overwrite: removed {', '.join(present)} from {out_dir}")


def plot_consistent(consistent, args, path):
    """Fig. 3: consistent snippets per video (both branches agree) over the training steps."""
    steps, counts = zip(*consistent)
    plot_series(path, {"consistent snippets": (list(steps), list(counts))}, "step",
                f"snippets per video (of T = {args.num_segments})", title="Consistent segments during training")


def log_line(out_dir, line):
    """A line for the terminal (above the progress bar) and for OUTPUT_DIR/EXP_NAME/log.txt."""
    tqdm.write(line)
    os.makedirs(out_dir, exist_ok=True)
    append_line(os.path.join(out_dir, "log.txt"), line)


def log_evaluation(out_dir, history, step, metrics, window):
    """Append one row to ``history`` and rewrite OUTPUT_DIR/EXP_NAME/log.csv atomically: the step, each loss
    term averaged over the steps since the last evaluation (``window``: their term dicts; empty at step 0),
    the mAP at each tIoU, its average and the accuracies."""
    row = {"step": step, **(pd.DataFrame(window).mean().to_dict() if window else {})}
    row.update({f"mAP@{t:g}": m for t, m in zip(metrics["tiou"], metrics["mAP"])})
    row.update({k: metrics[k] for k in ("average_mAP", "cls_acc", "A_bin_acc", "A_ca_bin_acc")})
    history.append(row)
    save_text(pd.DataFrame(history).to_csv(index=False), os.path.join(out_dir, "log.csv"))


def read_log(folder, step):
    """The log.csv rows of ``folder`` up to ``step`` (a resumed run continues its log), [] without one."""
    path = os.path.join(folder, "log.csv")
    if not os.path.isfile(path):
        return []
    return pd.read_csv(path).query("step <= @step").to_dict("records")


def log_metrics(writer, metrics, step, split="test"):
    writer.add_scalar(f"{split}/average_mAP", metrics["average_mAP"], step)
    writer.add_scalar(f"{split}/cls_acc", metrics["cls_acc"], step)
    for t, m in zip(metrics["tiou"], metrics["mAP"]):
        writer.add_scalar(f"{split}/mAP@{t:g}", m, step)


def log_warning(out_dir, line):
    """A warning: one line on stderr (above the progress bar) and in OUTPUT_DIR/EXP_NAME/log.txt."""
    tqdm.write(line, file=sys.stderr)
    os.makedirs(out_dir, exist_ok=True)
    append_line(os.path.join(out_dir, "log.txt"), line)

"""Faults a cluster deals out: a full disk or a file-size limit in the middle of a write (one line naming the
file and the cause, exit 1, the previous file intact, no partial file under a final name), a run folder's lock
left by a killed process, and SIGKILL at any instant (scripts/faults.py)."""
import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import runs
from utils.io import append_line, save_json, temp_owner, write_atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 64 * 1024                                      # bytes: more than a log line, less than what is written


def size_limited(limit):
    """preexec_fn of a child under `ulimit -f`: a write past ``limit`` bytes fails with EFBIG (SIGXFSZ ignored,
    as a shell's `ulimit -f` leaves it for a job that handles it)."""
    def limit_child():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_child


def run_limited(argv, limit=LIMIT, **kwargs):
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=size_limited(limit), **kwargs)


def final_files(folder):
    """Every file under ``folder`` (relative paths), temporary ones included."""
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


WRITERS = {   # a program that writes something over LIMIT to sys.argv[1] the way the project does
    "checkpoint": """
        import torch, checkpoint, model
        from types import SimpleNamespace
        net = model.AICL(20, embed_dim=256)
        checkpoint.save(sys.argv[1], net, SimpleNamespace(seed=0), [str(i) for i in range(20)], step=1)""",
    "features": """
        import numpy as np
        from features.storage import Layout
        layout, vid = Layout(os.path.dirname(os.path.dirname(sys.argv[1]))), "v"
        layout.save(vid, np.ones((64, 1024), np.float32), np.ones((64, 1024), np.float32), {"video": {}})""",
    "partial": """
        import numpy as np
        from features.storage import Layout
        layout = Layout(os.path.dirname(os.path.dirname(sys.argv[1])))
        layout.save_partial("v", "key", np.ones((64, 1024), np.float32), np.ones((64, 1024), np.float32))""",
}
TARGETS = {"checkpoint": "run/last.pt", "features": "out/rgb/v.npy", "partial": "out/partial/v.npz"}


@pytest.mark.parametrize("what", sorted(WRITERS))
def test_a_size_limit_mid_write_is_one_line_and_keeps_the_previous_file(what, tmp_path):
    target = tmp_path / TARGETS[what]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the previous file")
    program = ("import os, sys\nfrom utils.cli import run\ndef main(argv):\n"
               + textwrap.indent(textwrap.dedent(WRITERS[what]).strip(), "    ") + "\nrun(main)\n")
    proc = run_limited([sys.executable, "-c", program, str(target)])
    assert (proc.returncode, proc.stderr) == (1, f"error: cannot write {target}: file too large (EFBIG)\n")
    assert target.read_bytes() == b"the previous file"
    assert [f for f in final_files(tmp_path) if f.endswith(".tmp")] == []
    if what == "features":                             # the record comes last: the video is not finished
        assert not (tmp_path / "out" / "meta" / "v.json").exists()
        assert not (tmp_path / "out" / "flow" / "v.npy").exists()


def test_a_results_page_over_the_size_limit_is_one_line_and_keeps_the_previous_page(tmp_path):
    pred, page = tmp_path / "predictions.json", tmp_path / "report.html"
    save_json({"results": {f"v{i}": [{"label": "a", "score": 0.5, "segment": [i, i + 1]}] for i in range(50)}}, pred)
    page.write_text("the previous page")
    proc = run_limited([sys.executable, "-m", "eval.report", "--pred", str(pred), "--out", str(page)], limit=4096)
    assert (proc.returncode, proc.stderr) == (1, f"error: cannot write {page}: file too large (EFBIG)\n")
    assert page.read_text() == "the previous page" and final_files(tmp_path) == ["predictions.json", "report.html"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path):
    def fill(f):                                      # a real ENOSPC, as a full disk gives it
        with open("/dev/full", "wb", buffering=0) as full:
            full.write(b"x")
    path = tmp_path / "metrics.json"
    path.write_text("previous")
    with pytest.raises(OSError) as err:
        write_atomic(path, fill)
    assert err.value.errno == errno.ENOSPC and str(err.value) == f"cannot write {path}: no space left on device (ENOSPC)"
    assert os.listdir(tmp_path) == ["metrics.json"] and path.read_text() == "previous"


def test_a_log_line_past_the_size_limit_names_the_log(tmp_path):
    log = tmp_path / "log.txt"
    program = f"from utils.io import append_line\nfrom utils.cli import run\nrun(lambda a: append_line({str(log)!r}, 'x' * 5000))"
    proc = run_limited([sys.executable, "-c", program], limit=4096)
    assert (proc.returncode, proc.stderr) == (1, f"error: cannot write {log}: file too large (EFBIG)\n")


def test_other_write_errors_keep_their_traceback(tmp_path):
    with pytest.raises(ZeroDivisionError):
        write_atomic(tmp_path / "x", lambda f: 1 / 0)
    assert os.listdir(tmp_path) == []
    append_line(tmp_path / "log.txt", "a")
    assert (tmp_path / "log.txt").read_text() == "a\n"


def test_a_killed_runs_lock_and_temporary_files_are_taken_over_and_removed(tmp_path, capsys):
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, runs
        from utils.io import write_temp
        with runs.output_dir_lock({str(out)!r}):
            write_temp({str(out / "last.pt")!r}, lambda f: f.write(b"half"))
            os.kill(os.getpid(), signal.SIGKILL)""")], cwd=REPO, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    left = sorted(os.listdir(out))
    assert len(left) == 2 and left[1] == runs.LOCK_FILE and left[0].startswith(".last.pt.")
    pid = runs.read_pid(out / runs.LOCK_FILE)
    with runs.output_dir_lock(str(out)):
        assert os.listdir(out) == [runs.LOCK_FILE] and runs.read_pid(out / runs.LOCK_FILE) == os.getpid()
    err = capsys.readouterr().err
    assert err == f"{out}: taking over the lock of a run that did not end (process {pid}, no longer running)\n"
    assert os.listdir(out) == []                      # the lock file goes with the run that holds it


def test_a_running_processes_temporary_file_is_left_alone(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f".x.json.{temp_owner(alive.pid)}.abc.tmp"
        dead = tmp_path / f".y.json.{temp_owner(2 ** 22 + 1)}.abc.tmp"     # above Linux's largest pid
        theirs.write_text("busy")
        dead.write_text("left")
        save_json({}, tmp_path / "z.json")
        assert sorted(os.listdir(tmp_path)) == [theirs.name, "z.json"]
    finally:
        alive.kill()
        alive.wait()


def test_training_killed_at_random_instants_loses_nothing_and_resumes_to_the_same_run(tmp_path):
    import faults
    row = faults.trial(faults.Train(str(tmp_path)), str(tmp_path), 1, np.random.default_rng(1))
    assert row == {"command": "train", "kills": row["kills"], "lost files": 0, "stale locks": 0,
                   "temporary files": 0, "mismatches": 0} and row["kills"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("command, kills", [("train", 6), ("features", 4)])
def test_commands_killed_many_times_lose_nothing_and_finish_as_uninterrupted(command, kills, tmp_path):
    import faults
    row = faults.trial(faults.CASES[command](str(tmp_path)), str(tmp_path), kills, np.random.default_rng(2))
    assert row == {"command": command, "kills": row["kills"], "lost files": 0, "stale locks": 0,
                   "temporary files": 0, "mismatches": 0} and row["kills"] >= kills // 2

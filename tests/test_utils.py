"""The ground floor's infrastructure: the one CLI error wrapper, the JSON reader, atomic writing."""
import os

import pytest

from utils.cli import run
from utils.io import read_json, save_json, write_atomic


def failing(err):
    def main(argv):
        raise err
    return main


@pytest.mark.parametrize("err, code", [(ValueError("x.json: bad"), 2), (FileNotFoundError("x.json: file not found"), 2),
                                       (PermissionError("out: permission denied"), 1), (KeyboardInterrupt(), 130)])
def test_run_turns_errors_into_one_line_and_an_exit_status(err, code, capsys):
    with pytest.raises(SystemExit) as stop:
        run(failing(err), [], interrupted="stopped; run it again to continue")
    lines = capsys.readouterr().err.splitlines()
    assert stop.value.code == code and len(lines) == 1 and lines[0].startswith("error: ")
    assert lines[0].endswith("stopped; run it again to continue" if code == 130 else str(err))


def test_run_returns_what_main_returns_and_shows_a_worker_error_without_its_traceback(capsys):
    assert run(lambda argv: {"argv": argv}, ["a"]) == {"argv": ["a"]}
    worker = ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1\nValueError: f.npy: contains NaN or Inf")
    with pytest.raises(SystemExit):
        run(failing(worker))
    assert capsys.readouterr().err == "error: f.npy: contains NaN or Inf\n"


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json: file not found"):
        read_json(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")
    save_json({"a": [1, 2]}, tmp_path / "sub" / "ok.json")
    assert read_json(tmp_path / "sub" / "ok.json") == {"a": [1, 2]}


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def half(f):
        f.write(b"new, half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]

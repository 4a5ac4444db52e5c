"""python -m features.compare: per-snippet cosine and relative L2 of two feature files, what the figures mean,
and a one-line error (exit 2) naming the file for input that is not a readable [T, D] .npy array."""
import os
import subprocess
import sys

import numpy as np
import pytest

from features import compare as comparelib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compare(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 1024)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    assert comparelib.main([str(tmp_path / "a.npy"), str(tmp_path / "a.npy")]) == 0
    out = capsys.readouterr().out
    assert "mean 1.0000  median 1.0000  min 1.0000" in out and "/ ||B||: 0.0000" in out
    assert out.splitlines()[-1] == comparelib.GUIDE
    b = a.copy()
    b[2] = -b[2]
    np.save(tmp_path / "b.npy", b[:4])
    r = comparelib.compare(a.astype(np.float64), b[:4].astype(np.float64))
    assert r["T"] == 4 and r["cosine"][2] == pytest.approx(-1) and r["cosine"][[0, 1, 3]] == pytest.approx(1)
    assert r["rel_l2"] == pytest.approx(2 * np.linalg.norm(a[2]) / np.linalg.norm(b[:4]))
    assert comparelib.main([str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]) == 0
    assert "T differs (5 vs 4): comparing the first 4 snippets" in capsys.readouterr().out


@pytest.mark.parametrize("name, content, message", [
    ("c.npy", "nope", "c.npy: cannot be read as a .npy array"),
    ("feats.npz", None, "feats.npz: not a .npy file"),
    ("feats.txt", "1 2 3\n", "feats.txt: not a .npy file"),
    ("v.npy", np.zeros(3), r"v.npy: expected a \[T, D\] feature array with T >= 1, got shape \[3\]"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, name, content, message):
    np.save(tmp_path / "a.npy", np.ones((2, 4)))
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif content is None:
        np.savez(path, x=np.ones((2, 4)))
    else:
        np.save(path, content)
    with pytest.raises(ValueError, match=message):
        comparelib.main([str(tmp_path / "a.npy"), str(path)])
    proc = subprocess.run([sys.executable, "-m", "features.compare", str(path), str(tmp_path / "a.npy")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(f"error: {path}")

"""scripts/gpu_check.sh: one line and exit 3 without CUDA; every part, TV-L1 included, the table, the two
files of --out and the exit status with the CPU standing in for CUDA (--self-test-on-cpu), on a machine as
the GPU machine comes (no PyAV, no cv2.optflow); the rows that catch a broken term, gradient or compilation;
the real check where there is a GPU."""
import json
import os
import re
import subprocess

import numpy as np
import pytest
import torch

import gpu_check
import missing_modules
from features.flow import finish, opencv_remap_grid
from features.tvl1 import tvl1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")
PARTS = {"machine", "train fp32", "train fp32_strict", "train bf16", "inference strict", "inference tf32",
         "i3d rgb", "i3d flow", "tvl1"}


def run_check(*args, cwd=ROOT, env=None):
    return subprocess.run(["bash", SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=1200, env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_one_line_exit_3_nothing_created(tmp_path):
    default_out = os.path.join(ROOT, "ckpt", "gpu_check")
    existed = os.path.exists(default_out)
    result = run_check("--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 3
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA device"), lines
    assert os.listdir(tmp_path) == []
    assert os.path.exists(default_out) == existed


@pytest.mark.slow
def test_self_test_on_cpu_without_pyav_and_contrib_runs_every_part(tmp_path):
    out = tmp_path / "check"
    env = missing_modules.environment(tmp_path / "hide")
    result = run_check("--self-test-on-cpu", "--out", str(out), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for part in ("TV-L1", "I3D rgb", "I3D flow", "training", "inference"):      # progress: which part, how long
        assert any(re.match(rf"\[ *[\d.]+ s\] {part}: done in [\d.]+ s$", line) for line in lines), part
    work = re.search(r"working files in (\S+) \(removed at the end\)", result.stdout).group(1)
    assert not os.path.exists(work)
    head = next(i for i, line in enumerate(lines) if line.startswith("part "))
    assert lines[head].split() == ["part", "figure", "CPU", "CUDA", "difference", "tolerance", "verdict"]
    assert lines[-1].startswith("gpu_check: every parity holds")
    assert sorted(os.listdir(out)) == ["gpu_check.json", "gpu_check.txt"]
    assert (out / "gpu_check.txt").read_text() == "\n".join(lines[head:]) + "\n"
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["machine"]["pyav"] is False and report["machine"]["cv2_optflow"] is False
    assert report["environment"]["av"] is None and report["self_test"] is True and report["size"] == "tiny"
    assert set(report["parts"]) == PARTS and report["passed"] is True
    assert report["parts"]["tvl1"] is True and report["parts"]["train fp32_strict"] is True, report["parts"]
    flow = report["tvl1"]
    assert flow["remap_grid"] == opencv_remap_grid() and flow["port_pairs_per_s"]["2"] > 0
    assert any("not run: cv2.optflow is not importable" in r.get("note", "") for r in report["rows"])
    strict = [r["what"] for r in report["rows"] if r["part"] == "train fp32_strict" and r["tolerance"]]
    for term in ("L_a", "L_ca", "L_mc", "L_ac", "L_c", "total"):
        assert f"{term}, steps 1-3 (step 1 shown; largest difference)" in strict
    assert sum(w.startswith("gradient norm at step 1, ") for w in strict) == 6
    assert report["training"]["cpu"]["terms_steps_1_3"]["L_c"][2] is not None
    assert report["inference"]["strict"]["matched_fraction"] == 1.0
    assert report["i3d_rgb"]["relative_diff_tf32_off"] == 0.0 and report["i3d_rgb"]["cuda_snippets_per_s"] > 0
    # the folder now holds the check: a second run without --overwrite is refused before anything runs
    again = run_check("--self-test-on-cpu", "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_a_failed_row_fails_its_part_and_the_table_says_so():
    check = gpu_check.Check()
    check.row("i3d rgb", "max |feature diff|", 0.0, 3e-4, 1e-4)
    check.row("i3d rgb", "snippets/s", 2.0, 100.0)
    check.row("train fp32", "loss at step 1", 5.0, 5.001, 1e-3, rel=True)
    check.verdict("tvl1", "ran", False, "RuntimeError: CUDA out of memory")
    check.verdict("machine", "optional pieces", None, "Triton no")
    check.verdict("inference", "note", None, "first an information row")
    check.row("inference", "average mAP", 50.0, 50.2, 0.5)
    assert check.parts() == {"i3d rgb": False, "train fp32": True, "tvl1": False, "machine": None,
                             "inference": True}
    assert check.rows[2]["difference"] == pytest.approx(2e-4)
    text = gpu_check.table(check.rows)
    assert "FAIL" in text.splitlines()[1] and "out of memory" in text.splitlines()[4]


def test_relative_differences_of_zero_terms():
    assert gpu_check.difference(0.0, 0.0, rel=True) == 0.0
    assert gpu_check.difference(0.0, 1e-3, rel=True) == 1e-3          # |dev - cpu| where cpu is 0
    assert gpu_check.difference(None, 1.0) is None


def test_a_wrong_term_at_step_2_or_a_wrong_gradient_fails_the_strict_part():
    terms = {"L_a": [2.0, 1.9, 1.8], "L_c": [7.0, 6.9, 6.8], "total": [5.0, 4.9, 4.8]}
    cpu = {"terms_steps_1_3": terms}
    dev = {"terms_steps_1_3": dict(terms, L_c=[7.0, 6.9 * 1.01, 6.8])}      # L_c (weight 0.01) 1% off at step 2
    grads = {"cpu": {"base_module": 4.9, "cls": 2.7}, "cuda": {"base_module": 4.9, "cls": 2.7 * 1.0001}}
    check = gpu_check.Check()
    gpu_check.strict_rows(check, cpu, dev, grads)
    verdicts = {r["what"].split(", steps")[0]: r["pass"] for r in check.rows}
    assert verdicts == {"L_a": True, "L_c": False, "total": True, "gradient norm at step 1, base_module": True,
                        "gradient norm at step 1, cls": True}
    bad = {"cpu": grads["cpu"], "cuda": dict(grads["cuda"], cls=2.7 * 1.01)}
    check = gpu_check.Check()
    gpu_check.strict_rows(check, cpu, cpu, bad)
    assert check.parts() == {"train fp32_strict": False}


def test_a_compilation_that_fails_is_a_failed_row_and_the_part_goes_on_op_by_op(monkeypatch):
    def failing(first, second, device="cpu", grid=32, compiled=False):
        if compiled:
            raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")
        return tvl1(first, second, device, grid)

    monkeypatch.setattr(gpu_check, "tvl1", failing)
    monkeypatch.setattr(gpu_check, "port_compiles", lambda device: True)
    first, second = gpu_check.frame_pairs(1, 32, 40)
    check = gpu_check.Check()
    fields, _ = gpu_check.compiled_fields(check, first, second, torch.device("cpu"), 32)
    assert fields is None and check.parts() == {"tvl1": False}
    assert "Failed to find C compiler" in check.rows[0]["note"] and "op by op" in check.rows[0]["note"]
    check = gpu_check.Check()                    # no C compiler for Triton's launcher: expected, a note
    assert gpu_check.compiled_fields(check, first, second, torch.device("cpu"), 32, launcher=False)[0] is None
    assert check.parts() == {"tvl1": None} and "as expected" in check.rows[0]["note"]
    monkeypatch.setattr(gpu_check, "port_compiles", lambda device: False)
    check = gpu_check.Check()
    assert gpu_check.compiled_fields(check, first, second, torch.device("cpu"), 32) == (None, None)
    assert check.parts() == {"tvl1": None} and "not run" in check.rows[0]["note"]


@pytest.mark.skipif(not gpu_check.has_opencv_tvl1(), reason="no cv2.optflow (OpenCV's contrib modules)")
def test_the_port_against_opencv_rows():
    first, second = gpu_check.frame_pairs(2, 64, 85)
    port = finish(np.asarray(tvl1(first, second, "cpu", opencv_remap_grid())), 48)
    check = gpu_check.Check()
    figures = gpu_check.opencv_rows(check, first, second, 48, {"op by op": port})
    assert check.parts() == {"tvl1": True} and figures["pairs_per_s"] > 0
    assert max(figures["relative_l2"]["op by op"]) < gpu_check.TOLERANCES["flow_p95"]


def test_match_detections():
    def preds(*dets):
        return {"results": {"v": [{"label": "a", "score": s, "segment": seg} for s, seg in dets]}}
    a = preds((0.5, [1.0, 2.0]), (0.3, [4.0, 6.0]))
    b = preds((0.5004, [1.0, 2.001]), (0.2, [7.0, 8.0]))
    fraction, diff = gpu_check.match_detections(a, b)
    assert fraction == pytest.approx(1 / 3) and diff == pytest.approx(4e-4)


def test_frame_pairs_are_a_moving_texture():
    first, second = gpu_check.frame_pairs(2, 64, 80)
    assert first.shape == second.shape == (2, 64, 80) and first.dtype == np.uint8
    assert first.std() > 20 and np.abs(first.astype(int) - second).mean() > 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_check_on_cuda_tiny(tmp_path):
    result = run_check("--size", "tiny", "--out", str(tmp_path / "check"))
    report = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    failed = {part for part, ok in report["parts"].items() if ok is False}
    assert failed == set() and result.returncode == 0, result.stdout
    assert report["tvl1"]["remap_grid"] == opencv_remap_grid()
    assert report["self_test"] is False and report["machine"]["cuda"]

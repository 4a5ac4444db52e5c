"""scripts/gpu_check.sh: one line and exit 3 without CUDA; every part, the table, the JSON and the exit
status with the CPU standing in for CUDA (--self-test-on-cpu); the real check where there is a GPU."""
import json
import os
import subprocess

import numpy as np
import pytest
import torch

import gpu_check
from features.flow import opencv_remap_grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")
PARTS = {"train fp32", "train fp32_strict", "train bf16", "inference strict", "inference tf32", "i3d rgb",
         "i3d flow", "tvl1"}


def run_check(*args, cwd=ROOT):
    return subprocess.run(["bash", SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=900)


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
def test_self_test_on_cpu_table_json_exit_0(tmp_path):
    out = tmp_path / "check"
    result = run_check("--self-test-on-cpu", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("part "))
    assert lines[head].split() == ["part", "figure", "CPU", "CUDA", "difference", "tolerance", "verdict"]
    assert lines[-1].startswith("gpu_check: every parity holds")
    report = json.loads((out / "gpu_check.json").read_text())
    assert {"environment", "size", "sizes", "tolerances", "training", "inference", "i3d_rgb", "i3d_flow", "rows",
            "parts", "passed", "elapsed_s", "timings"} <= report.keys()
    assert report["size"] == "tiny" and report["timings"]["train_step_s"]["bf16"] > 0
    assert report["timings"]["i3d_snippets_per_s"]["flow"]["cuda"] > 0
    assert report["passed"] is True and report["environment"]["self_test"] is True
    assert set(report["parts"]) == PARTS and report["parts"]["tvl1"] is None      # skipped, with its note
    assert {"cpu", "fp32", "fp32_strict", "bf16"} == report["training"].keys()
    for figures in report["training"].values():
        assert {"loss_step1", "loss_last_window", "average_mAP", "mAP", "train_step_s", "test_pass_s"} <= figures.keys()
    assert report["inference"]["strict"]["matched_fraction"] == 1.0
    assert report["i3d_rgb"]["max_abs_diff_tf32_off"] == 0.0 and report["i3d_rgb"]["cuda_snippets_per_s"] > 0
    # the folder now holds the check: a second run without --overwrite is refused before anything runs
    again = run_check("--self-test-on-cpu", "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_a_failed_row_fails_its_part_and_the_table_says_so():
    check = gpu_check.Check()
    check.row("i3d rgb", "max |feature diff|, TF32 off", 0.0, 3e-4, 1e-4)
    check.row("i3d rgb", "snippets/s", 2.0, 100.0)
    check.row("train fp32", "loss at step 1", 5.0, 5.001, 1e-3, rel=True)
    check.verdict("tvl1", "ran", False, "RuntimeError: CUDA out of memory")
    assert check.parts() == {"i3d rgb": False, "train fp32": True, "tvl1": False}
    assert check.rows[2]["difference"] == pytest.approx(2e-4)
    text = gpu_check.table(check.rows)
    assert "FAIL" in text.splitlines()[1] and "out of memory" in text.splitlines()[-1]


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
    assert report["environment"]["self_test"] is False and report["environment"]["cuda"]

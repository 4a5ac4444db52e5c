"""The demo is deterministic on one machine: two runs of scripts/train.sh (shortened) write the same
metrics.json and log.csv, byte for byte (neither holds a timestamp or a duration; metrics.json records the
environment, the same for both)."""
import json
import os
import subprocess
import sys

import pytest

from utils.environment import environment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo(tmp_path, name):
    """The demo of scripts/train.sh, 20 steps (evaluated before the first and after the last), into
    tmp_path/name/demo."""
    env = dict(os.environ, PYTHON=sys.executable, DEMO_PATH=str(tmp_path / "demo_data"))
    env.pop("DATA_PATH", None)
    subprocess.run(["bash", os.path.join(REPO, "scripts", "train.sh"), "--output_dir", str(tmp_path / name),
                    "--max_steps", "20", "--detection_inf_step", "20"], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=600)
    return {f: (tmp_path / name / "demo" / f).read_bytes() for f in ("metrics.json", "log.csv")}


@pytest.mark.slow
def test_two_demo_runs_write_the_same_metrics(tmp_path):
    first, second = demo(tmp_path, "a"), demo(tmp_path, "b")
    metrics = json.loads(first["metrics.json"])
    assert metrics["step"] == 20 and 0 < metrics["average_mAP"] <= 1
    assert metrics["environment"] == environment("cpu")
    assert first == second

"""utils/environment.py: the record of what a result was computed with, and the line a resumed run prints
when the record moved."""
import platform
import sys

import numpy as np
import pytest
import scipy
import torch

from utils import environment as env


def test_the_record_names_the_versions_the_cpu_and_its_isa():
    record = env.environment("cpu")
    assert (record["python"], record["torch"], record["numpy"], record["scipy"]) == \
           (platform.python_version(), torch.__version__, np.__version__, scipy.__version__)
    import av
    import cv2
    assert (record["cv2"], record["av"]) == (cv2.__version__, av.__version__)
    assert record["cpu"]["isa"] == torch.backends.cpu.get_cpu_capability() and record["cpu"]["model"]
    assert "gpu" not in record and env.environment() == record       # a CPU device: no GPU entry


def test_isa_caps_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert env.environment("cpu")["cpu"]["isa_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert env.environment("cpu")["cpu"]["isa_caps"] == {}


def test_a_missing_optional_package_is_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)                   # import av raises ImportError
    assert env.package_version("av") is None and env.environment("cpu")["av"] is None
    assert env.package_version("no_such_module_aicl") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_cuda_device_adds_the_gpu():
    gpu = env.environment("cuda")["gpu"]
    assert gpu["name"] == torch.cuda.get_device_name(0) and gpu["cuda"] == torch.version.cuda


def test_moved_names_what_moves_float_results_and_nothing_else():
    now = env.environment("cpu")
    assert env.moved(None, now) is None and env.moved({}, now) is None
    assert env.moved(dict(now, numpy="0.1", python="2.7"), now) is None       # versions that do not move floats
    other = dict(now, torch="2.0.0", cpu=dict(now["cpu"], isa="SSE", isa_caps={"ATEN_CPU_CAPABILITY": "default"}))
    assert env.moved(other, now) == (f"environment changed: torch {now['torch']} (was 2.0.0), isa "
                                     f"{now['cpu']['isa']} (was SSE), isa_caps {now['cpu']['isa_caps']} "
                                     "(was {'ATEN_CPU_CAPABILITY': 'default'})")
    assert "gpu" in env.moved(dict(now, gpu={"name": "H200"}), now)


def test_the_record_loads_with_weights_only(tmp_path):
    """Checkpoints hold the record: it must be plain data for torch.load(weights_only=True)."""
    torch.save({"environment": env.environment("cpu")}, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["environment"] == env.environment("cpu")

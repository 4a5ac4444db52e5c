"""What a result was computed with: package versions and the processor's vector ISA (or the GPU).

Every result file that records settings (metrics.json, extraction.json, checkpoints, gpu_check.json, the
bench's --json) stores `environment(device)` beside them, so that a figure names the software and the
hardware kernels that produced it. Float results move across machines with these (oneDNN and ATen pick
their kernels by the CPU's ISA), so the record is what tells two differing runs apart."""
import importlib
import os
import platform
import sys

import numpy as np
import torch

# Optional packages: recorded as None where they are not installed (PyAV and OpenCV are absent on some
# GPU machines); each is imported only when the record is made.
OPTIONAL = {"scipy": "scipy", "cv2": "cv2", "av": "av"}
# The environment variables that cap the CPU kernels' ISA (and so move float results).
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def package_version(module: str) -> str | None:
    """The version of an importable module, or None where it cannot be imported."""
    try:
        return str(getattr(importlib.import_module(module), "__version__", "unknown"))
    except ImportError:
        return None


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux, platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str | None = None) -> dict:
    """Versions of python, torch, numpy, scipy, OpenCV (cv2) and PyAV (av); the CPU's model, the vector ISA
    ATen dispatches to (`torch.backends.cpu.get_cpu_capability()`, e.g. AVX2 or AVX512) and any ISA cap set
    in the environment; with a CUDA device also the GPU's name, CUDA and cuDNN versions. Plain strings (not
    torch's TorchVersion), so that a checkpoint holding the record loads with torch.load(weights_only=True)."""
    record = {"python": sys.version.split()[0], "torch": str(torch.__version__), "numpy": np.__version__}
    record.update({name: package_version(module) for name, module in OPTIONAL.items()})
    record["cpu"] = {"model": cpu_model(), "isa": torch.backends.cpu.get_cpu_capability(),
                     "isa_caps": {k: os.environ[k] for k in ISA_CAPS if k in os.environ}}
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        record["gpu"] = {"name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                         "cudnn": torch.backends.cudnn.version()}
    return record


def moved(recorded: dict | None, now: dict) -> str | None:
    """One line saying how `now` differs from a `recorded` environment in what moves float results (the torch
    version, the CPU's ISA and its caps, the GPU), or None where it does not (or nothing was recorded)."""
    if not recorded:
        return None
    pick = lambda e: {"torch": e.get("torch"), "isa": e.get("cpu", {}).get("isa"),
                      "isa_caps": e.get("cpu", {}).get("isa_caps"), "gpu": (e.get("gpu") or {}).get("name")}
    was, new = pick(recorded), pick(now)
    changes = [f"{k} {new[k]} (was {was[k]})" for k in was if was[k] != new[k]]
    return "environment changed: " + ", ".join(changes) if changes else None

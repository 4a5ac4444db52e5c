"""The one rule that turns a --device name into a torch device, for training, inference and extraction, and
the restoring of the process-wide numerics flags a run sets on it."""
import os
from contextlib import contextmanager

import torch


def resolve_device(name="auto", env=None):
    """The torch device of ``--device NAME``. "auto": cuda:LOCAL_RANK (modulo the GPU count, so that each
    torchrun process takes its own GPU) when CUDA is present, else cpu. Any other name is checked: a name
    torch does not know, or a GPU this machine lacks, is a ValueError naming the flag."""
    env = os.environ if env is None else env
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(env.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name}: not a device (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this PyTorch ({torch.__version__}) sees no CUDA GPU; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA GPU(s) present")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available here; use --device cpu")
    return device


# The process-wide numerics flags a run sets (main.set_gpu_numerics): (owner module, attribute).
NUMERICS_FLAGS = ((torch.backends.cudnn, "deterministic"), (torch.backends.cudnn, "benchmark"),
                  (torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32"))


@contextmanager
def numerics_flags_restored():
    """The cuDNN and TF32 flags as they were before, once the block (or the decorated function) returns, so
    that a run called in-process (the tests, scripts/seeds.py) leaves the caller's flags as they were."""
    saved = [getattr(owner, name) for owner, name in NUMERICS_FLAGS]
    try:
        yield
    finally:
        for (owner, name), value in zip(NUMERICS_FLAGS, saved):
            setattr(owner, name, value)

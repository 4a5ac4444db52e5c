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


# TF32 is set by the fp32_precision strings where the installed torch has them (2.7 and newer), by the legacy
# allow_tf32 booleans where not; never both (since torch 2.9 a legacy set warns in every run, which 2.13 no
# longer does, and 2.13 refuses some reads after a mix of the two).
FP32_PRECISION_API = hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")


def tf32_flags():
    """TF32 in cuDNN convolutions and CUDA matmuls as the installed torch holds it, (conv, matmul): the
    fp32_precision strings ("tf32", "ieee", "none") or the legacy booleans; set_tf32 restores it."""
    if FP32_PRECISION_API:
        return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def set_tf32(conv, matmul):
    """TF32 in cuDNN convolutions and in CUDA matmuls on (True) or off (False), or as tf32_flags() returned."""
    if FP32_PRECISION_API:
        conv, matmul = (v if isinstance(v, str) else "tf32" if v else "ieee" for v in (conv, matmul))
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul
    else:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = bool(conv), bool(matmul)


def tf32_enabled():
    """(conv, matmul) as booleans: whether TF32 may be used in cuDNN convolutions and in CUDA matmuls."""
    conv, matmul = tf32_flags()
    if not FP32_PRECISION_API:
        return conv, matmul
    return conv == "tf32", matmul == "tf32" or matmul == "none" and torch.backends.fp32_precision == "tf32"


@contextmanager
def numerics_flags_restored():
    """The cuDNN and TF32 flags as they were before, once the block (or the decorated function) returns, so
    that a run called in-process (the tests, scripts/seeds.py) leaves the caller's flags as they were."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, tf32_flags()
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        set_tf32(*saved[2])

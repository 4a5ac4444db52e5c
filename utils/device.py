"""The one rule that turns a --device name into a torch device, for training, inference and extraction."""
import os

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

"""Atomic file writing: a temporary file in the same folder, then os.replace, so a reader (or a
crash) never sees half a file."""
import json
import os
import tempfile

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)            # read once: files get the usual permissions, not mkstemp's 0600


def _atomic(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_json(obj, path):
    """Write ``obj`` as JSON to ``path`` atomically."""
    _atomic(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def save_text(text, path):
    """Write ``text`` to ``path`` atomically."""
    _atomic(path, lambda f: f.write(text.encode()))


def save_torch(obj, path):
    """torch.save ``obj`` to ``path`` atomically."""
    _atomic(path, lambda f: torch.save(obj, f))

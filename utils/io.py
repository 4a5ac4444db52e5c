"""Atomic file writing: a temporary file in the same folder, then os.replace, so a reader (or a
crash) never sees half a file."""
import json
import os
import tempfile

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)            # read once: files get the usual permissions, not mkstemp's 0600


def write_atomic(path, write):
    """Call ``write(binary file)`` on a temporary file next to ``path``, then rename it to ``path``;
    on any failure the temporary file is removed and an existing ``path`` is left as it was. A folder
    that cannot be created is an OSError naming it."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot write {os.fspath(path)!r}: cannot create folder {folder!r} ({err.strerror})") from err
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
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def save_text(text, path):
    """Write ``text`` to ``path`` atomically."""
    write_atomic(path, lambda f: f.write(text.encode()))


def save_torch(obj, path):
    """torch.save ``obj`` to ``path`` atomically."""
    write_atomic(path, lambda f: torch.save(obj, f))

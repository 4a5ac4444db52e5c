"""Files in and out: atomic writing (a temporary file in the same folder, then os.replace, so a reader or a
crash never sees half a file) and JSON reading whose errors name the file."""
import json
import os
import tempfile

_UMASK = os.umask(0)
os.umask(_UMASK)            # read once: files get the usual permissions, not mkstemp's 0600


def write_temp(path, write):
    """Call ``write(binary file)`` on a temporary file next to ``path`` and return the temporary file's
    path, complete and synced, for the caller to os.replace onto ``path`` (several files can so be
    published together). On any failure the temporary file is removed. A folder that cannot be created is
    an OSError naming it."""
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
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_atomic(path, write):
    """Call ``write(binary file)`` on a temporary file next to ``path``, then rename it to ``path``; on any
    failure an existing ``path`` is left as it was."""
    os.replace(write_temp(path, write), path)


def read_json(path):
    """The parsed JSON file at ``path``; FileNotFoundError or ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(path)}: file not found") from None
    except ValueError as err:                 # JSONDecodeError and UnicodeDecodeError; other OS errors go up
        raise ValueError(f"{os.fspath(path)}: not valid JSON ({err})") from None


def save_json(obj, path):
    """Write ``obj`` as JSON to ``path`` atomically."""
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def save_text(text, path):
    """Write ``text`` to ``path`` atomically."""
    write_atomic(path, lambda f: f.write(text.encode()))


def save_torch(obj, path):
    """torch.save ``obj`` to ``path`` atomically (torch is imported here, so that JSON users of this module,
    such as eval/, do not load it)."""
    import torch
    write_atomic(path, lambda f: torch.save(obj, f))

"""Files in and out: atomic writing (a temporary file in the same folder, then os.replace, so a reader or a
crash never sees half a file) and JSON reading whose errors name the file."""
import errno
import json
import os
import re
import socket
import tempfile

try:
    import resource                                   # the file-size limit (POSIX: ulimit -f)
except ImportError:
    resource = None

NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)     # a full disk, a full quota, over the file-size limit
_UMASK = os.umask(0)
os.umask(_UMASK)            # read once: files get the usual permissions, not mkstemp's 0600


def write_temp(path, write):
    """Call ``write(binary file)`` on a temporary file next to ``path`` and return the temporary file's
    path, complete and synced, for the caller to os.replace onto ``path`` (several files can so be
    published together). On any failure the temporary file is removed. A folder that cannot be created, a
    full disk or quota and a file over the size limit are each an OSError naming ``path`` and the cause
    (the writer's own error, from numpy or torch, often names neither)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot write {os.fspath(path)!r}: cannot create folder {folder!r} ({err.strerror})") from err
    remove_stale_temps(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.{temp_owner(os.getpid())}.",
                               suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        cause = space_error(err, tmp, folder)
        os.unlink(tmp)
        if cause is None:
            raise
        raise no_room(path, cause) from None
    return tmp


def temp_owner(pid):
    """The part of a temporary file's name that says which process writes it: this host and ``pid``."""
    return f"{re.sub(r'[^A-Za-z0-9-]', '_', socket.gethostname())}-{pid}"


def remove_stale_temps(folder):
    """Remove the temporary files in ``folder`` of processes of this host that are no longer running (killed
    while writing: SIGKILL leaves no time to clean up); a running process's are left alone, whoever it is.
    Returns the names removed."""
    if os.name != "posix":                            # os.kill(pid, 0) tests a process only there
        return []
    owner = re.escape(temp_owner(0)[:-1])
    removed = []
    for entry in os.scandir(folder):
        found = re.fullmatch(rf"\..+\.{owner}(\d+)\.[^.]+\.tmp", entry.name)
        if found and not running(int(found.group(1))):
            try:
                os.remove(entry.path)
                removed.append(entry.name)
            except FileNotFoundError:                 # another process cleaned it first
                pass
    return removed


def running(pid):
    """Whether process ``pid`` of this host is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                           # another user's
        return True
    return True


def no_room(path, code):
    """The one-line OSError (errno ``code``) of a write to ``path`` that found no room."""
    err = OSError(f"cannot write {os.fspath(path)}: {os.strerror(code).lower()} ({errno.errorcode[code]})")
    err.errno = code
    return err


def space_error(err, tmp, folder):
    """The errno (ENOSPC, EDQUOT, EFBIG) of a write of ``tmp`` that failed for want of room, else None:
    the error's own errno, or, for a writer that reports only a short write (numpy) or a broken archive
    (torch), a full file system or a file that reached the size limit."""
    if isinstance(err, OSError) and err.errno in NO_ROOM:
        return err.errno
    if not isinstance(err, (OSError, RuntimeError)):
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource is not None else -1
    if limit not in (-1, getattr(resource, "RLIM_INFINITY", -1)) and os.path.getsize(tmp) >= limit:
        return errno.EFBIG
    if hasattr(os, "statvfs") and os.statvfs(folder).f_bavail == 0:
        return errno.ENOSPC
    return None


def write_atomic(path, write):
    """Call ``write(binary file)`` on a temporary file next to ``path``, then rename it to ``path``; on any
    failure an existing ``path`` is left as it was."""
    os.replace(write_temp(path, write), path)


def append_line(path, line):
    """Append ``line`` and a newline to the text file at ``path`` (a log); a full disk or a file over the
    size limit is an OSError naming the file."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as err:
        if err.errno not in NO_ROOM:
            raise
        raise no_room(path, err.errno) from None


def read_lines(path):
    """The stripped non-blank lines of the UTF-8 text file at ``path``; a file that is not UTF-8 text is a
    ValueError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError as err:
        raise ValueError(f"{os.fspath(path)}: not UTF-8 text (byte {err.start}: {err.reason})") from None


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

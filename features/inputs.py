"""Which videos an extraction run takes: the video files named on the command line or found in the folders
named there, and this process's share of them when the work is split over several processes (shards)."""
import os

from features.video import VIDEO_EXTENSIONS


def list_videos(inputs):
    """Sorted [(vid, path)] of the video files named in `inputs` and the video files (by extension, not hidden)
    directly inside the folders named there. vid is the file name without its extension; two different files
    with the same vid are an error. A missing input path is FileNotFoundError."""
    found = {}
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            files = [os.path.join(item, name) for name in sorted(os.listdir(item))
                     if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)
                     and os.path.isfile(os.path.join(item, name))]
        elif os.path.isfile(item):
            files = [item]
        else:
            raise FileNotFoundError(f"{item}: no such video file or folder")
        for path in files:
            vid = os.path.splitext(os.path.basename(path))[0]
            if vid in found and os.path.realpath(found[vid]) != os.path.realpath(path):
                raise ValueError(f"two videos have the id {vid!r}: {found[vid]} and {path} "
                                 "(the id is the file name without its extension and names the feature files)")
            found.setdefault(vid, path)
    return sorted(found.items())


def find_videos(inputs):
    """list_videos(inputs) (one path or several), and a ValueError when it finds no video at all."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    videos = list_videos(inputs)
    if not videos:
        raise ValueError(f"no video files found in {', '.join(map(str, inputs))} "
                         f"(extensions: {' '.join(VIDEO_EXTENSIONS)})")
    return videos


def resolve_shard(shard=None, env=None):
    """(k, n): this process takes videos k, k + n, k + 2n, ... of the sorted list. `shard` (k, n) if given;
    else torchrun's RANK / WORLD_SIZE; else a Slurm job array's task id (relative to its first id and step)
    and task count; else (0, 1)."""
    env = os.environ if env is None else env
    if shard is not None:
        k, n = shard
        source = "--shard"
    elif "RANK" in env and "WORLD_SIZE" in env:
        k, n = int(env["RANK"]), int(env["WORLD_SIZE"])
        source = "torchrun RANK/WORLD_SIZE"
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        step = int(env.get("SLURM_ARRAY_TASK_STEP", 1))
        k = (int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))) // step
        n = int(env["SLURM_ARRAY_TASK_COUNT"])
        source = "Slurm array task id/count"
    else:
        return 0, 1
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"shard {k}/{n} (from {source}): K must be in 0..N-1 (give --shard K/N explicitly)")
    return k, n

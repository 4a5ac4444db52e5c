"""The feature folder DIR of an extraction: DIR/rgb/VID.npy and DIR/flow/VID.npy (float32 [T, 1024], same T),
DIR/meta/VID.json (the video's record: its source, duration, frames, T and the settings it was made with),
DIR/extraction.json (the settings, and every record made with them) and, while a video is under way,
DIR/partial/VID.npz (the features of its first snippets, to continue from after an interrupt).

A video is finished when its record exists: the record is written (atomically) after both .npy files, which
are written to temporary files first and then renamed together. extraction.json is rebuilt from all records,
so shards writing into one DIR at the same time only ever write their own videos' files. Features made with
different settings (fps, flow method or parameters, weights, ...) are never mixed in one DIR: `plan` refuses.
"""
import json
import os
import zipfile

import numpy as np

from utils.io import read_json, remove_stale_temps, save_json, write_atomic, write_temp


# The machine in the environment record ("packages": utils/environment.py): recorded, never compared, so that a
# folder and its partial files continue on another machine.
MACHINE = ("cpu", "gpu")


def comparable(settings):
    """The part of the settings that must agree for features to be mixed in one DIR: everything except the
    environment ("packages": versions and machine, noted per video where they differ) and where the weight
    files lie (their sha256 counts)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("packages", "path")}
        return value
    return strip(settings)


def with_backend(record):
    """A record as this version writes it: one made before --flow-backend existed names no flow backend, and
    its method had only one (OpenCV for tvl1 and dis, torch for RAFT)."""
    flow = record.get("settings", {}).get("flow") if isinstance(record, dict) else None
    if isinstance(flow, dict) and "backend" not in flow:
        flow["backend"] = "torch" if flow.get("method") == "raft" else "opencv"
    return record


def difference(old, new, prefix=""):
    """The first setting (dotted name) that differs between two comparable settings, as 'name: old vs new'; a
    method before what depends on it (the flow method before its backend and parameters)."""
    for key in sorted(set(old) | set(new), key=lambda k: (k != "method", k)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {json.dumps(a)} in DIR vs {json.dumps(b)} now"
    return None


def partial_key(settings, path, batching):
    """What a partial file must have been made with to be continued, so that the finished features equal an
    uninterrupted run's: every setting with the package versions (not the MACHINE), the I3D `batching` (batch
    size and device type: a snippet's features depend in the last bits on its batch) and the very same source
    file (path, size, modification time)."""
    versions = {k: v for k, v in settings.get("packages", {}).items() if k not in MACHINE}
    settings = dict(settings, packages=versions)
    stat = os.stat(path)
    source = {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return json.dumps({"settings": settings, "batching": batching, "source": source}, sort_keys=True)


class Layout:
    """The files of an output folder DIR."""

    def __init__(self, out_dir):
        self.dir = os.fspath(out_dir)
        self.json = os.path.join(self.dir, "extraction.json")

    def rgb(self, vid):
        return os.path.join(self.dir, "rgb", f"{vid}.npy")

    def flow(self, vid):
        return os.path.join(self.dir, "flow", f"{vid}.npy")

    def meta(self, vid):
        return os.path.join(self.dir, "meta", f"{vid}.json")

    def partial(self, vid):
        return os.path.join(self.dir, "partial", f"{vid}.npz")

    def records(self):
        """{vid: record} of the finished videos in DIR."""
        folder = os.path.join(self.dir, "meta")
        if not os.path.isdir(folder):
            return {}
        out = {}
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json") and not name.startswith("."):
                out[name[:-5]] = with_backend(read_json(os.path.join(folder, name)))
        return out

    def backend(self, method):
        """The backend that computed the flow of DIR's finished features of flow `method` (None: there are none)."""
        for record in self.records().values():
            flow = record.get("settings", {}).get("flow", {})
            if flow.get("method") == method:
                return flow.get("backend")
        return None

    def save(self, vid, rgb, flow, record):
        """rgb.npy and flow.npy renamed into place together, then the record: the video counts as finished only
        when both feature files are complete. Its partial file goes."""
        if os.path.exists(self.meta(vid)):
            os.remove(self.meta(vid))
        for sub in ("rgb", "flow", "meta"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        tmps = [write_temp(self.rgb(vid), lambda f: np.save(f, rgb))]
        try:
            tmps.append(write_temp(self.flow(vid), lambda f: np.save(f, flow)))
        except BaseException:
            os.unlink(tmps[0])
            raise
        os.replace(tmps[0], self.rgb(vid))
        os.replace(tmps[1], self.flow(vid))
        save_json(record, self.meta(vid))
        self.drop_partial(vid)

    def save_partial(self, vid, key, rgb, flow):
        """The features of `vid`'s first len(rgb) snippets, made under `key` (partial_key), atomically."""
        write_atomic(self.partial(vid), lambda f: np.savez(f, key=np.array(key), rgb=rgb, flow=flow))

    def load_partial(self, vid, key):
        """(rgb, flow) of the first snippets of `vid` saved under `key`; None when there is no partial file, or
        it was made with other settings or from another source file, or cannot be read (it is then replaced)."""
        try:
            with np.load(self.partial(vid), allow_pickle=False) as saved:
                if str(saved["key"]) != key:
                    return None
                rgb, flow = saved["rgb"], saved["flow"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if rgb.shape != flow.shape or rgb.ndim != 2:
            return None
        return rgb, flow

    def drop_partial(self, vid):
        """Remove `vid`'s partial file, and the partial folder once it holds nothing else (a killed run's
        temporary files gone too)."""
        try:
            os.remove(self.partial(vid))
            remove_stale_temps(os.path.dirname(self.partial(vid)))
            os.rmdir(os.path.dirname(self.partial(vid)))
        except OSError:                                  # no partial file, or other videos' still there
            pass

    def rebuild(self, settings):
        """Write extraction.json from every record made with `settings`; repeated until no record appeared
        while writing, so the last of several concurrent runs leaves all of them in. Returns the videos
        recorded with other settings (left out)."""
        key = comparable(settings)
        while True:
            records = self.records()
            videos, other = {}, []
            for vid, rec in records.items():
                if rec["settings"] != key:
                    other.append(vid)
                    continue
                videos[vid] = dict(rec["video"])
                if rec["packages"] != settings["packages"]:
                    videos[vid]["packages"] = rec["packages"]
            save_json({"settings": settings, "videos": videos}, self.json)
            if self.records().keys() == records.keys():
                return other


def plan(layout, settings, videos, mine, overwrite):
    """Check DIR against this run and sort this shard's videos `mine`: (result with skipped / failed filled, todo).
    ValueError when DIR holds features made with other settings (unless overwrite, and then only for videos
    this run redoes) or an extraction.json whose videos have no records."""
    records = layout.records()
    key = comparable(settings)
    stale = {vid: rec for vid, rec in records.items() if rec["settings"] != key}
    if stale and not overwrite:
        vid = sorted(stale)[0]
        raise ValueError(f"{layout.dir} holds features made with other settings ({len(stale)} videos, e.g. {vid}: "
                         f"{difference(stale[vid]['settings'], key)}); use another --out, or --overwrite to "
                         "re-extract them")
    orphans = sorted(set(stale) - {vid for vid, _ in videos})
    if orphans:
        raise ValueError(f"{layout.dir} holds {len(orphans)} videos made with other settings that this run would "
                         f"not redo ({', '.join(orphans[:3])}{' ...' if len(orphans) > 3 else ''}); remove them "
                         "or use another --out")
    if os.path.isfile(layout.json) and not overwrite:
        unbacked = sorted(set(read_json(layout.json).get("videos", {})) - set(records))
        if unbacked:
            raise ValueError(f"{layout.json} lists {len(unbacked)} videos without a record in "
                             f"{os.path.join(layout.dir, 'meta')} (e.g. {unbacked[0]}; copied features?); use "
                             "another --out")
    result, todo = {"done": [], "skipped": [], "failed": {}}, []
    for vid, path in mine:
        have = os.path.isfile(layout.rgb(vid)) and os.path.isfile(layout.flow(vid))
        if vid in records and have and not overwrite:
            result["skipped"].append(vid)
            layout.drop_partial(vid)             # left when a run stopped between the record and its removal
        elif vid not in records and not overwrite and (os.path.exists(layout.rgb(vid)) or
                                                        os.path.exists(layout.flow(vid))):
            result["failed"][vid] = (f"{layout.rgb(vid)} or its flow file exists but is not recorded in "
                                     f"{os.path.join(layout.dir, 'meta')}; not overwritten (use --overwrite)")
        else:
            todo.append((vid, path))
    return result, todo

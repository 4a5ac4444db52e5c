"""Subprocesses that run as on the GPU machine as it comes: without PyAV (av) and without OpenCV's contrib
modules (cv2.optflow). `environment(folder)` writes a sitecustomize.py into `folder` that makes both (or the
modules named) unimportable and returns os.environ with `folder` first on PYTHONPATH (inherited by the
subprocesses' own subprocesses)."""
import os

BLOCKER = """
import sys

import cv2

BLOCKED = {hidden!r}


def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)


class Hiding:
    \"\"\"An import finder that finds nothing of BLOCKED: importing it fails as for a package that is not
    installed, and importlib.util.find_spec says None.\"\"\"

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        return None if blocked(name) else self.finder.find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


for name in [m for m in sys.modules if blocked(m)]:
    del sys.modules[name]
if "cv2.optflow" in BLOCKED and hasattr(cv2, "optflow"):
    del cv2.optflow
sys.meta_path[:] = [Hiding(f) for f in sys.meta_path]
"""


def environment(folder, hidden=("av", "cv2.optflow")):
    """os.environ with a sitecustomize on PYTHONPATH (written into ``folder``) that hides the modules ``hidden``
    (and their submodules)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
        f.write(BLOCKER.format(hidden=tuple(hidden)))
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)

"""Subprocesses that run as on the GPU machine as it comes: without PyAV (av) and without OpenCV's contrib
modules (cv2.optflow). `environment(folder)` writes a sitecustomize.py into `folder` that makes both (or the
modules named) unimportable and returns os.environ with `folder` first on PYTHONPATH (inherited by the
subprocesses' own subprocesses)."""
import os

BLOCKER = """
import importlib.abc
import sys

import cv2

BLOCKED = {hidden!r}


class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the tests)", name=name)
        return None


for name in [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED)]:
    del sys.modules[name]
if hasattr(cv2, "optflow"):
    del cv2.optflow
sys.meta_path.insert(0, Missing())
"""


def environment(folder, hidden=("av", "cv2.optflow")):
    """os.environ with a sitecustomize on PYTHONPATH (written into ``folder``) that hides the modules ``hidden``
    (and their submodules)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
        f.write(BLOCKER.format(hidden=tuple(hidden)))
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)

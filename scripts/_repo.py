"""The scripts' import bootstrap: ``import _repo`` first in a script run as ``python3 scripts/NAME.py`` puts the
repository root on sys.path, so that it imports the project's modules from wherever it is started."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

"""Fixtures shared by the test modules, and scripts/ on sys.path: the tests import the scripts as
modules by their names, as the scripts import each other. Every test runs under `guard_global_state`
(global_state.py): one that leaves process-wide state behind fails."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))

from global_state import guard_global_state  # noqa: F401 (autouse fixture, registered by its import)
from i3d_weights import write_rule_weights


@pytest.fixture(scope="session")
def rule_weights(tmp_path_factory):
    """(rgb, flow) paths of I3D weight files filled by the golden rule, written once per test session."""
    folder = tmp_path_factory.mktemp("i3d_weights")
    paths = str(folder / "rgb_rule.pt"), str(folder / "flow_rule.pt")
    for path, stream in zip(paths, ("rgb", "flow")):
        write_rule_weights(path, stream)
    return paths

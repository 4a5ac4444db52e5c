"""Fixtures shared by the test modules."""
import pytest

from i3d_weights import write_rule_weights


@pytest.fixture(scope="session")
def rule_weights(tmp_path_factory):
    """(rgb, flow) paths of I3D weight files filled by the golden rule, written once per test session."""
    folder = tmp_path_factory.mktemp("i3d_weights")
    paths = str(folder / "rgb_rule.pt"), str(folder / "flow_rule.pt")
    for path, stream in zip(paths, ("rgb", "flow")):
        write_rule_weights(path, stream)
    return paths

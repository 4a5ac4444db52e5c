"""The guard of global_state.py fails each test that leaves process-wide state behind, names what it left,
and puts it back so that the next test sees clean state; a test that puts back what it changed passes."""
import os
import re
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))

LEAKY = '''
import os, numpy as np, pytest, torch, torch._inductor.config

def test_env():
    os.environ["AICL_LEAK"] = "1"

def test_cwd(tmp_path):
    os.chdir(tmp_path)

def test_inductor_value():
    torch._inductor.config.cpp.cxx = (None, "no-such-compiler")

def test_inductor_hidden():
    del torch._inductor.config.cpp.cxx             # what a monkeypatch's undo can leave

def test_threads():
    torch.set_num_threads(max(1, torch.get_num_threads() - 1) if torch.get_num_threads() > 1 else 2)

def test_print_options():
    np.set_printoptions(precision=3)

def test_dtype():
    torch.set_default_dtype(torch.float64)

def test_deterministic():
    torch.use_deterministic_algorithms(True)

def test_matmul_precision():
    torch.set_float32_matmul_precision("medium" if torch.get_float32_matmul_precision() != "medium" else "high")

def test_cudnn_flag():
    torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark

def test_put_back(monkeypatch, tmp_path):
    monkeypatch.setenv("AICL_LEAK", "2")
    monkeypatch.chdir(tmp_path)
    with torch._inductor.config.patch({"cpp.cxx": (None, "x")}):
        pass

def test_later_tests_see_clean_state():
    assert "AICL_LEAK" not in os.environ and torch.get_default_dtype() == torch.float32
    assert torch._inductor.config.cpp.cxx != (None, "no-such-compiler")
    assert not torch.are_deterministic_algorithms_enabled() and np.get_printoptions()["precision"] == 8
'''

LEAKS = {"test_env": "environment variables: AICL_LEAK", "test_cwd": "working directory",
         "test_inductor_value": "torch inductor config: cpp.cxx", "test_inductor_hidden": "cpp.cxx (hidden)",
         "test_threads": "torch thread count", "test_print_options": "numpy print options",
         "test_dtype": "torch default dtype: torch.float32 -> torch.float64",
         "test_deterministic": "torch deterministic algorithms", "test_matmul_precision": "matmul precision",
         "test_cudnn_flag": "torch.backends.cudnn.benchmark"}


def test_a_test_that_leaves_global_state_behind_fails_and_the_next_sees_it_put_back(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.path.dirname(TESTS), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "global_state", "-p", "no:cacheprovider",
                          "-p", "no:randomly", "-q", "-rE", "test_leaky.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert f"12 passed, {len(LEAKS)} errors" in out, out       # a teardown error leaves the test passed
    failed = {line.split("::")[1].split(" ")[0] for line in out.splitlines() if line.startswith("ERROR ")}
    assert failed == set(LEAKS), out
    reports = dict(re.findall(r"ERROR at teardown of (\w+) _+\n(.*?)\n", out))
    for name, what in LEAKS.items():
        assert reports[name].startswith("the test left global state behind") and what in reports[name], reports[name]

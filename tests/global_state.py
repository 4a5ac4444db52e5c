"""The guard that fails a test which leaves process-wide state behind, so that the suite passes from zero
and in any order: torch's compiler configs (inductor, dynamo, functorch; a value changed, or an entry hidden
as a monkeypatch's undo leaves it), environment variables, the working directory, sys.path, numpy's print
options and error handling, torch's default dtype and device, thread count, grad mode, deterministic
algorithms, matmul precision and the cuDNN / TF32 flags, the SIGINT / SIGTERM handlers, and matplotlib's
rcParams once matplotlib is imported.

`guard_global_state` (autouse, imported by conftest.py) takes a snapshot before each test and compares after
its teardown; a difference fails that test with the names that changed, and is put back so that the tests
after it run on clean state. Usable on its own as a plugin: `python -m pytest -p global_state`."""
import os
import signal
import sys
from operator import attrgetter

import cv2  # noqa: F401  (its first import sets LD_LIBRARY_PATH: imported here, before the first test)
import numpy as np
import pytest
import torch
import torch._dynamo.config
import torch._functorch.config
import torch._inductor.config

from utils.device import FP32_PRECISION_API

CONFIGS = {"inductor": torch._inductor.config, "dynamo": torch._dynamo.config,
           "functorch": torch._functorch.config}


def config_state(module):
    """A config module's values, and the names hidden (read as 'does not exist'), as torch keeps them."""
    hidden = sorted(name for name, entry in module._config.items() if entry.hide)
    return module.get_config_copy(), hidden


def restore_config(module, state):
    values, _ = state
    now = module.get_config_copy()
    for name, entry in module._config.items():
        if entry.hide or now.get(name) != values.get(name):
            setattr(module, name, values[name])                 # setting a value also un-hides it


# Flags under torch.backends, by their path below torch.
# TF32 by the API utils.device sets it with (the fp32_precision strings where torch has them: reading the legacy
# booleans after they were set can fail).
TF32 = (("backends.cudnn.conv.fp32_precision", "backends.cuda.matmul.fp32_precision") if FP32_PRECISION_API
        else ("backends.cudnn.allow_tf32", "backends.cuda.matmul.allow_tf32"))
FLAGS = ("backends.cudnn.deterministic", "backends.cudnn.benchmark", *TF32, "backends.mkldnn.enabled")


def torch_flag(path):
    """(read, set) of a flag of FLAGS."""
    owner, name = path.rsplit(".", 1)
    return (lambda: attrgetter(path)(torch)), (lambda value: setattr(attrgetter(owner)(torch), name, value))


# What a process sets up once, on its first torch.compile, whichever test comes first: inductor's internal
# variables and the folder of setuptools' vendored packages on sys.path. Not a test's leak.
ONCE_PER_PROCESS_ENV = "_TORCHINDUCTOR_"
ONCE_PER_PROCESS_PATH = os.path.join("setuptools", "_vendor")


def environ():
    """os.environ, less the variable pytest itself sets while a test runs and inductor's one-time ones."""
    return {k: v for k, v in os.environ.items()
            if k != "PYTEST_CURRENT_TEST" and not k.startswith(ONCE_PER_PROCESS_ENV)}


def search_path():
    """sys.path, less the entry the first compilation adds once per process."""
    return [p for p in sys.path if not p.endswith(ONCE_PER_PROCESS_PATH)]


def restore_search_path(saved):
    once = [p for p in sys.path if p.endswith(ONCE_PER_PROCESS_PATH)]
    sys.path[:] = saved + once


def restore_environ(saved):
    for name in set(environ()) - set(saved):
        del os.environ[name]
    os.environ.update(saved)


def restore_deterministic(saved):
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])


def restore_signals(saved):
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def restore_rcparams(saved):
    import matplotlib
    matplotlib.rcParams.update(saved)


def rcparams():
    """matplotlib's rcParams where matplotlib is imported (its first import is not a change), else None."""
    matplotlib = sys.modules.get("matplotlib")
    return None if matplotlib is None else {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}


def states():
    """name -> (read the state, put a read state back)."""
    table = {f"torch {name} config": (lambda m=module: config_state(m), lambda s, m=module: restore_config(m, s))
             for name, module in CONFIGS.items()}
    table.update({
        "environment variables": (environ, restore_environ),
        "working directory": (os.getcwd, os.chdir),
        "sys.path": (search_path, restore_search_path),
        "numpy print options": (np.get_printoptions, lambda s: np.set_printoptions(**s)),
        "numpy error handling": (np.geterr, lambda s: np.seterr(**s)),
        "torch default dtype": (torch.get_default_dtype, torch.set_default_dtype),
        "torch default device": (torch.get_default_device, torch.set_default_device),
        "torch thread count": (torch.get_num_threads, torch.set_num_threads),
        "torch grad mode": (torch.is_grad_enabled, torch.set_grad_enabled),
        "torch deterministic algorithms": (
            lambda: (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled()), restore_deterministic),
        "torch float32 matmul precision": (torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
        "signal handlers": (lambda: {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)},
                            restore_signals),
        "matplotlib rcParams": (rcparams, restore_rcparams),
    })
    table.update({f"torch.{path}": torch_flag(path) for path in FLAGS})
    return table


def snapshot(table):
    return {name: read() for name, (read, _) in table.items()}


def changed(table, before):
    """The names whose state differs from `before`, after putting each back."""
    names = []
    for name, (read, restore) in table.items():
        now = read()
        if name == "matplotlib rcParams" and before[name] is None:
            continue                                            # matplotlib was first imported by the test
        if now != before[name]:
            names.append(name)
            restore(before[name])
    return names


def difference(name, before, after):
    """A short account of what changed in one state (the keys that differ for a dict, else both values)."""
    if isinstance(before, tuple) and len(before) == 2 and isinstance(before[0], dict):   # a torch config
        keys = sorted(k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k))
        keys += [f"{k} (hidden)" for k in after[1] if k not in before[1]]
        return f"{name}: {', '.join(keys)}"
    if isinstance(before, dict):
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return f"{name}: {', '.join(map(str, keys))}"
    return f"{name}: {before!r} -> {after!r}"


@pytest.fixture(autouse=True)
def guard_global_state():
    table = states()
    before = snapshot(table)
    yield
    after = snapshot(table)
    names = changed(table, before)
    if names:
        pytest.fail("the test left global state behind (put back for the next tests): "
                    + "; ".join(difference(n, before[n], after[n]) for n in names), pytrace=False)

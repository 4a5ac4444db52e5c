"""I3D weights for tests, built by the fill rule of tests/data/i3d_golden.json (copied from shared/golden):
no weight file is shipped."""
import json
import math
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from utils.io import save_torch

GOLDEN = json.loads((Path(__file__).parent / "data" / "i3d_golden.json").read_text())


def rule_value(name, shape):
    """One state_dict entry by the golden fill rule, as a tensor of `shape`."""
    if name.endswith(".num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.long)
    base = np.random.default_rng(zlib.crc32(name.encode())).random(math.prod(shape)) * 2 - 1
    base = base.reshape(shape)
    if name.endswith(".weight") and len(shape) == 5:            # conv
        value = base * math.sqrt(6 / math.prod(shape[1:]))
    elif name.endswith(".weight"):                              # batch norm scale
        value = 1 + 0.1 * base
    elif name.endswith(".bias") or name.endswith(".running_mean"):
        value = 0.1 * base
    elif name.endswith(".running_var"):
        value = 1 + 0.5 * base ** 2
    else:
        raise ValueError(f"no fill rule for {name}")
    return torch.from_numpy(value.astype(np.float32))


def rule_state_dict(stream):
    """The whole reference I3D state_dict of `stream` ("rgb" or "flow"), in the golden order."""
    return OrderedDict((name, rule_value(name, shape)) for name, shape in GOLDEN["streams"][stream]["state_dict"])


def write_rule_weights(path, stream):
    """Save rule_state_dict(stream) with torch.save to `path`, as the public weight files are saved."""
    save_torch(rule_state_dict(stream), path)


def rule_input(stream):
    """The golden input clips [2, C, 16, 224, 224] (float32 in [-1, 1])."""
    channels = GOLDEN["streams"][stream]["in_channels"]
    return torch.from_numpy((np.random.default_rng(2023).random((2, channels, 16, 224, 224)) * 2 - 1).astype(np.float32))

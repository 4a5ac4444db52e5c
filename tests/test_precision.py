"""--precision bf16: the convolutions run under bf16 autocast, everything after the heads in float32."""
import math

import pytest
import torch

import checkpoint
import inference
import main
from dataset import FeatureDataset, make_synthetic_dataset
from model import AICL

CPU = torch.device("cpu")


def forward(net, x, precision):
    args = main.parse_args(["--precision", precision])
    with torch.no_grad(), inference.autocast(args, CPU):
        return net(x)


def test_fp32_setting_is_plain_float32():
    torch.manual_seed(0)
    net, x = AICL(20, embed_dim=64), torch.randn(2, 60, 2048)
    with torch.no_grad():
        plain = net(x)
    out = forward(net, x, "fp32")
    assert all(torch.equal(out[k], plain[k]) for k in ("cas", "A_R", "A_F", "E", "A_score", "CA", "IB"))


def test_bf16_forward_agrees_with_fp32_on_fixed_weights():
    """bf16 keeps 8 significant bits: with the release's initialisation and unit-variance features,
    the actionness curves agree to 0.01, CAS and the embeddings to 2% of their largest magnitude, the
    video logits p to 5%."""
    torch.manual_seed(0)
    net, x = AICL(20), torch.randn(2, 200, 2048)
    ref, out = forward(net, x, "fp32"), forward(net, x, "bf16")
    for key in ("cas", "A", "A_R", "A_F", "A_ca", "A_score", "p", "E", "E_R", "E_F"):
        assert out[key].dtype == torch.float32, key          # the losses and the mining see float32
    for key in ("A", "A_R", "A_F", "A_ca", "A_score"):
        assert (out[key] - ref[key]).abs().max() < 0.01, key
    for key in ("cas", "E", "E_R", "E_F"):
        assert (out[key] - ref[key]).abs().max() < 0.02 * ref[key].abs().max(), key
    # p is the mean CAS over the top-k snippets, and bf16 may move a snippet in or out of the top k
    assert (out["p"] - ref["p"]).abs().max() < 0.05 * ref["p"].abs().max()
    assert not torch.equal(out["cas"], ref["cas"])            # bf16 did run


def test_bf16_training_step_on_cpu_gives_finite_losses_and_float32_weights():
    torch.manual_seed(0)
    args = main.parse_args(["--precision", "bf16", "--num_segments", "40"])
    net = AICL(20, embed_dim=32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = main.build_optimizer(args, net)
    labels = torch.zeros(4, 20)
    labels[:, 3] = 1
    for _ in range(2):
        terms, _ = main.train_step(net, optimizer, torch.randn(4, 40, 2048), labels, args)
        assert all(math.isfinite(v) for v in terms.values()), terms
    assert all(v.dtype == torch.float32 for v in net.state_dict().values())
    assert all(not torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    data = make_synthetic_dataset(str(root / "data"), num_train=16, num_test=6, num_classes=3, length=(40, 60),
                                  seed=5)
    out = str(root / "ckpt")
    tiny = ["--data_path", data, "--output_dir", out, "--exp_name", "run", "--num_segments", "32",
            "--batch_size", "8", "--max_steps", "4", "--detection_inf_step", "4", "--seed", "1"]
    best = main.main(tiny + ["--precision", "bf16"])
    return tiny, out, best


def test_bf16_checkpoint_records_its_precision_and_evaluates_in_fp32(bf16_run):
    tiny, out, best = bf16_run
    state = torch.load(f"{out}/run/best.pt", weights_only=True)
    assert state["args"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in state["model"].values())
    metrics = main.main(tiny + ["--inference_only", "--model_file", f"{out}/run/best.pt"])   # fp32 default
    assert 0.0 <= metrics["average_mAP"] <= 1.0 and best["average_mAP"] >= 0.0
    # the same weights evaluated by hand in fp32 give the same metrics
    args = main.parse_args(tiny)
    net = checkpoint.build_model(args, 20)
    net.load_state_dict(state["model"])
    test_set = FeatureDataset(args.data_path, "test", args.num_segments, "uniform", seed=args.seed)
    direct, _ = inference.evaluate(net, test_set, args, CPU)
    assert direct["mAP"] == metrics["mAP"] and direct["A_bin_acc"] == metrics["A_bin_acc"]

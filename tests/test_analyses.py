"""The paper's analyses: loss ablation, paper-vs-release switches, fusion variants, Table 5 accuracies,
the figures, and the table / multi-seed runners."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import checkpoint
import main
from dataset import FeatureDataset, make_synthetic_dataset, uniform_indices
from model import AICL

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--num_segments", "32", "--batch_size", "8", "--soft_nms", "--embed_dim", "64"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp("analyses") / "data"), num_train=16, num_test=6,
                                  num_classes=3, length=(30, 60), signal=0.15, seed=7)


def batch(seed=0, B=4, T=40):
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(B, 20)
    labels[torch.arange(B), torch.randint(20, (B,), generator=g)] = 1
    return torch.randn(B, T, 2048, generator=g), labels


@pytest.mark.parametrize("losses", ["a", "a,ca", "a,ca,c,mc"])
def test_switched_off_terms_do_not_enter_the_total(losses):
    args = main.parse_args(["--losses", losses] + QUICK)
    torch.manual_seed(0)
    model = checkpoint.build_model(args, 20)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    terms, _ = main.train_step(model, optimizer, *batch(), args)
    weights = {"a": 1, "ca": 1, "mc": 5, "c": 0.01, "ac": 0.1}
    expected = sum(weights[t] * terms[f"L_{t}"] for t in losses.split(","))
    assert terms["total"] == pytest.approx(expected, rel=1e-6)
    assert terms["L_c"] > 0 and terms["L_ca"] > 0      # still reported, whatever their weight


def test_only_L_a_leaves_the_class_agnostic_branch_untouched():
    args = main.parse_args(["--losses", "a"] + QUICK)
    torch.manual_seed(0)
    model = checkpoint.build_model(args, 20)
    before = model.actionness_module.cls_rgb.weight.detach().clone()
    main.train_step(model, torch.optim.Adam(model.parameters(), lr=1e-3), *batch(), args)
    assert torch.equal(before, model.actionness_module.cls_rgb.weight)


def test_bad_switches_are_refused(capsys):
    for flags in (["--losses", "a,xx"], ["--contrast_spaces", "E,Z"]):
        with pytest.raises(SystemExit):
            main.parse_args(flags)
    assert "--contrast_spaces takes" in capsys.readouterr().err


def test_contrast_spaces_and_stop_gradient_reach_the_loss():
    args = main.parse_args(["--contrast_spaces", "E_R,E_F", "--stop_gradient"] + QUICK)
    torch.manual_seed(0)
    model = checkpoint.build_model(args, 20)
    terms, _ = main.train_step(model, torch.optim.Adam(model.parameters(), lr=0.0), *batch(), args)
    assert "L_c_E" not in terms and terms["L_c"] == pytest.approx(terms["L_c_E_R"] + terms["L_c_E_F"], rel=1e-6)


@pytest.mark.parametrize("aware, agnostic", [("early", "early"), ("late", "early"), ("late", "late"), ("early", "late")])
def test_fusion_variants(aware, agnostic):
    torch.manual_seed(0)
    model = AICL(20, embed_dim=16, aware_fusion=aware, agnostic_fusion=agnostic)
    x, _ = batch()
    out = model(x)
    assert out["cas"].shape == (4, 40, 20) and out["A_R"].shape == (4, 40)
    assert out["E"].shape[2] == (16 if aware == "early" else 32) and out["E_R"].shape[2] == 16
    if agnostic == "early":                               # one head for both modalities: L_mc vanishes
        assert torch.equal(out["A_R"], out["A_F"])
    else:
        assert not torch.equal(out["A_R"], out["A_F"])
    x2 = x.clone()
    x2[:, :, 1024:] = 0                                   # flow changes: an early class-aware branch sees it
    assert not torch.allclose(model(x2)["cas"], out["cas"])
    names = set(model.state_dict())
    assert ("actionness_module.base_module.0.weight" in names) == (aware == "early")
    assert ("actionness_module.action_module_rgb.0.weight" in names) == (agnostic == "late")
    with pytest.raises(ValueError, match="aware_fusion"):
        AICL(20, aware_fusion="middle")


@pytest.mark.slow
def test_evaluation_reports_table5_and_draws_the_figures(data, tmp_path):
    run = ["--data_path", data, "--output_dir", str(tmp_path), "--exp_name", "fig", "--max_steps", "12",
           "--detection_inf_step", "6", "--num_epochs", "20"] + QUICK
    best = main.main(run)
    out = tmp_path / "fig"
    assert (out / "consistent_segments.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(out / "last.pt", weights_only=True)
    assert [s for s, _ in state["consistent"]] == list(range(1, 13))
    assert all(0 <= n <= 32 for _, n in state["consistent"])
    assert json.load(open(out / "last_metrics.json"))["step"] == 12
    log = pd.read_csv(out / "log.csv")                           # one row per evaluation, for plotting
    assert log["step"].tolist() == [0, 6, 12]
    assert {"total", "L_a", "L_ca", "L_mc", "L_c", "L_ac", "mAP@0.1", "mAP@0.7", "average_mAP", "cls_acc"} <= set(log)
    assert log.loc[0, ["total", "L_a"]].isna().all() and np.isfinite(log.loc[1:, ["total", "L_a", "L_c"]]).all().all()
    assert log["average_mAP"].iloc[-1] == pytest.approx(json.load(open(out / "last_metrics.json"))["average_mAP"])
    text = (out / "log.txt").read_text()
    assert "\r" not in text and [line.split(":")[0] for line in text.splitlines() if line.startswith("step")] == [
        "step 0 (untrained)", "step 6", "step 12"]

    # Table 5 by hand from the model's outputs: share of sampled snippets where A^bin equals "any action"
    args = main.parse_args(run)
    model = checkpoint.build_model(args, 20)
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True)["model"])
    model.eval()
    test_set = FeatureDataset(data, "test", 32, "uniform")
    hits, total = np.zeros(2), 0
    with torch.no_grad():
        for i, vid in enumerate(test_set.vids):
            o = model(test_set[i][0][None])
            action = test_set.frame_labels(vid).any(1)[uniform_indices(len(test_set.features[vid]), 32)]
            hits += [(o["A_bin"][0].numpy() == action).sum(), (o["A_ca_bin"][0].numpy() == action).sum()]
            total += 32
    assert best["A_bin_acc"] == pytest.approx(hits[0] / total) and best["A_ca_bin_acc"] == pytest.approx(hits[1] / total)

    vid = test_set.vids[0]
    metrics = main.main(run + ["--inference_only", "--model_file", str(out / "best.pt"), "--plot_video", vid])
    assert (out / "plots" / f"{vid}.png").read_bytes()[:4] == b"\x89PNG"
    assert metrics["A_bin_acc"] == pytest.approx(best["A_bin_acc"])


@pytest.mark.slow
def test_table_and_seed_runners(data, tmp_path):
    import seeds
    import tables
    extra = ["--data_path", data, "--output_dir", str(tmp_path), "--exp_name", "r", "--max_steps", "4",
             "--detection_inf_step", "2", "--num_epochs", "4"] + QUICK
    rows = tables.main_tables(["--table", "6", "--"] + extra)
    assert [r["paper_avg"] for r in rows] == [40.7, 41.6, 45.7, 46.4]
    assert all(0 <= r["best_avg"] <= 100 and r["last_avg"] <= r["best_avg"] + 1e-9 for r in rows)
    assert (tmp_path / "r_t6_0" / "best.pt").exists() and (tmp_path / "r_t6_3" / "best.pt").exists()
    summary = seeds.main_seeds(["--seeds", "1", "2", "--"] + extra)
    runs = [json.load(open(tmp_path / f"r_seed{s}" / "last_metrics.json")) for s in (1, 2)]
    avg = [r["average_mAP"] * 100 for r in runs]
    assert summary["last"]["mean"][-1] == pytest.approx(np.mean(avg))
    assert summary["last"]["std"][-1] == pytest.approx(np.std(avg, ddof=1))


def test_fp_breakdown_command_line(tmp_path):
    gt = {"database": {"v": {"subset": "test", "annotations": [{"label": "A", "segment": [0, 10]}]}}}
    pred = {"results": {"v": [{"label": "A", "score": 0.9, "segment": [0, 10]},
                              {"label": "A", "score": 0.5, "segment": [50, 60]}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps(pred))
    proc = subprocess.run([sys.executable, "-m", "eval.fp_analysis", "--gt", str(tmp_path / "gt.json"), "--pred",
                           str(tmp_path / "p.json"), "--top_factor", "2", "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["true_positive"] == 1 and result["counts"]["background"] == 1

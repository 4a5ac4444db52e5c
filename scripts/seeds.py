"""Train with several seeds and summarise the spread: mean and standard deviation per tIoU.

    python3 scripts/seeds.py --seeds 1 2 3 4 5 [--json] -- --data_path data/THUMOS14 --soft_nms [main.py flags]

Each seed is a full training run under OUTPUT_DIR/<exp_name>_seed<S>/. Two selections are reported side
by side, stated plainly: "best" is the checkpoint with the best test mAP (what the authors' release keeps
and reports: it selects on the test set), "last" is the final evaluation (no selection on test).
"""
import argparse
import json
import sys

import numpy as np
import pandas as pd

import _repo  # noqa: E402,F401  (the repository root on sys.path)

import main  # noqa: E402
from tables import last_metrics  # noqa: E402
from utils.cli import run as run_cli  # noqa: E402


def summarise(runs):
    """runs: list of metrics dicts -> (mean [n_tiou + 1], std [n_tiou + 1]) in %, AVG last (population std
    over seeds would understate: ddof=1, 0 for a single seed)."""
    values = np.array([r["mAP"] + [r["average_mAP"]] for r in runs]) * 100     # [seeds, n_tiou + 1]
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    return values.mean(axis=0), std


def main_seeds(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ours, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    opts = p.parse_args(ours)
    base = main.parse_args(extra)
    best, last = [], []
    for seed in opts.seeds:
        best.append(main.main(extra + ["--seed", str(seed), "--exp_name", f"{base.exp_name}_seed{seed}"]))
        last.append(last_metrics(best[-1]))
    head = [f"{t:g}" for t in base.tiou] + ["AVG"]
    summary, table = {}, {}
    for name, runs in (("best (on test, as the release)", best), ("last (no selection)", last)):
        mean, std = summarise(runs)
        summary[name.split()[0]] = {"mean": mean.tolist(), "std": std.tolist()}
        table[name] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(mean, std)]
    print(f"\n{len(opts.seeds)} seeds ({' '.join(map(str, opts.seeds))}): mAP (%) mean ± std")
    print(pd.DataFrame.from_dict(table, orient="index", columns=head).to_string())
    if opts.json:
        print(json.dumps({"seeds": opts.seeds, "tiou": base.tiou, **summary}))
    return summary


if __name__ == "__main__":
    run_cli(main_seeds)

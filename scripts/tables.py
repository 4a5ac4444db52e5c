"""Re-run the paper's ablation tables and print them beside the paper's numbers.

    python3 scripts/tables.py --table 4 [--json] -- --data_path data/THUMOS14 --soft_nms [main.py flags]
    python3 scripts/tables.py --table 6 -- ...

Table 4 trains one model per set of loss terms (--losses), Table 6 one per fusion of RGB and flow in the
two branches (--aware_fusion / --agnostic_fusion); every other flag after "--" goes to main.py unchanged.
Each row is a full training run under OUTPUT_DIR/<exp_name>_t<table>_<row>/. Reported: AVG mAP (%) of
the best-on-test checkpoint (the release's selection) and of the last evaluation.
"""
import argparse
import json
import os
import sys

import pandas as pd

import _repo  # noqa: E402,F401  (the repository root on sys.path)

import main  # noqa: E402
from utils.cli import run as run_cli  # noqa: E402
from utils.io import read_json  # noqa: E402

# (row, main.py flags, the paper's AVG mAP 0.1:0.7 on THUMOS14)
TABLES = {
    "4": [("L_a", ["--losses", "a"], 31.9),
          ("L_a + L_ca (baseline)", ["--losses", "a,ca"], 43.2),
          ("baseline + L_c", ["--losses", "a,ca,c"], 44.8),
          ("baseline + L_mc", ["--losses", "a,ca,mc"], 44.6),
          ("baseline + L_c + L_mc", ["--losses", "a,ca,c,mc"], 46.0),
          ("AICL (all five)", ["--losses", "a,ca,c,mc,ac"], 46.4)],
    "6": [("early / early", ["--aware_fusion", "early", "--agnostic_fusion", "early"], 40.7),
          ("late / early", ["--aware_fusion", "late", "--agnostic_fusion", "early"], 41.6),
          ("late / late", ["--aware_fusion", "late", "--agnostic_fusion", "late"], 45.7),
          ("early / late (AICL)", ["--aware_fusion", "early", "--agnostic_fusion", "late"], 46.4)],
}
TITLES = {"4": "Table 4: loss terms", "6": "Table 6: RGB/flow fusion, class-aware / class-agnostic branch"}


def last_metrics(run):
    """The last evaluation of a training run: last_metrics.json in the folder main.main reports (out_dir)."""
    return read_json(os.path.join(run.out_dir, "last_metrics.json"))


def run_row(flags, extra, exp_name):
    """Train one row; returns (best metrics, last metrics)."""
    best = main.main(extra + flags + ["--exp_name", exp_name])
    return best, last_metrics(best)


def main_tables(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ours, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", choices=sorted(TABLES), required=True)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    opts = p.parse_args(ours)
    base = main.parse_args(extra).exp_name
    rows = []
    for i, (name, flags, paper) in enumerate(TABLES[opts.table]):
        best, last = run_row(flags, extra, f"{base}_t{opts.table}_{i}")
        rows.append({"row": name, "flags": " ".join(flags), "paper_avg": paper,
                     "best_avg": best["average_mAP"] * 100, "last_avg": last["average_mAP"] * 100})
    table = pd.DataFrame(rows).set_index("row")[["paper_avg", "best_avg", "last_avg", "flags"]]
    table.columns = ["paper", "best", "last", "flags"]
    table.index.name = None
    table["flags"] = table["flags"].str.ljust(table["flags"].str.len().max())
    print(f"\n{TITLES[opts.table]} (AVG mAP %; the paper's numbers are THUMOS14 0.1:0.7)")
    print(table.to_string(float_format="{:.1f}".format))
    print("best: the checkpoint with the best test mAP (the release's selection); last: the final evaluation")
    if opts.json:
        print(json.dumps({"table": opts.table, "rows": rows}))
    return rows


if __name__ == "__main__":
    run_cli(main_tables)

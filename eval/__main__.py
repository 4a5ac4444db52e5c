"""Command line: python -m eval --gt GT.json --pred RESULT.json [--subset test] [--tiou ...] [--json] [--per_class]."""

from __future__ import annotations

import argparse
import json
import sys

from utils.cli import run as run_cli

from .detection import THUMOS_TIOU, evaluate_files, ignored_note


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m eval", description="Temporal action detection mAP (ActivityNet protocol)."
    )
    parser.add_argument("--gt", required=True, help="ground truth in gt.json form")
    parser.add_argument("--pred", required=True, help="result file in ActivityNet detection form")
    parser.add_argument("--subset", default="test",
                        help="ground-truth subset to evaluate (default: test); 'validation' scores 'val' when "
                             "gt.json has only that (SAL's name)")
    parser.add_argument(
        "--tiou", type=float, nargs="+", default=list(THUMOS_TIOU), help="tIoU thresholds (default: 0.1 ... 0.7)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--per_class", action="store_true", help="also print the AP of each class (table only)")
    return parser.parse_args(argv)


def _as_json(result: dict) -> str:
    """The result as one line of JSON (fractions)."""
    return json.dumps(
        {
            "mAP": result["mAP"].tolist(),
            "average_mAP": result["average_mAP"],
            "tiou": result["tiou"].tolist(),
            "subset": result["subset"],
            "ap_per_class": {name: ap.tolist() for name, ap in result["ap_per_class"].items()},
            "ignored": result["ignored"],
        }
    )


def _table(result: dict, per_class: bool) -> str:
    """Readable table in percent: one row per tIoU plus AVG; optionally one row per class."""
    lines = [f"gt.json subset {result['subset']!r}", "tIoU   mAP(%)"]
    lines += [f"{t:<5.2f} {100 * m:7.2f}" for t, m in zip(result["tiou"], result["mAP"])]
    lines.append(f"AVG   {100 * result['average_mAP']:7.2f}")
    if per_class:
        width = max(len("class"), *map(len, result["ap_per_class"]))
        lines += ["", f"{'class':<{width}} " + " ".join(f"{t:6.2f}" for t in result["tiou"]) + "    AVG"]
        for name, ap in result["ap_per_class"].items():
            lines.append(f"{name:<{width}} " + " ".join(f"{100 * a:6.2f}" for a in ap) + f" {100 * ap.mean():6.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Evaluate and print; a missing or malformed input file is a ValueError/FileNotFoundError naming it."""
    args = _parse_args(argv)
    result = evaluate_files(args.gt, args.pred, args.subset, args.tiou)
    note = ignored_note(result["ignored"], args.subset)
    if note:
        print(note, file=sys.stderr)
    print(_as_json(result) if args.json else _table(result, args.per_class))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

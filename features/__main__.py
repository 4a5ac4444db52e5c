"""python -m features INPUT... --out DIR --rgb-weights RGB.pt --flow-weights FLOW.pt: two-stream I3D features of
videos (files and/or folders), written as DIR/rgb/VID.npy, DIR/flow/VID.npy and DIR/extraction.json.
Exit 0 when every video is done or skipped, 1 when any failed, 2 for bad arguments, inputs or weights, 130
after Ctrl-C (the same command then continues where it stopped).

`python -m features` runs from the repository root (or with the root on PYTHONPATH); `python
/path/to/repo/features ...` runs from anywhere."""
import argparse
import os
import sys

if not __package__:           # run as `python path/to/features`: import the package from its repository root
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from features.extract import add_arguments, extract, options  # noqa: E402
from features.inputs import resolve_shard  # noqa: E402
from utils.cli import run  # noqa: E402


def shard_arg(text):
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N, e.g. 0/4") from None
    try:
        return resolve_shard((k, n))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m features", description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files and/or folders of videos")
    p.add_argument("--out", required=True, help="output folder DIR")
    p.add_argument("--rgb-weights", help="I3D RGB weights (public: rgb_imagenet.pt)")
    p.add_argument("--flow-weights", help="I3D flow weights (public: flow_imagenet.pt)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present; LOCAL_RANK under torchrun), cpu, cuda:N")
    p.add_argument("--shard", type=shard_arg, default=None, metavar="K/N",
                   help="take videos K, K+N, ... of the sorted list (default: from torchrun or a Slurm array)")
    add_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="re-extract videos that are already done")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    return p.parse_args(argv)


def main(argv=None):
    """The exit status (0 all done or skipped, 1 some failed); bad input raises ValueError / FileNotFoundError
    naming the file or flag, Ctrl-C Interrupted saying how far the run got."""
    args = parse_args(argv)
    result = extract(args.inputs, args.out, options(args), shard=args.shard, overwrite=args.overwrite,
                     progress=not args.no_progress)
    for vid, reason in sorted(result["failed"].items()):
        print(f"failed {vid}: {reason}", file=sys.stderr)
    done, skipped, failed = len(result["done"]), len(result["skipped"]), len(result["failed"])
    print(f"{done} done, {skipped} skipped, {failed} failed -> {args.out}")
    return 1 if failed else 0


def cli(argv=None):
    """`python -m features`: main with one-line errors (exit 2 for bad input) and Ctrl-C as one line (130)."""
    sys.exit(run(main, argv, interrupted="interrupted (Ctrl-C); the same command continues where this one "
                                         "stopped"))


if __name__ == "__main__":
    cli()

"""python -m features INPUT... --out DIR --rgb-weights RGB.pt --flow-weights FLOW.pt: two-stream I3D features of
videos (files and/or folders), written as DIR/rgb/VID.npy, DIR/flow/VID.npy and DIR/extraction.json.
Exit 0 when every video is done or skipped, 1 when any failed, 2 for bad arguments, inputs or weights."""
import argparse
import sys

from features.extract import add_arguments, extract, options, resolve_shard


def shard_arg(text):
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected K/N, e.g. 0/4") from None
    try:
        return resolve_shard((k, n))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m features", description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files and/or folders of videos")
    p.add_argument("--out", required=True, help="output folder DIR")
    p.add_argument("--rgb-weights", required=True, help="I3D RGB weights (public: rgb_imagenet.pt)")
    p.add_argument("--flow-weights", required=True, help="I3D flow weights (public: flow_imagenet.pt)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present; LOCAL_RANK under torchrun), cpu, cuda:N")
    p.add_argument("--shard", type=shard_arg, default=None, metavar="K/N",
                   help="take videos K, K+N, ... of the sorted list (default: from torchrun or a Slurm array)")
    add_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="re-extract videos that are already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        result = extract(args.inputs, args.out, args.rgb_weights, args.flow_weights, device=args.device,
                         shard=args.shard, overwrite=args.overwrite, progress=not args.no_progress, **options(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for vid, reason in sorted(result["failed"].items()):
        print(f"failed {vid}: {reason}", file=sys.stderr)
    done, skipped, failed = len(result["done"]), len(result["skipped"]), len(result["failed"])
    print(f"{done} done, {skipped} skipped, {failed} failed -> {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

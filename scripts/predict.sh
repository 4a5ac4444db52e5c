#!/usr/bin/env bash
# Localize actions in your own videos (I3D features, no ground truth needed):
#   bash scripts/predict.sh FEATURE_DIR [CHECKPOINT] [main.py flags, e.g. --plot --top_k 20 --min_score 0.1]
# FEATURE_DIR holds rgb/VID.npy + flow/VID.npy ([T, 1024] each) or VID.npy ([T, 2048], rgb first).
# The checkpoint's settings (T, class threshold, NMS, ...) are used unless a flag given here says otherwise.
# Writes predictions.json, detections.csv (and with --plot one PNG per video) to ckpt/predict/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bash scripts/predict.sh FEATURE_DIR [CHECKPOINT] [main.py flags]" >&2
  exit 2
fi
DIR="$1"; shift
MODEL_FILE="ckpt/aicl/best.pt"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then MODEL_FILE="$1"; shift; fi
exec "$PYTHON" main.py --inference_only --predict_dir "$DIR" --model_file "$MODEL_FILE" --exp_name predict "$@"

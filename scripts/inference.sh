#!/usr/bin/env bash
# Evaluate a checkpoint on the THUMOS14 test split:
#   DATA_PATH=data/THUMOS14 MODEL_FILE=ckpt/CAS_Only.pkl bash scripts/inference.sh
# MODEL_FILE may be the authors' CAS_Only.pkl (evaluated with the release's soft-NMS) or one of ours
# (default: ckpt/aicl/best.pt), which brings the settings it was trained with; flags given here win.
# Writes predictions.json and metrics.json to ckpt/<exp_name>/eval_<checkpoint name>/. Extra arguments go to main.py.
# A DATA_PATH without gt.json or a MODEL_FILE that does not exist stops. Only when DATA_PATH is not set and
# data/THUMOS14 holds no dataset does it say so and evaluate the demo model on the demo dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DEMO_PATH="${DEMO_PATH:-data/demo}"

if [ -n "${DATA_PATH+set}" ] || [ -f data/THUMOS14/gt.json ]; then
  DATA_PATH="${DATA_PATH:-data/THUMOS14}"
  if [ ! -f "$DATA_PATH/gt.json" ]; then
    echo "error: DATA_PATH=$DATA_PATH holds no gt.json (see README 'Data'); unset DATA_PATH for the demo" >&2
    exit 2
  fi
  exec "$PYTHON" main.py --data_path "$DATA_PATH" --inference_only --model_file "${MODEL_FILE:-ckpt/aicl/best.pt}" "$@"
fi

echo "No DATA_PATH given and no dataset at data/THUMOS14 (no gt.json there)."
echo "DEMO MODE: evaluating the demo model on the synthetic demo dataset in $DEMO_PATH (not THUMOS14)."
if [ -n "${MODEL_FILE+set}" ] && [ ! -f "$MODEL_FILE" ]; then
  echo "error: MODEL_FILE=$MODEL_FILE: checkpoint not found" >&2
  exit 2
fi
MODEL_FILE="${MODEL_FILE:-ckpt/demo/best.pt}"
if [ ! -f "$MODEL_FILE" ]; then
  echo "No demo checkpoint at $MODEL_FILE yet: training the demo first (bash scripts/train.sh)."
  DEMO_PATH="$DEMO_PATH" bash scripts/train.sh "$@"
fi
exec "$PYTHON" main.py --data_path "$DEMO_PATH" --exp_name demo --inference_only --model_file "$MODEL_FILE" "$@"

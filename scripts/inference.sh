#!/usr/bin/env bash
# Evaluate a checkpoint on the THUMOS14 test split with the release's post-processing (soft-NMS):
#   DATA_PATH=data/THUMOS14 MODEL_FILE=ckpt/CAS_Only.pkl bash scripts/inference.sh
# MODEL_FILE may be the authors' CAS_Only.pkl or one of ours (default: ckpt/aicl/best.pt).
# Writes predictions.json and metrics.json to ckpt/<exp_name>/eval_<checkpoint name>/. Extra arguments go to main.py.
# Without a dataset at DATA_PATH it says so and evaluates the demo model on the demo dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DATA_PATH="${DATA_PATH:-data/THUMOS14}"
DEMO_PATH="${DEMO_PATH:-data/demo}"

if [ -f "$DATA_PATH/gt.json" ]; then
  exec "$PYTHON" main.py --data_path "$DATA_PATH" --exp_name aicl --num_segments 750 --inference_only \
    --soft_nms --model_file "${MODEL_FILE:-ckpt/aicl/best.pt}" "$@"
fi

echo "No dataset found at $DATA_PATH (no gt.json there)."
echo "DEMO MODE: evaluating the demo model on the synthetic demo dataset in $DEMO_PATH (not THUMOS14)."
MODEL_FILE="${MODEL_FILE:-ckpt/demo/best.pt}"
if [ ! -f "$MODEL_FILE" ]; then
  echo "No demo checkpoint at $MODEL_FILE yet: training the demo first (bash scripts/train.sh)."
  DATA_PATH="$DATA_PATH" DEMO_PATH="$DEMO_PATH" bash scripts/train.sh "$@"
fi
exec "$PYTHON" main.py --data_path "$DEMO_PATH" --exp_name demo --num_segments 100 --inference_only \
  --soft_nms --model_file "$MODEL_FILE" "$@"

#!/usr/bin/env bash
# Evaluate an ActivityNet checkpoint on the validation subset (tIoU 0.5:0.05:0.95).
#   DATA_PATH=data/ActivityNet1.3 MODEL_FILE=ckpt/aicl_anet13/best.pt bash scripts/inference_anet.sh anet13
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DATASET="${1:-}"
case "$DATASET" in
  anet12) DEFAULT_PATH=data/ActivityNet1.2 ;;
  anet13) DEFAULT_PATH=data/ActivityNet1.3 ;;
  *) echo "usage: bash scripts/inference_anet.sh anet12|anet13 [main.py flags]" >&2; exit 2 ;;
esac
shift
DATA_PATH="${DATA_PATH:-$DEFAULT_PATH}"
if [ ! -f "$DATA_PATH/gt.json" ]; then
  echo "No dataset found at $DATA_PATH (no gt.json there); see README 'Data'." >&2
  exit 1
fi
exec "$PYTHON" main.py --dataset "$DATASET" --data_path "$DATA_PATH" --exp_name "aicl_$DATASET" --inference_only \
  --soft_nms --model_file "${MODEL_FILE:-ckpt/aicl_$DATASET/best.pt}" "$@"

#!/usr/bin/env bash
# Evaluate an ActivityNet checkpoint on the validation subset (tIoU 0.5:0.05:0.95), with the settings of
# scripts/train_anet.sh (same data path, experiment folder and flags):
#   DATA_PATH=data/ActivityNet1.3 MODEL_FILE=ckpt/aicl_anet13/best.pt bash scripts/inference_anet.sh anet13
set -euo pipefail
DATASET="${1:-}"
exec bash "$(dirname "$0")/train_anet.sh" "$@" --inference_only --model_file "${MODEL_FILE:-ckpt/aicl_$DATASET/best.pt}"

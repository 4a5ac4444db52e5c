#!/usr/bin/env bash
# Train AICL on ActivityNet v1.2 or v1.3 with the paper's settings and, where it is silent, those of the
# authors' ActivityNet v1.3 code (SAL_ActivityNet: 50,000 steps of batch 32, evaluation every 200 steps;
# see README "ActivityNet" for each value and its source). Extra arguments are passed to main.py.
#   DATA_PATH=data/ActivityNet1.3 bash scripts/train_anet.sh anet13 [--exp_name NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DATASET="${1:-}"
case "$DATASET" in
  anet12) DEFAULT_PATH=data/ActivityNet1.2 ;;
  anet13) DEFAULT_PATH=data/ActivityNet1.3 ;;
  *) echo "usage: bash scripts/train_anet.sh (or inference_anet.sh) anet12|anet13 [main.py flags]" >&2; exit 2 ;;
esac
shift
DATA_PATH="${DATA_PATH:-$DEFAULT_PATH}"
if [ ! -f "$DATA_PATH/gt.json" ]; then
  echo "error: no dataset found at DATA_PATH=$DATA_PATH (no gt.json there; see README 'Data'; the demo is bash scripts/train.sh)" >&2
  exit 2
fi
RECIPE=(--soft_nms)       # SAL's other values (batch 32, 50k steps, evaluation every 200) are main.py's anet defaults
for arg in "$@"; do
  [ "$arg" != --inference_only ] || RECIPE=()     # a checkpoint brings its own settings (inference_anet.sh)
done
exec "$PYTHON" main.py --dataset "$DATASET" --data_path "$DATA_PATH" --exp_name "aicl_$DATASET" "${RECIPE[@]}" "$@"

#!/usr/bin/env bash
# Train AICL with the paper's recipe (the authors' THUMOS14 release: 900 epochs, batch 16, T = 750,
# evaluation every 50 steps, soft-NMS). Extra arguments are passed to main.py and win over these.
#   DATA_PATH=data/THUMOS14 bash scripts/train.sh [--exp_name NAME ...]
# Without a dataset at DATA_PATH it says so and trains on the synthetic demo dataset instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DATA_PATH="${DATA_PATH:-data/THUMOS14}"
DEMO_PATH="${DEMO_PATH:-data/demo}"

if [ -f "$DATA_PATH/gt.json" ]; then
  exec "$PYTHON" main.py --data_path "$DATA_PATH" --exp_name aicl --num_segments 750 --batch_size 16 \
    --num_epochs 900 --lr 1e-4 --q_val 0.7 --detection_inf_step 50 --soft_nms --seed 1 "$@"
fi

echo "No dataset found at $DATA_PATH (no gt.json there)."
echo "DEMO MODE: training on the small synthetic demo dataset in $DEMO_PATH instead (not THUMOS14; numbers are not the paper's)."
[ -f "$DEMO_PATH/gt.json" ] || "$PYTHON" dataset.py --out "$DEMO_PATH"
exec "$PYTHON" main.py --data_path "$DEMO_PATH" --exp_name demo --num_segments 100 --batch_size 16 \
  --num_epochs 100 --detection_inf_step 50 --soft_nms --seed 1 "$@"

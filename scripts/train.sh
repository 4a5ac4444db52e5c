#!/usr/bin/env bash
# Train AICL with the paper's recipe (the authors' THUMOS14 release: 900 epochs, batch 16, T = 750,
# evaluation every 50 steps: main.py's defaults; soft-NMS, which the release scripts pass). Extra arguments
# are passed to main.py and win over these.
#   DATA_PATH=data/THUMOS14 bash scripts/train.sh [--exp_name NAME ...]
# A DATA_PATH without gt.json stops. Only when DATA_PATH is not set and data/THUMOS14 holds no dataset does
# it say so and train on the synthetic demo dataset (into ckpt/demo, replaced on every demo run).
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
  exec "$PYTHON" main.py --data_path "$DATA_PATH" --soft_nms "$@"
fi

echo "No DATA_PATH given and no dataset at data/THUMOS14 (no gt.json there)."
echo "DEMO MODE: training on the small synthetic demo dataset in $DEMO_PATH instead (not THUMOS14; numbers are not the paper's)."
[ -f "$DEMO_PATH/gt.json" ] || "$PYTHON" dataset.py --out "$DEMO_PATH"
# The demo's outputs are generated, so a demo run replaces an earlier one (--overwrite), unless it resumes
# a run or is given its own --exp_name.
OVERWRITE=(--overwrite)
for arg in "$@"; do
  case "$arg" in --resume|--resume=*|--exp_name|--exp_name=*) OVERWRITE=() ;; esac
done
[ ${#OVERWRITE[@]} -eq 0 ] || echo "(a re-run replaces the earlier demo run: main.py --overwrite)"
exec "$PYTHON" main.py --data_path "$DEMO_PATH" --exp_name demo --num_segments 100 --num_epochs 100 --soft_nms \
  "${OVERWRITE[@]}" "$@"

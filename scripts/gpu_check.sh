#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): TV-L1, I3D, training and inference on CUDA against the CPU; one table and
# two files in --out (default ckpt/gpu_check): gpu_check.json and gpu_check.txt (the table); exit 1 when a parity
# fails, 3 without a CUDA device. Runs on the GPU machines as they come (no PyAV, no cv2.optflow needed).
#   bash scripts/gpu_check.sh [--out DIR] [--work DIR] [--overwrite]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
